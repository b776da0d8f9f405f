"""Boot from volume in the conductor against a real cell DB (SQLite) and a real volume worker (file
backend, local target): the root volume reserved with the instance row, exported to the chosen host
and answered to that host's compute, in-use once the guest runs, available again when the build
fails or the server is deleted (deleted with it under delete_on_termination); a volume the boot may not
use makes no server."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cells import errors
from cells.conductor.flows import boot, boot_volume, compute_events
from cells.conductor.flows import volumes as flows
from cells.conductor.flows.delete import delete_locally
from cells.context import RequestContext, admin_context
from cells.db import instances as idb
from cells.db import volumes as vdb
from cells.db.schema import instances
from cells.lifecycle import Event
from cells.objects.instance import utcnow_iso
from cells.objects.records import InstanceRecord, VolumeRecord
from tests.volume_fakes import VolumeCell, volume_cell

DEMO = RequestContext(project="demo", user="u", roles=("member",))
OTHER = RequestContext(project="other", user="o", roles=("member",))
FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 64, "disk": 1, "ephemeral": 0, "swap": 0}


@pytest.fixture
async def env(tmp_path: Path, db_url: str) -> AsyncIterator[VolumeCell]:
    cell = await volume_cell(tmp_path, db_url=db_url)
    yield cell
    await cell.close()


async def volume(env: VolumeCell, bootable: bool = True, ctx: RequestContext = DEMO) -> str:
    vid = str(uuid.uuid4())
    await flows.volume_create(env.env, ctx, {"id": vid, "project_id": ctx.project, "size": 1, "name": "bootvol"})
    await env.settle()
    if bootable:
        await flows.volume_update(env.env, ctx, vid, {"bootable": True})
    return vid


async def insert_build(env: VolumeCell, vid: str, ctx: RequestContext = DEMO, delete: bool = False) -> str:
    """The rows build_instances writes (its scheduling, in the background, is not run here)."""
    uid = str(uuid.uuid4())
    instances = [{"uuid": uid, "name": "vm1", "project_id": ctx.project, "user_id": ctx.user}]
    spec: dict[str, Any] = {"flavor": FLAVOR, "image": {"root_volume_id": vid, "properties": {},
                                                        boot_volume.DELETE_ON_TERMINATION: delete}}
    rows = boot.validate_build(instances, spec, utcnow_iso(), env.env.conductor_id)
    await env.env.db.write(lambda conn: boot._insert_build(conn, env.env, ctx, rows, utcnow_iso()))
    return uid


async def volume_of(env: VolumeCell, vid: str) -> VolumeRecord:
    return await flows.volume_get(env.env, DEMO, vid)


async def scheduled_and_exported(env: VolumeCell, uid: str) -> InstanceRecord:
    record = await env.env.db.write(lambda conn: boot._set_host(conn, env.env, uid, "node1"))
    assert record is not None
    await boot_volume.export_to(env.env, admin_context(), record, "node1")
    return record


async def test_the_root_volume_is_reserved_exported_in_use_and_released_by_delete(env: VolumeCell) -> None:
    vid = await volume(env)
    uid = await insert_build(env, vid)
    vol = await volume_of(env, vid)
    assert vol["status"] == "attaching"
    assert [(a["instance_uuid"], a["device"]) for a in vol["attachments"]] == [(uid, "/dev/vda")]
    await scheduled_and_exported(env, uid)
    # what the chosen host's compute asks for: the local target's path of this volume
    info = await flows.volume_connection(env.env, admin_context(), vid, uid)
    path = (await env.worker.backend.locate(vid)).path
    assert info["driver_volume_type"] == "local" and info["data"]["path"] == path
    assert await env.worker.targets["local"].exported() == {vid}
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    vol = await volume_of(env, vid)
    assert vol["status"] == "in-use" and vol["attachments"][0]["status"] == "attached"
    # attached, still answered to a caller with no principal (a plaintext dev-mode cell, where a move's
    # destination compute asks for it: flows/move_volumes.py)
    assert await flows.volume_connection(env.env, admin_context(), vid, uid) == info
    await delete_locally(env.env, uid)
    vol = await volume_of(env, vid)
    assert vol["status"] == "available" and vol["attachments"] == []


async def test_delete_on_termination_deletes_an_existing_root_volume_once_the_server_is_gone(env: VolumeCell) -> None:
    vid = await volume(env)
    uid = await insert_build(env, vid, delete=True)
    await scheduled_and_exported(env, uid)
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    assert (await volume_of(env, vid))["status"] == "in-use"
    await delete_locally(env.env, uid)
    await env.settle()
    with pytest.raises(errors.VolumeNotFound):
        await volume_of(env, vid)


async def test_a_failed_build_gives_the_volume_back(env: VolumeCell) -> None:
    vid = await volume(env)
    uid = await insert_build(env, vid)
    await scheduled_and_exported(env, uid)
    await boot.build_failed(env.env, admin_context(), uid, "node1", {"message": "spawn failed"}, retryable=False)
    vol = await volume_of(env, vid)
    assert vol["status"] == "available" and vol["attachments"] == []
    row = await env.env.db.read(lambda conn: idb.get_row(conn, uid))
    assert row is not None and row.vm_state == "error"


async def test_a_volume_the_boot_may_not_use_makes_no_server(env: VolumeCell) -> None:
    plain = await volume(env, bootable=False)
    theirs = await volume(env, ctx=OTHER)
    used = await volume(env)
    await insert_build(env, used)  # reserved by a first server
    for vid, words in ((plain, "is not bootable"), (theirs, "failed to get volume"), (used, "must be 'available'"),
                       (str(uuid.uuid4()), "failed to get volume")):
        with pytest.raises(errors.Invalid, match=words):
            await insert_build(env, vid)
    servers = await env.env.db.read(lambda conn: conn.execute(select(func.count()).select_from(instances)).scalar())
    assert servers == 1  # only the first server: a refused volume wrote no row
    assert (await volume_of(env, plain))["status"] == "available"
    atts = await env.env.db.read(lambda conn: vdb.attachments_of(conn, [plain, used]))
    assert atts[plain] == [] and len(atts[used]) == 1


async def test_a_server_on_a_root_volume_is_not_rebuilt(env: VolumeCell) -> None:
    """rebuild of a server booted from a volume: a 409 before anything changes (its moves carry the volume:
    tests/functional/test_volume_moves.py)."""
    from cells.conductor.flows import server_actions
    vid = await volume(env)
    uid = await insert_build(env, vid)
    await scheduled_and_exported(env, uid)
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    with pytest.raises(errors.Conflict, match="booted from a volume"):
        await env.env.db.write(
            lambda conn: server_actions._begin(conn, env.env, DEMO, uid, "rebuild", {"image": {"id": "x"}}))
    row = await env.env.db.read(lambda conn: idb.get_row(conn, uid))
    assert row is not None and (row.vm_state, row.task_state) == ("active", None)
    assert (await volume_of(env, vid))["status"] == "in-use"


async def test_a_build_adopted_from_a_dead_conductor_exports_its_volume_before_the_cast(env: VolumeCell) -> None:
    """The owner died after placing the build, before exporting: the adopting conductor exports the
    root volume for the build's host, then casts the build, whose compute finds the export."""
    from cells.conductor.flows import hosts
    vid = await volume(env)
    uid = await insert_build(env, vid)
    await env.env.db.write(lambda conn: boot._set_host(conn, env.env, uid, "node1"))
    await env.env.db.write(lambda conn: idb.update_row(conn, uid, {"conductor_id": "dead"}))
    cast: list[str] = []

    async def build_and_run_instance(ctx: RequestContext, instance: dict[str, Any]) -> None:
        cast.append((await flows.volume_connection(env.env, admin_context(), vid, instance["uuid"]))["data"]["path"])
    env.compute.build_and_run_instance = build_and_run_instance  # type: ignore[attr-defined]
    await hosts.orphaned_builds(env.env, ["dead"])
    await env.settle()
    assert cast == [(await env.worker.backend.locate(vid)).path]
    assert await env.worker.targets["local"].exported() == {vid}


