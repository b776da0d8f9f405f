"""Keys-first server listings across cells (api/listing_merge.py, conductor instance_keys, issue 21).

Three real cells in this process (a router and a conductor service each, real ZeroMQ, a SQLite cell DB
each), seeded as multi-create bursts: 20 servers with one created_at in one cell, and bursts of two cells
sharing a created_at, so the order leans on uuid across cells. Every page must be the slice of the sorted
union of what the member may see, whatever cell holds the marker."""
from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from api.cell_router import CellClient, CellRouter, Listed, sort_key
from cells import errors
from cells.conductor.manager import ConductorManager
from cells.config import ApiSpec, CellSpec, ClusterConfig, HostSpec, ServiceSpec
from cells.context import RequestContext, admin_context
from cells.db import instances as idb
from cells.db.engine import Database
from cells.db.schema import ensure_schema
from cells.rpc import wire
from cells.rpc.directory import SURFACE as DIRECTORY
from cells.rpc.directory import Directory
from cells.rpcapi.conductor import SURFACE as CONDUCTOR
from cells.service_process import Service
from tests.unit.api_fake_cell import INTERVAL, FakeCell, fake_cell
from tools.bench.list import rows as seed_rows
from tools.devcluster import free_port

NAMES = ("k1", "k2", "k3")
MEMBER = RequestContext(project="p1", user="u1", roles=("member",))
DEFAULT = (["created_at", "uuid"], ["desc", "desc"])
BY_NAME = (["name", "created_at", "uuid"], ["asc", "asc", "asc"])
BASE = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)
BURST = 25


