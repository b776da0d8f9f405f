"""Rescue and unrescue on the compute (Nova's libvirt rescue, issue 16).

    rescue:   the guest's own definition kept in <instance dir>/rescue.json -> the domain replaced by a
              rescue domain: the rescue image's disk first (a fresh overlay, disk.rescue), booted, and
              the server's own root disk second (its next device name), NICs and console as before
    unrescue: the rescue domain and its disk removed -> the kept definition defined again and started

Attached volumes stay out of the rescue domain (Nova's non-stable rescue); they are in the kept
definition and come back with it. The rescue is idempotent: a rescue sent again keeps the first
definition it saved, never the rescue domain's.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]

from cells import errors
from node.compute import domain_schema
from node.compute.disks import virtual_size
from node.compute.domain_xml import BUS_DEV_PREFIX, DISK_FORMATS
from node.compute.driver import BASES_FILE, LibvirtDriver, base_format, create_overlay
from node.compute.power import test_guest_booted
from node.compute.spawner import GuestSpawner

RESCUE_STATE = "rescue.json"  # the definition and bases of the guest while it is rescued
RESCUE_DISK = "disk.rescue"


@dataclass(frozen=True)
class RescueDisk:
    path: str
    fmt: str  # raw or qcow2
    backing: str | None = None
    backing_format: str = "raw"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


def _root_disk(devices: ET.Element) -> ET.Element | None:
    """The guest's boot disk: the first disk device (builds put the root disk first)."""
    for disk in devices.findall("disk"):
        if disk.get("device", "disk") == "disk":
            return disk
    return None


def rescue_xml(original: str, rescue: RescueDisk) -> str:
    """The rescue domain (pure): `original` with the rescue disk first and booted, its root disk moved
    to the next device name of its bus, every other disk (volumes) left out."""
    dom = ET.fromstring(original)
    devices = dom.find("devices")
    os_el = dom.find("os")
    if devices is None or os_el is None:
        raise errors.Invalid(reason="the guest's definition has no devices or os element")
    root = _root_disk(devices)
    for disk in devices.findall("disk"):
        if disk is not root:
            devices.remove(disk)
    bus = "virtio"
    if root is not None:
        target = root.find("target")
        bus = (target.get("bus") if target is not None else None) or "virtio"
        if target is not None:
            target.set("dev", BUS_DEV_PREFIX.get(bus, "vd") + "b")
        devices.remove(root)
    for tag in ("kernel", "initrd", "cmdline", "boot"):
        for el in os_el.findall(tag):
            os_el.remove(el)
    if rescue.kernel:
        ET.SubElement(os_el, "kernel").text = rescue.kernel
        if rescue.initrd:
            ET.SubElement(os_el, "initrd").text = rescue.initrd
        ET.SubElement(os_el, "cmdline").text = rescue.cmdline or "console=ttyS0"
    else:
        ET.SubElement(os_el, "boot", dev="hd")
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type=rescue.fmt if rescue.fmt in DISK_FORMATS else "raw")
    ET.SubElement(disk, "source", file=rescue.path)
    if rescue.backing is not None:
        store = ET.SubElement(disk, "backingStore", type="file")
        ET.SubElement(store, "format", type=rescue.backing_format)
        ET.SubElement(store, "source", file=rescue.backing)
        ET.SubElement(store, "backingStore")
    ET.SubElement(disk, "target", dev=BUS_DEV_PREFIX.get(bus, "vd") + "a", bus=bus)
    devices.insert(0, disk)
    if root is not None:
        devices.insert(1, root)
    return ET.tostring(dom, encoding="unicode")


class GuestRescue:
    def __init__(self, driver: LibvirtDriver, spawner: GuestSpawner) -> None:
        self.driver = driver
        self.spawner = spawner

    def _state_path(self, uuid: str) -> Path:
        return Path(self.driver.instance_dir(uuid), RESCUE_STATE)

    async def rescue(self, instance: dict[str, Any], image: dict[str, Any]) -> None:
        """Boot the rescue guest from `image` (the record the API resolved) with the server's disk second."""
        uuid = str(instance["uuid"])
        inst_dir = self.driver.instance_dir(uuid)
        image_path = await self.spawner.images.fetch(image)
        props: dict[str, Any] = image.get("properties") or {}
        kernel = initrd = None
        if props.get("kernel_id"):  # an AMI rescue image boots its kernel directly
            kernel = await self.spawner._companion(image, "kernel", "kernel_id")
            if props.get("ramdisk_id"):
                initrd = await self.spawner._companion(image, "ramdisk", "ramdisk_id")
        fmt = base_format({"image": image})
        if self.driver.is_test:  # the test hypervisor never reads disks: the cached base itself
            disk = RescueDisk(image_path, fmt, kernel=kernel, initrd=initrd)
        else:
            overlay = os.path.join(inst_dir, RESCUE_DISK)
            await create_overlay(image_path, fmt, overlay, await virtual_size(image_path, fmt))
            disk = RescueDisk(overlay, "qcow2", image_path, fmt, kernel, initrd)
        if disk.kernel:
            disk = RescueDisk(disk.path, disk.fmt, disk.backing, disk.backing_format, disk.kernel, disk.initrd,
                              str(props.get("os_command_line") or "console=ttyS0"))
        bases = [p for p in (image_path, kernel, initrd) if p]
        await self.driver._run(self._swap_in, uuid, disk, bases)

    def _swap_in(self, uuid: str, disk: RescueDisk, rescue_bases: list[str]) -> None:
        state = self._state_path(uuid)
        dom = self.driver.domain(uuid)
        if state.exists():  # a rescue sent again: the first one kept the guest's own definition
            kept = json.loads(state.read_text())
        else:
            bases_file = Path(self.driver.instance_dir(uuid), BASES_FILE)
            bases = json.loads(bases_file.read_text()) if bases_file.exists() else []
            kept = {"xml": dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "bases": bases}
            state.write_text(json.dumps(kept))
        # the image cache keeps the rescue image's files while this guest uses them
        Path(self.driver.instance_dir(uuid), BASES_FILE).write_text(
            json.dumps(sorted({*kept["bases"], *rescue_bases})))
        xml = rescue_xml(kept["xml"], disk)
        self.driver._destroy_sync(uuid)
        domain_schema.define(self.driver.conn, xml).create()
        if self.driver.is_test:
            test_guest_booted(self.driver.instance_dir(uuid))

    async def unrescue(self, instance: dict[str, Any]) -> None:
        """The rescue guest gone, the server's own guest defined again and started."""
        await self.driver._run(self._swap_back, str(instance["uuid"]))

    def _swap_back(self, uuid: str) -> None:
        state = self._state_path(uuid)
        if not state.exists():
            raise errors.Invalid(reason=f"instance {uuid} has no rescue definition kept on this host")
        kept = json.loads(state.read_text())
        self.driver._destroy_sync(uuid)
        dom = domain_schema.define(self.driver.conn, kept["xml"])
        dom.create()
        if self.driver.is_test:
            test_guest_booted(self.driver.instance_dir(uuid))
        Path(self.driver.instance_dir(uuid), BASES_FILE).write_text(json.dumps(kept["bases"]))
        Path(self.driver.instance_dir(uuid), RESCUE_DISK).unlink(missing_ok=True)
        state.unlink()
