"""Keystone v3 catalog reads: /v3/auth/catalog, /v3/auth/system, services, endpoints, regions.

The catalog is the cluster's (api/identity/views.py SERVICES): written by the bootstrap, the
same on every worker and restart (stable ids), read here. Services and endpoints are the
operator's to list (identity:list_services, list_endpoints); any token may read its own catalog
and the regions, as in Keystone.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from api.db.schema import projects
from api.identity.resources import authorize
from api.identity.tokens import ADMIN_PROJECT
from api.identity.views import catalog
from api.keys import CLUSTER, ENGINE, TOKENS, public_url
from cells import errors


def _links(request: web.Request) -> dict[str, Any]:
    return {"self": public_url(request) + request.path, "previous": None, "next": None}


def _services(request: web.Request) -> list[dict[str, Any]]:
    """The catalog with Keystone's endpoint URL template for the project ($(project_id)s)."""
    return catalog(request.config_dict[CLUSTER].api, "$(project_id)s")


async def auth_catalog(request: web.Request) -> web.Response:
    token = await authorize(request, "get_auth_catalog")
    if token.project is None and not token.system:
        raise errors.Forbidden("The authenticated token should be scoped to a project or the system.")
    api = request.config_dict[CLUSTER].api
    return web.json_response({"catalog": catalog(api, token.project.id if token.project else ""),
                              "links": _links(request)})


async def auth_system(request: web.Request) -> web.Response:
    """GET /v3/auth/system: whether the token's user may scope to the system (a role on the admin project)."""
    token = await authorize(request, "get_auth_system")
    tokens = request.config_dict[TOKENS]
    async with request.config_dict[ENGINE].connect() as conn:
        admin = (await conn.execute(select(projects.c.id).where(projects.c.name == ADMIN_PROJECT[0],
                                                                projects.c.domain_id == ADMIN_PROJECT[1]))).scalar()
        has = bool(admin) and bool(await tokens.roles_on(conn, token.user.id, str(admin)))
    return web.json_response({"system": [{"all": True}] if has else [], "links": _links(request)})


def _service_view(request: web.Request, entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry["id"], "type": entry["type"], "name": entry["name"], "enabled": True, "description": "",
            "links": {"self": f"{public_url(request)}/identity/v3/services/{entry['id']}"}}


def _endpoint_views(request: web.Request) -> list[dict[str, Any]]:
    out = []
    for entry in _services(request):
        for ep in entry["endpoints"]:
            out.append({"id": ep["id"], "interface": ep["interface"], "region": ep["region"],
                        "region_id": ep["region_id"], "service_id": entry["id"], "url": ep["url"], "enabled": True,
                        "links": {"self": f"{public_url(request)}/identity/v3/endpoints/{ep['id']}"}})
    return out


async def list_services(request: web.Request) -> web.Response:
    await authorize(request, "list_services")
    views = [_service_view(request, e) for e in _services(request)]
    for key in ("type", "name"):
        if key in request.query:
            views = [v for v in views if v[key] == request.query[key]]
    return web.json_response({"services": views, "links": _links(request)})


async def show_service(request: web.Request) -> web.Response:
    await authorize(request, "get_service")
    for entry in _services(request):
        if entry["id"] == request.match_info["service_id"]:
            return web.json_response({"service": _service_view(request, entry)})
    raise errors.NotFound(f"Could not find service: {request.match_info['service_id']}.")


async def list_endpoints(request: web.Request) -> web.Response:
    await authorize(request, "list_endpoints")
    views = _endpoint_views(request)
    for key in ("service_id", "interface", "region_id"):
        if key in request.query:
            views = [v for v in views if v[key] == request.query[key]]
    return web.json_response({"endpoints": views, "links": _links(request)})


async def show_endpoint(request: web.Request) -> web.Response:
    await authorize(request, "get_endpoint")
    for view in _endpoint_views(request):
        if view["id"] == request.match_info["endpoint_id"]:
            return web.json_response({"endpoint": view})
    raise errors.NotFound(f"Could not find endpoint: {request.match_info['endpoint_id']}.")


def _region(request: web.Request) -> dict[str, Any]:
    name = request.config_dict[CLUSTER].api.region
    return {"id": name, "description": "", "parent_region_id": None,
            "links": {"self": f"{public_url(request)}/identity/v3/regions/{name}"}}


async def list_regions(request: web.Request) -> web.Response:
    await authorize(request, "list_regions")
    return web.json_response({"regions": [_region(request)], "links": _links(request)})


async def show_region(request: web.Request) -> web.Response:
    await authorize(request, "get_region")
    region = _region(request)
    if request.match_info["region_id"] != region["id"]:
        raise errors.NotFound(f"Could not find region: {request.match_info['region_id']}.")
    return web.json_response({"region": region})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/auth/catalog", auth_catalog)
    app.router.add_get("/v3/auth/system", auth_system)
    app.router.add_get("/v3/services", list_services)
    app.router.add_get("/v3/services/{service_id}", show_service)
    app.router.add_get("/v3/endpoints", list_endpoints)
    app.router.add_get("/v3/endpoints/{endpoint_id}", show_endpoint)
    app.router.add_get("/v3/regions", list_regions)
    app.router.add_get("/v3/regions/{region_id}", show_region)