class RecordingCell(CellClient):
    """A CellClient noting the conductor methods it calls; `after_keys` runs once an instance_keys
    answer is in (between a listing's two rounds)."""

    def __init__(self, cell: CellSpec, interval: float) -> None:
        super().__init__(cell, interval)
        self.methods: list[str] = []
        self.after_keys: Callable[[], Awaitable[None]] | None = None

    async def call(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        self.methods.append(method.name)
        answer = await super().call(topic, method, args, ctx, timeout)
        if method.name == "instance_keys" and self.after_keys is not None:
            hook, self.after_keys = self.after_keys, None
            await hook()
        return answer


@dataclass
class Cloud:
    router: CellRouter
    dbs: dict[str, Database]
    clients: dict[str, RecordingCell]
    visible: list[dict[str, Any]] = field(default_factory=list)  # every p1 server seeded, with its cell


def _cluster(tmp_path: Path) -> ClusterConfig:
    cells = tuple(CellSpec(n, n, f"sqlite+aiosqlite:///{tmp_path}/{n}.db", f"tcp://127.0.0.1:{free_port()}")
                  for n in NAMES)
    services = tuple(spec for c in cells for spec in (
        ServiceSpec(f"{c.name}/router", "router", "ctl", c.router, c.name),
        ServiceSpec(f"{c.name}/conductor", "conductor", "ctl", f"tcp://127.0.0.1:{free_port()}", c.name)))
    return ClusterConfig(name="listkeys", state_dir=str(tmp_path),
                         api=ApiSpec(listen="127.0.0.1:0", public_url="http://127.0.0.1:0", db="sqlite://",
                                     image_dir=str(tmp_path)),
                         cells=cells, services=services, hosts=(HostSpec("ctl", "127.0.0.1"),),
                         heartbeat_interval=INTERVAL)


def _bursts() -> dict[str, list[dict[str, Any]]]:
    """12 bursts of BURST servers, two per created_at: k1 holds the newest six, k2 and k3 the older ones,
    a burst each per created_at; every fifth server is another project's."""
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in NAMES}
    draw = random.Random(21)  # the same uuids every run: the pages' markers fall in every cell
    for burst in range(12):
        cell = NAMES[0] if burst >= 6 else NAMES[1 + burst % 2]  # k1 the newest half; k2 and k3 tie
        created = (BASE + timedelta(seconds=burst // 2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for i, row in enumerate(seed_rows(burst * BURST, BURST, BASE)):
            row.update(uuid=str(uuid.UUID(int=draw.getrandbits(128), version=4)), name=f"web{(burst * BURST + i) % 7}", created_at=created,
                       project_id="p2" if i % 5 == 4 else "p1")
            out[cell].append(row)
    return out


@pytest_asyncio.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    cluster = _cluster(tmp_path)
    stops: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []
    dbs = {c.name: Database(c.db) for c in cluster.cells}
    seeded = _bursts()
    for cell in cluster.cells:
        await ensure_schema(dbs[cell.name])
        await dbs[cell.name].write(partial(idb.insert_rows, rows=seeded[cell.name]))
        for kind, handler, surface in (("router", Directory(INTERVAL), DIRECTORY), ("conductor", None, CONDUCTOR)):
            spec = cluster.service(f"{cell.name}/{kind}")
            service = Service(cluster, spec, handler or ConductorManager(cluster, spec), surface, (kind,))
            stops.append(asyncio.Event())
            tasks.append(asyncio.create_task(service.run(stops[-1])))
    clients = {c.name: RecordingCell(c, INTERVAL) for c in cluster.cells}
    router = CellRouter(list(clients.values()))
    router.start()
    try:
        for client in clients.values():
            await _until(client.has_conductor)
        visible = [{**r, "cell": name, "deleted": False} for name, rows in seeded.items()
                   for r in rows if r["project_id"] == "p1"]
        yield Cloud(router, dbs, clients, visible)
    finally:
        await router.stop()
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for db in dbs.values():
            await db.close()


async def _until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


def _sorted(records: list[dict[str, Any]], order: tuple[list[str], list[str]]) -> list[str]:
    return [r["uuid"] for r in sorted(records, key=sort_key(*order))]


async def _walk(router: CellRouter, order: tuple[list[str], list[str]], limit: int) -> list[list[Listed]]:
    """Every page of the member's listing, each after the last record of the one before (as the API's marker)."""
    pages: list[list[Listed]] = []
    marker: Listed | None = None
    while True:
        page = await router.list_instances(MEMBER, {}, *order, limit, marker)
        if not page:
            return pages
        pages.append(page)
        marker = page[-1]


@pytest.mark.parametrize("order", [DEFAULT, BY_NAME], ids=["created_at", "name"])
async def test_every_page_is_the_slice_of_the_sorted_union(cloud: Cloud, order: tuple[list[str], list[str]]) -> None:
    """Pages of 25 (markers in every cell) and a first page of 1000 equal the slices of the member's servers
    sorted across cells; no other project's server appears; every cell answered keys, then records once per page."""
    expected = _sorted(cloud.visible, order)
    assert len(expected) == 240 and len({r["created_at"] for r in cloud.visible}) == 6  # ties, across cells
    pages = await _walk(cloud.router, order, 25)
    assert [[r["uuid"] for r in p] for p in pages] == [expected[i:i + 25] for i in range(0, len(expected), 25)]
    assert {r["project_id"] for p in pages for r in p} == {"p1"}
    assert {p[-1]["cell"] for p in pages[:-1]} == set(NAMES)  # a marker from each cell was followed
    for client in cloud.clients.values():
        assert "instance_keys" in client.methods and client.methods.count("instance_list") <= len(pages)
        client.methods.clear()
    whole = await cloud.router.list_instances(MEMBER, {}, *order, 1000, None)
    assert [r["uuid"] for r in whole] == expected
    assert all(c.methods == ["instance_keys", "instance_list"] for c in cloud.clients.values())


async def test_a_cell_whose_first_keys_all_fall_inside_the_page_gives_the_rest(cloud: Cloud) -> None:
    """A page of 150 over 3 cells asks each for 100 keys (a burst's worth); k1 holds the member's newest
    120 servers, all 100 of its keys sort inside the page, so it is asked for the next 50 keys after its
    last, once; the others are not asked again. The page is the sorted union's first 150."""
    expected = _sorted(cloud.visible, DEFAULT)
    assert sum(r["cell"] == "k1" for r in cloud.visible) == 120
    page = await cloud.router.list_instances(MEMBER, {}, *DEFAULT, 150, None)
    assert [r["uuid"] for r in page] == expected[:150]
    assert cloud.clients["k1"].methods == ["instance_keys", "instance_keys", "instance_list"]
    assert all(cloud.clients[n].methods == ["instance_keys", "instance_list"] for n in ("k2", "k3"))


async def test_a_server_deleted_between_the_rounds_drops_out(cloud: Cloud) -> None:
    """A server of the page deleted after its cell gave its keys is left out of that page (no error, no
    refetch); the next listing fills the page again."""
    expected = _sorted(cloud.visible, DEFAULT)
    gone = expected[3]
    cell = next(r["cell"] for r in cloud.visible if r["uuid"] == gone)

    async def delete() -> None:
        await cloud.dbs[cell].write(lambda conn: idb.update_row(conn, gone, {"deleted": True}))
    cloud.clients[cell].after_keys = delete
    page = await cloud.router.list_instances(MEMBER, {}, *DEFAULT, 30, None)
    assert [r["uuid"] for r in page] == [u for u in expected[:30] if u != gone]
    again = await cloud.router.list_instances(MEMBER, {}, *DEFAULT, 30, None)
    assert [r["uuid"] for r in again] == [u for u in expected if u != gone][:30]


async def test_an_older_conductor_is_merged_from_its_records(cloud: Cloud) -> None:
    """A cell whose conductor speaks RPC 1.6 (no instance_keys) is asked for records as before and its
    servers take their places among the keyed cells' pages, tied created_at values and all."""
    async with AsyncExitStack() as stack:
        old: FakeCell = await stack.enter_async_context(fake_cell("old", rpc="1.6"))
        created = (BASE + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # ties with the real cells
        for i in range(30):
            record: dict[str, Any] = {"uuid": str(uuid.uuid4()), "name": f"web{i % 7}", "project_id": "p1", "user_id": "u1",
                                      "vm_state": "active", "task_state": None, "deleted": False,
                                      "created_at": created, "updated_at": created, "cell": "old"}
            old.conductor.records[record["uuid"]] = record
        clients = [*cloud.clients.values(), CellClient(CellSpec("old", "old", "", old.router), INTERVAL)]
        router = CellRouter(clients)
        router.start()
        try:
            await _until(clients[-1].has_conductor)
            expected = _sorted([*cloud.visible, *old.conductor.records.values()], DEFAULT)
            pages = await _walk(router, DEFAULT, 40)
        finally:
            await router.stop()
    assert [[r["uuid"] for r in p] for p in pages] == [expected[i:i + 40] for i in range(0, len(expected), 40)]
    assert old.conductor.keys_calls == 0 and old.conductor.list_calls > 0


async def test_instance_keys_seeks_past_a_pivot_from_another_cell_and_refuses_bad_arguments(cloud: Cloud) -> None:
    """A cell's keys after another cell's record (its sort values, `after`) are its rows past that position,
    in order; sort keys, limit and pivot are checked like instance_list's."""
    conductor = cloud.router.conductor("k2")
    pivot = [r for r in sorted(cloud.visible, key=sort_key(*DEFAULT)) if r["cell"] == "k3"][5]
    after = {k: pivot[k] for k in ("created_at", "uuid")}
    rows = await conductor.instance_keys(MEMBER, {}, *DEFAULT, 1000, None, after)
    key = sort_key(*DEFAULT)
    mine = sorted((r for r in cloud.visible if r["cell"] == "k2"), key=key)
    assert [row[-1] for row in rows] == [r["uuid"] for r in mine if key(r) > key(pivot)]
    assert 0 < len(rows) < len(mine) and all(len(row) == 2 for row in rows)
    admin_rows = await conductor.instance_keys(admin_context(), {}, *DEFAULT, 1000, None)
    assert len(admin_rows) > len(await conductor.instance_keys(MEMBER, {}, *DEFAULT, 1000, None))
    for bad in ({"sort_keys": ["flavor"]}, {"limit": idb.MAX_KEYS + 1}, {"limit": None},
                {"after": {"uuid": pivot["uuid"]}}, {"after": {"created_at": {"$gt": 1}, "uuid": "x"}},
                {"after": after, "marker": pivot["uuid"]}):
        args: dict[str, Any] = {"sort_keys": DEFAULT[0], "sort_dirs": DEFAULT[1], "limit": 10, **bad}
        with pytest.raises(errors.Invalid):
            await conductor.instance_keys(MEMBER, {}, args["sort_keys"], args["sort_dirs"], args["limit"],
                                          args.get("marker"), args.get("after"))
