"""The libvirt driver with the real tiny guest on QEMU (qemu:///embed): direct kernel
boot, console output, a clean shutdown the guest hears (ACPI power button), a soft
reboot that is a real one; KVM only where the CPU has hardware virtualization."""
from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from cells.objects.instance import PowerState
from node.compute.driver import LibvirtDriver, hardware_virt_usable, short_embed_root
from tools import guestimage

BANNER = guestimage.BANNER


def _embed_unavailable() -> str | None:
    import grp
    import pwd
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed"
    try:
        pwd.getpwnam("libvirt-qemu")
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        return "qemu:///embed needs the user and group 'libvirt-qemu' (make deps creates them)"
    return None


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    reason = _embed_unavailable()
    if reason is not None:
        pytest.skip(reason)
    return guestimage.build(tmp_path_factory.mktemp("guest"))


def _instance(image_id: str = "tiny") -> dict[str, Any]:
    return {"uuid": str(uuidlib.uuid4()), "name": "tiny", "flavor": {"vcpus": 1, "ram": 128, "disk": 0},
            "image": {"id": image_id, "properties": {"os_command_line": "console=ttyS0 quiet panic=-1"}}}


async def _wait_console(drv: LibvirtDriver, uuid: str, needle: str, count: int = 1, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = await drv.power.console_output(uuid, None)
        if out.count(needle) >= count:
            return out
        assert time.monotonic() < deadline, f"{needle!r} x{count} not on the console:\n{out}"
        await asyncio.sleep(0.1)


def test_short_embed_root_aliases_only_long_paths(tmp_path: Path) -> None:
    assert short_embed_root("/r/embed", str(tmp_path / "alias")) == "/r/embed"
    long_root = tmp_path / ("x" * 80) / "embed"
    long_root.mkdir(parents=True)
    alias = short_embed_root(str(long_root), str(tmp_path / "a"))
    assert os.path.dirname(alias) == str(tmp_path / "a") and os.path.realpath(alias) == str(long_root)
    assert short_embed_root(str(long_root), str(tmp_path / "a")) == alias  # stable


@pytest.mark.slow
async def test_tiny_guest_boots_hears_the_power_button_and_soft_reboots(
        guest: tuple[Path, Path], embed_root: str, tmp_path: Path) -> None:
    kernel, initrd = guest
    drv = LibvirtDriver(f"qemu:///embed?root={embed_root}", "auto", instances_dir=str(tmp_path / "inst"),
                        call_timeout=60)
    await drv.connect()
    inst = _instance()
    uuid = inst["uuid"]
    try:
        assert drv.virt_type == ("kvm" if hardware_virt_usable() else "qemu")
        await drv.spawn(inst, None, kernel=str(kernel), ramdisk=str(initrd))
        await _wait_console(drv, uuid, "CELLCLOUD-READY")
        t0 = time.monotonic()
        await drv.power.reboot(uuid, hard=False, clean_timeout=30)
        assert time.monotonic() - t0 < 30  # the guest powered off by itself: no fallback to hard
        out = await _wait_console(drv, uuid, BANNER, count=2)
        assert "CELLCLOUD-POWEROFF" in out
        await _wait_console(drv, uuid, "CELLCLOUD-READY", count=2)
        await drv.power.power_off(uuid, clean_timeout=30)
        assert await drv.power_state(uuid) == PowerState.SHUTDOWN
        assert (await drv.power.console_output(uuid, None)).count("CELLCLOUD-POWEROFF") == 2
        assert (await drv.power.console_output(uuid, 1)).count("\n") <= 1
    finally:
        await drv.destroy(uuid)
        await drv.remove_files(uuid)
        await drv.close()
    assert not (tmp_path / "inst" / uuid).exists()


@pytest.mark.slow
@pytest.mark.skipif(not hardware_virt_usable(),
                    reason="KVM is not usable on this host: the CPU shows no vmx/svm flag (a /dev/kvm without them "
                           "is a software nested hypervisor on which guests crash); virt_type auto uses QEMU TCG")
async def test_kvm_guest_boots(guest: tuple[Path, Path], embed_root: str, tmp_path: Path) -> None:
    kernel, initrd = guest
    drv = LibvirtDriver(f"qemu:///embed?root={embed_root}", "kvm", instances_dir=str(tmp_path / "inst"))
    await drv.connect()
    inst = _instance()
    try:
        await drv.spawn(inst, None, kernel=str(kernel), ramdisk=str(initrd))
        await _wait_console(drv, inst["uuid"], BANNER)
    finally:
        await drv.destroy(inst["uuid"])
        await drv.close()
