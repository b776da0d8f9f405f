"""Server actions on the compute worker against the real libvirt test hypervisor and
an in-memory conductor: the domain follows each action, the result is reported
once, failures are reported with a fault, and console output keeps Nova's
`length` semantics. Also: an AMI boots with its kernel and ramdisk fetched and
verified through the image cache."""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]
import pytest

from cells import errors
from cells.context import RequestContext
from cells.lifecycle import State, begin_action
from cells.objects.instance import PowerState, VmState
from node.compute.manager import ComputeManager
from node.compute.power import TEST_CONSOLE_BOOT, read_tail, tail_lines
from node.imagecache import ImageCache
from tests.compute_fakes import FakeConductor, FakeFetcher, cluster_config, image_record

CTX = RequestContext(project="p", user="u")
DISK, KERNEL, RAMDISK = b"machine image", b"kernel image", b"ramdisk image"


class ActionConductor(FakeConductor):
    """FakeConductor that starts actions as the real conductor does (cells/lifecycle.py begin_action)."""

    def begin(self, uuid: str, action: str) -> dict[str, Any]:
        rec = self.instances[uuid]
        state = begin_action(action, State(rec["vm_state"], rec["task_state"], rec["power_state"]), uuid)
        rec["task_state"] = state.task_state
        return dict(rec)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[ComputeManager, ActionConductor, FakeFetcher]]:
    conductor = ActionConductor()
    fetcher = FakeFetcher({"disk": DISK, "kernel": KERNEL, "ramdisk": RAMDISK})
    cluster = cluster_config(str(tmp_path))
    manager = ComputeManager(cluster, cluster.service("cell1/compute/node1"),
                             images=ImageCache(str(tmp_path / "images"), fetcher))
    await manager.start(conductor)
    await manager._sync_with_conductor()
    yield manager, conductor, fetcher
    for uuid in await manager.driver.list_instance_uuids():  # test:///default is shared by the process
        await manager.driver.destroy(uuid)
    await manager.stop()


async def _active(manager: ComputeManager, conductor: ActionConductor, **image: Any) -> str:
    uuid = str(uuidlib.uuid4())
    rec = conductor.add(uuid, image=image_record("disk", DISK, **image))
    await manager.build_and_run_instance(CTX, dict(rec))
    assert conductor.instances[uuid]["vm_state"] == VmState.ACTIVE
    return uuid


async def _act(manager: ComputeManager, conductor: ActionConductor, uuid: str, action: str,
               args: dict[str, Any] | None = None) -> dict[str, Any]:
    await manager.run_instance_action(CTX, conductor.begin(uuid, action), action, args or {})
    return conductor.instances[uuid]


def _libvirt_state(uuid: str) -> int:
    conn = libvirt.open("test:///default")
    try:
        return int(conn.lookupByUUIDString(uuid).state()[0])
    finally:
        conn.close()


