"""Nova's os-security-groups and os-security-group-rules proxies of Neutron's security groups, up to 2.35
(from 2.36 a 404, as Nova), and a server's groups (GET /servers/{id}/os-security-groups, every version).

    GET    /os-security-groups[?all_tenants=1]     the project's groups (an admin's: every project's)
    POST   /os-security-groups                     {"security_group": {name, description}}
    GET    /os-security-groups/{id}
    PUT    /os-security-groups/{id}                {"security_group": {name, description}}
    DELETE /os-security-groups/{id}                202; the default group or one in use: 400
    POST   /os-security-group-rules                {"security_group_rule": {parent_group_id, ip_protocol,
                                                    from_port, to_port, cidr | group_id}}: an ingress rule
    DELETE /os-security-group-rules/{id}           202

The groups are the cells' Neutron groups (api/network): nothing is stored here. Views as Nova's: a group's
ingress rules only, each {id, parent_group_id, ip_protocol, from_port, to_port, ip_range: {cidr}, group:
{name, tenant_id}}; a Neutron conflict (the default group, a group in use, a rule that exists) is Nova's 400.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from api.compute import mappings, microversions
from api.compute.service import ComputeContext
from api.http import context, is_uuid, json_body
from api.keys import ROUTER
from api.network import quotas as network_quotas
from api.network.cells import each_cell, find_cell, network_cells
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.network import NetworkAPI

PROXY_REMOVED = (2, 36)
INSTANCE_OWNER = "compute:nova"


def _check_version(request: web.Request) -> None:
    if microversions.version_of(request) >= PROXY_REMOVED:
        raise web.HTTPNotFound()


def _text(value: Any, what: str, empty_ok: bool) -> str:
    """Nova's validate_property: a string of up to 255 characters once stripped (a name never empty); kept
    as given, as Nova passes it on."""
    if not isinstance(value, str):
        raise errors.Invalid(f"Security group {what} is not a string or unicode")
    text = value.strip()
    if len(text) > 255 or (not text and not empty_ok):
        raise errors.Invalid(f"Security group {what} has a minimum character requirement of "
                             f"{0 if empty_ok else 1} and a maximum of 255.")
    return value


def _group_body(body: Any) -> dict[str, str]:
    spec = body.get("security_group") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise errors.Invalid("The request body is missing security_group.")
    return {"name": _text(spec.get("name"), "name", False),
            "description": _text(spec.get("description"), "description", True)}


def _group_id(value: str) -> str:
    if not is_uuid(value):
        raise errors.Invalid("Security group id should be uuid")
    return value.lower()


async def _groups_by_id(request: web.Request, ctx: RequestContext, ids: set[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for gid in ids:
        try:
            found[gid] = (await find_cell(request.config_dict[ROUTER], ctx, "security_group", gid))[1]
        except errors.NotFound:
            pass  # gone since: the rule shows no group
    return found


def _rule_view(rule: dict[str, Any], groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    protocol = rule.get("protocol")
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if protocol and low is None and high is None:
        low, high = (1, 65535) if str(protocol).lower() in ("tcp", "udp") else (-1, -1)
    view: dict[str, Any] = {"id": rule["id"], "parent_group_id": rule["security_group_id"], "ip_protocol": protocol,
                            "from_port": low, "to_port": high, "group": {}, "ip_range": {}}
    remote = rule.get("remote_group_id")
    if remote:
        peer = groups.get(remote, {})
        view["group"] = {"name": peer.get("name"), "tenant_id": peer.get("project_id")}
    else:
        view["ip_range"] = {"cidr": rule.get("remote_ip_prefix") or
                                    ("::/0" if rule.get("ethertype") == "IPv6" else "0.0.0.0/0")}
    return view


async def _views(request: web.Request, ctx: RequestContext, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    known = {r["id"]: r for r in records}
    wanted = {rule["remote_group_id"] for r in records for rule in r.get("security_group_rules") or []
              if rule.get("remote_group_id") and rule["remote_group_id"] not in known}
    known.update(await _groups_by_id(request, ctx, wanted))
    return [{"id": r["id"], "name": r["name"], "description": r.get("description") or "",
             "tenant_id": r.get("project_id"),
             "rules": [_rule_view(rule, known) for rule in r.get("security_group_rules") or []
                       if rule.get("direction") == "ingress"]} for r in records]


async def _one(request: web.Request, ctx: RequestContext, gid: str) -> tuple[NetworkAPI, dict[str, Any]]:
    found: tuple[NetworkAPI, dict[str, Any]] = await find_cell(request.config_dict[ROUTER], ctx, "security_group",
                                                               _group_id(gid))
    return found


def _as_invalid(call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """Nova answers Neutron's conflicts (the default group, a group in use, a rule that exists) with 400."""
    async def run() -> Any:
        try:
            return await call()
        except errors.Conflict as exc:
            raise errors.Invalid(exc.message) from None
    return run


