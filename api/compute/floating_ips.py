"""Nova's floating-IP proxies (issue 17, writes issue 16), in front of this cloud's Neutron API (api/network/):

    GET    /os-floating-ips[/{id}]        {id, ip, fixed_ip, instance_id, pool}; pool = the external network's name
    POST   /os-floating-ips {"pool": P}   allocate from the external network P (name or id)      200
    DELETE /os-floating-ips/{id}          release (an association goes with it)                  202
    GET    /os-floating-ip-pools          {"floating_ip_pools": [{"name"}]}: the external networks
    POST   /servers/{id}/action {"addFloatingIp": {"address", "fixed_address"?}}                 202 (up to 2.43)
    POST   /servers/{id}/action {"removeFloatingIp": {"address"}}                                202 (up to 2.43)

Every write is the Neutron API's own create / update / delete (api/network/routes.py), under the caller's
context: another project's floating IP is as absent as Neutron makes it (404), its quota is the project's
Neutron quota. Nova's codes over Neutron's: over quota 403, no address left or no such pool 404, an
association Neutron refuses 400. Nova dropped the proxies at 2.36 (the actions at 2.44): from there, 404.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import mappings, microversions
from api.http import context, json_body
from api.keys import DB, ROUTER
from api.network.cells import each_cell, find_cell
from api.network.routes import create_resource, delete_resource, update_resource
from api.validation import validate
from cells import errors
from cells.context import RequestContext
from cells.network.instance_ports import DEVICE_OWNER
from cells.rpcapi.network import NetworkAPI

PROXY_REMOVED = (2, 36)
ACTIONS_REMOVED = (2, 44)
ACTIONS = ("addFloatingIp", "removeFloatingIp")
_ADDRESS = {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
CREATE = {"type": ["object", "null"], "properties": {"pool": {"type": ["string", "null"]}}}
ADD = {"type": "object", "required": ["address"], "additionalProperties": False,
       "properties": {"address": _ADDRESS, "fixed_address": _ADDRESS}}
REMOVE = {"type": "object", "required": ["address"], "additionalProperties": False,
          "properties": {"address": _ADDRESS}}


def _check_version(request: web.Request, removed: tuple[int, int] = PROXY_REMOVED) -> None:
    if microversions.version_of(request) >= removed:
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
    """External network id -> name (the id where it has no name, as Nova)."""
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "network", {"router:external": "true"}))
    return {n["id"]: n.get("name") or n["id"] for nets in per_cell for n in nets}


async def index(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "floatingip", {"project_id": str(ctx.project)}))
    pools = await _pools(request, ctx)
    return web.json_response({"floating_ips": [await _view(request, ctx, r, pools)
                                               for records in per_cell for r in records]})


async def _record(request: web.Request, ctx: RequestContext, fip_id: str) -> dict[str, Any]:
    try:
        _, record = await find_cell(request.config_dict[ROUTER], ctx, "floatingip", fip_id)
    except errors.FloatingIPNotFound:
        raise errors.NotFound(f"Floating IP not found for ID {fip_id}") from None
    found: dict[str, Any] = record
    return found


async def show(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    record = await _record(request, ctx, request.match_info["id"])
    return web.json_response({"floating_ip": await _view(request, ctx, record, await _pools(request, ctx))})


def _pool_id(pools: dict[str, str], wanted: str | None) -> str:
    """Nova's pool look-up: an external network by id or name; with none asked, the only one there is."""
    if wanted is None:
        if len(pools) == 1:
            return next(iter(pools))
        raise errors.NotFound("Floating IP pool not found.")
    if wanted in pools:
        return wanted
    named = [net_id for net_id, name in pools.items() if name == wanted]
    if len(named) > 1:
        raise errors.Invalid(f"Multiple floating IP pools matches found for name '{wanted}'")
    if not named:
        raise errors.NotFound("Floating IP pool not found.")
    return named[0]


async def create(request: web.Request) -> web.Response:
    """Allocate: Neutron's floating IP create on the pool's network, for the caller's project."""
    _check_version(request)
    ctx = context(request)
    body = await json_body(request) if request.can_read_body else None
    validate(CREATE, body)
    wanted = (body or {}).get("pool")
    pools = await _pools(request, ctx)
    net_id = _pool_id(pools, wanted)
    try:
        record = await create_resource(request, ctx, "floatingip", {"floating_network_id": net_id})
    except errors.OverQuota:
        raise errors.Forbidden(f"IP allocation over quota in pool {wanted}." if wanted
                               else "IP allocation over quota.") from None
    except errors.IpAddressExhausted:
        raise errors.NotFound(f"No more floating IPs in pool {wanted}." if wanted
                              else "No more floating IPs available.") from None
    return web.json_response({"floating_ip": await _view(request, ctx, record, pools)})


