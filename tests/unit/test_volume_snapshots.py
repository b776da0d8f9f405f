"""Snapshots, copies and extend (issue 18) in the conductor's flows against a real cell DB (SQLite) and a
real volume worker (file backend) in the same process (tests/volume_fakes.py): the bytes of a volume are
in its snapshot and in a volume made from it; a volume with snapshots is deleted only with cascade; the
host's space is taken and given back; failures end in error with the reason and leave no file; a flow
whose conductor died is adopted and finished."""
from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cells import errors
from cells.conductor.flows import messages, volume_upload
from cells.conductor.flows import volume_extend as extend
from cells.conductor.flows import volume_recovery as recovery
from cells.conductor.flows import volume_snapshots as snaps
from cells.conductor.flows import volumes as flows
from cells.db import volumes as vdb
from node.volume.backends import VolumeStorage
from node.volume.proc import run
from tests.compute_fakes import image_record
from tests.unit.test_volume_flows import DEMO, OTHER, add_instance, create, status
from tests.volume_fakes import VolumeCell, volume_cell

MARKER = b"CELLCLOUD-SNAPSHOT-MARKER"
GIB = 1 << 30


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[VolumeCell]:
    cell = await volume_cell(tmp_path, capacity_gb=8)
    yield cell
    await cell.close()


