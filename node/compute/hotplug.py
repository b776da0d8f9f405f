"""Volume hot-plug in the libvirt driver: a volume's <disk> (node/compute/volume_xml.py) attached
to, and detached from, a domain with attachDeviceFlags(..., AFFECT_LIVE | AFFECT_CONFIG).

libvirt's test hypervisor cannot hot-plug; there the disk is written into the domain's
definition instead, so the control plane behaves the same. Mechanism only, as the rest of the
driver: the blocking calls run in the driver's bounded pool.
"""
from __future__ import annotations

import time
from typing import Any

import libvirt  # type: ignore[import-untyped]

from cells import errors
from node.compute import volume_xml
from node.compute.hypervisor import Hypervisor

DETACH_TIMEOUT = 10.0  # seconds the guest has to let go of an unplugged disk


def _lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise errors.InstanceNotFound(instance_id=uuid) from None
        raise


def _redefine(conn: libvirt.virConnect, xml: str) -> None:
    conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)


def _flags(dom: libvirt.virDomain) -> int:
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0
    return flags | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)


def attach_sync(conn: libvirt.virConnect, is_test: bool, uuid: str, volume_id: str,
                connection_info: dict[str, Any], device: str | None) -> str:
    dom = _lookup(conn, uuid)
    current = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if is_test else 0)
    found = volume_xml.find_disk(current, volume_id)
    if found is not None:  # attached already (a retried request): same answer
        return volume_xml.disk_dev(found)
    dev = volume_xml.choose_dev(current, device)
    xml = volume_xml.disk_xml(connection_info, dev, volume_id)
    if is_test:
        _redefine(conn, volume_xml.with_disk(current, xml))
    else:
        dom.attachDeviceFlags(xml, _flags(dom))
    return f"/dev/{dev}"


def resize_sync(conn: libvirt.virConnect, is_test: bool, uuid: str, volume_id: str, size_bytes: int) -> None:
    """blockResize of the volume's disk in the live domain; the guest sees the new capacity. The test
    hypervisor has no guest to tell (nothing to do); a stopped domain reads the file's size at its start."""
    dom = _lookup(conn, uuid)
    disk = volume_xml.find_disk(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if is_test else 0), volume_id)
    if disk is None:
        raise errors.VolumeNotFound(f"Volume {volume_id} is not attached to server {uuid}.", volume_id=volume_id)
    if is_test or not dom.isActive():
        return
    dom.blockResize(volume_xml.disk_dev(disk).rsplit("/", 1)[-1], size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)


def detach_sync(conn: libvirt.virConnect, is_test: bool, uuid: str, volume_id: str,
                timeout: float = DETACH_TIMEOUT) -> None:
    dom = _lookup(conn, uuid)
    if is_test:
        _redefine(conn, volume_xml.without_disk(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), volume_id))
        return
    live = dom.isActive()
    disk = volume_xml.find_disk(dom.XMLDesc(0), volume_id)
    if disk is None and dom.isPersistent():
        disk = volume_xml.find_disk(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), volume_id)
    if disk is None:
        return  # not there (a retried detach): done
    dom.detachDeviceFlags(volume_xml.disk_element_xml(disk), _flags(dom))
    if not live:
        return
    # the unplug of a running guest completes when the guest lets go of the disk
    give_up = time.monotonic() + timeout
    while volume_xml.find_disk(dom.XMLDesc(0), volume_id) is not None:
        if time.monotonic() > give_up:
            raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=uuid,
                                            reason=f"the guest did not release the disk within {timeout}s")
        time.sleep(0.05)


class VolumeHotplug:
    """The driver's volume collaborator (LibvirtDriver.volumes)."""

    def __init__(self, hypervisor: Hypervisor) -> None:
        self._hv = hypervisor

    async def attach(self, uuid: str, volume_id: str, connection_info: dict[str, Any], device: str | None) -> str:
        """Plug the volume into the domain; its guest device path (/dev/vdX). Idempotent."""
        hv = self._hv
        return await hv._run(attach_sync, hv.conn, hv.is_test, uuid, volume_id, connection_info, device)

    async def resize(self, uuid: str, volume_id: str, size_bytes: int) -> None:
        """Tell the running guest the volume's disk is `size_bytes` now (its file was grown)."""
        hv = self._hv
        await hv._run(resize_sync, hv.conn, hv.is_test, uuid, volume_id, size_bytes)

    async def detach(self, uuid: str, volume_id: str) -> None:
        """Unplug the volume and wait for the guest to let go of it. Idempotent."""
        hv = self._hv
        await hv._run(detach_sync, hv.conn, hv.is_test, uuid, volume_id, DETACH_TIMEOUT,
                      timeout=DETACH_TIMEOUT + 5)
