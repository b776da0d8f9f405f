"""/network/v2.0/quotas: Neutron's quota API, as `openstack quota show|set` use it.

Networks, subnets, ports, security groups and rules have per-project limits with
Neutron's defaults (cells/network/quota.py), kept in the API DB's quotas table
beside Nova's and Cinder's; the create route sends the owner's limit to the cell's
network controller, which checks it in the same write that creates the resource.
`details` counts what the project really holds in every cell. Routers and floating
IPs (issue 17) are limited too; RBAC policies and subnet pools do not exist here: -1 and always 0 used, and
setting them is refused. Policy as Neutron's: a member reads its own project's,
only admins read others' or change them.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from api import quota
from api.db.schema import quotas as quota_table
from api.http import allowed, context, json_body
from api.keys import ENGINE, ROUTER
from api.network.cells import each_cell
from cells import errors
from cells.context import RequestContext
from cells.network import quota as netquota
from cells.rpcapi.network import NetworkAPI

UNLIMITED = -1
_MAX = 0x7FFFFFFF
ABSENT = ("rbac_policy", "subnetpool")  # no such resources here
LIMITED = tuple(netquota.DEFAULTS)


def _project(request: web.Request, ctx: RequestContext) -> str:
    project = request.match_info["project_id"]
    if not allowed(request, "get_quota", {"project_id": project}):
        raise errors.Forbidden("rule:get_quota is disallowed by policy")
    return project


def _admin(request: web.Request, rule: str = "update_quota") -> None:
    if not allowed(request, rule, {"project_id": request.match_info.get("project_id")}):
        raise errors.Forbidden(f"rule:{rule} is disallowed by policy")


async def project_limits(request: web.Request, project: str) -> dict[str, int]:
    """Every Neutron quota resource's limit for the project (the absent ones -1)."""
    limits = await quota.limits(request.config_dict[ENGINE], project)
    return {**{r: limits[r] for r in LIMITED}, **dict.fromkeys(ABSENT, UNLIMITED)}


async def show(request: web.Request) -> web.Response:
    project = _project(request, context(request))
    return web.json_response({"quota": await project_limits(request, project)})


async def defaults(request: web.Request) -> web.Response:
    _project(request, context(request))
    return web.json_response({"quota": {**netquota.DEFAULTS, **dict.fromkeys(ABSENT, UNLIMITED)}})


async def details(request: web.Request) -> web.Response:
    ctx = context(request)
    project = _project(request, ctx)
    used = dict.fromkeys([*LIMITED, *ABSENT], 0)
    for resource in LIMITED:
        async def count(api: NetworkAPI, bounded: RequestContext, kind: str = resource) -> Any:
            return await api.index(bounded, kind, {"project_id": project})
        for records in await each_cell(request.config_dict[ROUTER], ctx, count):
            used[resource] += len(records)
    limits = await project_limits(request, project)
    return web.json_response({"quota": {name: {"limit": limits[name], "used": used[name], "reserved": 0}
                                        for name in limits}})


def _values(body: Any) -> dict[str, int]:
    """Neutron's {"quota": {resource: limit}}: integers from -1 up, for resources that exist here."""
    if not isinstance(body, dict) or not isinstance(body.get("quota"), dict) or set(body) != {"quota"}:
        raise errors.Invalid(reason='Resource body required: {"quota": {...}}')
    out: dict[str, int] = {}
    for resource, raw in body["quota"].items():
        if resource in ("project_id", "tenant_id", "force", "check_limit"):
            continue  # what clients send beside the limits
        if resource in ABSENT:
            raise errors.Invalid(reason=f"{resource} does not exist in this cloud: its quota cannot be set")
        if resource not in LIMITED:
            raise errors.Invalid(reason=f"Unrecognized attribute(s) '{resource}'")
        try:
            value = int(raw) if not isinstance(raw, bool) and isinstance(raw, (int, str)) else None
        except ValueError:
            value = None
        if value is None or not UNLIMITED <= value <= _MAX:
            raise errors.Invalid(reason=f"'{raw}' is not a valid quota for {resource}: an integer from -1 to {_MAX}")
        out[resource] = value
    return out


async def update(request: web.Request) -> web.Response:
    _admin(request)
    project = request.match_info["project_id"]
    values = _values(await json_body(request))
    await quota.set_limits(request.config_dict[ENGINE], project, values)
    return web.json_response({"quota": await project_limits(request, project)})


async def reset(request: web.Request) -> web.Response:
    _admin(request, "delete_quota")
    project = request.match_info["project_id"]
    async with request.config_dict[ENGINE].begin() as conn:  # no override left: Neutron's defaults again
        await conn.execute(quota_table.delete().where(quota_table.c.project_id == project,
                                                      quota_table.c.resource.in_(LIMITED)))
    return web.Response(status=204)


async def index(request: web.Request) -> web.Response:
    """The projects whose network quotas differ from the defaults (admin)."""
    if not allowed(request, "get_quota", {"project_id": None}):  # every project's: the admin's
        raise errors.Forbidden("rule:get_quota is disallowed by policy")
    async with request.config_dict[ENGINE].connect() as conn:
        rows = (await conn.execute(select(quota_table.c.project_id).where(quota_table.c.resource.in_(LIMITED))
                                   .distinct().order_by(quota_table.c.project_id))).all()
    out = []
    for (project,) in rows:
        limits = await project_limits(request, str(project))
        out.append({"project_id": project, "tenant_id": project, **limits})
    return web.json_response({"quotas": out})


async def limit_for(request: web.Request, resource: str, project: str) -> dict[str, Any] | None:
    """What the create route sends the controller: {"project", "limit"}, None for uncounted kinds."""
    if resource not in LIMITED:
        return None
    limits = await quota.limits(request.config_dict[ENGINE], project)
    return {"project": project, "limit": limits[resource]}


def add_routes(app: web.Application) -> None:
    """Before the generic /v2.0/{collection}/{id} routes, which would take these paths."""
    app.router.add_get("/v2.0/quotas", index)
    app.router.add_get("/v2.0/quotas/{project_id}", show)
    app.router.add_get("/v2.0/quotas/{project_id}/default", defaults)
    app.router.add_get("/v2.0/quotas/{project_id}/details", details)
    app.router.add_put("/v2.0/quotas/{project_id}", update)
    app.router.add_delete("/v2.0/quotas/{project_id}", reset)
