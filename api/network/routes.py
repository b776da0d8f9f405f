"""/network: the Neutron v2.0 subset (networks, subnets, ports, security groups
and rules) in front of the cells' network controllers.

Records live in the cell DBs. A listing asks every cell with a live network
controller and merges; a show/update/delete finds the cell holding the id; a
create goes to the cell of the network it names, or to the first cell. Errors
come back in Neutron's shape: {"NeutronError": {"type", "message", "detail"}}.
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import status_and_message
from api.http import context, json_body
from api.keys import ROUTER, public_url
from api.middleware import route_policy, token_auth
from api.network import quotas
from api.network.cells import each_cell, find_cell, network_cells
from api.policy import routes as policy_routes
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.network import NetworkAPI

LOG = logging.getLogger(__name__)
# URL collection -> (controller resource, singular body key)
COLLECTIONS = {"networks": ("network", "network"), "subnets": ("subnet", "subnet"), "ports": ("port", "port"),
               "security-groups": ("security_group", "security_group"),
               "security-group-rules": ("security_group_rule", "security_group_rule"),
               "routers": ("router", "router"), "floatingips": ("floatingip", "floatingip")}
BULK_MAX = 100  # items of one bulk create: each is a call to a cell
UPDATABLE = {"network", "subnet", "port", "security_group", "router", "floatingip"}
# error code of the one tree -> Neutron's exception type name
NEUTRON_TYPES = {"network_not_found": "NetworkNotFound", "subnet_not_found": "SubnetNotFound",
                 "port_not_found": "PortNotFound", "security_group_not_found": "SecurityGroupNotFound",
                 "security_group_rule_not_found": "SecurityGroupRuleNotFound",
                 "ip_address_exhausted": "IpAddressGenerationFailure", "network_in_use": "NetworkInUse",
                 "invalid": "InvalidInput", "malformed_body": "BadRequest", "conflict": "Conflict",
                 "forbidden": "PolicyNotAuthorized", "unauthorized": "NotAuthorized", "over_quota": "OverQuota",
                 "router_not_found": "RouterNotFound", "floatingip_not_found": "FloatingIPNotFound",
                 "router_in_use": "RouterInUse",
                 "revision_number_constraint_failed": "RevisionNumberConstraintFailed"}
_FALLBACK = {400: "BadRequest", 401: "NotAuthorized", 403: "Forbidden", 404: "HTTPNotFound", 405: "HTTPMethodNotAllowed",
             409: "Conflict", 503: "ServiceUnavailable"}
EXTENSIONS = (("security-group", "security-group", "The security groups extension."),
              ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
              ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
              ("port-security", "Port Security", "Provides port security"),
              ("router", "Neutron L3 Router", ("Router abstraction for basic L3 forwarding between L2 "
               "Neutron networks and access to external networks via a NAT gateway.")),
              ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
              ("ext-gw-mode", "Neutron L3 Configurable external gateway mode",
               ("Extension of the router abstraction for specifying whether SNAT should occur on the "
               "external gateway")),
              ("standard-attr-description", "standard-attr-description", "Extension to add descriptions"),
              ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters."),
              ("default-subnetpools", "Default Subnetpools", "Not offered: give a cidr"))


def neutron_body(exc: BaseException, status: int, message: str) -> dict[str, Any]:
    code = exc.code if isinstance(exc, errors.CellcloudError) else ""
    kind = NEUTRON_TYPES.get(code) or _FALLBACK.get(status, "HTTPInternalServerError")
    return {"NeutronError": {"type": kind, "message": message, "detail": ""}}


@web.middleware
async def neutron_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        status, message = status_and_message(exc, request)
        return web.json_response(neutron_body(exc, status, message), status=status)
    except Exception as exc:  # noqa: BLE001 - every failure in Neutron's shape, never a traceback
        status, message = status_and_message(exc, request)
        return web.json_response(neutron_body(exc, status, message), status=status)


def _is_public(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and request.path.rstrip("/") in ("/network", "/network/v2.0")


def _filters(request: web.Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in set(request.query):
        values = request.query.getall(key)
        out[key] = values if len(values) > 1 else values[0]
    out.pop("fields", None)
    return out


def _only_fields(request: web.Request, record: dict[str, Any]) -> dict[str, Any]:
    fields = request.query.getall("fields", [])
    return {k: v for k, v in record.items() if k in fields} if fields else record


async def list_collection(request: web.Request) -> web.Response:
    collection = request.match_info["collection"]
    resource, _ = _resource(collection)
    ctx, filters = context(request), _filters(request)
    if "tenant_id" in filters and "project_id" not in filters:
        filters["project_id"] = filters.pop("tenant_id")
    per_cell = await each_cell(request.config_dict[ROUTER], ctx, lambda api, c: api.index(c, resource, filters))
    records = [_only_fields(request, r) for cell_records in per_cell for r in cell_records]
    return web.json_response({collection.replace("-", "_"): records})


async def show(request: web.Request) -> web.Response:
    resource, key = _resource(request.match_info["collection"])
    _, record = await find_cell(request.config_dict[ROUTER], context(request), resource, request.match_info["id"])
    return web.json_response({key: _only_fields(request, record)})


async def create(request: web.Request) -> web.Response:
    resource, key = _resource(request.match_info["collection"])
    ctx = context(request)
    body = await json_body(request)
    if isinstance(body, dict) and isinstance(body.get(key + "s"), list) and key not in body:
        return await _bulk_create(request, resource, key, body[key + "s"])
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise errors.Invalid(reason=f"Resource body required: {{\"{key}\": {{...}}}}")
    return web.json_response({key: await create_resource(request, ctx, resource, body[key])}, status=201)


async def _bulk_create(request: web.Request, resource: str, key: str, items: list[Any]) -> web.Response:
    """Neutron's bulk create ({"<resource>s": [...]}): all or nothing, each made as a single create
    would be (its cell, its quota); a failure deletes the ones made before it and answers its error."""
    if not items or not all(isinstance(i, dict) for i in items):
        raise errors.Invalid(reason=f"Resource body required: {{\"{key}s\": [{{...}}, ...]}}")
    if len(items) > BULK_MAX:
        raise errors.Invalid(reason=f"at most {BULK_MAX} {key}s in one bulk create")
    ctx = context(request)
    made: list[dict[str, Any]] = []
    try:
        for item in items:
            made.append(await create_resource(request, ctx, resource, item))
    except Exception:
        for record in reversed(made):
            try:
                api, _ = await find_cell(request.config_dict[ROUTER], ctx, resource, str(record["id"]))
                await api.delete(ctx, resource, str(record["id"]))
            except Exception:  # the create's error is the answer; a leftover is logged
                LOG.exception("bulk create of %ss: could not delete %s after a failure", key, record["id"])
        raise
    return web.json_response({f"{key}s": made}, status=201)


async def create_resource(request: web.Request, ctx: RequestContext, resource: str,
                          item: dict[str, Any]) -> dict[str, Any]:
    """One create as POST /v2.0/<collection> makes it (its cell, its owner, its quota); Nova's proxies
    (api/compute/floating_ips.py) make theirs through here too."""
    api = NetworkAPI(network_cells(request.config_dict[ROUTER])[0])
    parent = item.get("network_id") if resource in ("subnet", "port") else \
        item.get("floating_network_id") if resource == "floatingip" else \
        (item.get("external_gateway_info") or {}).get("network_id") if resource == "router" and \
        isinstance(item.get("external_gateway_info"), dict) else \
        item.get("security_group_id") if resource == "security_group_rule" else None
    owner = item.get("project_id") or item.get("tenant_id") or ctx.project
    if isinstance(parent, str):
        try:
            parent_kind = "network" if resource != "security_group_rule" else "security_group"
            api, parent_record = await find_cell(request.config_dict[ROUTER], ctx, parent_kind, parent)
            if resource not in ("port", "router", "floatingip"):  # a subnet or rule belongs to its network's or group's project
                owner = parent_record.get("project_id") or owner
        except errors.NotFound:
            pass  # the cell's controller answers with the right error
    limit = await quotas.limit_for(request, resource, str(owner)) if isinstance(owner, str) and owner else None
    return await api.create(ctx, resource, item, limit)


async def update(request: web.Request) -> web.Response:
    resource, key = _resource(request.match_info["collection"])
    if resource not in UPDATABLE:
        raise errors.Invalid(reason=f"updating a {resource} is not supported by this cloud")
    ctx = context(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise errors.Invalid(reason=f"Resource body required: {{\"{key}\": {{...}}}}")
    # Neutron's If-Match: revision_number=N, honoured on floating IPs (where two moves may race)
    if_match = _if_match(request.headers.get("If-Match")) if resource == "floatingip" else None
    return web.json_response({key: await update_resource(request, ctx, resource, request.match_info["id"], body[key],
                                                         if_match)})


def _if_match(header: str | None) -> int | None:
    if header is None:
        return None
    name, _, value = header.strip().partition("=")
    if name.strip() != "revision_number" or not value.strip().isdigit():
        raise errors.Invalid(reason=f"If-Match must be revision_number=N, not {header!r}")
    return int(value)


async def update_resource(request: web.Request, ctx: RequestContext, resource: str, id: str,
                          changes: dict[str, Any], if_match: int | None = None) -> dict[str, Any]:
    """One update as PUT /v2.0/<collection>/{id} makes it, in the cell holding `id`."""
    api, _ = await find_cell(request.config_dict[ROUTER], ctx, resource, id)
    result: dict[str, Any] = await api.update(ctx, resource, id, changes, if_match=if_match)
    return result


async def delete_resource(request: web.Request, ctx: RequestContext, resource: str, id: str) -> None:
    """One delete as DELETE /v2.0/<collection>/{id} makes it, in the cell holding `id`."""
    api, _ = await find_cell(request.config_dict[ROUTER], ctx, resource, id)
    await api.delete(ctx, resource, id)


async def delete(request: web.Request) -> web.Response:
    resource, _ = _resource(request.match_info["collection"])
    await delete_resource(request, context(request), resource, request.match_info["id"])
    return web.Response(status=204)


async def router_interface(request: web.Request) -> web.Response:
    """PUT /routers/{id}/add_router_interface | remove_router_interface, body {subnet_id} or {port_id}."""
    action = request.match_info["action"]
    if action not in ("add_router_interface", "remove_router_interface"):
        raise web.HTTPNotFound()
    ctx = context(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.Invalid(reason="the body must be {\"subnet_id\": ...} or {\"port_id\": ...}")
    api, _ = await find_cell(request.config_dict[ROUTER], ctx, "router", request.match_info["id"])
    verb = "add" if action.startswith("add") else "remove"
    return web.json_response(await api.router_interface(ctx, verb, request.match_info["id"], body))


def _resource(collection: str) -> tuple[str, str]:
    try:
        return COLLECTIONS[collection]
    except KeyError:
        raise web.HTTPNotFound() from None


def _version(base: str) -> dict[str, Any]:
    return {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{base}/network/v2.0/"}]}


async def versions(request: web.Request) -> web.Response:
    return web.json_response({"versions": [_version(public_url(request))]})


async def version(request: web.Request) -> web.Response:
    base = public_url(request)
    return web.json_response({"resources": [
        {"name": key, "collection": coll, "links": [{"rel": "self", "href": f"{base}/network/v2.0/{coll}"}]}
        for coll, (_, key) in COLLECTIONS.items()]})


async def extensions(request: web.Request) -> web.Response:
    return web.json_response({"extensions": [
        {"alias": alias, "name": name, "description": desc, "updated": "2013-01-01T00:00:00-00:00", "links": []}
        for alias, name, desc in EXTENSIONS if alias != "default-subnetpools"]})


async def extension(request: web.Request) -> web.Response:
    for alias, name, desc in EXTENSIONS:
        if alias == request.match_info["alias"] and alias != "default-subnetpools":
            return web.json_response({"extension": {"alias": alias, "name": name, "description": desc,
                                                    "updated": "2013-01-01T00:00:00-00:00", "links": []}})
    raise errors.NotFound(f"Extension with alias {request.match_info['alias']} does not exist")


def make_network_app() -> web.Application:
    app = web.Application(middlewares=[neutron_errors, token_auth(_is_public),
                                       route_policy("/network", policy_routes.NETWORK)])
    app.router.add_get("", versions)
    app.router.add_get("/", versions)
    app.router.add_get("/v2.0", version)
    app.router.add_get("/v2.0/", version)
    app.router.add_get("/v2.0/extensions", extensions)
    app.router.add_get("/v2.0/extensions/{alias}", extension)
    quotas.add_routes(app)  # /v2.0/quotas (issue 7): api/network/quotas.py, before the generic routes
    app.router.add_get("/v2.0/{collection}", list_collection)
    app.router.add_post("/v2.0/{collection}", create)
    app.router.add_get("/v2.0/{collection}/{id}", show)
    app.router.add_put("/v2.0/{collection}/{id}", update)
    app.router.add_delete("/v2.0/{collection}/{id}", delete)
    app.router.add_put("/v2.0/routers/{id}/{action}", router_interface)
    return app

