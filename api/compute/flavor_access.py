"""Nova's os-flavor-access: the projects a private flavor is shared with (admins only, 403 otherwise).

    GET  /flavors/{id}/os-flavor-access                          {"flavor_access": [{flavor_id, tenant_id}]}
    POST /flavors/{id}/action {"addTenantAccess": {"tenant": P}}     the list after; 409 for a public flavor
                                                                 or a project that has access already
    POST /flavors/{id}/action {"removeTenantAccess": {"tenant": P}}  the list after; 404 for no such access

A project a private flavor is shared with sees it in its flavor lists, shows it and boots from it
(api/compute/flavors.py); a new private flavor is shared with nobody, as Nova's. The project must exist
(400, as Nova asks Keystone). Deleting a flavor deletes its access list (ON DELETE CASCADE).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import flavor_projects, flavors, projects
from api.http import authorize, json_body
from api.keys import ENGINE
from api.validation import validate
from cells import errors

ACTIONS = {"addTenantAccess": "add_tenant_access", "removeTenantAccess": "remove_tenant_access"}
_TENANT = {"type": "object", "properties": {"tenant": {"type": "string", "minLength": 1, "maxLength": 255,
                                                       "pattern": r"^[a-zA-Z0-9-_]*$"}},
           "required": ["tenant"], "additionalProperties": False}
ACTION_SCHEMAS: dict[str, dict[str, Any]] = {
    action: {"type": "object", "properties": {action: _TENANT}, "required": [action], "additionalProperties": False}
    for action in ACTIONS}


class FlavorAccessExists(errors.Conflict):
    code = "flavor_access_exists"
    msg = "Flavor access already exists for flavor {flavor_id} and project {project_id} combination."


class FlavorAccessNotFound(errors.NotFound):
    code, msg = "flavor_access_not_found", "Flavor access not found for {flavor_id} / {project_id} combination."


async def _flavor_is_public(conn: AsyncConnection, flavor_id: str) -> bool:
    found = (await conn.execute(select(flavors.c.is_public).where(flavors.c.id == flavor_id))).first()
    if found is None:
        raise errors.FlavorNotFound(flavor_id=flavor_id)
    return bool(found.is_public)


async def _access(conn: AsyncConnection, flavor_id: str) -> list[dict[str, str]]:
    rows = (await conn.execute(select(flavor_projects.c.project_id).where(flavor_projects.c.flavor_id == flavor_id)
                               .order_by(flavor_projects.c.project_id))).all()
    return [{"flavor_id": flavor_id, "tenant_id": r.project_id} for r in rows]


async def access_list(request: web.Request) -> web.Response:
    """A private flavor's projects; 404 for a public flavor (Nova: no access list there)."""
    authorize(request, "os_compute_api:os-flavor-access")
    flavor_id = request.match_info["flavor_id"]
    async with request.config_dict[ENGINE].connect() as conn:
        if await _flavor_is_public(conn, flavor_id):
            raise errors.NotFound("Access list not available for public flavors.")
        return web.json_response({"flavor_access": await _access(conn, flavor_id)})


async def _project_exists(conn: AsyncConnection, project_id: str) -> None:
    if (await conn.execute(select(projects.c.id).where(projects.c.id == project_id))).first() is None:
        raise errors.Invalid(f"Project ID {project_id} is not a valid project.")


async def action(request: web.Request) -> web.Response:
    """POST /flavors/{id}/action: addTenantAccess or removeTenantAccess (validate, then check and change in
    one API DB write unit, so two admins racing leave one row and one of them a 409)."""
    body = await json_body(request)
    name = next(iter(body)) if isinstance(body, dict) and len(body) == 1 else None
    if name not in ACTIONS:
        raise errors.Invalid("There is no such action: " + (name or "(none)"))
    authorize(request, f"os_compute_api:os-flavor-access:{ACTIONS[name]}")
    validate(ACTION_SCHEMAS[name], body)
    flavor_id, project_id = request.match_info["flavor_id"], body[name]["tenant"]
    async with request.config_dict[ENGINE].begin() as conn:
        public = await _flavor_is_public(conn, flavor_id)
        shared = (await conn.execute(select(flavor_projects.c.project_id).where(
            flavor_projects.c.flavor_id == flavor_id, flavor_projects.c.project_id == project_id))).first()
        if name == "addTenantAccess":
            if public:
                raise errors.Conflict("Can not add access to a public flavor.")
            await _project_exists(conn, project_id)
            if shared is not None:
                raise FlavorAccessExists(flavor_id=flavor_id, project_id=project_id)
            await conn.execute(insert(flavor_projects).values(flavor_id=flavor_id, project_id=project_id))
        else:  # a public flavor has no access to remove: 404, as Nova
            if shared is None:
                raise FlavorAccessNotFound(flavor_id=flavor_id, project_id=project_id)
            await conn.execute(delete(flavor_projects).where(flavor_projects.c.flavor_id == flavor_id,
                                                             flavor_projects.c.project_id == project_id))
        listed = await _access(conn, flavor_id)
    return web.json_response({"flavor_access": listed})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/flavors/{flavor_id}/os-flavor-access", access_list)
    app.router.add_post("/v2.1/flavors/{flavor_id}/action", action)
