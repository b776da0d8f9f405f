"""Copy-on-write snapshots and clones of the file backend (issue 18), on real files with qemu-img, bytes
written and read through a real NBD export (qemu-storage-daemon) with qemu-io.

Here (ext4) `cp --reflink=always` fails, so the backend uses qcow2 chains; a filesystem with reflinks
makes it use reflink copies instead, and the chain tests skip saying so.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cells import errors
from node.volume.backends import VolumeStorage
from node.volume.backends import qcow2_chain as chains
from node.volume.backends.file import GIB, FileBackend
from node.volume.proc import CommandFailed, run
from node.volume.targets import nbd as nbd_mod
from node.volume.targets.nbd import NbdTarget
from tools.devcluster import free_port

CONNECTOR = {"host": "vol1", "ip": "127.0.0.1"}
MARKER_AT = GIB // 2  # offset of the marker, far into the volume


def skip_reason() -> str | None:
    for tool in ("qemu-img", "qemu-io"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (qemu-utils)"
    return nbd_mod.unavailable_reason()


pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@pytest.fixture
async def backend(tmp_path: Path) -> FileBackend:
    b = FileBackend(str(tmp_path / "volumes"), "raw", capacity_gb=100)
    await b.check()
    if b.cow != "qcow2":
        pytest.skip(f"the filesystem under {tmp_path} has reflinks: snapshots are reflink copies, not qcow2 chains")
    return b


@pytest.fixture
async def nbd(tmp_path: Path) -> AsyncIterator[NbdTarget]:
    t = NbdTarget("127.0.0.1", free_port(), str(tmp_path / "nbd"))
    await t.start()
    yield t
    await t.stop()


async def through_export(target: NbdTarget, storage: VolumeStorage, command: str) -> str:
    """qemu-io on the NBD export of `storage`, as a guest's QEMU would open it; unexported after."""
    info: dict[str, Any] = await target.export(storage, CONNECTOR)
    data = info["data"]
    try:
        return await run(["qemu-io", "-f", "raw", "-c", command, f"nbd://{data['host']}:{data['port']}/{data['name']}"],
                         timeout=30)
    finally:
        await target.unexport(storage.volume_id)


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def names(backend: FileBackend) -> set[str]:
    return set(os.listdir(backend.directory))


async def test_snapshot_and_clone_are_overlays_that_keep_the_bytes(backend: FileBackend, nbd: NbdTarget) -> None:
    """A marker written through the export before the snapshot is read from a clone of it through the export;
    what is written after the snapshot is not; the clone is a small qcow2 reading through the snapshot file,
    and the snapshot is the volume's former file (the same inode: nothing copied)."""
    vid, sid, cid = ids(3)
    volume = await backend.create(vid, 1)
    inode = os.stat(volume.path).st_ino
    await through_export(nbd, volume, f"write -P 0x5a {MARKER_AT} 4096")

    snap = await backend.create_snapshot(sid, vid)
    assert os.stat(snap.path).st_ino == inode and snap.disk_format == "raw"
    volume = await backend.locate(vid)
    assert volume.disk_format == "qcow2" and chains.backing_of(volume.path) == os.path.basename(snap.path)
    assert await backend.create_snapshot(sid, vid) == snap  # a repeat finds it made
    await through_export(nbd, volume, f"write -P 0x33 {MARKER_AT} 4096")  # after the snapshot

    clone = await backend.clone(cid, snap, 2)
    assert clone.disk_format == "qcow2" and chains.backing_of(clone.path) == os.path.basename(snap.path)
    assert os.path.getsize(clone.path) < 1024 * 1024 and chains.virtual_size(clone.path, "qcow2") == 2 * GIB
    await through_export(nbd, clone, f"read -P 0x5a {MARKER_AT} 4096")  # -P: fails unless every byte matches
    await through_export(nbd, volume, f"read -P 0x33 {MARKER_AT} 4096")
    with pytest.raises(CommandFailed):
        await through_export(nbd, clone, f"read -P 0x33 {MARKER_AT} 4096")


async def test_a_snapshot_with_a_clone_stays_as_its_base_and_one_without_merges_back(backend: FileBackend,
                                                                                   nbd: NbdTarget) -> None:
    """A snapshot a clone reads through is deleted (as a volume from a snapshot outlives it on Cinder's
    copying backends, and in EC2): its file stays, marked, as the clone's and the volume's base, both keeping
    their bytes, and goes with the last of them. Without a clone the delete commits the volume's overlay into
    the snapshot file, which is the volume's raw file again (its data the volume's latest), nothing else left."""
    vid, sid, cid = ids(3)
    volume = await backend.create(vid, 1)
    await through_export(nbd, volume, f"write -P 0x11 {MARKER_AT} 4096")
    snap = await backend.create_snapshot(sid, vid)
    await backend.clone(cid, snap, 1)
    volume = await backend.locate(vid)
    await through_export(nbd, volume, f"write -P 0x22 {MARKER_AT} 4096")

    await backend.delete_snapshot(sid, vid)
    with pytest.raises(errors.SnapshotNotFound):
        await backend.locate_snapshot(sid)
    assert os.path.exists(snap.path) and f"snapshot-{sid}.deleted" in names(backend)
    await through_export(nbd, await backend.locate(cid), f"read -P 0x11 {MARKER_AT} 4096")  # the clone's bytes
    await through_export(nbd, await backend.locate(vid), f"read -P 0x22 {MARKER_AT} 4096")
    await backend.delete(cid)
    assert os.path.exists(snap.path)  # the volume still reads through it
    await backend.delete(vid)
    assert names(backend) == set()

    vid, sid = ids(2)  # no clone: merged back
    volume = await backend.create(vid, 1)
    await backend.create_snapshot(sid, vid)
    volume = await backend.locate(vid)
    await through_export(nbd, volume, f"write -P 0x33 {MARKER_AT} 4096")
    await backend.delete_snapshot(sid, vid)
    merged = await backend.locate(vid)
    assert merged.disk_format == "raw" and names(backend) == {f"volume-{vid}.raw"}
    await through_export(nbd, merged, f"read -P 0x33 {MARKER_AT} 4096")


