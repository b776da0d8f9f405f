"""GET /compute/v2.1/servers/{id}/diagnostics: Nova's server diagnostics (admins only, 403 otherwise), asked
of the server's cell conductor, which asks its host's hypervisor (node/compute/diagnostics.py).

From 2.48 Nova's standard format: {state, driver, hypervisor, hypervisor_os, uptime, config_drive, num_cpus,
num_disks, num_nics, cpu_details, disk_details, nic_details, memory_details}. Before it, Nova's libvirt
driver's own: cpu<N>_time, <disk>_read/_read_req/_write/_write_req/_errors, <nic>_rx/_rx_packets/_rx_errors/
_rx_drop/_tx/..., memory (KiB). 409 while the server has no guest (building, offloaded) or its host is down.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import mappings
from api.compute.microversions import version_of
from api.compute.service import ComputeContext
from api.http import authorize

STANDARD_VERSION = (2, 48)


def legacy(found: dict[str, Any]) -> dict[str, Any]:
    """Nova's libvirt driver's diagnostics before 2.48, from the standard ones."""
    out: dict[str, Any] = {f"cpu{c['id']}_time": c["time"] for c in found.get("cpu_details") or []}
    for disk in found.get("disk_details") or []:
        name = disk.get("name") or "disk"
        out.update({f"{name}_read": disk["read_bytes"], f"{name}_read_req": disk["read_requests"],
                    f"{name}_write": disk["write_bytes"], f"{name}_write_req": disk["write_requests"],
                    f"{name}_errors": disk["errors_count"]})
    for nic in found.get("nic_details") or []:
        name = nic.get("name") or "nic"
        out.update({f"{name}_rx": nic["rx_octets"], f"{name}_rx_packets": nic["rx_packets"],
                    f"{name}_rx_errors": nic["rx_errors"], f"{name}_rx_drop": nic["rx_drop"],
                    f"{name}_tx": nic["tx_octets"], f"{name}_tx_packets": nic["tx_packets"],
                    f"{name}_tx_errors": nic["tx_errors"], f"{name}_tx_drop": nic["tx_drop"]})
    out["memory"] = int((found.get("memory_details") or {}).get("maximum") or 0) * 1024
    return out


def standard(found: dict[str, Any]) -> dict[str, Any]:
    """The 2.48 view: the device names are this cloud's, not Nova's fields."""
    return {**found, "disk_details": [{k: v for k, v in d.items() if k != "name"} for d in found.get("disk_details") or []],
            "nic_details": [{k: v for k, v in n.items() if k != "name"} for n in found.get("nic_details") or []]}


async def show(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-server-diagnostics")
    cc = ComputeContext.of(request)
    mapping = await mappings.get(cc.db, ctx, request.match_info["server_id"])  # 404 for a server not there
    found = await cc.router.conductor(mapping.cell_path).instance_diagnostics(ctx, str(mapping.instance_uuid))
    return web.json_response(standard(found) if version_of(request) >= STANDARD_VERSION else legacy(found))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers/{server_id}/diagnostics", show)
