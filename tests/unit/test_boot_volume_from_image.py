"""A root volume the boot makes from an image (BDM image -> volume, issue 18), in the conductor against a real
cell DB (SQLite) and a real volume worker (file backend, local target) whose image store is in memory: the
volume is inserted with the server's row, made from the image before scheduling, exported and in-use once the
guest runs; delete_on_termination deletes it with the server (false keeps it, available); blank volumes
made beside it are hot-plugged once the guest runs and go or stay by their own delete_on_termination; a
volume that cannot be made fails the build and leaves no volume, file or allocated space; a failed build
deletes the volume it made; a server deleted before or while its volume is made leaves none."""
from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cells import errors
from cells.conductor.flows import boot, boot_volume, compute_events
from cells.conductor.flows import volumes as flows
from cells.conductor.flows.delete import delete_locally
from cells.context import admin_context
from cells.db import instances as idb
from cells.db import volumes as vdb
from cells.lifecycle import Event
from cells.objects.instance import utcnow_iso
from tests.compute_fakes import image_record
from tests.unit.test_boot_from_volume import DEMO, FLAVOR, scheduled_and_exported
from tests.volume_fakes import VolumeCell, volume_cell

IMAGE_ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
MARKER = b"CELLCLOUD-ROOT-FROM-IMAGE"
DATA = MARKER.ljust(1 << 20, b"\0")  # a 1 MiB raw disk


@pytest.fixture
async def env(tmp_path: Path, db_url: str) -> AsyncIterator[VolumeCell]:
    cell = await volume_cell(tmp_path, db_url=db_url, images={IMAGE_ID: DATA})
    yield cell
    await cell.close()


def root_image(delete: bool, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The instance `image` the API records for an image -> volume root mapping of 1 GiB."""
    return {"root_volume_id": str(uuid.uuid4()), "properties": {}, boot_volume.DELETE_ON_TERMINATION: delete,
            boot_volume.NEW_ROOT: {"size": 1, "image": record or image_record(IMAGE_ID, DATA)}}


async def insert_build(env: VolumeCell, image: dict[str, Any]) -> str:
    """The rows build_instances writes (its background is run by each test as it needs)."""
    uid = str(uuid.uuid4())
    rows = boot.validate_build([{"uuid": uid, "name": "vm1", "project_id": "demo", "user_id": "u"}],
                               {"flavor": FLAVOR, "image": image}, utcnow_iso(), env.env.conductor_id)
    await env.env.db.write(lambda conn: boot._insert_build(conn, env.env, DEMO, rows, utcnow_iso()))
    return uid


async def volume_row(env: VolumeCell, vid: str) -> Any:
    return await env.env.db.read(lambda conn: vdb.get_row(conn, vid))


def volume_files(env: VolumeCell) -> list[str]:
    return [n for n in os.listdir(env.worker.backend.directory) if n.startswith("volume-")]  # type: ignore[attr-defined]


def first_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(len(MARKER))


async def allocated(env: VolumeCell) -> int:
    """GiB the cell counts as taken on the volume host."""
    def read(conn: Any) -> int:
        return int(conn.execute(select(vdb.volume_nodes.c.allocated_gb)
                                .where(vdb.volume_nodes.c.host == "node1")).scalar_one())
    return await env.env.db.read(read)


async def gone(env: VolumeCell, vid: str) -> bool:
    await env.settle()
    try:
        await flows.volume_get(env.env, DEMO, vid)
    except errors.VolumeNotFound:
        return True
    return False


async def test_the_made_volume_holds_the_image_boots_and_goes_with_its_server(env: VolumeCell) -> None:
    image = root_image(delete=True)
    vid = image["root_volume_id"]
    uid = await insert_build(env, image)
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "creating" and vol["bootable"] is True and vol["image"] is not None \
        and vol["image"]["id"] == IMAGE_ID
    assert [(a["instance_uuid"], a["device"]) for a in vol["attachments"]] == [(uid, "/dev/vda")]
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, image) is None
    assert (await flows.volume_get(env.env, DEMO, vid))["status"] == "attaching"
    assert first_bytes((await env.worker.backend.locate(vid)).path) == MARKER
    await scheduled_and_exported(env, uid)
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    assert (await flows.volume_get(env.env, DEMO, vid))["status"] == "in-use"
    await delete_locally(env.env, uid)  # the guest is gone: its volume goes
    assert await gone(env, vid)
    assert volume_files(env) == [] and await allocated(env) == 0


async def test_delete_on_termination_false_keeps_the_volume_available(env: VolumeCell) -> None:
    image = root_image(delete=False)
    uid = await insert_build(env, image)
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, image) is None
    await scheduled_and_exported(env, uid)
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    await delete_locally(env.env, uid)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, image["root_volume_id"])
    assert vol["status"] == "available" and vol["attachments"] == [] and vol["bootable"] is True


async def test_a_volume_that_cannot_be_made_fails_the_build_and_leaves_nothing(env: VolumeCell) -> None:
    image = root_image(delete=False, record=image_record(IMAGE_ID, DATA + b"x"))  # hashes the bits do not match
    uid = await insert_build(env, image)
    await boot.make_volumes_then_schedule(env.env, admin_context(), [{"uuid": uid, "image": image,
                                                                     "request_spec": {"flavor": FLAVOR}}])
    row = await env.env.db.read(lambda conn: idb.get_row(conn, uid))
    assert row is not None and row.vm_state == "error" and row.host is None  # never scheduled
    assert "a volume it boots with could not be made" in row.fault["message"]
    assert await gone(env, image["root_volume_id"])
    assert volume_files(env) == [] and await allocated(env) == 0


async def test_a_failed_build_deletes_the_volume_it_made(env: VolumeCell) -> None:
    image = root_image(delete=False)
    uid = await insert_build(env, image)
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, image) is None
    await scheduled_and_exported(env, uid)
    await boot.build_failed(env.env, admin_context(), uid, "node1", {"message": "spawn failed"}, retryable=False)
    assert await gone(env, image["root_volume_id"])
    assert volume_files(env) == [] and await allocated(env) == 0


async def test_a_server_deleted_before_its_volume_is_made_leaves_no_volume(env: VolumeCell) -> None:
    image = root_image(delete=False)
    uid = await insert_build(env, image)
    await delete_locally(env.env, uid)  # no host yet: deleted here, its volume still creating
    failure = await boot_volume.make_volumes(env.env, admin_context(), uid, image)
    assert failure is not None
    assert await gone(env, image["root_volume_id"])
    assert volume_files(env) == [] and await allocated(env) == 0


async def test_a_server_deleted_while_its_volume_is_made_leaves_no_volume(env: VolumeCell) -> None:
    """The delete lands between the placement and the create on the volume host: the create's file is removed."""
    image = root_image(delete=False)
    vid = image["root_volume_id"]
    uid = await insert_build(env, image)
    real_create = env.worker.create_volume

    async def delete_meanwhile(ctx: Any, volume: dict[str, Any]) -> dict[str, Any]:
        await delete_locally(env.env, uid)
        return await real_create(ctx, volume)
    env.worker.create_volume = delete_meanwhile  # type: ignore[method-assign]
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, image) is not None
    assert await gone(env, vid)
    assert volume_files(env) == [] and await allocated(env) == 0


