"""/compute/v2.1/servers/{server_id}/os-interface: Nova's port interfaces of a server, read side.

    GET .../os-interface               {"interfaceAttachments": [...]}
    GET .../os-interface/{port_id}     {"interfaceAttachment": {...}}; 404 for a port not on the server

The server is found through its instance mapping (another project's server or a missing one: 404); its
ports are the ones its cell's network controller holds for it (device_id = the server). Each shows its
state, fixed IPs, MAC and network; `tag` from 2.70 (always null: ports are not tagged here). Not served
yet: attaching and detaching a port to a running server (POST, DELETE).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import mappings
from api.compute.microversions import version_of
from api.http import authorize
from api.keys import DB, ROUTER
from cells import errors
from cells.context import RequestContext
from cells.network.instance_ports import DEVICE_OWNER
from cells.rpcapi.network import NetworkAPI

TAG_VERSION = (2, 70)


def _view(port: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    out = {"port_id": port["id"], "net_id": port["network_id"], "mac_addr": port["mac_address"],
           "port_state": port.get("status") or "DOWN",
           "fixed_ips": [{"subnet_id": ip.get("subnet_id"), "ip_address": ip.get("ip_address")}
                         for ip in port.get("fixed_ips") or []]}
    if version >= TAG_VERSION:
        out["tag"] = None
    return out


async def _ports(request: web.Request, ctx: RequestContext) -> list[dict[str, Any]]:
    mapping = await mappings.get(request.config_dict[DB], ctx, request.match_info["server_id"])
    network = NetworkAPI(request.config_dict[ROUTER].cell(mapping.cell_path))
    found = await network.index(ctx, "port", {"device_id": str(mapping.instance_uuid)})
    return [p for p in found if p.get("device_owner") == DEVICE_OWNER]


async def index(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-attach-interfaces:list")
    version = version_of(request)
    return web.json_response({"interfaceAttachments": [_view(p, version) for p in await _ports(request, ctx)]})


async def show(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-attach-interfaces:show")
    wanted = request.match_info["port_id"]
    for port in await _ports(request, ctx):
        if port["id"] == wanted:
            return web.json_response({"interfaceAttachment": _view(port, version_of(request))})
    raise errors.NotFound(f"Port {wanted} is not attached")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers/{server_id}/os-interface", index)
    app.router.add_get("/v2.1/servers/{server_id}/os-interface/{port_id}", show)