async def index(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    every = request.query.get("all_tenants") not in (None, "0", "false", "False") and ctx.is_admin  # as Nova
    filters = {} if every else {"project_id": str(ctx.project)}
    per_cell = await each_cell(request.config_dict[ROUTER], ctx, lambda api, c: api.index(c, "security_group", filters))
    return web.json_response({"security_groups": await _views(request, ctx, [g for gs in per_cell for g in gs])})


async def show(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    _, record = await _one(request, ctx, request.match_info["group_id"])
    return web.json_response({"security_group": (await _views(request, ctx, [record]))[0]})


async def create(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    spec = _group_body(await json_body(request))
    api = NetworkAPI(network_cells(request.config_dict[ROUTER])[0])
    limit = await network_quotas.limit_for(request, "security_group", str(ctx.project))
    record = await _as_invalid(lambda: api.create(ctx, "security_group", spec, limit))()
    return web.json_response({"security_group": (await _views(request, ctx, [record]))[0]})


async def update(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    api, record = await _one(request, ctx, request.match_info["group_id"])
    spec = _group_body(await json_body(request))
    record = await _as_invalid(lambda: api.update(ctx, "security_group", record["id"], spec))()
    return web.json_response({"security_group": (await _views(request, ctx, [record]))[0]})


async def delete(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    api, record = await _one(request, ctx, request.match_info["group_id"])
    await _as_invalid(lambda: api.delete(ctx, "security_group", record["id"]))()
    return web.Response(status=202)


def _port(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.Invalid(f"{what} is not an integer") from None


def _rule_body(spec: dict[str, Any], parent: str) -> dict[str, Any]:
    """Nova's rule arguments as a Neutron ingress rule: 400 for a protocol, port or CIDR Nova refuses."""
    protocol = str(spec.get("ip_protocol") or "").lower()
    if protocol not in ("tcp", "udp", "icmp"):
        raise errors.Invalid(f"Invalid IP protocol {spec.get('ip_protocol')}.")
    low, high = _port(spec.get("from_port"), "Parameter from_port"), _port(spec.get("to_port"), "Parameter to_port")
    if protocol == "icmp":
        if not (-1 <= low <= 255 and -1 <= high <= 255):
            raise errors.Invalid(f"Type and Code must be integers for ICMP protocol type, -1 to 255: {low}, {high}")
        ports = (None if low == -1 else low, None if high == -1 or low == -1 else high)
    else:
        if not (1 <= low <= 65535 and 1 <= high <= 65535) or low > high:
            raise errors.Invalid(f"Invalid port range {low}:{high}. Valid TCP ports should be between 1-65535")
        ports = (low, high)
    body: dict[str, Any] = {"security_group_id": parent, "direction": "ingress", "protocol": protocol,
                            "port_range_min": ports[0], "port_range_max": ports[1], "ethertype": "IPv4"}
    if spec.get("group_id"):
        body["remote_group_id"] = _group_id(str(spec["group_id"]))
    else:
        cidr = str(spec.get("cidr") or "0.0.0.0/0")
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise errors.Invalid(f"Invalid CIDR {spec.get('cidr')}") from None
        # as given (Nova's parse_cidr checks it, Neutron keeps its host bits): Nova shows back what was asked
        body.update(remote_ip_prefix=cidr, ethertype="IPv6" if network.version == 6 else "IPv4")
    return body


async def create_rule(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    body = await json_body(request)
    spec = body.get("security_group_rule") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise errors.Invalid("The request body is missing security_group_rule.")
    if spec.get("parent_group_id") is None:
        raise errors.Invalid("Security group id should be uuid")
    api, parent = await _one(request, ctx, str(spec["parent_group_id"]))
    rule_body = _rule_body(spec, parent["id"])
    if "remote_group_id" in rule_body:
        await _one(request, ctx, rule_body["remote_group_id"])  # 404 for a peer group the caller cannot see
    limit = await network_quotas.limit_for(request, "security_group_rule", str(parent.get("project_id") or ctx.project))
    rule = await _as_invalid(lambda: api.create(ctx, "security_group_rule", rule_body, limit))()
    groups = {parent["id"]: parent, **await _groups_by_id(request, ctx, {rule.get("remote_group_id")} - {None, parent["id"]})}
    return web.json_response({"security_group_rule": _rule_view(rule, groups)})


async def delete_rule(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    rule_id = request.match_info["rule_id"]
    if not is_uuid(rule_id):
        raise errors.SecurityGroupRuleNotFound(id=rule_id)
    api, _ = await find_cell(request.config_dict[ROUTER], ctx, "security_group_rule", rule_id.lower())
    await api.delete(ctx, "security_group_rule", rule_id.lower())
    return web.Response(status=202)


async def server_groups(request: web.Request) -> web.Response:
    """The groups of the server's ports (Nova's server security groups), each once."""
    ctx = context(request)
    cc = ComputeContext.of(request)
    mapping = await mappings.get(cc.db, ctx, request.match_info["server_id"])  # 404 for another project's
    uuid, cell = str(mapping.instance_uuid), request.config_dict[ROUTER].cell(mapping.cell_path)
    ports = await NetworkAPI(cell).index(ctx, "port", {"device_id": [uuid], "device_owner": INSTANCE_OWNER})
    ids = list(dict.fromkeys(g for p in ports for g in p.get("security_groups") or []))
    found = await _groups_by_id(request, ctx, set(ids))
    return web.json_response({"security_groups": await _views(request, ctx, [found[g] for g in ids if g in found])})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-security-groups", index)
    app.router.add_post("/v2.1/os-security-groups", create)
    app.router.add_get("/v2.1/os-security-groups/{group_id}", show)
    app.router.add_put("/v2.1/os-security-groups/{group_id}", update)
    app.router.add_delete("/v2.1/os-security-groups/{group_id}", delete)
    app.router.add_post("/v2.1/os-security-group-rules", create_rule)
    app.router.add_delete("/v2.1/os-security-group-rules/{rule_id}", delete_rule)
    app.router.add_get("/v2.1/servers/{server_id}/os-security-groups", server_groups)
