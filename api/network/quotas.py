"""/network/v2.0/quotas: Neutron's quota API, as `openstack quota show` reads it.

This cloud does not limit network resources per project, so every limit is
-1 (Neutron's "unlimited") and says so; `details` counts what the project
really holds in every cell. Changing a network limit is refused with the
reason rather than stored and ignored. Neutron's whole default set is listed;
routers, floating IPs, RBAC policies and subnet pools do not exist here, so
their use is always 0.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.http import context
from api.network import routes
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.network import NetworkAPI

UNLIMITED = -1
# Neutron quota resource -> the controller's resource it counts (None: no such resource here)
RESOURCES: dict[str, str | None] = {
    "network": "network", "subnet": "subnet", "port": "port", "router": None, "floatingip": None,
    "security_group": "security_group", "security_group_rule": "security_group_rule", "rbac_policy": None,
    "subnetpool": None}


def _project(request: web.Request, ctx: RequestContext) -> str:
    project = request.match_info["project_id"]
    if not ctx.is_admin and project != ctx.project:
        raise errors.Forbidden("rule:get_quota is disallowed by policy")
    return project


async def show(request: web.Request) -> web.Response:
    _project(request, context(request))
    return web.json_response({"quota": dict.fromkeys(RESOURCES, UNLIMITED)})


async def defaults(request: web.Request) -> web.Response:
    _project(request, context(request))
    return web.json_response({"quota": dict.fromkeys(RESOURCES, UNLIMITED)})


async def details(request: web.Request) -> web.Response:
    ctx = context(request)
    project = _project(request, ctx)
    used = dict.fromkeys(RESOURCES, 0)
    for quota_name, resource in RESOURCES.items():
        if resource is None:
            continue

        async def count(api: NetworkAPI, kind: str = resource) -> Any:
            return await api.index(ctx, kind, {"project_id": project})
        for records in await routes._each_cell(request, ctx, count):
            used[quota_name] += len(records)
    return web.json_response({"quota": {name: {"limit": UNLIMITED, "used": used[name], "reserved": 0}
                                        for name in RESOURCES}})


async def refuse_change(request: web.Request) -> web.Response:
    if not context(request).is_admin:
        raise errors.Forbidden("rule:update_quota is disallowed by policy")
    raise errors.Invalid(reason="this cloud does not limit network resources per project: every network quota "
                                "is -1 (unlimited) and cannot be changed")


async def index(request: web.Request) -> web.Response:
    if not context(request).is_admin:
        raise errors.Forbidden("rule:get_quota is disallowed by policy")
    return web.json_response({"quotas": []})  # no project has a non-default network quota


def add_routes(app: web.Application) -> None:
    """Before the generic /v2.0/{collection}/{id} routes, which would take these paths."""
    app.router.add_get("/v2.0/quotas", index)
    app.router.add_get("/v2.0/quotas/{project_id}", show)
    app.router.add_get("/v2.0/quotas/{project_id}/default", defaults)
    app.router.add_get("/v2.0/quotas/{project_id}/details", details)
    app.router.add_put("/v2.0/quotas/{project_id}", refuse_change)
    app.router.add_delete("/v2.0/quotas/{project_id}", refuse_change)
