"""A volume's <disk> in a libvirt domain's XML (driver layer, pure: no I/O).

    iscsi  <disk type='network'><source protocol='iscsi' name='IQN/LUN'>  QEMU's own libiscsi initiator
    nbd    <disk type='network'><source protocol='nbd' name='EXPORT'>
    local  <disk type='file'> (or type='block' for an LVM volume) on the volume's own host

The disk's <serial> is the volume id (its first 20 characters: what virtio-blk
carries), so attach and detach are idempotent and find the disk again after a
restart.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from cells import errors

SERIAL_LEN = 20  # virtio-blk's id field
DISK_FORMATS = ("raw", "qcow2")


def serial(volume_id: str) -> str:
    return volume_id[:SERIAL_LEN]


def disk_xml(connection_info: dict[str, Any], dev: str, volume_id: str) -> str:
    kind = connection_info.get("driver_volume_type")
    data: dict[str, Any] = connection_info.get("data") or {}
    fmt = "raw"
    if kind == "iscsi":
        host, _, port = str(data["target_portal"]).rpartition(":")
        disk = ET.Element("disk", type="network", device="disk")
        source = ET.SubElement(disk, "source", protocol="iscsi", name=f"{data['target_iqn']}/{data['target_lun']}")
        ET.SubElement(source, "host", name=host.strip("[]"), port=port)
    elif kind == "nbd":
        disk = ET.Element("disk", type="network", device="disk")
        source = ET.SubElement(disk, "source", protocol="nbd", name=str(data["name"]))
        ET.SubElement(source, "host", name=str(data["host"]), port=str(data["port"]))
    elif kind == "local":
        fmt = str(data.get("format") or "raw")
        if fmt not in DISK_FORMATS:
            raise errors.Invalid(reason=f"volume format must be raw or qcow2, not {fmt!r}")
        if data.get("block_device"):
            disk = ET.Element("disk", type="block", device="disk")
            ET.SubElement(disk, "source", dev=str(data["path"]))
        else:
            disk = ET.Element("disk", type="file", device="disk")
            ET.SubElement(disk, "source", file=str(data["path"]))
    else:
        raise errors.Invalid(reason=f"unknown volume connection type {kind!r}")
    driver = ET.Element("driver", name="qemu", type=fmt)
    disk.insert(0, driver)
    ET.SubElement(disk, "backingStore")  # a volume has no base: QEMU opens this one file or export, nothing a header names
    ET.SubElement(disk, "target", dev=dev, bus="virtio")
    ET.SubElement(disk, "serial").text = serial(volume_id)
    return ET.tostring(disk, encoding="unicode")


def _disks(domain_xml: str) -> list[ET.Element]:
    return ET.fromstring(domain_xml).findall("./devices/disk")


def find_disk(domain_xml: str, volume_id: str) -> ET.Element | None:
    for disk in _disks(domain_xml):
        if (disk.findtext("serial") or "") == serial(volume_id):
            return disk
    return None


def disk_dev(disk: ET.Element) -> str:
    """The guest device path of a found disk (/dev/vdX)."""
    target = disk.find("target")
    return "/dev/" + str(target.get("dev") if target is not None else "")


def choose_dev(domain_xml: str, wanted: str | None) -> str:
    """The requested vdX when free, else the first free one after vda."""
    used = {t.get("dev") for d in _disks(domain_xml) for t in d.findall("target")}
    want = (wanted or "").rsplit("/", 1)[-1]
    if want.startswith("vd") and want not in used:
        return want
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"vd{letter}" not in used:
            return f"vd{letter}"
    raise errors.Invalid(reason="no free virtio disk name left on this domain")


def with_disk(domain_xml: str, disk: str) -> str:
    """The domain's definition with the <disk> added (the test hypervisor has no hot-plug)."""
    root = ET.fromstring(domain_xml)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    devices.append(ET.fromstring(disk))
    return ET.tostring(root, encoding="unicode")


def without_disk(domain_xml: str, volume_id: str) -> str:
    """The domain's definition without the volume's <disk>."""
    root = ET.fromstring(domain_xml)
    for devices in root.findall("devices"):
        for disk in devices.findall("disk"):
            if (disk.findtext("serial") or "") == serial(volume_id):
                devices.remove(disk)
    return ET.tostring(root, encoding="unicode")


def disk_element_xml(disk: ET.Element) -> str:
    return ET.tostring(disk, encoding="unicode")