def poke(path: str | Path, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(GIB // 2)
        f.write(data)


async def write_marker(env: VolumeCell, vid: str, data: bytes = MARKER) -> Path:
    path = Path((await env.worker.backend.locate(vid)).path)
    poke(path, data)
    return path


def head(path: str | Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(len(MARKER))


def read_marker(path: str | Path, length: int = len(MARKER)) -> bytes:
    with open(path, "rb") as f:
        f.seek(GIB // 2)
        return f.read(length)


async def marker_in(storage: VolumeStorage, length: int = len(MARKER)) -> bytes:
    """The bytes at the marker's offset as QEMU reads the volume (a qcow2 through its backing chain)."""
    out = await run(["qemu-io", "-f", storage.disk_format, "-c", f"read -v {GIB // 2} {length}", storage.path])
    return bytes.fromhex("".join(m.group(1) for m in re.finditer(r"^[0-9a-f]{8}:  ((?:[0-9a-f]{2} )+)", out, re.MULTILINE)))


async def snapshot(env: VolumeCell, vid: str, force: bool = False, project: str = "demo") -> dict[str, Any]:
    rec = await snaps.snapshot_create(env.env, DEMO, {"id": str(uuid.uuid4()), "volume_id": vid,
                                                      "project_id": project, "name": "s"}, force)
    await env.settle()
    return await snaps.snapshot_get(env.env, DEMO, rec["id"])


async def allocated(env: VolumeCell) -> int:
    return int(await env.env.db.read(lambda conn: vdb.node(conn, "node1").allocated_gb))  # type: ignore[union-attr]


async def copy_of(env: VolumeCell, size: int, **source: str) -> str:
    vid = str(uuid.uuid4())
    await flows.volume_create(env.env, DEMO, {"id": vid, "project_id": "demo", "size": size, **source})
    await env.settle()
    return vid


async def test_snapshot_holds_the_bytes_and_a_volume_made_from_it_has_them(env: VolumeCell) -> None:
    """Here (no reflinks) the snapshot is the volume's former file and the volume and the clone qcow2
    overlays reading through it (tests/contract/test_volume_cow.py has the chains in detail)."""
    vid = await create(env, size=1)
    path = await write_marker(env, vid)
    inode = os.stat(path).st_ino
    snap = await snapshot(env, vid)
    assert snap["status"] == "available" and snap["size"] == 1 and snap["volume_id"] == vid
    volume = await env.worker.backend.locate(vid)
    assert volume.disk_format == "qcow2"
    # the volume changes after the snapshot (0x58: "X"): the snapshot does not
    await run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x58 {GIB // 2} {len(MARKER)}", volume.path])
    stored = await env.worker.backend.locate_snapshot(snap["id"])
    assert read_marker(stored.path) == MARKER and os.stat(stored.path).st_ino == inode  # no copy
    clone = await copy_of(env, 2, snapshot_id=snap["id"])
    vol = await flows.volume_get(env.env, DEMO, clone)
    assert vol["status"] == "available" and vol["snapshot_id"] == snap["id"] and vol["size"] == 2
    made = await env.worker.backend.locate(clone)
    assert await marker_in(made) == MARKER and os.path.getsize(made.path) < 1 << 20
    assert await marker_in(volume) == b"X" * len(MARKER)
    assert await allocated(env) == 1 + 1 + 2


async def test_a_copy_of_a_volume_has_its_bytes_and_its_bootable_flag(env: VolumeCell) -> None:
    vid = await create(env, size=1)
    await env.env.db.write(lambda conn: vdb.update_volume(conn, vid, {"bootable": True}))
    await write_marker(env, vid)
    clone = await copy_of(env, 1, source_volid=vid)
    vol = await flows.volume_get(env.env, DEMO, clone)
    assert vol["status"] == "available" and vol["source_volid"] == vid and vol["bootable"] is True
    assert await marker_in(await env.worker.backend.locate(clone)) == MARKER
    assert await marker_in(await env.worker.backend.locate(vid)) == MARKER


async def test_bad_sources_are_refused_and_make_nothing(env: VolumeCell) -> None:
    vid = await create(env, size=2)
    snap = await snapshot(env, vid)
    with pytest.raises(errors.Invalid, match="cannot be smaller than the snapshot size"):
        await flows.volume_create(env.env, DEMO, {"id": str(uuid.uuid4()), "project_id": "demo", "size": 1,
                                                  "snapshot_id": snap["id"]})
    with pytest.raises(errors.SnapshotNotFound):  # another project's snapshot does not exist for it
        await flows.volume_create(env.env, OTHER, {"id": str(uuid.uuid4()), "project_id": "other", "size": 2,
                                                   "snapshot_id": snap["id"]})
    with pytest.raises(errors.Invalid, match="one source"):
        await flows.volume_create(env.env, DEMO, {"id": str(uuid.uuid4()), "project_id": "demo", "size": 2,
                                                  "snapshot_id": snap["id"], "source_volid": vid})
    assert [v["id"] for v in await flows.volume_list(env.env, DEMO, {}, None)] == [vid]


async def test_a_volume_with_snapshots_is_deleted_only_with_cascade(env: VolumeCell) -> None:
    vid = await create(env, size=1)
    first, second = await snapshot(env, vid), await snapshot(env, vid)
    with pytest.raises(errors.VolumeInvalidState, match="still has 2 dependent snapshots") as refused:
        await flows.volume_delete(env.env, DEMO, vid)
    assert refused.value.http_status == 400 and await status(env, vid) == "available"
    assert await allocated(env) == 3
    await flows.volume_delete(env.env, DEMO, vid, cascade=True)
    await env.settle()
    assert await snaps.snapshot_list(env.env, DEMO, {}) == []
    assert await flows.volume_list(env.env, DEMO, {}, None) == []
    for sid in (first["id"], second["id"]):
        with pytest.raises(errors.SnapshotNotFound):
            await env.worker.backend.locate_snapshot(sid)
    assert os.listdir(env.worker.backend.directory) == [] and await allocated(env) == 0  # type: ignore[attr-defined]


async def test_a_cascade_delete_leaves_a_volume_made_from_its_snapshot_whole(env: VolumeCell) -> None:
    """Tempest's cascade case: a volume, its snapshot, a volume made from the snapshot; the first deleted with
    cascade goes with its snapshot, and the copy (an overlay reading through the snapshot's file here) keeps
    its bytes; the last file goes with the copy."""
    vid = await create(env, size=1)
    await write_marker(env, vid)
    snap = await snapshot(env, vid)
    copy = await copy_of(env, 1, snapshot_id=snap["id"])
    await flows.volume_delete(env.env, DEMO, vid, cascade=True)
    await env.settle()
    assert await snaps.snapshot_list(env.env, DEMO, {}) == []
    assert [v["id"] for v in await flows.volume_list(env.env, DEMO, {}, None)] == [copy]
    assert await marker_in(await env.worker.backend.locate(copy)) == MARKER
    await flows.volume_delete(env.env, DEMO, copy)
    await env.settle()
    assert os.listdir(env.worker.backend.directory) == []  # type: ignore[attr-defined]


async def test_snapshot_of_an_in_use_volume_needs_force(env: VolumeCell) -> None:
    vid = await create(env, size=1)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    with pytest.raises(errors.VolumeInvalidState, match="or in-use with force"):
        await snapshot(env, vid)
    assert (await snapshot(env, vid, force=True))["status"] == "available"


async def test_no_room_for_a_snapshot_ends_in_error_holding_nothing(env: VolumeCell) -> None:
    vid = await create(env, size=5)
    snap = await snapshot(env, vid)  # 5 + 5 > 8 GiB
    assert snap["status"] == "error" and "has no room" in snap["error"] and await allocated(env) == 5
    await snaps.snapshot_delete(env.env, DEMO, snap["id"])
    await env.settle()
    assert await snaps.snapshot_list(env.env, DEMO, {}) == [] and await allocated(env) == 5


async def test_a_failed_copy_ends_in_error_frees_its_space_and_leaves_no_file(env: VolumeCell) -> None:
    vid = await create(env, size=1)
    os.unlink((await env.worker.backend.locate(vid)).path)  # the copy cannot read its source
    snap = await snapshot(env, vid)
    assert snap["status"] == "error" and "could not be found" in snap["error"]
    assert await allocated(env) == 1 and os.listdir(env.worker.backend.directory) == []  # type: ignore[attr-defined]


async def test_a_snapshot_being_copied_cannot_be_deleted(env: VolumeCell) -> None:
    vid = await create(env, size=1)
    snap = await snapshot(env, vid)
    copy = str(uuid.uuid4())
    await flows.volume_create(env.env, DEMO, {"id": copy, "project_id": "demo", "size": 1,
                                              "snapshot_id": snap["id"]})  # creating, its copy not run yet
    with pytest.raises(errors.SnapshotInvalidState, match="being created from"):
        await snaps.snapshot_delete(env.env, DEMO, snap["id"])
    await env.settle()
    await snaps.snapshot_delete(env.env, DEMO, snap["id"])
    await env.settle()  # the copy reads through its file (a qcow2 overlay): the file stays as the copy's base
    assert await snaps.snapshot_list(env.env, DEMO, {}) == []
    assert [v["id"] for v in await flows.volume_list(env.env, DEMO, {}, None) if v["id"] != vid] == [copy]
    assert (await flows.volume_get(env.env, DEMO, copy))["status"] == "available"


async def test_extend_grows_only_and_in_use_only_through_an_export_that_can(env: VolumeCell) -> None:
    vid = await create(env, size=1)
    await write_marker(env, vid)
    rec = await extend.volume_extend(env.env, DEMO, vid, 3)
    assert rec["status"] == "extending" and rec["size"] == 3
    await env.settle()
    path = (await env.worker.backend.locate(vid)).path
    assert await status(env, vid) == "available" and os.path.getsize(path) == 3 * GIB
    assert read_marker(path) == MARKER and await allocated(env) == 3
    with pytest.raises(errors.Invalid, match=r"greater than current size. \(current: 3, extended: 2\)"):
        await extend.volume_extend(env.env, DEMO, vid, 2)
    with pytest.raises(errors.Invalid, match="no room to grow"):
        await extend.volume_extend(env.env, DEMO, vid, 9)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    await extend.volume_extend(env.env, DEMO, vid, 4)  # attached through the local target: the guest is told
    await env.settle()
    assert await status(env, vid) == "in-use" and env.compute.plugged[vid]["size"] == 4
    assert os.path.getsize(path) == 4 * GIB and await allocated(env) == 4
    env.compute.fail = "blockResize refused"  # the hypervisor cannot: back to in-use at the old size
    await extend.volume_extend(env.env, DEMO, vid, 5)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert (vol["status"], vol["size"]) == ("in-use", 4) and "blockResize refused" in str(vol["error"])
    assert await allocated(env) == 4
    env.compute.fail = None
    a = vdb.volume_attachments.c
    await env.env.db.write(lambda conn: conn.execute(update(vdb.volume_attachments).where(a.volume_id == vid)
                                                     .values(connection_info={"driver_volume_type": "iscsi"})))
    with pytest.raises(errors.VolumeInvalidState, match="in-use through the iscsi export"):
        await extend.volume_extend(env.env, DEMO, vid, 5)
    assert (await flows.volume_get(env.env, DEMO, vid))["size"] == 4


DEAD = "cell1/conductor-dead"


async def test_snapshot_and_extend_flows_of_a_dead_conductor_are_adopted_and_finished(env: VolumeCell) -> None:
    vid, grown = await create(env, size=1), await create(env, size=1)
    spawn = env.env.spawn
    env.env.spawn = lambda coro: coro.close()  # their conductor dies right after the requests' transactions
    rec = await snaps.snapshot_create(env.env, DEMO, {"id": str(uuid.uuid4()), "volume_id": vid,
                                                      "project_id": "demo"})
    await extend.volume_extend(env.env, DEMO, grown, 2)
    env.env.spawn = spawn
    s, v = vdb.volume_snapshots.c, vdb.volumes.c
    await env.env.db.write(lambda conn: (conn.execute(update(vdb.volume_snapshots).where(s.id == rec["id"])
                                                      .values(conductor_id=DEAD)),
                                         conn.execute(update(vdb.volumes).where(v.id == grown)
                                                      .values(conductor_id=DEAD))))
    assert await recovery.adopt(env.env, [DEAD]) == 2
    await env.settle()
    assert (await snaps.snapshot_get(env.env, DEMO, rec["id"]))["status"] == "available"
    assert await status(env, grown) == "available"
    assert os.path.getsize((await env.worker.backend.locate(grown)).path) == 2 * GIB
    owners = await env.env.db.read(lambda conn: conn.execute(select(s.conductor_id).where(s.id == rec["id"]))
                                   .scalar())
    assert owners == "c1"


IMAGE_ID = "5e0bb0a6-7d6a-4b5b-9f3e-3f0e1d6c1a01"


async def image_cell(tmp_path: Path, data: bytes) -> VolumeCell:
    return await volume_cell(tmp_path / "img", capacity_gb=8, images={IMAGE_ID: data})


async def from_image(env: VolumeCell, record: dict[str, Any], size: int = 1) -> str:
    vid = str(uuid.uuid4())
    await flows.volume_create(env.env, DEMO, {"id": vid, "project_id": "demo", "size": size, "image": record})
    await env.settle()
    return vid


async def test_a_volume_made_from_an_image_holds_its_disk_and_is_bootable(tmp_path: Path) -> None:
    data = MARKER.ljust(1 << 20, b"\0")  # a 1 MiB raw disk
    env = await image_cell(tmp_path, data)
    try:
        record = image_record(IMAGE_ID, data, properties={"kernel_id": "k", "os_command_line": "console=ttyS0"})
        vid = await from_image(env, record, size=2)
        vol = await flows.volume_get(env.env, DEMO, vid)
        assert vol["status"] == "available" and vol["bootable"] is True and vol["image"] is not None \
            and vol["image"]["id"] == IMAGE_ID
        assert vol["image"] is not None and vol["image"]["properties"]["os_command_line"] == "console=ttyS0"
        path = (await env.worker.backend.locate(vid)).path
        assert os.path.getsize(path) == 2 * GIB
        assert head(path) == MARKER
    finally:
        await env.close()


async def test_bad_image_bits_or_a_too_small_volume_end_in_error_leaving_no_file(tmp_path: Path) -> None:
    data = MARKER.ljust(1 << 20, b"\0")
    env = await image_cell(tmp_path, data)
    try:
        tampered = await from_image(env, image_record(IMAGE_ID, data + b"x"))  # the hashes the API gave differ
        vol = await flows.volume_get(env.env, DEMO, tampered)
        assert vol["status"] == "error" and vol["error"]
        qcow = image_record(IMAGE_ID, data, disk_format="qcow2")  # raw bits that say qcow2: refused at inspection
        assert (await flows.volume_get(env.env, DEMO, await from_image(env, qcow)))["status"] == "error"
        with pytest.raises(errors.Invalid, match="one source"):
            await flows.volume_create(env.env, DEMO, {"id": str(uuid.uuid4()), "project_id": "demo", "size": 1,
                                                      "image": image_record(IMAGE_ID, data), "source_volid": tampered})
        assert [n for n in os.listdir(env.worker.backend.directory) if n.startswith("volume-")] == []  # type: ignore[attr-defined]
    finally:
        await env.close()


async def test_an_image_whose_disk_is_larger_than_its_volume_ends_in_error(tmp_path: Path) -> None:
    made = tmp_path / "big.qcow2"  # a small file holding a 2 GiB disk
    await run(["qemu-img", "create", "-q", "-f", "qcow2", str(made), "2G"])
    data = made.read_bytes()
    env = await image_cell(tmp_path, data)
    try:
        vid = await from_image(env, image_record(IMAGE_ID, data, disk_format="qcow2"), size=1)
        vol = await flows.volume_get(env.env, DEMO, vid)
        assert vol["status"] == "error" and "doesn't fit in a volume of size 1GB" in str(vol["error"])
        grown = await from_image(env, image_record(IMAGE_ID, data, disk_format="qcow2"), size=2)
        assert (await flows.volume_get(env.env, DEMO, grown))["status"] == "available"
    finally:
        await env.close()


async def test_upload_refuses_a_busy_volume_and_an_adopted_upload_is_rolled_back(env: VolumeCell) -> None:
    vid = await create(env, size=1)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    with pytest.raises(errors.VolumeInvalidState, match="uploaded once detached"):
        await volume_upload.volume_upload(env.env, DEMO, vid, IMAGE_ID, "token")
    await flows.volume_detach(env.env, DEMO, vid, uid)
    await env.settle()
    with pytest.raises(errors.VolumeUploadFailed, match="not this cluster's"):  # the worker talks to its own API
        await env.worker.upload_volume(DEMO, {"id": vid}, IMAGE_ID, "http://elsewhere.example:8774", "token")
    spawn = env.env.spawn
    env.env.spawn = lambda coro: coro.close()  # the conductor dies right after the volume went uploading
    assert (await volume_upload.volume_upload(env.env, DEMO, vid, IMAGE_ID, "token"))["status"] == "uploading"
    env.env.spawn = spawn
    v = vdb.volumes.c
    await env.env.db.write(lambda conn: conn.execute(update(vdb.volumes).where(v.id == vid).values(conductor_id=DEAD)))
    assert await recovery.adopt(env.env, [DEAD]) == 1
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "available" and "upload to image interrupted" in str(vol["error"])


async def test_image_metadata_changes_show_but_leave_the_image_a_boot_reads(tmp_path: Path) -> None:
    """A volume made from an image shows the image's record as its image metadata until a user changes it;
    a change (two at once: both apply) and a removal of one of the image's own keys change only what is
    shown: the `image` record a boot from the volume and an upload read stays the one the API checked."""
    data = MARKER.ljust(1 << 20, b"\0")
    env = await image_cell(tmp_path, data)
    try:
        record = image_record(IMAGE_ID, data, properties={"kernel_id": "k1"})
        vid = await from_image(env, record)
        vol = await flows.volume_get(env.env, DEMO, vid)
        shown = vdb.image_metadata_of(vol["image"], vol["image_metadata"])
        assert shown is not None and shown["image_id"] == IMAGE_ID and shown["kernel_id"] == "k1"
        await asyncio.gather(flows.volume_update(env.env, DEMO, vid, {"image_metadata": {"kernel_id": "k2"}}),
                             flows.volume_update(env.env, DEMO, vid, {"image_metadata": {"extra": "x"}}))
        await flows.volume_update(env.env, DEMO, vid, {"image_metadata": {"image_name": None}})
        with pytest.raises(errors.MetadataItemNotFound):
            await flows.volume_update(env.env, DEMO, vid, {"image_metadata": {"image_name": None}})
        with pytest.raises(errors.Invalid):
            await flows.volume_update(env.env, DEMO, vid, {"image_metadata": {"k": 1}})
        with pytest.raises(errors.VolumeNotFound):  # another project's volume
            await flows.volume_update(env.env, OTHER, vid, {"image_metadata": {"k": "v"}})
        vol = await flows.volume_get(env.env, DEMO, vid)
        before = vdb.image_metadata_of(record) or {}
        assert vdb.image_metadata_of(vol["image"], vol["image_metadata"]) == {
            **{k: v for k, v in before.items() if k != "image_name"}, "kernel_id": "k2", "extra": "x"}
        assert vol["image"] is not None and vol["image"]["properties"] == {"kernel_id": "k1"} \
            and vol["image"]["name"] == IMAGE_ID
    finally:
        await env.close()


async def test_a_failed_extend_and_a_failed_attach_each_leave_one_message_for_the_project(env: VolumeCell) -> None:
    """The hypervisor refuses a grow, then a plug: each failure leaves one message for the volume's project, with
    Cinder's event id and fixed text (not the hypervisor's words), which another project does not see."""
    vid = await create(env, size=1)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    env.compute.fail = "blockResize refused"
    await extend.volume_extend(env.env, DEMO, vid, 2)
    await env.settle()
    env.compute.fail = None
    await flows.volume_detach(env.env, DEMO, vid, uid)
    await env.settle()
    env.compute.fail = "attachDeviceFlags refused"
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    assert await status(env, vid) == "available"
    listed = await messages.message_list(env.env, DEMO)
    assert sorted((m["event_id"], m["user_message"], m["resource_uuid"]) for m in listed) == [
        ("VOLUME_VOLUME_002_001", "attach volume:An unknown error occurred.", vid),
        ("VOLUME_VOLUME_007_001", "extend volume:An unknown error occurred.", vid)]
    assert await messages.message_list(env.env, OTHER) == []
