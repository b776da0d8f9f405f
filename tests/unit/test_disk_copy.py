"""A move's disk copy (node/compute/disks.py) between two hosts' directories, with real
files and the real qemu-img: the source serves chunks of its overlay, the destination
writes, verifies and rebases it onto its own cached base; what the guest wrote stays,
a corrupted, short or oversized chunk leaves nothing behind, and the source refuses
anything that is not one of a guest's disk files."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cells import errors
from cells.context import RequestContext
from cells.objects.instance import PowerState, VmState
from node.compute import disks
from node.compute.driver import LibvirtDriver, create_overlay
from node.compute.manager import ComputeManager
from node.imagecache import ImageCache
from tests.compute_fakes import FakeConductor, FakeFetcher, cluster_config, image_record

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
                                reason="qemu-img and qemu-io (qemu-utils) are not installed")
BASE = b"CELLCLOUD base image\n".ljust(1 << 20, b"\0")  # 1 MiB raw, as the tiny guest's root disk
CHUNK = 64 * 1024


def qemu_io(disk: Path, command: str) -> None:
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(disk)], check=True, capture_output=True)


def backing(disk: Path) -> str:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], check=True,
                                     capture_output=True, text=True).stdout)
    return str(info["backing-filename"])


def guest_view(disk: Path, out: Path) -> bytes:
    """What the guest reads from the disk (overlay over its base)."""
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(out)], check=True, capture_output=True)
    return out.read_bytes()


class Host:
    """A host's state dir: its image cache and instance dirs (hosts share nothing)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / "images" / "0123abcd"  # content-addressed, as node/imagecache.py names it
        self.base.parent.mkdir(parents=True)
        self.base.write_bytes(BASE)
        self.driver = LibvirtDriver("test:///default", instances_dir=str(root / "instances"))

    def disk(self, uuid: str) -> Path:
        return self.root / "instances" / uuid / "disk"


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[tuple[Host, Host]]:
    source, dest = Host(tmp_path / "node1"), Host(tmp_path / "node2")
    yield source, dest
    for h in (source, dest):
        await h.driver.close()


async def written_guest(source: Host) -> str:
    """A guest's overlay on the source with writes at the start and past the first chunks."""
    uuid = str(uuidlib.uuid4())
    source.disk(uuid).parent.mkdir(parents=True)
    await create_overlay(str(source.base), "raw", str(source.disk(uuid)))
    qemu_io(source.disk(uuid), "write -P 0x4d 0 512")  # 'M': the guest's marker over the base's first bytes
    qemu_io(source.disk(uuid), "write -P 0x5a 700k 200k")
    return uuid


def reader(source: Host, uuid: str, calls: list[tuple[str, int, int]]) -> disks.ChunkReader:
    async def read(name: str, offset: int, length: int) -> bytes:
        calls.append((name, offset, length))
        return await source.driver.disks.read_disk(uuid, name, offset, length)  # as the source's read_disk RPC
    return read


