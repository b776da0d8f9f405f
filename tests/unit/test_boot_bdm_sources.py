"""Nova BDM v2 at boot beside the root disk (issue 18): source snapshot or volume, destination volume.

The API's checks (api/compute/boot_volumes.py extra_volumes: Nova's 400s, devices in the mappings'
order, multi-create refused as Nova refuses it) as plain functions; the cell's side against a real cell
DB and a real volume worker (tests/volume_fakes.py): a volume made from a snapshot at boot holds the
snapshot's bytes, an existing volume is reserved and plugged once the guest runs, and each goes at delete
by its own delete_on_termination."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.compute import boot_volumes
from api.compute.boot_volumes import BAD_SEQUENCE, MULTI_ATTACH, extra_volumes
from cells import errors
from cells.conductor.flows import boot, boot_volume, compute_events
from cells.conductor.flows import volume_snapshots as snaps
from cells.conductor.flows import volumes as flows
from cells.conductor.flows.delete import delete_locally
from cells.context import admin_context
from cells.lifecycle import Event
from tests.unit.test_boot_from_volume import scheduled_and_exported
from tests.unit.test_boot_volume_from_image import DATA, IMAGE_ID, gone, insert_build, root_image
from tests.unit.test_volume_flows import DEMO, OTHER, create, status
from tests.unit.test_volume_snapshots import MARKER, marker_in, snapshot, write_marker
from tests.volume_fakes import VolumeCell, volume_cell

SNAP = "5a3b9f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
VOL = "6b4c0a1f-2d3e-4f50-9b0c-1d2e3f4a5b6c"
DOT = boot_volume.DELETE_ON_TERMINATION


def bdm(source: str, uuid_: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"source_type": source, "destination_type": "volume", **extra}
    if uuid_:
        out["uuid"] = uuid_
    return out


def test_snapshot_volume_and_blank_mappings_get_devices_in_their_order() -> None:
    made = extra_volumes([bdm("snapshot", SNAP, delete_on_termination=True), bdm("volume", VOL, boot_index=-1),
                          bdm("blank", volume_size=2)], 1, {SNAP: 3})
    assert [e["device"] for e in made] == ["/dev/vdb", "/dev/vdc", "/dev/vdd"]
    snap, vol, blank = made
    assert snap["snapshot_id"] == SNAP and snap["size"] == 3 and snap[DOT] is True and snap["id"] != SNAP
    assert vol == {"id": VOL, "existing": True, "device": "/dev/vdc", DOT: False}
    assert blank["size"] == 2 and "snapshot_id" not in blank
    # the quotas count what the boot makes, not the volume that exists already
    sizes = boot_volumes._sizes({boot_volume.EXTRA_VOLUMES: made})
    assert sorted(size for _, size in sizes) == [2, 3] and VOL not in dict(sizes)


def test_a_volume_from_a_snapshot_is_at_least_its_size() -> None:
    assert extra_volumes([bdm("snapshot", SNAP, volume_size=5)], 1, {SNAP: 3})[0]["size"] == 5
    with pytest.raises(errors.Invalid, match="smaller than snapshot"):
        extra_volumes([bdm("snapshot", SNAP, volume_size=2)], 1, {SNAP: 3})


@pytest.mark.parametrize(("mappings", "count", "message"), [
    ([bdm("volume", VOL)], 2, MULTI_ATTACH),  # Nova: one volume cannot go to several servers
    ([bdm("snapshot", SNAP)], 3, "one server at a time"),
    ([bdm("volume", VOL), bdm("volume", VOL)], 1, "mapped twice"),
    ([bdm("volume")], 1, "needs the volume's uuid"),
    ([bdm("blank", volume_size=1, boot_index=0)], 1, BAD_SEQUENCE.split(":")[0]),
])
def test_nova_refusals(mappings: list[dict[str, Any]], count: int, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        extra_volumes(mappings, count, {SNAP: 1})
    assert refused.value.http_status == 400


def test_each_server_of_a_multi_create_gets_its_own_root_volume_id() -> None:
    image = {"root_volume_id": VOL, boot_volume.NEW_ROOT: {"size": 1}}
    ids = [boot_volumes.for_instance(image, i)["root_volume_id"] for i in range(3)]
    assert ids[0] == VOL and len(set(ids)) == 3
    assert ids == [boot_volumes.for_instance(image, i)["root_volume_id"] for i in range(3)]  # a retry: the same
    existing = {"root_volume_id": VOL}  # a boot from an existing volume is one server (Nova's 400 otherwise)
    assert boot_volumes.for_instance(existing, 1) == existing


def test_a_volume_or_snapshot_at_boot_index_0_is_the_root_not_an_extra() -> None:
    root = bdm("snapshot", SNAP, boot_index=0)
    assert boot_volumes.extra_mappings([bdm("volume", VOL, boot_index=0), bdm("image", VOL), root]) == []
    assert boot_volumes.snapshot_root_bdm([bdm("snapshot", SNAP, boot_index=1), root]) is root


def snapshot_root(snapshot_id: str, delete: bool) -> dict[str, Any]:
    """The instance `image` the API records for a snapshot -> volume root mapping of 1 GiB."""
    return {"root_volume_id": str(uuid.uuid4()), "properties": {}, DOT: delete,
            boot_volume.NEW_ROOT: {"size": 1, "snapshot_id": snapshot_id}}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[VolumeCell]:
    cell = await volume_cell(tmp_path, capacity_gb=8, images={IMAGE_ID: DATA})
    yield cell
    await cell.close()


async def test_snapshot_and_volume_sources_are_made_plugged_and_go_by_their_own_flag(env: VolumeCell) -> None:
    src = await create(env, size=1)
    await write_marker(env, src)
    snap = await snapshot(env, src)
    data = await create(env, size=1)
    image = root_image(delete=True)
    from_snap = str(uuid.uuid4())
    image[boot_volume.EXTRA_VOLUMES] = [
        {"id": from_snap, "size": 1, "snapshot_id": snap["id"], "device": "/dev/vdb", DOT: True},
        {"id": data, "existing": True, "device": "/dev/vdc", DOT: False}]
    uid = await insert_build(env, image)
    assert await status(env, data) == "attaching"  # reserved with the server's row
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, image) is None
    made = await flows.volume_get(env.env, DEMO, from_snap)
    assert made["status"] == "attaching" and made["snapshot_id"] == snap["id"]
    assert await marker_in(await env.worker.backend.locate(from_snap)) == MARKER  # the snapshot's bytes
    await scheduled_and_exported(env, uid)
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    await env.settle()
    assert {v: p["instance"] for v, p in env.compute.plugged.items()} == {from_snap: uid, data: uid}
    devices = {v: (await flows.volume_get(env.env, DEMO, v))["attachments"][0]["device"] for v in (from_snap, data)}
    assert devices == {from_snap: "/dev/vdb", data: "/dev/vdc"}
    await delete_locally(env.env, uid)
    assert await gone(env, from_snap) and await status(env, data) == "available"


async def test_a_source_the_project_cannot_use_makes_no_server(env: VolumeCell) -> None:
    """Nova's 400s from the cell, in the unit of work that would insert the server: another project's volume,
    a volume in use, a snapshot that is not there."""
    theirs = str(uuid.uuid4())
    await flows.volume_create(env.env, OTHER, {"id": theirs, "project_id": "other", "size": 1})
    await env.settle()
    for extra in ({"id": theirs, "existing": True, "device": "/dev/vdb"},
                  {"id": str(uuid.uuid4()), "size": 1, "snapshot_id": str(uuid.uuid4()), "device": "/dev/vdb"}):
        image = root_image(delete=True)
        image[boot_volume.EXTRA_VOLUMES] = [extra]
        with pytest.raises(errors.Invalid, match="Block Device Mapping is Invalid") as refused:
            await insert_build(env, image)
        assert refused.value.http_status == 400
    assert (await flows.volume_get(env.env, OTHER, theirs))["status"] == "available"
    assert [v["id"] for v in await flows.volume_list(env.env, DEMO, {}, None)] == []


async def test_a_root_volume_from_a_snapshot_holds_its_bytes_boots_and_goes_with_its_server(env: VolumeCell) -> None:
    """BDM snapshot -> volume at boot index 0: the root is made on the snapshot's host as an overlay reading the
    snapshot's bytes, attached at /dev/vda, in-use once the guest runs, deleted with the server
    (delete_on_termination); a second boot whose build fails removes the root it made."""
    src = await create(env, size=1)
    await write_marker(env, src)
    snap = await snapshot(env, src)
    image = snapshot_root(snap["id"], delete=True)
    vid = image["root_volume_id"]
    uid = await insert_build(env, image)
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, image) is None
    made = await flows.volume_get(env.env, DEMO, vid)
    assert made["status"] == "attaching" and made["snapshot_id"] == snap["id"]
    assert [(a["instance_uuid"], a["device"]) for a in made["attachments"]] == [(uid, "/dev/vda")]
    storage = await env.worker.backend.locate(vid)
    assert storage.disk_format == "qcow2" and await marker_in(storage) == MARKER  # an overlay, no copy
    await scheduled_and_exported(env, uid)
    for event in (Event.SPAWNING, Event.SPAWNED):
        await compute_events.instance_event(env.env, admin_context(), uid, "node1", event)
    assert await status(env, vid) == "in-use"
    await delete_locally(env.env, uid)
    assert await gone(env, vid)

    failing = snapshot_root(snap["id"], delete=False)
    uid = await insert_build(env, failing)
    assert await boot_volume.make_volumes(env.env, admin_context(), uid, failing) is None
    await scheduled_and_exported(env, uid)
    await boot.build_failed(env.env, admin_context(), uid, "node1", {"message": "spawn failed"}, retryable=False)
    assert await gone(env, failing["root_volume_id"])
    assert (await snaps.snapshot_get(env.env, DEMO, snap["id"]))["status"] == "available"


async def test_a_root_from_a_snapshot_the_project_cannot_use_makes_no_server(env: VolumeCell) -> None:
    with pytest.raises(errors.Invalid, match="Block Device Mapping is Invalid") as refused:
        await insert_build(env, snapshot_root(str(uuid.uuid4()), delete=True))
    assert refused.value.http_status == 400
    assert [v["id"] for v in await flows.volume_list(env.env, DEMO, {}, None)] == []
