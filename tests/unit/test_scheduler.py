"""Scheduler: pure filters and weigher; atomic claims against a real SQLite file
shared by two engines (two "scheduler processes")."""
from __future__ import annotations

import asyncio
import functools
import random
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from cells import errors
from cells.config import ApiSpec, CellSpec, ClusterConfig, ServiceSpec
from cells.db import claims
from cells.db import hosts as hdb
from cells.db.claims import HostState, Resources
from cells.db.engine import Database
from cells.db.schema import claims as claims_table
from cells.db.schema import create_schema
from cells.rpc.directory import Member
from cells.scheduler.filters import disk_filter, filter_hosts, ram_filter, vcpu_filter
from cells.scheduler.manager import SchedulerManager, select_for
from cells.scheduler.weights import weigh
from tests.unit.claim_support import claim, release

SMALL = Resources(vcpus=1, memory_mb=512, local_gb=1)
FLAVOR = {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0}


def host(name: str, vcpus: int = 4, ram: int = 2048, disk: int = 20, **used: int) -> HostState:
    return HostState(name, vcpus, ram, disk, used.get("vcpus", 0), used.get("ram", 0), used.get("disk", 0))


# --- pure parts ---------------------------------------------------------------

def test_resources_from_flavor_counts_ephemeral_and_swap() -> None:
    res = Resources.from_flavor({"vcpus": 2, "ram": 1024, "disk": 10, "ephemeral": 5, "swap": 1536})
    assert res == Resources(vcpus=2, memory_mb=1024, local_gb=17)


def test_ram_filter_uses_allocation_ratio() -> None:
    full = host("a", ram=1024, ram_used=0)
    assert ram_filter(full, Resources(1, 1024, 0))
    assert not ram_filter(full, Resources(1, 1025, 0))
    oversub = HostState("b", 4, 1024, 20, memory_mb_used=1024, ram_allocation_ratio=1.5)
    assert ram_filter(oversub, Resources(1, 512, 0))
    assert not ram_filter(oversub, Resources(1, 513, 0))


def test_disk_and_vcpu_filters() -> None:
    h = HostState("a", 2, 4096, 10, vcpus_used=7, local_gb_used=9)  # cpu ratio 4.0: 8 vcpus
    assert vcpu_filter(h, Resources(1, 0, 0)) and not vcpu_filter(h, Resources(2, 0, 0))
    assert disk_filter(h, Resources(0, 0, 1)) and not disk_filter(h, Resources(0, 0, 2))


def test_filter_hosts_drops_dead_excluded_and_full_hosts() -> None:
    hosts = [host("alive"), host("dead"), host("excluded"), host("full", ram=256)]
    kept = filter_hosts(hosts, SMALL, alive=lambda h: h != "dead", exclude=["excluded"])
    assert [h.host for h in kept] == ["alive"]


def test_weigher_spreads_by_free_ram_then_vcpus_then_name() -> None:
    hosts = [host("c", ram=2048), host("b", ram=4096, vcpus=2), host("a", ram=4096, vcpus=2),
             host("d", ram=4096, vcpus=8)]
    assert [h.host for h in weigh(hosts)] == ["d", "a", "b", "c"]


def test_consume_moves_the_next_instance_elsewhere() -> None:
    a, b = host("a"), host("b")
    first = weigh([a, b])[0]
    assert first.host == "a"
    assert weigh([first.consume(SMALL), b])[0].host == "b"


# --- claims against a real SQLite file ---------------------------------------

async def _two_hosts(url: str, ram_each: int) -> Database:
    await create_schema(url)
    db = Database(url)
    def add_hosts(conn: Connection) -> None:
        for name in ("h1", "h2"):
            claims.upsert_node(conn, name, {"vcpus": 64, "memory_mb": ram_each, "local_gb": 1000})
    await db.write(add_hosts)
    return db


async def test_claim_and_release_are_exact(db_url: str) -> None:
    db = await _two_hosts(db_url, 1024)
    try:
        assert await claim(db, "h1", "i-1", SMALL)
        assert await claim(db, "h1", "i-2", SMALL)
        assert not await claim(db, "h1", "i-3", SMALL)
        h1 = await db.read(lambda conn: claims.get_host(conn, "h1"))
        assert h1 is not None and h1.memory_mb_used == 1024 and h1.vcpus_used == 2
        assert await release(db, "i-1") == "h1"
        assert await release(db, "i-1") is None  # a second release gives nothing back
        h1 = await db.read(lambda conn: claims.get_host(conn, "h1"))
        assert h1 is not None and h1.memory_mb_used == 512
    finally:
        await db.close()