async def test_a_snapshot_of_an_in_use_volume_is_deleted_later(backend: FileBackend) -> None:
    """An in-use (live) volume's file is never committed into: the deleted snapshot's file stays, marked,
    while the volume reads through it, and goes with the volume."""
    vid, sid = ids(2)
    await backend.create(vid, 1)
    snap = await backend.create_snapshot(sid, vid)
    await backend.delete_snapshot(sid, vid, live=True)
    assert os.path.exists(snap.path) and f"snapshot-{sid}.deleted" in names(backend)
    with pytest.raises(errors.SnapshotNotFound):
        await backend.locate_snapshot(sid + "-none")
    await backend.delete(vid)
    assert names(backend) == set()


async def test_a_clone_of_a_volume_outlives_its_source(backend: FileBackend, nbd: NbdTarget) -> None:
    """A volume cloned from a volume: the source is frozen as a hidden base both read through; deleting the
    source keeps the base for the clone, deleting the clone then removes everything."""
    vid, cid = ids(2)
    volume = await backend.create(vid, 1)
    await through_export(nbd, volume, f"write -P 0x44 {MARKER_AT} 4096")
    clone = await backend.clone(cid, volume, 1)
    base = f"base-{cid}.raw"
    assert chains.backing_of(clone.path) == base == chains.backing_of((await backend.locate(vid)).path)
    await backend.delete(vid)
    assert names(backend) == {f"volume-{cid}.qcow2", base}
    await through_export(nbd, clone, f"read -P 0x44 {MARKER_AT} 4096")
    await backend.delete(cid)
    assert names(backend) == set()


async def test_an_in_use_volume_is_copied_not_frozen(backend: FileBackend) -> None:
    """A live volume keeps its file (the export holds it open): its snapshot and clone are copies."""
    vid, sid, cid = ids(3)
    volume = await backend.create(vid, 1)
    snap = await backend.create_snapshot(sid, vid, live=True)
    clone = await backend.clone(cid, volume, 1, live=True)
    assert await backend.locate(vid) == volume
    assert os.stat(snap.path).st_ino != os.stat(volume.path).st_ino and clone.disk_format == "raw"


async def test_every_state_a_killed_freeze_or_merge_leaves_is_reconciled(backend: FileBackend) -> None:
    """The freeze's steps (link, overlay, two renames, unlink) and the merge's (commit, rename, unlink) cut
    after each one, as a kill -9 leaves them: reconcile leaves the volume whole, readable with its data,
    and no file that nothing names."""
    vid = str(uuid.uuid4())
    d = backend.directory
    volume = await backend.create(vid, 1)
    raw, overlay = volume.path, os.path.join(d, f"volume-{vid}.qcow2")
    await run(["qemu-io", "-f", "raw", "-c", f"write -P 0x4d {MARKER_AT} 512", raw])

    async def check(expected: set[str]) -> None:
        await backend.reconcile()
        assert names(backend) == expected
        found = await backend.locate(vid)
        await run(["qemu-io", "-f", found.disk_format, "-c", f"read -P 0x4d {MARKER_AT} 512", found.path])

    sid = str(uuid.uuid4())
    frozen = os.path.join(d, f"snapshot-{sid}.raw")
    os.link(raw, frozen + ".part")  # cut after the link
    await check({f"volume-{vid}.raw"})
    os.link(raw, frozen + ".part")
    chains.make_overlay(overlay + ".part", os.path.basename(frozen), "raw", GIB)  # after the overlay
    await check({f"volume-{vid}.raw"})
    os.link(raw, frozen)  # after the first rename: the "snapshot" is the live file itself
    await check({f"volume-{vid}.raw"})
    os.link(raw, frozen)
    chains.make_overlay(overlay, os.path.basename(frozen), "raw", GIB)  # after the second: only the unlink left
    await check({f"volume-{vid}.qcow2", f"snapshot-{sid}.raw"})

    Path(d, f"snapshot-{sid}.deleted").touch()  # a merge after its commit and rename
    os.replace(frozen, raw)
    await check({f"volume-{vid}.raw"})
