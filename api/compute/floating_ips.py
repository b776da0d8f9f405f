"""GET /compute/v2.1/os-floating-ips[/{id}]: Nova's read-only proxy of the caller's Neutron floating IPs
(issue 17), as Nova has it: {id, ip, fixed_ip, instance_id, pool}, pool the external network's name.
Nova dropped the proxy APIs at 2.36: from there these answer 404. Changing floating IPs is Neutron's
(/network/v2.0/floatingips); the deprecated create/delete/associate proxies are not served.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import microversions
from api.http import context
from api.keys import ROUTER
from api.network.cells import each_cell, find_cell
from cells import errors
from cells.context import RequestContext

PROXY_REMOVED = (2, 36)


def _check_version(request: web.Request) -> None:
    if microversions.version_of(request) >= PROXY_REMOVED:
        raise web.HTTPNotFound()


async def _view(request: web.Request, ctx: RequestContext, record: dict[str, Any],
                pools: dict[str, str]) -> dict[str, Any]:
    instance = None
    if record.get("port_id"):
        try:
            _, port = await find_cell(request.config_dict[ROUTER], ctx, "port", record["port_id"])
            if str(port.get("device_owner", "")).startswith("compute:"):
                instance = port.get("device_id") or None
        except errors.PortNotFound:
            pass  # the port went away between the two reads: no instance
    return {"id": record["id"], "ip": record["floating_ip_address"], "fixed_ip": record.get("fixed_ip_address"),
            "instance_id": instance, "pool": pools.get(record["floating_network_id"])}


async def _pools(request: web.Request, ctx: RequestContext) -> dict[str, str]:
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "network", {"router:external": "true"}))
    return {n["id"]: n["name"] for nets in per_cell for n in nets}


async def index(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "floatingip", {"project_id": str(ctx.project)}))
    pools = await _pools(request, ctx)
    return web.json_response({"floating_ips": [await _view(request, ctx, r, pools)
                                               for records in per_cell for r in records]})


async def show(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    try:
        _, record = await find_cell(request.config_dict[ROUTER], ctx, "floatingip", request.match_info["id"])
    except errors.FloatingIPNotFound:
        raise errors.NotFound(f"Floating IP not found for ID {request.match_info['id']}") from None
    return web.json_response({"floating_ip": await _view(request, ctx, record, await _pools(request, ctx))})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-floating-ips", index)
    app.router.add_get("/v2.1/os-floating-ips/{id}", show)
