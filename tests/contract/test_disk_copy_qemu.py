"""A move's disk copy with the real tiny guest on QEMU (qemu:///embed): the source refuses
to describe a running guest's disks; once it is off, what was written to its root overlay
is carried chunk by chunk into another host's instance dir, rebased onto that host's copy
of the base, and the guest booted there (after the source's files and base are gone) reads
it back on its console."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from cells import errors
from node.compute.driver import LibvirtDriver
from tests.contract.test_qemu_guest import _instance, _wait_console, guest  # noqa: F401 - guest: a fixture
from tools import tinyimage

pytestmark = pytest.mark.slow
WRITTEN = 10  # bytes of "C" over the image's "CELLCLOUD " (the console shows [A-Za-z0-9_.-] only)


def _image(root: Path) -> str:
    """A host's cached copy of the tiny guest's root disk image."""
    base = root / "images" / "tinyroot"
    base.parent.mkdir(parents=True)
    base.write_bytes(tinyimage.root_disk())
    return str(base)


async def test_a_stopped_guests_disk_boots_on_another_host_with_what_was_written(
        guest: tuple[Path, Path], embed_root: str, tmp_path: Path) -> None:  # noqa: F811
    if shutil.which("qemu-io") is None:
        pytest.skip("qemu-io (qemu-utils) is not installed")
    kernel, initrd = guest
    uri = f"qemu:///embed?root={embed_root}"  # one embed root per process: both hosts' drivers share it
    source = LibvirtDriver(uri, "auto", instances_dir=str(tmp_path / "node1" / "instances"), call_timeout=60)
    dest = LibvirtDriver(uri, "auto", instances_dir=str(tmp_path / "node2" / "instances"), call_timeout=60)
    await source.connect()
    await dest.connect()
    inst = {**_instance(), "image": {"id": "tinyroot", "disk_format": "raw",
                                     "properties": {"os_command_line": "console=ttyS0 quiet panic=-1"}}}
    uuid = inst["uuid"]
    try:
        await source.spawn(inst, _image(tmp_path / "node1"), kernel=str(kernel), ramdisk=str(initrd))
        assert "head=[CELLCLOUDtiny-linux" in await _wait_console(source, uuid, "CELLCLOUD-DISK added vda")
        with pytest.raises(errors.InstanceInvalidState):
            await source.disks.disk_files(uuid)  # a running guest's disk is no copy to trust
        await source.power.power_off(uuid, clean_timeout=30)
        disk = tmp_path / "node1" / "instances" / uuid / "disk"
        await asyncio.to_thread(subprocess.run, ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x43 0 {WRITTEN}",
                                                 str(disk)], check=True, capture_output=True)
        files = await source.disks.disk_files(uuid)
        assert [f["name"] for f in files] == ["disk"]

        await source.destroy(uuid)  # one hypervisor here: the source's domain goes before the new one comes
        base = _image(tmp_path / "node2")
        assert await dest.disks.receive_disks(uuid, files, lambda n, o, k: source.disks.read_disk(uuid, n, o, k), base,
                                        "raw") == files[0]["size"]
        await asyncio.to_thread(shutil.rmtree, tmp_path / "node1")  # nothing of the source is left
        await dest.spawn(inst, base, kernel=str(kernel), ramdisk=str(initrd), disk_ready=True)
        out = await _wait_console(dest, uuid, "CELLCLOUD-DISK added vda")
        assert f"head=[{'C' * WRITTEN}tiny-linux" in out, out[-2000:]  # the written bytes, then the image's
    finally:
        for drv in (source, dest):
            await drv.destroy(uuid)
            await drv.remove_files(uuid)
            await drv.close()
