"""Volume hot-plug on the compute worker: connection_info -> libvirt <disk>,
attached to (and detached from) the running domain with
attachDeviceFlags(..., AFFECT_LIVE | AFFECT_CONFIG).

    iscsi  <disk type='network'><source protocol='iscsi' name='IQN/LUN'>  QEMU's own libiscsi initiator
    nbd    <disk type='network'><source protocol='nbd' name='EXPORT'>
    local  <disk type='file'> (or type='block' for an LVM volume) on the volume's own host

The disk's <serial> is the volume id (its first 20 characters: what virtio-blk
carries), so attach and detach are idempotent and find the disk again after a
restart. libvirt's test hypervisor cannot hot-plug; there the disk is written
into the domain's definition instead, so the control plane behaves the same.
"""
from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from typing import Any

import libvirt  # type: ignore[import-untyped]

from cells import errors
from cells.context import RequestContext
from cells.rpcapi.conductor import ConductorAPI
from cells.rpcapi.volume import VolumeConductorAPI
from node.compute.driver import LibvirtDriver
from node.locks import KeyedLocks

LOG = logging.getLogger(__name__)
SERIAL_LEN = 20  # virtio-blk's id field
DETACH_TIMEOUT = 10.0  # seconds the guest has to let go of an unplugged disk
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


def _lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise errors.InstanceNotFound(instance_id=uuid) from None
        raise


def _redefine(conn: libvirt.virConnect, dom: libvirt.virDomain, change: Any) -> None:
    """test:/// only: edit the persistent definition (the test driver has no hot-plug)."""
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    change(root.find("devices"))
    conn.defineXMLFlags(ET.tostring(root, encoding="unicode"), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)


def _flags(dom: libvirt.virDomain) -> int:
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0
    return flags | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)


def attach_sync(conn: libvirt.virConnect, is_test: bool, uuid: str, volume_id: str,
                connection_info: dict[str, Any], device: str | None) -> str:
    dom = _lookup(conn, uuid)
    current = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if is_test else 0)
    found = find_disk(current, volume_id)
    if found is not None:  # attached already (a retried request): same answer
        return "/dev/" + str(found.find("target").get("dev"))  # type: ignore[union-attr]
    dev = choose_dev(current, device)
    xml = disk_xml(connection_info, dev, volume_id)
    if is_test:
        _redefine(conn, dom, lambda devices: devices.append(ET.fromstring(xml)))
    else:
        dom.attachDeviceFlags(xml, _flags(dom))
    return f"/dev/{dev}"


def detach_sync(conn: libvirt.virConnect, is_test: bool, uuid: str, volume_id: str,
                timeout: float = DETACH_TIMEOUT) -> None:
    dom = _lookup(conn, uuid)
    if is_test:
        def drop(devices: ET.Element) -> None:
            for disk in devices.findall("disk"):
                if (disk.findtext("serial") or "") == serial(volume_id):
                    devices.remove(disk)
        _redefine(conn, dom, drop)
        return
    live = dom.isActive()
    disk = find_disk(dom.XMLDesc(0), volume_id)
    if disk is None and dom.isPersistent():
        disk = find_disk(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), volume_id)
    if disk is None:
        return  # not there (a retried detach): done
    dom.detachDeviceFlags(ET.tostring(disk, encoding="unicode"), _flags(dom))
    if not live:
        return
    # the unplug of a running guest completes when the guest lets go of the disk
    give_up = time.monotonic() + timeout
    while find_disk(dom.XMLDesc(0), volume_id) is not None:
        if time.monotonic() > give_up:
            raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=uuid,
                                            reason=f"the guest did not release the disk within {timeout}s")
        time.sleep(0.05)


class VolumeAttachMixin:
    """The compute worker's volume RPC methods (cells/rpcapi/volume.py COMPUTE_METHODS)."""
    driver: LibvirtDriver
    _locks: KeyedLocks

    @property
    def conductor(self) -> ConductorAPI:
        raise NotImplementedError

    async def attach_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str,
                            connection_info: Any = None, device: str | None = None) -> dict[str, Any]:
        """`connection_info` is ignored (callers before RPC 1.4 send it): what this host opens comes
        from the conductor's record of the attachment, for an instance on this host only."""
        info = await VolumeConductorAPI(self.conductor.caller).volume_connection(ctx, volume_id, instance_uuid)
        async with self._locks(instance_uuid):
            try:
                dev = await self.driver._run(attach_sync, self.driver.conn, self.driver.is_test, instance_uuid,
                                             volume_id, info, device)
            except (libvirt.libvirtError, TimeoutError, KeyError, ValueError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid,
                                                reason=reason) from None
        LOG.info("volume %s attached to %s as %s", volume_id, instance_uuid, dev)
        return {"device": dev}

    async def detach_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str) -> None:
        async with self._locks(instance_uuid):
            try:
                await self.driver._run(detach_sync, self.driver.conn, self.driver.is_test, instance_uuid,
                                       volume_id, timeout=DETACH_TIMEOUT + 5)
            except errors.InstanceNotFound:
                LOG.info("detach of %s: instance %s has no domain here any more", volume_id, instance_uuid)
            except (libvirt.libvirtError, TimeoutError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid,
                                                reason=f"detach: {reason}") from None
        LOG.info("volume %s detached from %s", volume_id, instance_uuid)