async def test_reclaim_moves_the_claim_and_failed_claim_keeps_the_old(db_url: str) -> None:
    db = await _two_hosts(db_url, 512)
    try:
        assert await claim(db, "h1", "i-1", SMALL)
        assert await claim(db, "h2", "i-1", SMALL)  # moved: h1 is free again
        assert await claim(db, "h1", "i-2", SMALL)
        assert not await claim(db, "h1", "i-1", SMALL)  # h1 full: i-1 keeps its h2 claim
        held = await db.read(lambda conn: claims.claim_of(conn, "i-1"))
        assert held is not None and held["host"] == "h2"
    finally:
        await db.close()


async def test_concurrent_claims_from_two_scheduler_processes_never_overcommit(db_url: str) -> None:
    url = db_url
    first = await _two_hosts(url, ram_each=5 * 512)  # room for 10 instances in total
    second = Database(url)  # a second "scheduler process": its own engine and connections
    try:
        async def boot(i: int) -> str | None:
            db = first if i % 2 else second
            try:
                [sel] = await select_for(db, lambda h: True, {"flavor": FLAVOR}, [f"i-{i}"], [])
            except errors.NoValidHost:
                return None
            return str(sel["host"])

        placed = await asyncio.gather(*(boot(i) for i in range(40)))
        winners = [h for h in placed if h is not None]
        assert len(winners) == 10
        assert sorted(set(winners)) == ["h1", "h2"]
        hosts = await claims.load_hosts(first)
        for h in hosts:
            assert 0 <= h.memory_mb_used <= h.memory_mb
        assert sum(h.memory_mb_used for h in hosts) == 10 * 512
        count = await first.read(lambda conn: conn.execute(select(func.count()).select_from(claims_table)).scalar())
        assert count == 10
    finally:
        await first.close()
        await second.close()


async def test_multi_instance_request_is_all_or_nothing_and_spreads(db_url: str) -> None:
    db = await _two_hosts(db_url, ram_each=2 * 512)
    try:
        sels = await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["a", "b"], [])
        assert sorted(s["host"] for s in sels) == ["h1", "h2"]
        with pytest.raises(errors.NoValidHost):
            await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["c", "d", "e"], [])
        hosts = await claims.load_hosts(db)
        assert sum(h.memory_mb_used for h in hosts) == 2 * 512  # c and d were given back
    finally:
        await db.close()


async def test_placements_and_no_valid_host_are_counted(db_url: str) -> None:
    """Two placed instances count 2 placements; a request with no room counts 1 no-valid-host and no placement."""
    from prometheus_client import REGISTRY

    def counted() -> tuple[float, float]:
        return (REGISTRY.get_sample_value("cellcloud_scheduler_placements_total") or 0.0,
                REGISTRY.get_sample_value("cellcloud_scheduler_no_valid_host_total") or 0.0)
    db = await _two_hosts(db_url, ram_each=512)
    try:
        placed, failed = counted()
        await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["a", "b"], [])
        with pytest.raises(errors.NoValidHost):
            await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["c"], [])
        after = counted()
        assert (after[0] - placed, after[1] - failed) == (2, 1)
    finally:
        await db.close()


async def test_select_skips_dead_and_excluded_hosts(db_url: str) -> None:
    db = await _two_hosts(db_url, ram_each=4096)
    try:
        [sel] = await select_for(db, lambda h: h == "h2", {"flavor": FLAVOR}, ["x"], [])
        assert sel["host"] == "h2"
        with pytest.raises(errors.NoValidHost, match="No valid host was found"):
            await select_for(db, lambda h: h == "h2", {"flavor": FLAVOR}, ["y"], ["h2"])
    finally:
        await db.close()


async def test_select_skips_fenced_and_marked_down_hosts(db_url: str) -> None:
    """A host declared dead stays out until it reconciled (fenced), even while it beats again;
    so does one an operator marked down."""
    db = await _two_hosts(db_url, ram_each=4096)
    try:
        await db.write(lambda conn: hdb.fence(conn, "h1"))
        [sel] = await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["x"], [])
        assert sel["host"] == "h2"
        await db.write(lambda conn: hdb.set_forced_down(conn, "h2", True))
        with pytest.raises(errors.NoValidHost):
            await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["y"], [])
        await db.write(lambda conn: hdb.unfence(conn, "h1"))
        [sel] = await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["y"], [])
        assert sel["host"] == "h1"
    finally:
        await db.close()


class _Service:
    """What SchedulerManager.live_hosts reads: the directory view's table."""

    def __init__(self, members: list[Member]) -> None:
        self.view = self
        self.version = 1
        self.by_id = {m.id: m for m in members}


