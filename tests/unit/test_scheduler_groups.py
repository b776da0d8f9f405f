"""Server-group policies in the scheduler and in the claim transaction, against a real
SQLite cell DB; two engines on one file stand for two scheduler processes."""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, select, text

from cells import errors
from cells.db import claims
from cells.db.engine import Database
from cells.db.groups import AFFINITY, ANTI_AFFINITY, SOFT_AFFINITY, SOFT_ANTI_AFFINITY, GroupClaim, allows
from cells.db.schema import SCHEMA_VERSION, create_schema, legacy_upgrade, schema_version, server_groups
from cells.db.schema import claims as claims_table
from cells.scheduler.manager import NOT_ENOUGH_HOSTS, select_for
from tests.unit.claim_support import claim, release
from tests.unit.test_scheduler import FLAVOR, SMALL

HOSTS = ("h1", "h2", "h3")


def alive(host: str) -> bool:
    return True


async def cell_db(url: str, hosts: tuple[str, ...] = HOSTS, ram_each: int = 8 * 512) -> Database:
    await create_schema(url)
    db = Database(url)

    def add_hosts(conn: Connection) -> None:
        for name in hosts:
            claims.upsert_node(conn, name, {"vcpus": 64, "memory_mb": ram_each, "local_gb": 1000})
    await db.write(add_hosts)
    return db


def spec(group: str, policy: str, **extra: Any) -> dict[str, Any]:
    return {"flavor": FLAVOR, "group": {"uuid": group, "policy": policy}, **extra}


async def place(db: Database, request_spec: dict[str, Any], uuid: str, exclude: list[str] | None = None) -> str:
    [sel] = await select_for(db, alive, request_spec, [uuid], exclude or [])
    return str(sel["host"])


async def claim_hosts(db: Database) -> dict[str, str]:
    return {r.instance_uuid: r.host for r in await db.read(
        lambda conn: conn.execute(select(claims_table.c.instance_uuid, claims_table.c.host)).all())}


def test_policy_is_pure_and_only_nova_policies_exist() -> None:
    assert allows(ANTI_AFFINITY, [], "h1") and allows(ANTI_AFFINITY, ["h2"], "h1")
    assert not allows(ANTI_AFFINITY, ["h1", "h2"], "h1")
    assert allows(ANTI_AFFINITY, ["h1", "h2"], "h1", max_per_host=2)  # 2.64's max_server_per_host
    assert not allows(ANTI_AFFINITY, ["h1", "h1", "h2"], "h1", max_per_host=2)
    assert allows(AFFINITY, [], "h1") and allows(AFFINITY, ["h1"], "h1")
    assert not allows(AFFINITY, ["h2"], "h1")
    assert allows(SOFT_AFFINITY, ["h2"], "h1") and allows(SOFT_ANTI_AFFINITY, ["h1"], "h1")  # 2.15: never refuse
    with pytest.raises(errors.Invalid, match="policy must be one of"):
        GroupClaim(str(uuidlib.uuid4()), "spread")
    with pytest.raises(errors.Invalid, match="max_server_per_host"):
        GroupClaim(str(uuidlib.uuid4()), ANTI_AFFINITY, max_per_host=0)


@pytest.fixture
async def db(db_url: str) -> Any:
    database = await cell_db(db_url)
    yield database
    await database.close()


async def test_anti_affinity_members_take_distinct_hosts_until_none_is_left(db: Database) -> None:
    group = str(uuidlib.uuid4())
    hosts = [await place(db, spec(group, ANTI_AFFINITY), f"m{i}") for i in range(3)]
    assert sorted(hosts) == list(HOSTS)
    with pytest.raises(errors.NoValidHost) as raised:
        await place(db, spec(group, ANTI_AFFINITY), "m3")
    assert raised.value.message == f"No valid host was found. {NOT_ENOUGH_HOSTS}"
    assert set(await claim_hosts(db)) == {"m0", "m1", "m2"}  # the refused member holds nothing
    # another group's members are not its peers
    assert await place(db, spec(str(uuidlib.uuid4()), ANTI_AFFINITY), "other") in HOSTS
    # a member gone (its claim released) frees its host for the next member
    freed = await release(db, "m1")
    assert await place(db, spec(group, ANTI_AFFINITY), "m4") == freed