async def test_each_action_moves_the_domain_and_the_record(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    manager, conductor, _ = setup
    uuid = await _active(manager, conductor)
    steps = [("stop", VmState.STOPPED, PowerState.SHUTDOWN, libvirt.VIR_DOMAIN_SHUTOFF),
             ("start", VmState.ACTIVE, PowerState.RUNNING, libvirt.VIR_DOMAIN_RUNNING),
             ("reboot", VmState.ACTIVE, PowerState.RUNNING, libvirt.VIR_DOMAIN_RUNNING),
             ("pause", VmState.PAUSED, PowerState.PAUSED, libvirt.VIR_DOMAIN_PAUSED),
             ("unpause", VmState.ACTIVE, PowerState.RUNNING, libvirt.VIR_DOMAIN_RUNNING),
             ("suspend", VmState.SUSPENDED, PowerState.SHUTDOWN, libvirt.VIR_DOMAIN_SHUTOFF),
             ("resume", VmState.ACTIVE, PowerState.RUNNING, libvirt.VIR_DOMAIN_RUNNING),
             ("reboot_hard", VmState.ACTIVE, PowerState.RUNNING, libvirt.VIR_DOMAIN_RUNNING)]
    for action, vm_state, power, dom_state in steps:
        rec = await _act(manager, conductor, uuid, action)
        assert (rec["vm_state"], rec["task_state"], rec["power_state"]) == (vm_state, None, power), action
        assert _libvirt_state(uuid) == dom_state, action
    assert [d[2] for d in conductor.done] == [True] * len(steps)


async def test_suspended_guest_is_deleted_with_its_saved_state(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    manager, conductor, _ = setup
    uuid = await _active(manager, conductor)
    await _act(manager, conductor, uuid, "suspend")
    await manager.terminate_instance(CTX, {"uuid": uuid})
    assert uuid not in await manager.driver.list_instance_uuids()


async def test_rebuild_replaces_the_guest_and_a_stopped_server_stays_stopped(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    manager, conductor, fetcher = setup
    uuid = await _active(manager, conductor)
    await _act(manager, conductor, uuid, "stop")
    rec = await _act(manager, conductor, uuid, "rebuild", {"image": image_record("disk", DISK)})
    assert (rec["vm_state"], rec["power_state"]) == (VmState.STOPPED, PowerState.SHUTDOWN)
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_SHUTOFF
    assert fetcher.downloads == 1  # the cached base served the rebuild


async def test_a_failing_action_is_reported_with_a_fault_and_ends_the_task(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    manager, conductor, _ = setup
    uuid = await _active(manager, conductor)
    await manager.driver.destroy(uuid)  # the guest vanished behind our back
    rec = await _act(manager, conductor, uuid, "pause")
    assert (rec["vm_state"], rec["task_state"]) == (VmState.ACTIVE, None)
    _, action, ok, _, fault = conductor.done[-1]
    assert (action, ok) == ("pause", False) and fault is not None and uuid in fault["message"]


async def test_ami_boots_with_its_kernel_and_ramdisk_from_the_cache(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    manager, conductor, fetcher = setup
    uuid = await _active(manager, conductor, disk_format="ami",
                         properties={"kernel_id": "kernel", "ramdisk_id": "ramdisk", "os_command_line": "quiet"})
    xml = (await manager.driver._run(lambda: manager.driver.conn.lookupByUUIDString(uuid).XMLDesc(0)))
    cache = manager.images.cache_dir
    assert f"<kernel>{cache}/" in xml and f"<initrd>{cache}/" in xml and "<cmdline>quiet</cmdline>" in xml
    assert fetcher.downloads == 3
    await _active(manager, conductor, disk_format="ami", properties={"kernel_id": "kernel"})
    assert fetcher.downloads == 3  # one cached base per image, shared by every guest


async def test_an_ami_whose_kernel_is_missing_fails_naming_it(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    manager, conductor, _ = setup
    uuid = str(uuidlib.uuid4())
    rec = conductor.add(uuid, image=image_record("disk", DISK, properties={"kernel_id": "gone"}))
    await manager.build_and_run_instance(CTX, dict(rec))
    rec = conductor.instances[uuid]
    assert rec["vm_state"] == VmState.ERROR and "Image gone could not be found" in rec["fault"]["message"]
    assert uuid not in await manager.driver.list_instance_uuids()


async def test_console_output_is_the_tail_of_the_serial_log(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    manager, conductor, _ = setup
    uuid = await _active(manager, conductor)
    log = Path(manager.driver.instance_dir(uuid)) / "console.log"
    log.write_bytes(b"one\ntwo\nthree\n\xff\n")
    assert await manager.get_console_output(CTX, uuid, None) == "one\ntwo\nthree\n\ufffd\n"
    assert await manager.get_console_output(CTX, uuid, 3) == "three\n\ufffd\n"  # Nova counts the "" after the last \n
    assert await manager.get_console_output(CTX, uuid, 0) == ""
    with pytest.raises(errors.Invalid):
        await manager.get_console_output(CTX, uuid, -3)


async def test_test_hypervisor_guest_writes_a_console_at_each_start(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    """libvirt's test:/// runs no guest: the driver writes Nova's fake driver console at each start."""
    manager, conductor, _ = setup
    assert manager.driver.is_test
    uuid = await _active(manager, conductor)
    assert await manager.get_console_output(CTX, uuid, None) == TEST_CONSOLE_BOOT
    assert await manager.get_console_output(CTX, uuid, 3) == "ANOTHER\nLAST LINE\n"  # Nova counts the "" after the last \n
    await manager.driver.power.power_off(uuid)
    await manager.driver.power.power_on(uuid)
    assert await manager.get_console_output(CTX, uuid, None) == TEST_CONSOLE_BOOT * 2


def test_tail_helpers_cap_the_size_and_cut_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"x" * 50 + b"\n" + b"y\n" * 10)
    assert read_tail(str(path), max_bytes=15) == b"y\n" * 7  # the cut first line is dropped
    assert read_tail(str(tmp_path / "missing")) == b""
    assert tail_lines(b"a\nb\nc", 2) == "b\nc" and tail_lines(b"a\n", None) == "a\n"
    # Nova's _tail_log: '\n'.join(log.split('\n')[-length:]); Tempest asks length=3 and counts split('\n')
    assert tail_lines(b"a\nb\nc\nd\n", 3) == "c\nd\n" and len(tail_lines(b"a\nb\nc\nd\n", 3).split("\n")) == 3
    assert tail_lines(b"a\nb\n", 0) == ""


async def test_unused_bases_are_pruned_after_their_age_and_used_ones_stay(
        setup: tuple[ComputeManager, ActionConductor, FakeFetcher]) -> None:
    import os
    manager, conductor, fetcher = setup
    uuid = await _active(manager, conductor, disk_format="ami", properties={"kernel_id": "kernel"})
    cache = Path(manager.images.cache_dir)
    stray = cache / ("ab" * 64)
    stray.write_bytes(b"a base nobody uses any more")
    old = 1_000_000_000.0  # long ago
    for f in cache.iterdir():
        os.utime(f, (old, old))
    await manager.spawner.prune_image_cache()
    assert not stray.exists()
    assert len(list(cache.iterdir())) == 2  # the guest's base disk and kernel stay
    await manager.terminate_instance(CTX, {"uuid": uuid})
    await manager.spawner.prune_image_cache()
    assert list(cache.iterdir()) == []  # unused and old: gone; a new boot fetches again
    await _active(manager, conductor)
    assert fetcher.downloads == 3
