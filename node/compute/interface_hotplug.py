"""Port hot-plug on the compute worker (os-interface, issue 16): a VIF's <interface> (the tap the network
agent makes on the network's bridge, node/compute/domain_xml.py) attached to, or detached from, a domain
with attachDeviceFlags / detachDeviceFlags (AFFECT_LIVE | AFFECT_CONFIG). libvirt's test hypervisor
cannot hot-plug: the interface is written into the domain's definition there, as volumes are
(node/compute/hotplug.py). The blocking calls run in the driver's bounded pool, under the instance's lock.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

import libvirt  # type: ignore[import-untyped]

from cells import errors
from cells.context import RequestContext
from node.compute import domain_xml
from node.compute.hotplug import _flags, _lookup, _redefine
from node.locks import KeyedLocks
from node.network.agent import NetworkAgent

LOG = logging.getLogger(__name__)
VIF_KEYS = {"port_id": str, "mac": str, "tap": str}


def interface_xml(vif: dict[str, Any]) -> str:
    holder = ET.Element("devices")
    domain_xml._interface(holder, vif)
    return ET.tostring(holder[0], encoding="unicode")


def _find(xml: str, mac: str) -> ET.Element | None:
    for iface in ET.fromstring(xml).iter("interface"):
        found = iface.find("mac")
        if found is not None and found.get("address", "").lower() == mac.lower():
            return iface
    return None


def attach_sync(conn: libvirt.virConnect, is_test: bool, uuid: str, vif: dict[str, Any]) -> None:
    dom = _lookup(conn, uuid)
    current = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if is_test else 0)
    if _find(current, vif["mac"]) is not None:
        return  # attached already (a retried request)
    xml = interface_xml(vif)
    if is_test:
        root = ET.fromstring(current)
        devices = root.find("devices")
        if devices is None:
            raise errors.Invalid(reason=f"domain {uuid} has no devices")
        devices.append(ET.fromstring(xml))
        _redefine(conn, ET.tostring(root, encoding="unicode"))
    else:
        dom.attachDeviceFlags(xml, _flags(dom))


def detach_sync(conn: libvirt.virConnect, is_test: bool, uuid: str, mac: str) -> None:
    dom = _lookup(conn, uuid)
    current = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if is_test else 0)
    found = _find(current, mac)
    if found is None:
        return  # not there (a retried detach)
    if is_test:
        root = ET.fromstring(current)
        devices = root.find("devices")
        for iface in list(devices.iter("interface")) if devices is not None else []:
            mac_el = iface.find("mac")
            if devices is not None and mac_el is not None and mac_el.get("address", "").lower() == mac.lower():
                devices.remove(iface)
        _redefine(conn, ET.tostring(root, encoding="unicode"))
    else:
        dom.detachDeviceFlags(ET.tostring(found, encoding="unicode"), _flags(dom))


def _checked(vif: Any) -> dict[str, Any]:
    if not isinstance(vif, dict) or not all(isinstance(vif.get(k), t) for k, t in VIF_KEYS.items()):
        raise errors.Invalid(reason=f"vif must carry {', '.join(VIF_KEYS)}")
    return vif


class GuestInterfaces:
    """The compute manager's os-interface collaborator (ComputeManager.interfaces)."""

    def __init__(self, driver: Any, network: NetworkAgent, locks: KeyedLocks) -> None:
        self.driver = driver
        self.network = network
        self.locks = locks  # the manager's per-instance locks: an attach waits for a build or move

    async def attach(self, ctx: RequestContext, uuid: str, vif: Any) -> None:
        """The port's tap made on its bridge (the agent's sync), then plugged into the guest."""
        checked = _checked(vif)
        if self.network.enabled:
            await self.network.sync()
        async with self.locks(uuid):
            try:
                await self.driver._run(attach_sync, self.driver.conn, self.driver.is_test, uuid, checked)
            except libvirt.libvirtError as exc:
                raise errors.Conflict(reason=f"attaching port {checked['port_id']} failed: {exc}") from None
        LOG.info("port %s attached to %s", checked["port_id"], uuid)

    async def detach(self, ctx: RequestContext, uuid: str, vif: Any) -> None:
        """The guest lets go of the port's interface; the agent drops the tap once the port is released."""
        checked = _checked(vif)
        async with self.locks(uuid):
            try:
                await self.driver._run(detach_sync, self.driver.conn, self.driver.is_test, uuid, checked["mac"])
            except libvirt.libvirtError as exc:
                raise errors.Conflict(reason=f"detaching port {checked['port_id']} failed: {exc}") from None
        LOG.info("port %s detached from %s", checked["port_id"], uuid)