async def test_a_disk_is_copied_in_chunks_and_rebased_onto_this_hosts_base(
        hosts: tuple[Host, Host], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, dest = hosts
    uuid = await written_guest(source)
    expected = guest_view(source.disk(uuid), tmp_path / "before.raw")
    assert expected[:512] == b"M" * 512 and expected[512:1024] == BASE[512:1024]
    files = await asyncio.to_thread(disks.describe, str(source.disk(uuid).parent))
    size = source.disk(uuid).stat().st_size
    assert [(f["name"], f["size"]) for f in files] == [("disk", size)]

    calls: list[tuple[str, int, int]] = []
    monkeypatch.setattr(disks, "CHUNK", CHUNK)  # many chunks for a small file
    copied = await dest.driver.disks.receive_disks(uuid, files, reader(source, uuid, calls), str(dest.base), "raw")
    assert copied == size and len(calls) == -(-size // CHUNK)
    assert all(length <= CHUNK for _, _, length in calls)
    assert backing(dest.disk(uuid)) == str(dest.base)  # no longer the source's path
    shutil.rmtree(source.root)  # the source host is gone: the copy depends on nothing there
    assert guest_view(dest.disk(uuid), tmp_path / "after.raw") == expected
    assert sorted(os.listdir(dest.disk(uuid).parent)) == ["disk"]  # no partial file left


async def test_a_corrupted_chunk_fails_the_copy_and_leaves_nothing(hosts: tuple[Host, Host]) -> None:
    source, dest = hosts
    uuid = await written_guest(source)
    files = await asyncio.to_thread(disks.describe, str(source.disk(uuid).parent))
    good = reader(source, uuid, [])

    async def flipped(name: str, offset: int, length: int) -> bytes:
        data = bytearray(await good(name, offset, length))
        data[0] ^= 0xFF  # a bit flipped on the way
        return bytes(data)

    with pytest.raises(errors.DiskCopyFailed, match="sha256"):
        await dest.driver.disks.receive_disks(uuid, files, flipped, str(dest.base), "raw")
    assert os.listdir(dest.disk(uuid).parent) == []


@pytest.mark.parametrize("answer", [b"", b"x" * (disks.CHUNK + 1), "text"])
async def test_a_short_or_oversized_answer_fails_the_copy(hosts: tuple[Host, Host], answer: object) -> None:
    source, dest = hosts
    uuid = await written_guest(source)
    files = await asyncio.to_thread(disks.describe, str(source.disk(uuid).parent))

    async def bad(name: str, offset: int, length: int) -> bytes:
        return answer  # type: ignore[return-value]

    with pytest.raises(errors.DiskCopyFailed, match="asked"):
        await dest.driver.disks.receive_disks(uuid, files, bad, str(dest.base), "raw")
    assert os.listdir(dest.disk(uuid).parent) == []


@pytest.mark.parametrize("spec", [
    {"name": "bases.json", "size": 10, "sha256": "0" * 64},  # not a disk
    {"name": "../../etc/passwd", "size": 10, "sha256": "0" * 64},
    {"name": "disk", "size": -1, "sha256": "0" * 64},
    {"name": "disk", "size": 10, "sha256": "not-hex"},
    "disk",
])
async def test_a_bad_description_from_the_source_is_refused(hosts: tuple[Host, Host], spec: object) -> None:
    _, dest = hosts
    uuid = str(uuidlib.uuid4())

    async def never(name: str, offset: int, length: int) -> bytes:
        raise AssertionError("nothing may be read for a bad description")

    with pytest.raises(errors.DiskCopyFailed, match="bad disk description"):
        await dest.driver.disks.receive_disks(uuid, [spec], never, str(dest.base), "raw")


async def test_the_source_serves_only_a_guests_disk_files(hosts: tuple[Host, Host]) -> None:
    source, _ = hosts
    uuid = await written_guest(source)
    (source.disk(uuid).parent / "console.log").write_text("secret")
    assert await source.driver.disks.read_disk(uuid, "disk", 0, 4) == b"QFI\xfb"  # the qcow2 header
    bads: list[dict[str, object]] = [{"name": "console.log"}, {"name": "../disk"}, {"uuid": "../../images"},
                                     {"offset": -1}, {"length": 0}, {"length": disks.MAX_CHUNK + 1},
                                     {"offset": True}]
    for bad in bads:
        args = {"uuid": uuid, "name": "disk", "offset": 0, "length": 4, **bad}
        with pytest.raises(errors.Invalid):
            await source.driver.disks.read_disk(**args)  # type: ignore[arg-type]
    with pytest.raises(errors.InstanceNotFound):
        await source.driver.disks.read_disk(str(uuidlib.uuid4()), "disk", 0, 4)
    assert await source.driver.disks.read_disk(uuid, "disk", 10 << 20, 4) == b""  # past the end: nothing


async def test_the_test_hypervisor_has_no_disk_files_to_copy(hosts: tuple[Host, Host]) -> None:
    source, _ = hosts
    uuid = await written_guest(source)
    assert await source.driver.disks.disk_files(uuid) == []  # test:///default never reads disks: nothing to move


# --- the destination compute's finish_move with disk_source (test hypervisor, node1) ----------------

IMAGE = b"tiny disk image bits"
CTX = RequestContext(project="p", user="u")
SMALL = {"id": "2", "name": "m1.small", "vcpus": 1, "ram": 128, "disk": 2}


class SourceCompute(FakeConductor):
    """The conductor and, at the process boundary, the move's source compute (node2): what
    its disk_info and read_disk answer (`files` None: it is not reachable)."""

    def __init__(self, files: list[dict[str, object]] | None) -> None:
        super().__init__()
        self.files = files

    async def disk_info(self, ctx: RequestContext, uuid: str) -> list[dict[str, object]]:
        if self.files is None:
            raise errors.NoLiveMember(topic="compute.node2")
        return self.files

    async def read_disk(self, ctx: RequestContext, uuid: str, name: str, offset: int, length: int) -> bytes:
        raise errors.RpcTimeout(method="read_disk", topic="compute.node2", timeout=30)


async def moved_here(tmp_path: Path, source: SourceCompute) -> tuple[ComputeManager, dict[str, Any], dict[str, Any]]:
    """node1's compute, and an instance resizing to it from node2 (its record and migration)."""
    m = ComputeManager(cluster_config(str(tmp_path)), cluster_config(str(tmp_path)).service("cell1/compute/node1"),
                       images=ImageCache(str(tmp_path / "images"), FakeFetcher({"img-1": IMAGE})))
    await m.start(source)
    await m._sync_with_conductor()
    rec = source.add(str(uuidlib.uuid4()), image=image_record("img-1", IMAGE), flavor=SMALL,
                     vm_state=VmState.ACTIVE, task_state="resize_migrating")
    mig = {"uuid": str(uuidlib.uuid4()), "instance_uuid": rec["uuid"], "migration_type": "resize",
           "source_host": "node2", "dest_host": "node1", "old_flavor": SMALL, "new_flavor": SMALL,
           "old_vm_state": VmState.ACTIVE}
    return m, rec, mig


async def test_a_test_hypervisor_source_has_nothing_to_copy_and_the_guest_is_made_from_the_image(
        tmp_path: Path) -> None:
    m, rec, mig = await moved_here(tmp_path, SourceCompute([]))
    uuid = rec["uuid"]
    try:
        done = await m.finish_move(CTX, rec, mig, disk_source="node2")
        assert done == {"power_state": PowerState.RUNNING, "files": 0, "bytes": 0}
        assert await m.driver.power_state(uuid) == PowerState.RUNNING
    finally:
        await m.driver.destroy(uuid)  # test:///default is shared by the whole process
        await m.stop()


@pytest.mark.parametrize("files", [None, [{"name": "disk", "size": 10, "sha256": "0" * 64}]])
async def test_a_copy_that_fails_leaves_no_guest_and_no_files(tmp_path: Path,
                                                              files: list[dict[str, object]] | None) -> None:
    m, rec, mig = await moved_here(tmp_path, SourceCompute(files))
    uuid = rec["uuid"]
    try:
        with pytest.raises(errors.DiskCopyFailed, match="from node2: No (reply to read_disk|live member)"):
            await m.finish_move(CTX, rec, mig, disk_source="node2")
        assert uuid not in await m.driver.list_instance_uuids()
        assert not os.path.exists(m.driver.instance_dir(uuid))
    finally:
        await m.stop()
