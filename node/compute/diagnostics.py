"""A guest's diagnostics as Nova's libvirt driver reads them (os-server-diagnostics, issue 16): the domain's
state, vCPUs, memory, and each disk's and NIC's counters, in Nova's standard format (2.48) from which the API
also builds the older libvirt-specific one. Blocking libvirt calls: run in the driver's pool."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt  # type: ignore[import-untyped]

STATES = {libvirt.VIR_DOMAIN_NOSTATE: "pending", libvirt.VIR_DOMAIN_RUNNING: "running",
          libvirt.VIR_DOMAIN_BLOCKED: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
          libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown", libvirt.VIR_DOMAIN_SHUTOFF: "shutdown",
          libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended"}


def _stats(call: Any, *args: Any) -> tuple[int, ...] | None:
    """A counter call libvirt may not serve for this device or hypervisor (None then: zeros shown)."""
    try:
        return tuple(int(v) for v in call(*args))
    except libvirt.libvirtError:
        return None


def read(dom: Any) -> dict[str, Any]:
    """Nova's standard diagnostics of a domain (blocking), without uptime and config_drive (the caller's)."""
    state, max_mem_kib, mem_kib, ncpus, _cpu_time = dom.info()
    try:
        vcpus = [{"id": int(v[0]), "time": int(v[2]), "utilisation": None} for v in dom.vcpus()[0]]
    except libvirt.libvirtError:  # not running, or a hypervisor that does not say
        vcpus = [{"id": i, "time": 0, "utilisation": None} for i in range(int(ncpus))]
    devices = ET.fromstring(dom.XMLDesc(0)).find("devices")
    disks, nics = [], []
    for disk in devices.findall("disk") if devices is not None else []:
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if not dev or disk.get("device", "disk") != "disk":
            continue
        rd_req, rd_bytes, wr_req, wr_bytes, errs = _stats(dom.blockStats, dev) or (0, 0, 0, 0, 0)
        disks.append({"name": dev, "read_bytes": rd_bytes, "read_requests": rd_req, "write_bytes": wr_bytes,
                      "write_requests": wr_req, "errors_count": max(errs, 0)})
    for iface in devices.findall("interface") if devices is not None else []:
        mac, target = iface.find("mac"), iface.find("target")
        dev = target.get("dev") if target is not None else None
        counters = (_stats(dom.interfaceStats, dev) if dev else None) or (0,) * 8
        rx_bytes, rx_packets, rx_errs, rx_drop, tx_bytes, tx_packets, tx_errs, tx_drop = counters
        nics.append({"name": dev, "mac_address": mac.get("address") if mac is not None else None,
                     "rx_octets": rx_bytes, "rx_errors": rx_errs, "rx_drop": rx_drop, "rx_packets": rx_packets,
                     "rx_rate": None, "tx_octets": tx_bytes, "tx_errors": tx_errs, "tx_drop": tx_drop,
                     "tx_packets": tx_packets, "tx_rate": None})
    return {"state": STATES.get(state, "pending"), "driver": "libvirt", "num_cpus": int(ncpus),
            "num_disks": len(disks), "num_nics": len(nics), "cpu_details": vcpus, "disk_details": disks,
            "nic_details": nics, "memory_details": {"maximum": int(max_mem_kib) // 1024, "used": int(mem_kib) // 1024}}