async def test_affinity_members_stack_on_the_first_members_host(db: Database) -> None:
    group = str(uuidlib.uuid4())
    first = await place(db, spec(group, AFFINITY), "a0")
    # spreading alone would move on to an emptier host every time: the policy overrides it
    assert [await place(db, spec(group, AFFINITY), f"a{i}") for i in range(1, 8)] == [first] * 7
    with pytest.raises(errors.NoValidHost, match=NOT_ENOUGH_HOSTS):  # its host is full: nowhere else will do
        await place(db, spec(group, AFFINITY), "a8")
    # the group's host excluded (a reschedule away from it): also no host
    await release(db, "a7")
    with pytest.raises(errors.NoValidHost):
        await place(db, spec(group, AFFINITY), "a8", exclude=[first])


async def test_soft_policies_prefer_but_never_refuse(db: Database) -> None:
    spread = str(uuidlib.uuid4())
    hosts = [await place(db, spec(spread, SOFT_ANTI_AFFINITY), f"s{i}") for i in range(4)]
    assert sorted(hosts[:3]) == list(HOSTS)  # a host each first
    assert hosts[3] in HOSTS  # then a shared one rather than no valid host
    stack = str(uuidlib.uuid4())
    first = await place(db, spec(stack, SOFT_AFFINITY), "t0")
    assert [await place(db, spec(stack, SOFT_AFFINITY), f"t{i}") for i in range(1, 4)] == [first] * 3
    await place(db, spec(stack, SOFT_AFFINITY), "t4", exclude=[first])  # elsewhere when its host cannot


async def test_anti_affinity_with_max_server_per_host(db: Database) -> None:
    group = str(uuidlib.uuid4())
    two_each = {"uuid": group, "policy": ANTI_AFFINITY, "max_per_host": 2}
    hosts = [await place(db, {"flavor": FLAVOR, "group": two_each}, f"p{i}") for i in range(6)]
    assert sorted(hosts) == sorted(HOSTS * 2)
    with pytest.raises(errors.NoValidHost):
        await place(db, {"flavor": FLAVOR, "group": two_each}, "p6")


async def test_the_claim_itself_refuses_what_the_policy_forbids(db: Database) -> None:
    """Without the scheduler's filtering (as when another scheduler placed a peer since it read)."""
    anti = GroupClaim(str(uuidlib.uuid4()), ANTI_AFFINITY)
    assert await claim(db, "h1", "x1", SMALL, anti)
    before = await db.read(lambda conn: claims.get_host(conn, "h1"))
    assert not await claim(db, "h1", "x2", SMALL, anti)
    assert await db.read(lambda conn: claims.get_host(conn, "h1")) == before  # nothing changed
    assert await claim(db, "h1", "x1", SMALL, anti)  # its own claim is no peer: a re-claim is fine
    assert await claim(db, "h2", "x1", SMALL, anti)  # it moves; h1 is free for the group again
    assert await claim(db, "h1", "x2", SMALL, anti)

    aff = GroupClaim(str(uuidlib.uuid4()), AFFINITY)
    assert await claim(db, "h3", "y1", SMALL, aff)
    assert not await claim(db, "h2", "y2", SMALL, aff)
    assert await claim(db, "h3", "y2", SMALL, aff)
    # a group keeps the policy its first claim recorded
    assert not await claim(db, "h2", "y3", SMALL, GroupClaim(aff.uuid, ANTI_AFFINITY))
    held = await claim_hosts(db)
    assert held == {"x1": "h2", "x2": "h1", "y1": "h3", "y2": "h3"}


async def test_multi_instance_request_in_a_group_is_all_or_nothing(db: Database) -> None:
    group = str(uuidlib.uuid4())
    sels = await select_for(db, alive, spec(group, ANTI_AFFINITY), ["b1", "b2"], [])
    assert len({s["host"] for s in sels}) == 2
    with pytest.raises(errors.NoValidHost):
        await select_for(db, alive, spec(group, ANTI_AFFINITY), ["b3", "b4"], [])  # one host left for two
    assert set(await claim_hosts(db)) == {"b1", "b2"}
    sels = await select_for(db, alive, spec(str(uuidlib.uuid4()), AFFINITY), ["c1", "c2", "c3"], [])
    assert len({s["host"] for s in sels}) == 1