async def test_a_server_whose_volume_is_being_attached_is_not_moved(env: VolumeCell) -> None:
    """resize, migrate and evacuate of a server with a volume being attached: a 409 naming the volume before
    anything changes (the move would race the attach)."""
    from cells.conductor.flows import evacuate, moves
    vid = await volume(env, bootable=False)
    uid = str(uuid.uuid4())
    spec: dict[str, Any] = {"flavor": FLAVOR, "image": {"id": str(uuid.uuid4()), "properties": {}}}
    rows = boot.validate_build([{"uuid": uid, "name": "vm2", "project_id": "demo", "user_id": "u"}], spec,
                               utcnow_iso(), env.env.conductor_id)
    await env.env.db.write(lambda conn: boot._insert_build(conn, env.env, DEMO, rows, utcnow_iso()))
    await env.env.db.write(lambda conn: boot._set_host(conn, env.env, uid, "node1"))
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    now = utcnow_iso()
    await env.env.db.write(lambda conn: vdb.insert_attachment(conn, {
        "id": str(uuid.uuid4()), "volume_id": vid, "instance_uuid": uid, "instance_host": "node1", "device": "/dev/vdb",
        "status": "attaching", "connection_info": None, "created_at": now, "updated_at": now}))
    bigger = {**FLAVOR, "id": "2", "disk": 2}
    for refused in (lambda conn: moves._begin(conn, env.env, DEMO, uid, "resize", bigger),
                    lambda conn: moves._begin(conn, env.env, DEMO, uid, "migrate", None),
                    lambda conn: evacuate._begin(conn, env.env, DEMO, uid)):
        with pytest.raises(errors.Conflict, match=f"volumes {vid} are being attached or detached"):
            await env.env.db.write(refused)
    row = await env.env.db.read(lambda conn: idb.get_row(conn, uid))
    assert row is not None and (row.vm_state, row.task_state, row.host) == ("active", None, "node1")
