"""/compute/v2.1/servers/{server_id}/os-interface: Nova's port interfaces of a server.

    GET    .../os-interface               {"interfaceAttachments": [...]}
    GET    .../os-interface/{port_id}     {"interfaceAttachment": {...}}; 404 for a port not on the server
    POST   .../os-interface               {"interfaceAttachment": {"port_id" | "net_id"}} -> the attachment
    DELETE .../os-interface/{port_id}     202

The server is found through its instance mapping (another project's server or a missing one: 404); its
ports are the ones its cell's network controller holds for it (device_id = the server). Each shows its
state, fixed IPs, MAC and network; `tag` from 2.70 (always null: ports are not tagged here). Attaching
takes the project's free port (409 when another server holds it) or makes one on the network (counted
against the port quota), binds it on the server's host and plugs it into the guest; its cell's conductor
runs it (cells/conductor/flows/interfaces.py). A detached port made by the attach is deleted, a port the
project gave is kept, as Nova. `fixed_ips` and `tag` at attach are refused (400): not served.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api import quota
from api.compute import mappings
from api.compute.microversions import version_of
from api.http import authorize, json_body
from api.keys import DB, ENGINE, ROUTER
from api.validation import validate
from cells import errors
from cells.context import RequestContext
from cells.network.instance_ports import DEVICE_OWNER
from cells.rpcapi.network import NetworkAPI

TAG_VERSION = (2, 70)
_UUID = {"type": "string", "format": "uuid"}
ATTACH = {"type": "object", "required": ["interfaceAttachment"], "additionalProperties": False,
          "properties": {"interfaceAttachment": {
              "type": "object", "additionalProperties": False,
              "properties": {"port_id": _UUID, "net_id": _UUID, "fixed_ips": {"type": "array"},
                             "tag": {"type": "string"}}}}}


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


async def attach(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-attach-interfaces:create")
    body = await json_body(request)
    validate(ATTACH, body)
    spec = body["interfaceAttachment"]
    if spec.get("fixed_ips") or spec.get("tag"):
        raise errors.Invalid("fixed_ips and tag at interface attach are not supported by this cloud.")
    if spec.get("port_id") and spec.get("net_id"):
        raise errors.Invalid("Must not input both network_id and port_id")
    if not (spec.get("port_id") or spec.get("net_id")):
        raise errors.Invalid("Either port_id or net_id is needed.")
    mapping = await mappings.get(request.config_dict[DB], ctx, request.match_info["server_id"])
    limits = await quota.limits(request.config_dict[ENGINE], str(mapping.project_id))
    conductor = request.config_dict[ROUTER].conductor(mapping.cell_path)
    done = await conductor.interface_attach(ctx, str(mapping.instance_uuid), spec.get("port_id"),
                                            spec.get("net_id"), limits.get("port", -1))
    for port in await _ports(request, ctx):
        if port["id"] == done["port_id"]:
            return web.json_response({"interfaceAttachment": _view(port, version_of(request))})
    raise errors.NotFound(f"Port {done['port_id']} is not attached")


async def detach(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-attach-interfaces:delete")
    mapping = await mappings.get(request.config_dict[DB], ctx, request.match_info["server_id"])
    conductor = request.config_dict[ROUTER].conductor(mapping.cell_path)
    await conductor.interface_detach(ctx, str(mapping.instance_uuid), request.match_info["port_id"])
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers/{server_id}/os-interface", index)
    app.router.add_get("/v2.1/servers/{server_id}/os-interface/{port_id}", show)
    app.router.add_post("/v2.1/servers/{server_id}/os-interface", attach)
    app.router.add_delete("/v2.1/servers/{server_id}/os-interface/{port_id}", detach)