async def test_a_move_keeps_its_instances_group(db: Database) -> None:
    """A move names the instance (request_spec instance_uuid); its group comes from its claim."""
    anti, aff = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    m1, m2 = await place(db, spec(anti, ANTI_AFFINITY), "m1"), await place(db, spec(anti, ANTI_AFFINITY), "m2")
    free = (set(HOSTS) - {m1, m2}).pop()
    # m1's migration may go neither to its own host (excluded) nor to m2's
    assert await place(db, {"flavor": FLAVOR, "instance_uuid": "m1"}, "mig-1", exclude=[m1]) == free
    assert (await claim_hosts(db))["mig-1"] == free
    await release(db, "mig-1")
    # a same-host resize: the member's own claim on its host is no peer
    assert await place(db, {"flavor": FLAVOR, "instance_uuid": "m1"}, "mig-2", exclude=[m2, free]) == m1

    a1 = await place(db, spec(aff, AFFINITY), "a1")
    await place(db, spec(aff, AFFINITY), "a2")
    with pytest.raises(errors.NoValidHost):  # a member with peers cannot leave their host
        await place(db, {"flavor": FLAVOR, "instance_uuid": "a1"}, "mig-3", exclude=[a1])
    await release(db, "a2")
    assert await place(db, {"flavor": FLAVOR, "instance_uuid": "a1"}, "mig-4", exclude=[a1]) != a1


@pytest.mark.parametrize("group", [{"uuid": "nope", "policy": AFFINITY}, {"uuid": str(uuidlib.uuid4())},
                                   {"uuid": str(uuidlib.uuid4()), "policy": "legacy"}, "g"])
async def test_a_malformed_group_is_invalid(db: Database, group: Any) -> None:
    with pytest.raises(errors.Invalid):
        await select_for(db, alive, {"flavor": FLAVOR, "group": group}, ["z"], [])
    assert await claim_hosts(db) == {}


async def _race(url: str, policy: str, boots: int) -> list[str | None]:
    """`boots` members of one new group placed at once by two scheduler processes."""
    first, second = Database(url), Database(url)
    group = str(uuidlib.uuid4())
    try:
        async def boot(i: int) -> str | None:
            try:
                return await place(first if i % 2 else second, spec(group, policy), f"r{i}")
            except errors.NoValidHost:
                return None
        return list(await asyncio.gather(*(boot(i) for i in range(boots))))
    finally:
        await first.close()
        await second.close()


async def test_concurrent_anti_affinity_boots_from_two_schedulers_never_share_a_host(db_url: str) -> None:
    url = db_url
    await (await cell_db(url)).close()
    placed = await _race(url, ANTI_AFFINITY, 12)
    winners = [h for h in placed if h is not None]
    assert sorted(winners) == list(HOSTS)  # one member per host, the rest refused
    db = Database(url)
    try:
        held = await claim_hosts(db)
        assert sorted(held.values()) == list(HOSTS) and len(held) == 3
        assert sum(h.memory_mb_used for h in await claims.load_hosts(db)) == 3 * 512
    finally:
        await db.close()


async def test_concurrent_affinity_boots_from_two_schedulers_share_one_host(db_url: str) -> None:
    url = db_url
    await (await cell_db(url, ram_each=6 * 512)).close()
    placed = await _race(url, AFFINITY, 10)
    winners = [h for h in placed if h is not None]
    assert len(winners) == 6 and len(set(winners)) == 1  # the first member's host, until it is full
    db = Database(url)
    try:
        assert set((await claim_hosts(db)).values()) == set(winners)
    finally:
        await db.close()


async def test_a_v3_cell_db_gains_group_claims(db_url: str) -> None:
    url = db_url
    db = await cell_db(url)
    try:
        def make_v3(conn: Connection) -> None:  # what release 3 left: no group_uuid, no server_groups
            conn.execute(text("DROP INDEX ix_claims_group_uuid"))
            conn.execute(text("ALTER TABLE claims DROP COLUMN group_uuid"))
            conn.execute(text("DROP TABLE server_groups"))
            conn.execute(text("INSERT INTO claims (instance_uuid, host, vcpus, memory_mb, local_gb, created_at) "
                              "VALUES ('old', 'h1', 1, 512, 1, 't')"))
            conn.execute(schema_version.update().values(version=3))
            conn.execute(text("DROP TABLE alembic_version"))  # from before Alembic
        await db.write(make_v3)
        # The step from before Alembic (what ensure_schema runs before stamping the baseline; the revisions
        # after it are test_db_migrations' subject): here the DB's later tables are already at head.
        await db.write(legacy_upgrade)
        assert await db.read(lambda conn: conn.execute(select(schema_version.c.version)).scalar()) == SCHEMA_VERSION
        columns = await db.read(lambda conn: {c["name"] for c in inspect(conn).get_columns("claims")})
        assert "group_uuid" in columns
        assert await place(db, spec(str(uuidlib.uuid4()), ANTI_AFFINITY), "new") in HOSTS
        assert await db.read(lambda conn: conn.execute(select(server_groups.c.policy)).scalars().all()) \
            == [ANTI_AFFINITY]
        assert set(await claim_hosts(db)) == {"old", "new"}
    finally:
        await db.close()
