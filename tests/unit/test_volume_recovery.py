"""Volume flows whose conductor died (issue 14): a live conductor adopts each volume stuck
creating, attaching, detaching or deleting, exactly once, and drives it to a stable state.

Real cell DB (SQLite) and a real volume worker (file backend, local target) in the same
process (tests/volume_fakes.py); the dead conductor's half-done work is written into the
DB as its flows leave it, then `adopt` runs as the dead-member sweep calls it."""
from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cells.conductor.flows import hosts
from cells.conductor.flows import volume_recovery as recovery
from cells.conductor.flows import volumes as flows
from cells.context import admin_context
from cells.db import volumes as vdb
from cells.objects.instance import utcnow_iso
from tests.unit.test_volume_flows import DEMO, add_instance, create, status
from tests.volume_fakes import VolumeCell, volume_cell

DEAD = "cell1/conductor-dead"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[VolumeCell]:
    cell = await volume_cell(tmp_path)
    yield cell
    await cell.close()


async def owner(env: VolumeCell, vid: str) -> str | None:
    return await env.env.db.read(lambda conn: conn.execute(
        select(vdb.volumes.c.conductor_id).where(vdb.volumes.c.id == vid)).scalar())


async def orphan(env: VolumeCell, vid: str, **values: Any) -> None:
    """Leave the volume as a dead conductor's flow left it: `values` written, owned by DEAD."""
    await env.env.db.write(lambda conn: conn.execute(
        update(vdb.volumes).where(vdb.volumes.c.id == vid).values(conductor_id=DEAD, **values)))


async def adopt(env: VolumeCell) -> int:
    taken = await recovery.adopt(env.env, [DEAD])
    await env.settle()
    return taken


def drop_steps(env: VolumeCell) -> None:
    """The background steps just spawned never run (cancelled before their first step), as when
    their conductor dies right after the request's transaction committed."""
    for t in env.tasks:
        t.cancel()
    env.tasks.clear()


def volume_path(env: VolumeCell, vid: str) -> Path:
    return Path(env.worker.backend._path(vid, "raw"))  # type: ignore[attr-defined]


async def test_every_flow_records_its_owner(env: VolumeCell) -> None:
    vid = await create(env)
    assert await owner(env, vid) == "c1"  # entered creating in the insert
    server = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, server)
    drop_steps(env)
    assert await owner(env, vid) == "c1" and await status(env, vid) == "attaching"
    await orphan(env, vid)
    assert await adopt(env) == 1 and await status(env, vid) == "in-use"
    await flows.volume_detach(env.env, DEMO, vid, server)
    drop_steps(env)
    assert await owner(env, vid) == "c1" and await status(env, vid) == "detaching"
    await orphan(env, vid)
    assert await adopt(env) == 1 and await status(env, vid) == "available"
    await flows.volume_delete(env.env, DEMO, vid)
    drop_steps(env)
    assert await owner(env, vid) == "c1" and await status(env, vid) == "deleting"


async def test_creating_not_yet_placed_is_placed_and_made(env: VolumeCell) -> None:
    vid = str(uuid.uuid4())
    row = {**flows.validate_create({"id": vid, "project_id": "demo", "size": 1}, utcnow_iso()), "conductor_id": DEAD}
    await env.env.db.write(lambda conn: vdb.insert_volume(conn, row))  # the owner died before placing it
    assert await adopt(env) == 1
    assert await status(env, vid) == "available"
    assert volume_path(env, vid).exists() and await owner(env, vid) == "c1"
    node = await env.env.db.read(lambda conn: vdb.node(conn, "node1"))
    assert node is not None and node.allocated_gb == 1  # taken once, not twice


async def test_creating_placed_is_made_on_its_host(env: VolumeCell) -> None:
    vid = str(uuid.uuid4())
    row = {**flows.validate_create({"id": vid, "project_id": "demo", "size": 2}, utcnow_iso()), "conductor_id": DEAD}

    def placed(conn: Any) -> None:  # placed (host taken) and then the owner died before the host made it
        vdb.insert_volume(conn, row)
        assert vdb.try_allocate(conn, "node1", 2)
        vdb.update_volume(conn, vid, {"host": "node1"})
    await env.env.db.write(placed)
    assert not volume_path(env, vid).exists()
    assert await adopt(env) == 1
    assert await status(env, vid) == "available" and volume_path(env, vid).exists()
    node = await env.env.db.read(lambda conn: vdb.node(conn, "node1"))
    assert node is not None and node.allocated_gb == 2


async def test_deleting_is_deleted_on_its_host(env: VolumeCell) -> None:
    vid = await create(env)
    await orphan(env, vid, status="deleting")
    assert await adopt(env) == 1
    row = await env.env.db.read(lambda conn: vdb.get_row(conn, vid))
    assert row is not None and row.deleted and row.status == "deleted"
    assert not volume_path(env, vid).exists()
    node = await env.env.db.read(lambda conn: vdb.node(conn, "node1"))
    assert node is not None and node.allocated_gb == 0


async def test_attaching_is_exported_and_plugged(env: VolumeCell) -> None:
    vid = await create(env)
    server = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, server)
    drop_steps(env)  # the owner died before exporting
    await orphan(env, vid)
    assert await status(env, vid) == "attaching" and vid not in env.compute.plugged
    assert await adopt(env) == 1
    assert await status(env, vid) == "in-use"
    assert env.compute.plugged[vid]["instance"] == server
    [att] = (await flows.attachments_for(env.env, admin_context(), [server]))[server]
    assert att["status"] == "attached" and att["connection_info"] is not None


async def test_attaching_whose_hot_plug_fails_rolls_back(env: VolumeCell) -> None:
    vid = await create(env)
    server = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, server)
    drop_steps(env)
    await orphan(env, vid)
    env.compute.fail = "no such guest"
    assert await adopt(env) == 1
    assert await status(env, vid) == "available"
    assert (await flows.attachments_for(env.env, admin_context(), [server]))[server] == []


async def test_detaching_is_unplugged(env: VolumeCell) -> None:
    vid = await create(env)
    server = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, server)
    await env.settle()
    await flows.volume_detach(env.env, DEMO, vid, server)
    drop_steps(env)  # the owner died before unplugging
    await orphan(env, vid)
    assert vid in env.compute.plugged
    assert await adopt(env) == 1
    assert await status(env, vid) == "available" and vid not in env.compute.plugged


async def test_of_two_live_conductors_exactly_one_adopts(env: VolumeCell) -> None:
    vid = await create(env)
    await orphan(env, vid, status="deleting")
    other = dataclasses.replace(env.env, conductor_id="c2")
    first = await env.env.db.write(lambda conn: recovery._adopt(conn, other, [DEAD]))
    second = await env.env.db.write(lambda conn: recovery._adopt(conn, env.env, [DEAD]))
    assert [r["id"] for r, _ in first] == [vid] and second == []
    assert await owner(env, vid) == "c2"


async def test_the_sweep_sees_the_owner_of_a_stuck_volume_and_not_of_a_stable_one(env: VolumeCell) -> None:
    stuck, stable = await create(env, name="stuck"), await create(env, name="stable")
    await orphan(env, stuck, status="detaching")
    await env.env.db.write(lambda conn: conn.execute(
        update(vdb.volumes).where(vdb.volumes.c.id == stable).values(conductor_id="cell1/other-dead")))
    owners = await env.env.db.read(hosts._unfinished)
    assert DEAD in owners and "cell1/other-dead" not in owners  # available: nothing to drive