def test_live_hosts_leave_out_computes_that_report_themselves_unhealthy(tmp_path: Path) -> None:
    spec = ServiceSpec("cell1/scheduler", "scheduler", "ctl", "tcp://127.0.0.1:1", "cell1")
    cluster = ClusterConfig("t", str(tmp_path), ApiSpec("127.0.0.1:0", "http://127.0.0.1:0", "sqlite://", ""),
                            (CellSpec("cell1", "cell1", "sqlite://", "tcp://127.0.0.1:2"),), (spec,), ())
    sched = SchedulerManager(cluster, spec)
    sched._service = _Service([  # type: ignore[assignment]
        Member("c/compute/n1", "a", ("compute.n1",), meta={"health": "ok"}),
        Member("c/compute/n2", "b", ("compute.n2",), meta={"health": "libvirt call spawn stuck for 40 s"}),
        Member("c/compute/n3", "c", ("compute.n3",)),  # an older release reports no health: taken as fine
    ])
    assert sched.live_hosts() == frozenset({"n1", "n3"})


async def test_same_host_and_different_host_hints_follow_the_named_instances(db_url: str) -> None:
    db = await _two_hosts(db_url, ram_each=4096)
    alive = lambda h: True
    try:
        [first] = await select_for(db, alive, {"flavor": FLAVOR}, ["a"], [])
        other = ({"h1", "h2"} - {first["host"]}).pop()
        for i in range(3):  # spreading alone would alternate: the hints override it
            [near] = await select_for(db, alive, {"flavor": FLAVOR, "scheduler_hints": {"same_host": "a"}},
                                      [f"near-{i}"], [])
            assert near["host"] == first["host"]
        [far] = await select_for(db, alive, {"flavor": FLAVOR, "scheduler_hints": {"different_host": ["a"]}},
                                 ["far"], [])
        assert far["host"] == other
        with pytest.raises(errors.NoValidHost):  # both hosts named: nowhere is left
            await select_for(db, alive, {"flavor": FLAVOR, "scheduler_hints": {"different_host": ["a", "far"]}},
                             ["none"], [])
        assert await db.read(lambda conn: claims.claim_of(conn, "none")) is None
        with pytest.raises(errors.Invalid):
            await select_for(db, alive, {"flavor": FLAVOR, "scheduler_hints": {"same_host": 7}}, ["bad"], [])
    finally:
        await db.close()


async def test_the_dbs_best_fitting_hosts_are_the_weighers_order(db_url: str) -> None:
    """claims.best_fitting sorts in SQL as weigh(filter_hosts(...)) does in Python (free RAM with its ratio,
    then free vCPUs, then name), over hosts of mixed sizes, ratios and usage, some of them full."""

    rng = random.Random(21)
    await create_schema(db_url)
    db = Database(db_url)
    try:
        def fill(conn: Connection) -> None:
            for i in range(60):
                name = f"h{i:02d}"
                claims.upsert_node(conn, name, {"vcpus": rng.choice((2, 4, 8)), "memory_mb": rng.choice((1024, 2048)),
                                                "local_gb": 20, "ram_allocation_ratio": rng.choice((1.0, 1.5))})
                for k in range(rng.randrange(5)):  # some usage, some hosts full
                    claims.try_claim(conn, name, f"{name}-{k}", Resources(1, rng.choice((256, 512)), 1))
        await db.write(fill)
        every = await db.read(claims.capacities)
        for req in (SMALL, Resources(2, 1024, 5), Resources(1, 3000, 1)):
            expected = [h.host for h in weigh(filter_hosts(every, req, alive=lambda h: True))]
            got = await db.read(functools.partial(claims.best_fitting, res=req, limit=100))
            assert [h.host for h in got] == expected
            top = await db.read(functools.partial(claims.best_fitting, res=req, limit=5))
            assert [h.host for h in top] == expected[:5]
    finally:
        await db.close()


async def test_a_plain_placement_reads_the_whole_cell_when_the_best_hosts_are_not_live(db_url: str) -> None:
    """The DB's few best hosts (16 beyond the excluded) all suspect: the next best live host still gets it."""
    await create_schema(db_url)
    db = Database(db_url)
    try:
        def add(conn: Connection) -> None:
            for i in range(40):  # h00 has the most RAM, h39 the least
                claims.upsert_node(conn, f"h{i:02d}", {"vcpus": 64, "memory_mb": 100_000 - i, "local_gb": 1000})
        await db.write(add)
        live = {f"h{i:02d}" for i in range(30, 40)}
        [sel] = await select_for(db, live.__contains__, {"flavor": FLAVOR}, ["i-1"], ["h30"])
        assert sel["host"] == "h31"  # h30 excluded, h00-h29 not live
        sels = await select_for(db, lambda h: True, {"flavor": FLAVOR}, ["a", "b", "c"], [])
        assert [s["host"] for s in sels] == ["h00", "h01", "h02"]  # a multi-create spreads: each sees the last claim
    finally:
        await db.close()