async def test_blank_volumes_are_made_plugged_once_the_guest_runs_and_go_by_their_own_flag(env: VolumeCell) -> None:
    image = root_image(delete=True)
    goes, stays = str(uuid.uuid4()), str(uuid.uuid4())
    image[boot_volume.EXTRA_VOLUMES] = [
        {"id": goes, "size": 1, "device": "/dev/vdb", boot_volume.DELETE_ON_TERMINATION: True},
        {"id": stays, "size": 1, "device": "/dev/vdc", boot_volume.DELETE_ON_TERMINATION: False}]
    uid = await insert_build(env, image)
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, image) is None
    for vid in (goes, stays):
        vol = await flows.volume_get(env.env, DEMO, vid)
        assert vol["status"] == "attaching" and vol["bootable"] is False
    await scheduled_and_exported(env, uid)
    assert env.compute.plugged == {}  # nothing hot-plugged before the guest runs
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    await env.settle()
    assert {v: p["instance"] for v, p in env.compute.plugged.items()} == {goes: uid, stays: uid}
    devices = {}
    for vid in (goes, stays):
        vol = await flows.volume_get(env.env, DEMO, vid)
        assert vol["status"] == "in-use"
        devices[vid] = vol["attachments"][0]["device"]
    assert devices == {goes: "/dev/vdb", stays: "/dev/vdc"}
    await delete_locally(env.env, uid)
    assert await gone(env, image["root_volume_id"]) and await gone(env, goes)
    kept = await flows.volume_get(env.env, DEMO, stays)
    assert kept["status"] == "available" and kept["attachments"] == []
    assert len(volume_files(env)) == 1 and await allocated(env) == 1
