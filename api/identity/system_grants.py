"""Keystone v3 system role assignments: /v3/system/users/{user_id}/roles[/{role_id}].

A user's system roles here are their roles on the admin project (api/identity/tokens.py: a
system-scoped token carries exactly those), so a system grant is a grant on the admin project,
listed by role_assignments as one on that project. What Tempest and `openstack role add --system
all` use to make system readers and administrators.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import projects, role_assignments, roles
from api.identity.manage import add_grant, grant_clause, grant_exists, user_row
from api.identity.resources import RoleNotFound, authorize, collection, role_view
from api.identity.tokens import ADMIN_PROJECT
from api.keys import ENGINE, public_url
from cells import errors


def _target(request: web.Request) -> dict[str, Any]:
    m = request.match_info
    return {"target.user.id": m["user_id"], "target.role.id": m.get("role_id")}


async def _grant(conn: AsyncConnection, request: web.Request) -> dict[str, str]:
    """The grant the path names, on the admin project; 404 for an unknown user or role."""
    m = request.match_info
    await user_row(conn, m["user_id"])
    if (await conn.execute(select(roles.c.id).where(roles.c.id == m["role_id"]))).first() is None:
        raise RoleNotFound(role_id=m["role_id"])
    admin = (await conn.execute(select(projects.c.id).where(
        projects.c.name == ADMIN_PROJECT[0], projects.c.domain_id == ADMIN_PROJECT[1]))).scalar()
    if admin is None:
        raise errors.NotFound("The admin project, which holds system roles, does not exist.")
    return {"user_id": m["user_id"], "project_id": str(admin), "role_id": m["role_id"]}


def _missing(grant: dict[str, str]) -> errors.NotFound:
    return errors.NotFound(f"Could not find role assignment with role: {grant['role_id']}, user or group: "
                           f"{grant['user_id']}, project, domain, or system: system.")


async def create_system_grant(request: web.Request) -> web.Response:
    await authorize(request, "create_system_grant_for_user", _target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        grant = await _grant(conn, request)
        await add_grant(conn, role_assignments, grant)
    return web.Response(status=204)


async def check_system_grant(request: web.Request) -> web.Response:
    await authorize(request, "check_system_grant_for_user", _target(request))
    async with request.config_dict[ENGINE].connect() as conn:
        grant = await _grant(conn, request)
        found = await grant_exists(conn, role_assignments, grant)
    if not found:
        raise _missing(grant)
    return web.Response(status=204)


async def revoke_system_grant(request: web.Request) -> web.Response:
    await authorize(request, "revoke_system_grant_for_user", _target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        grant = await _grant(conn, request)
        if (await conn.execute(select(roles.c.name).where(roles.c.id == grant["role_id"]))).scalar() == "admin":
            admins = (await conn.execute(select(role_assignments.c.user_id).where(and_(
                role_assignments.c.project_id == grant["project_id"],
                role_assignments.c.role_id == grant["role_id"])))).all()
            if [a.user_id for a in admins] == [grant["user_id"]]:
                raise errors.Forbidden("This is the last admin of the system: the cloud would have none.")
        result = await conn.execute(delete(role_assignments).where(grant_clause(role_assignments, grant)))
    if result.rowcount == 0:
        raise _missing(grant)
    return web.Response(status=204)


async def list_system_grants(request: web.Request) -> web.Response:
    await authorize(request, "list_system_grants_for_user", _target(request))
    user_id = request.match_info["user_id"]
    async with request.config_dict[ENGINE].connect() as conn:
        await user_row(conn, user_id)
        rows = (await conn.execute(
            select(roles).join(role_assignments, role_assignments.c.role_id == roles.c.id)
            .join(projects, projects.c.id == role_assignments.c.project_id)
            .where(and_(role_assignments.c.user_id == user_id, projects.c.name == ADMIN_PROJECT[0],
                        projects.c.domain_id == ADMIN_PROJECT[1])).order_by(roles.c.name))).all()
    base = public_url(request)
    return collection(request, "roles", (role_view(base, r) for r in rows))


def add_routes(app: web.Application) -> None:
    grant = "/v3/system/users/{user_id}/roles/{role_id}"
    app.router.add_put(grant, create_system_grant)
    app.router.add_get(grant, check_system_grant)  # aiohttp adds HEAD, which is what clients send
    app.router.add_delete(grant, revoke_system_grant)
    app.router.add_get("/v3/system/users/{user_id}/roles", list_system_grants)
