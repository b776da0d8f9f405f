"""Rescue and soft delete (issue 16) below the API: the pure lifecycle (where each starts, what it ends
in, Nova's 409 and statuses), the rescue domain's XML, and the compute's actions against the real libvirt
test hypervisor (the rescue domain boots the rescue image with the server's disk second; unrescue gives
the server its own definition back; a soft delete powers the guest off and a restore on)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import libvirt  # type: ignore[import-untyped]
import pytest

from cells import errors
from cells.lifecycle import State, begin_action, finish_action, status
from cells.objects.instance import PowerState, TaskState, VmState
from node.compute.domain_xml import DomainPaths, build_domain_xml
from node.compute.manager import ComputeManager
from node.compute.rescue import RESCUE_STATE, RescueDisk, rescue_xml
from node.imagecache import ImageCache
from tests.compute_fakes import FakeFetcher, cluster_config, image_record
from tests.unit.test_compute_actions import DISK, ActionConductor, _act, _active, _libvirt_state

ACTIVE = State(VmState.ACTIVE, None, PowerState.RUNNING)
RESCUE_BITS = b"rescue image"


@pytest.mark.parametrize("action, start, task, end, during, shown", [
    ("rescue", ACTIVE, TaskState.RESCUING, VmState.RESCUED, "ACTIVE", "RESCUE"),  # Nova shows no RESCUING
    ("rescue", State(VmState.ERROR), TaskState.RESCUING, VmState.RESCUED, "ERROR", "RESCUE"),
    ("unrescue", State(VmState.RESCUED, None, PowerState.RUNNING), TaskState.UNRESCUING, VmState.ACTIVE,
     "RESCUE", "ACTIVE"),
    ("soft_delete", ACTIVE, TaskState.SOFT_DELETING, VmState.SOFT_DELETED, "ACTIVE", "SOFT_DELETED"),
    ("restore", State(VmState.SOFT_DELETED, None, PowerState.SHUTDOWN), TaskState.RESTORING, VmState.ACTIVE,
     "SOFT_DELETED", "ACTIVE"),
])
def test_rescue_and_soft_delete_run_under_novas_tasks_and_statuses(action: str, start: State, task: str, end: str,
                                                                    during: str, shown: str) -> None:
    running = begin_action(action, start, "i-1")
    assert running.task_state == task and status(running.vm_state, running.task_state) == during
    done = finish_action(action, running, end, None, ok=True)
    assert (done.vm_state, done.task_state) == (end, None) and status(done.vm_state) == shown


def test_rescue_and_restore_refuse_the_wrong_state_with_novas_409() -> None:
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'unrescue' instance i-1 while it is in "
                                                          "vm_state active") as exc:
        begin_action("unrescue", ACTIVE, "i-1")
    assert exc.value.http_status == 409
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'restore' instance i-1 while it is in vm_state "
                                                          "active"):
        begin_action("restore", ACTIVE, "i-1")
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'rescue' instance i-1 while it is in vm_state "
                                                          "rescued"):
        begin_action("rescue", State(VmState.RESCUED), "i-1")
    with pytest.raises(errors.InstanceInvalidState, match="in task_state powering-off"):
        begin_action("soft_delete", State(VmState.ACTIVE, TaskState.POWERING_OFF), "i-1")
    with pytest.raises(errors.InstanceInvalidState, match="while it is in vm_state rescued"):
        begin_action("soft_delete", State(VmState.RESCUED), "i-1")  # deleted at once instead


def _guest_xml(tmp_path: Path) -> str:
    inst = {"uuid": "11111111-2222-3333-4444-555555555555", "name": "r", "flavor": {"vcpus": 1, "ram": 128},
            "image": {"properties": {}}, "vifs": [{"tap": "tap0", "mac": "fa:16:3e:00:00:01"}]}
    paths = DomainPaths(console_log=str(tmp_path / "console.log"), disk=str(tmp_path / "disk"), disk_format="qcow2",
                        backing=str(tmp_path / "base"), backing_format="raw")
    return build_domain_xml(inst, "qemu", paths)


def test_the_rescue_domain_boots_the_rescue_disk_with_the_servers_disk_second(tmp_path: Path) -> None:
    original = _guest_xml(tmp_path)
    volume = ET.fromstring(original)
    devices = volume.find("devices")
    assert devices is not None
    ET.SubElement(ET.SubElement(devices, "disk", type="file", device="disk"), "target", dev="vdb", bus="virtio")
    xml = ET.fromstring(rescue_xml(ET.tostring(volume, encoding="unicode"),
                                   RescueDisk(str(tmp_path / "disk.rescue"), "qcow2", "/cache/rescue", "raw")))
    disks = [(d.find("source").get("file") if d.find("source") is not None else None,  # type: ignore[union-attr]
              d.find("target").get("dev"))  # type: ignore[union-attr]
             for d in xml.iter("disk")]
    assert disks == [(str(tmp_path / "disk.rescue"), "vda"), (str(tmp_path / "disk"), "vdb")]  # the volume left out
    assert xml.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    assert xml.find("devices/interface") is not None and xml.find("devices/serial/log") is not None
    kernel = ET.fromstring(rescue_xml(original, RescueDisk("/r", "raw", kernel="/k", initrd="/i", cmdline="c")))
    assert [kernel.findtext(f"os/{t}") for t in ("kernel", "initrd", "cmdline")] == ["/k", "/i", "c"]
    assert kernel.find("os/boot") is None


@pytest.fixture
async def compute(tmp_path: Path) -> AsyncIterator[tuple[ComputeManager, ActionConductor]]:
    conductor = ActionConductor()
    fetcher = FakeFetcher({"disk": DISK, "rescue": RESCUE_BITS})
    cluster = cluster_config(str(tmp_path))
    manager = ComputeManager(cluster, cluster.service("cell1/compute/node1"),
                             images=ImageCache(str(tmp_path / "images"), fetcher))
    await manager.start(conductor)
    await manager._sync_with_conductor()
    yield manager, conductor
    for uuid in await manager.driver.list_instance_uuids():  # test:///default is shared by the process
        await manager.driver.destroy(uuid)
    await manager.stop()


def _disk_files(uuid: str) -> list[str]:
    conn = libvirt.open("test:///default")
    try:
        xml = ET.fromstring(conn.lookupByUUIDString(uuid).XMLDesc(0))
    finally:
        conn.close()
    return [str(s.get("file")) for s in xml.iterfind("devices/disk/source")]


async def test_rescue_boots_the_rescue_image_and_unrescue_gives_the_server_its_own_guest(
        compute: tuple[ComputeManager, ActionConductor]) -> None:
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    own = _disk_files(uuid)
    rec = await _act(manager, conductor, uuid, "rescue", {"image": image_record("rescue", RESCUE_BITS)})
    assert (rec["vm_state"], rec["task_state"], rec["power_state"]) == (VmState.RESCUED, None, PowerState.RUNNING)
    rescue_disks = _disk_files(uuid)
    assert len(rescue_disks) == 2 and rescue_disks[1:] == own and rescue_disks[0] not in own
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_RUNNING
    assert Path(manager.driver.instance_dir(uuid), RESCUE_STATE).exists()
    rec = await _act(manager, conductor, uuid, "unrescue")
    assert (rec["vm_state"], rec["task_state"], rec["power_state"]) == (VmState.ACTIVE, None, PowerState.RUNNING)
    assert _disk_files(uuid) == own and _libvirt_state(uuid) == libvirt.VIR_DOMAIN_RUNNING
    assert not Path(manager.driver.instance_dir(uuid), RESCUE_STATE).exists()
    assert [d[1:3] for d in conductor.done] == [("rescue", True), ("unrescue", True)]


async def test_a_rescue_whose_image_cannot_be_fetched_ends_in_error_with_a_fault(
        compute: tuple[ComputeManager, ActionConductor]) -> None:
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    rec = await _act(manager, conductor, uuid, "rescue", {"image": image_record("missing", b"nowhere")})
    assert (rec["vm_state"], rec["task_state"]) == (VmState.ERROR, None)
    _, action, ok, _, fault = conductor.done[-1]
    assert (action, ok) == ("rescue", False) and fault is not None


async def test_a_soft_delete_powers_the_guest_off_and_a_restore_on(
        compute: tuple[ComputeManager, ActionConductor]) -> None:
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    rec = await _act(manager, conductor, uuid, "soft_delete")
    assert (rec["vm_state"], rec["power_state"]) == (VmState.SOFT_DELETED, PowerState.SHUTDOWN)
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_SHUTOFF
    rec = await _act(manager, conductor, uuid, "restore")
    assert (rec["vm_state"], rec["power_state"]) == (VmState.ACTIVE, PowerState.RUNNING)
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_RUNNING
