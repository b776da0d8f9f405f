"""Where a tenant's image becomes a host action: the compute inspects every base again before
it backs a guest (a hostile image that got into the store, or a cached file that changed, is
refused and never booted), names every disk's format and ends its backing chain in the domain
XML, and runs qemu-img only under CPU and address-space limits. Real qemu-img images, the real
image cache and compute manager on libvirt's test hypervisor, libvirt's own schema."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import libvirt  # type: ignore[import-untyped]
import pytest

from cells import errors
from cells.context import RequestContext
from cells.imageformat import ImageFormatRefused
from cells.objects.instance import VmState
from node.compute import disks
from node.compute.domain_xml import DomainPaths, build_domain_xml
from node.compute.driver import LibvirtDriver
from node.compute.manager import ComputeManager
from node.compute.volume_xml import disk_xml as volume_disk_xml
from node.imagecache import ImageCache
from node.volume import proc
from tests.compute_fakes import FakeConductor, FakeFetcher, cluster_config, image_record

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) is not installed")
CTX = RequestContext(project="p", user="u")


def qcow2(tmp: Path, name: str, *options: str) -> bytes:
    path = tmp / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), "1M"], check=True,
                   capture_output=True)
    return path.read_bytes()


@pytest.fixture
async def compute(tmp_path: Path) -> AsyncIterator[tuple[ComputeManager, FakeConductor, FakeFetcher]]:
    fetcher = FakeFetcher({"backed": qcow2(tmp_path, "b.qcow2", "-F", "raw", "-b", "/etc/shadow"),
                           "plain": qcow2(tmp_path, "p.qcow2")})
    conductor = FakeConductor()
    cluster = cluster_config(str(tmp_path))
    manager = ComputeManager(cluster, cluster.service("cell1/compute/node1"),
                             images=ImageCache(str(tmp_path / "images"), fetcher))
    await manager.start(conductor)
    await manager._sync_with_conductor()
    yield manager, conductor, fetcher
    for uuid in await manager.driver.list_instance_uuids():
        await manager.driver.destroy(uuid)
    await manager.stop()


async def test_a_hostile_image_from_the_store_is_refused_and_never_cached(
        compute: tuple[ComputeManager, FakeConductor, FakeFetcher]) -> None:
    manager, conductor, fetcher = compute
    uuid = str(uuidlib.uuid4())
    rec = conductor.add(uuid, image=image_record("backed", fetcher.images["backed"], disk_format="qcow2"))
    await manager.build_and_run_instance(CTX, dict(rec))
    rec = conductor.instances[uuid]
    assert rec["vm_state"] == VmState.ERROR
    assert "Image data refused: the qcow2 image names a backing file." in rec["fault"]["message"]
    assert uuid not in await manager.driver.list_instance_uuids()
    assert list(Path(manager.images.cache_dir).iterdir()) == []  # the download was discarded


async def test_a_cached_base_that_fails_inspection_is_refused(
        compute: tuple[ComputeManager, FakeConductor, FakeFetcher], tmp_path: Path) -> None:
    """A base already in the cache (under the hash the record names) is inspected again on use."""
    manager, conductor, fetcher = compute
    plain = image_record("plain", fetcher.images["plain"], disk_format="qcow2")
    path = await manager.images.fetch(plain)  # a good base: cached
    hostile = qcow2(tmp_path, "h.qcow2", "-o", f"data_file={tmp_path / 'host.raw'}")
    Path(path).write_bytes(hostile)  # changed behind the cache's back
    with pytest.raises(ImageFormatRefused) as caught:
        await manager.images.fetch(plain)
    assert caught.value.message == "Image data refused: the qcow2 image keeps its data in an external data file."
    # the record's disk_format is checked too: good bits declared as something else are refused
    raw_bytes = b"\x07" * 4096
    fetcher.images["liar"] = raw_bytes
    with pytest.raises(ImageFormatRefused, match="the data is raw, not qcow2"):
        await manager.images.fetch(image_record("liar", raw_bytes, disk_format="qcow2"))
    uuid = str(uuidlib.uuid4())
    conductor.add(uuid, image=plain)
    await manager.build_and_run_instance(CTX, dict(conductor.instances[uuid]))
    assert conductor.instances[uuid]["vm_state"] == VmState.ERROR
    assert uuid not in await manager.driver.list_instance_uuids()
    assert hashlib.sha512(Path(path).read_bytes()).hexdigest() != plain["os_hash_value"]


def test_a_qcow2_disk_names_its_format_and_ends_its_backing_chain() -> None:
    inst = {"uuid": str(uuidlib.uuid4()), "name": "vm", "flavor": {"vcpus": 1, "ram": 128},
            "image": {"id": "i", "disk_format": "qcow2"}}
    overlay = DomainPaths(console_log="/i/console.log", disk="/i/disk", disk_format="qcow2",
                          backing="/cache/base", backing_format="qcow2")
    flat = DomainPaths(console_log="/i/console.log", disk="/cache/base", disk_format="raw")
    disk = ET.fromstring(build_domain_xml(inst, "qemu", overlay)).find("devices/disk")
    assert disk is not None
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2"}  # type: ignore[union-attr]
    store = disk.find("backingStore")
    assert store is not None and store.attrib == {"type": "file"}
    assert store.find("format").attrib == {"type": "qcow2"}  # type: ignore[union-attr]
    assert store.find("source").attrib == {"file": "/cache/base"}  # type: ignore[union-attr]
    end = store.find("backingStore")
    assert end is not None and end.attrib == {} and list(end) == []  # the chain ends: no file beyond
    plain = ET.fromstring(build_domain_xml(inst, "qemu", flat)).find("devices/disk")
    assert plain is not None and plain.find("driver").attrib["type"] == "raw"  # type: ignore[union-attr]
    empty = plain.find("backingStore")
    assert empty is not None and empty.attrib == {} and list(empty) == []
    conn = libvirt.open("test:///default")  # libvirt's own schema accepts both
    try:
        for paths in (overlay, flat):
            conn.defineXMLFlags(build_domain_xml(inst, "qemu", paths), libvirt.VIR_DOMAIN_DEFINE_VALIDATE).undefine()
    finally:
        conn.close()


@pytest.mark.parametrize("hostile", ["data_file", "raw"])
async def test_a_peers_disk_copy_that_is_not_a_plain_overlay_is_refused(tmp_path: Path, hostile: str) -> None:
    """A move's destination inspects the overlay a source compute sent before it rebases or boots it."""
    base = tmp_path / "base"
    base.write_bytes(bytes(1 << 20))
    data = qcow2(tmp_path, "sent", "-o", f"data_file={tmp_path / 'host.raw'}") if hostile == "data_file" \
        else b"\x09" * 4096
    files = [{"name": "disk", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]

    async def read(name: str, offset: int, length: int) -> bytes:
        return data[offset:offset + length]
    driver = LibvirtDriver("test:///default", instances_dir=str(tmp_path / "instances"))
    uuid = str(uuidlib.uuid4())
    try:
        with pytest.raises(errors.DiskCopyFailed) as caught:
            await driver.disks.receive_disks(uuid, files, read, str(base), "raw")
    finally:
        await driver.close()
    reason = ("the qcow2 image keeps its data in an external data file" if hostile == "data_file"
              else "it is raw, not a qcow2 overlay")
    assert caught.value.message.endswith(f"the copied disk is refused: {reason}")
    assert list((tmp_path / "instances" / uuid).iterdir()) == []


def test_every_volume_disk_names_its_format_and_has_no_backing_chain() -> None:
    infos = [{"driver_volume_type": "local", "data": {"path": "/v/vol.qcow2", "format": "qcow2"}},
             {"driver_volume_type": "local", "data": {"path": "/dev/vg/vol", "block_device": True}},
             {"driver_volume_type": "iscsi", "data": {"target_portal": "127.0.0.1:3260", "target_iqn": "iqn.x:v",
                                                      "target_lun": 1}},
             {"driver_volume_type": "nbd", "data": {"name": "v", "host": "127.0.0.1", "port": 10809}}]
    for info, fmt in zip(infos, ("qcow2", "raw", "raw", "raw"), strict=True):
        disk = ET.fromstring(volume_disk_xml(info, "vdb", str(uuidlib.uuid4())))
        assert disk.find("driver").attrib == {"name": "qemu", "type": fmt}  # type: ignore[union-attr]
        end = disk.find("backingStore")
        assert end is not None and end.attrib == {} and list(end) == [], info


async def test_qemu_img_runs_under_cpu_and_address_space_limits() -> None:
    argv = disks.limited(["qemu-img", "info", "x"])
    assert argv[1:] == [f"--as={1 << 30}", "--cpu=30", "qemu-img", "info", "x"]
    assert Path(argv[0]).name == "prlimit"
    # what the child really gets (ulimit -v is in KiB)
    out = await proc.run(disks.limited(["sh", "-c", "ulimit -v; ulimit -t"]), 10)
    assert out.split() == [str((1 << 30) // 1024), "30"]
    # and qemu-img itself works inside them
    assert "qemu-img version" in await disks.qemu_img("--version")