async def delete(request: web.Request) -> web.Response:
    """Release: Neutron's delete (which drops an association first)."""
    _check_version(request)
    ctx = context(request)
    fip_id = request.match_info["id"]
    await _record(request, ctx, fip_id)
    try:
        await delete_resource(request, ctx, "floatingip", fip_id)
    except errors.FloatingIPNotFound:  # released by another request since the look-up
        raise errors.NotFound(f"Floating IP not found for ID {fip_id}") from None
    return web.Response(status=202)


async def pools_index(request: web.Request) -> web.Response:
    _check_version(request)
    pools = await _pools(request, context(request))
    return web.json_response({"floating_ip_pools": [{"name": name} for name in sorted(pools.values())]})


async def _by_address(request: web.Request, ctx: RequestContext, address: str) -> dict[str, Any]:
    """The floating IP with `address` the caller may see (Neutron's visibility); 404 otherwise."""
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "floatingip", {"floating_ip_address": address}))
    for records in per_cell:
        for record in records:
            found: dict[str, Any] = record
            return found
    raise errors.NotFound("floating IP not found")


async def _server_ports(request: web.Request, ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
    """The server's own ports (404 for a server the caller may not see)."""
    mapping = await mappings.get(request.config_dict[DB], ctx, server_id)
    network = NetworkAPI(request.config_dict[ROUTER].cell(mapping.cell_path))
    found = await network.index(ctx, "port", {"device_id": str(mapping.instance_uuid)})
    return [p for p in found if p.get("device_owner") == DEVICE_OWNER]


def _target(ports: list[dict[str, Any]], fixed_address: str | None) -> tuple[str, str]:
    """(port id, fixed IPv4) to associate with: the asked fixed address, or the server's first IPv4 one."""
    fixed = [(p["id"], ip["ip_address"]) for p in ports for ip in p.get("fixed_ips") or []]
    if not fixed:
        raise errors.Invalid("No fixed IPs associated to instance")
    if fixed_address is not None:
        for port_id, address in fixed:
            if address == fixed_address:
                return port_id, address
        raise errors.Invalid("Specified fixed address not assigned to instance")
    for port_id, address in fixed:
        if ":" not in address:
            return port_id, address
    raise errors.Invalid("Unable to associate floating IP to any fixed IPs for instance: it has no fixed IPv4 "
                         "addresses to associate.")


async def _associate(request: web.Request, ctx: RequestContext, fip: dict[str, Any], port_id: str,
                     fixed: str) -> None:
    """Neutron's association in one update (an address on another server's port moves here, as Nova moves it);
    what Neutron refuses is Nova's 400."""
    try:
        await update_resource(request, ctx, "floatingip", fip["id"], {"port_id": port_id, "fixed_ip_address": fixed})
    except (errors.Invalid, errors.Conflict, errors.NotFound) as exc:
        raise errors.Invalid(f"Unable to associate floating IP {fip['floating_ip_address']} to fixed IP {fixed} "
                             f"for instance: {exc.message}") from None


async def action(request: web.Request, ctx: RequestContext, server_id: str, name: str, spec: Any) -> web.Response:
    """addFloatingIp / removeFloatingIp, as Nova up to 2.43."""
    _check_version(request, ACTIONS_REMOVED)
    validate(ADD if name == "addFloatingIp" else REMOVE, spec, name)
    ports = await _server_ports(request, ctx, server_id)  # 404 first for a server the caller may not see
    fip = await _by_address(request, ctx, spec["address"])
    if name == "addFloatingIp":
        port_id, fixed = _target(ports, spec.get("fixed_address"))
        await _associate(request, ctx, fip, port_id, fixed)
        return web.Response(status=202)
    if not fip.get("port_id") or fip["port_id"] not in {p["id"] for p in ports}:
        raise errors.Conflict(f"Floating IP {spec['address']} is not associated with instance {server_id}.")
    await update_resource(request, ctx, "floatingip", fip["id"], {"port_id": None})
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-floating-ips", index)
    app.router.add_post("/v2.1/os-floating-ips", create)
    app.router.add_get("/v2.1/os-floating-ips/{id}", show)
    app.router.add_delete("/v2.1/os-floating-ips/{id}", delete)
    app.router.add_get("/v2.1/os-floating-ip-pools", pools_index)
