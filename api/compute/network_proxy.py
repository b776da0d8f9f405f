"""Nova's read-only os-networks and os-tenant-networks proxies of the cells' Neutron networks, up to 2.35
(from 2.36 a 404, as Nova); the networks the caller sees (its project's, shared and external ones).

    GET /os-networks[/{id}]          Nova's network dict with Neutron: id and label (the name), the
                                     nova-network fields None (admins: the admin fields too, None)
    GET /os-tenant-networks[/{id}]   {id, label, cidr}: cidr the network's first IPv4 subnet's, else its first

Creating, deleting and associating networks here was nova-network's and is not served (Neutron's API does).
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
FIELDS = ("id", "cidr", "netmask", "gateway", "broadcast", "dns1", "dns2", "cidr_v6", "gateway_v6", "label",
          "netmask_v6")
ADMIN_FIELDS = ("created_at", "updated_at", "deleted_at", "deleted", "injected", "bridge", "vlan",
                "vpn_public_address", "vpn_public_port", "vpn_private_address", "dhcp_start", "project_id", "host",
                "bridge_interface", "multi_host", "priority", "rxtx_base", "mtu", "dhcp_server", "enable_dhcp",
                "share_address")


def _check_version(request: web.Request) -> None:
    if microversions.version_of(request) >= PROXY_REMOVED:
        raise web.HTTPNotFound()


def network_dict(record: dict[str, Any], is_admin: bool) -> dict[str, Any]:
    """Nova's network_dict of a Neutron network: only the id and the label are known."""
    out: dict[str, Any] = dict.fromkeys((*FIELDS, *(ADMIN_FIELDS if is_admin else ())))
    out.update(id=record["id"], label=record.get("name") or "")
    return out


async def _networks(request: web.Request, ctx: RequestContext) -> list[dict[str, Any]]:
    per_cell = await each_cell(request.config_dict[ROUTER], ctx, lambda api, c: api.index(c, "network", {}))
    return [n for nets in per_cell for n in nets]


async def _network(request: web.Request, ctx: RequestContext) -> dict[str, Any]:
    network_id = request.match_info["network_id"]
    try:
        _, record = await find_cell(request.config_dict[ROUTER], ctx, "network", network_id)
    except errors.NotFound:
        raise errors.NotFound(f"Network {network_id} could not be found.") from None
    return dict(record)


async def index(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    return web.json_response({"networks": [network_dict(n, ctx.is_admin) for n in await _networks(request, ctx)]})


async def show(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    return web.json_response({"network": network_dict(await _network(request, ctx), ctx.is_admin)})


def _cidr(subnets: list[dict[str, Any]]) -> str | None:
    cidrs = [str(s["cidr"]) for s in subnets if s.get("ip_version") == 4] or [str(s["cidr"]) for s in subnets]
    return cidrs[0] if cidrs else None


async def _subnets(request: web.Request, ctx: RequestContext) -> dict[str, list[dict[str, Any]]]:
    per_cell = await each_cell(request.config_dict[ROUTER], ctx, lambda api, c: api.index(c, "subnet", {}))
    out: dict[str, list[dict[str, Any]]] = {}
    for subnets in per_cell:
        for s in subnets:
            out.setdefault(str(s.get("network_id")), []).append(s)
    return out


async def tenant_index(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    subnets = await _subnets(request, ctx)
    return web.json_response({"networks": [{"id": n["id"], "label": n.get("name") or "",
                                            "cidr": _cidr(subnets.get(n["id"], []))}
                                           for n in await _networks(request, ctx)]})


async def tenant_show(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    network = await _network(request, ctx)
    subnets = (await _subnets(request, ctx)).get(network["id"], [])
    return web.json_response({"network": {"id": network["id"], "label": network.get("name") or "",
                                          "cidr": _cidr(subnets)}})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-networks", index)
    app.router.add_get("/v2.1/os-networks/{network_id}", show)
    app.router.add_get("/v2.1/os-tenant-networks", tenant_index)
    app.router.add_get("/v2.1/os-tenant-networks/{network_id}", tenant_show)
