"""Keystone v3 system role assignments: /v3/system/(users|groups)/{id}/roles[/{role_id}].

A user's system roles here are their roles on the admin project (api/identity/tokens.py: a
system-scoped token carries exactly those, a group's included), so a system grant is a grant on the
admin project, listed by role_assignments as one on that project: a user's in role_assignments, a
group's in group_role_assignments (every member then holds it on the system). What Tempest and
`openstack role add --system all --user U|--group G` use to make system readers and administrators.
A domain-specific role is never a system role (403, api/identity/role_scope.py).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import Table, and_, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import group_role_assignments, groups, projects, role_assignments, roles
from api.identity.manage import add_grant, grant_clause, grant_exists, user_row
from api.identity.resources import authorize, collection, role_view
from api.identity.role_scope import assignable_role
from api.identity.tokens import ADMIN_PROJECT
from api.keys import ENGINE, public_url
from cells import errors


def _actor(request: web.Request) -> tuple[str, Table, str]:
    """(actor kind, grant table, actor column) of the path: a user's system grant or a group's."""
    if "user_id" in request.match_info:
        return "user", role_assignments, "user_id"
    return "group", group_role_assignments, "group_id"


def _target(request: web.Request) -> dict[str, Any]:
    kind, _, column = _actor(request)
    return {f"target.{kind}.id": request.match_info[column], "target.role.id": request.match_info.get("role_id")}


async def _actor_exists(conn: AsyncConnection, request: web.Request) -> None:
    kind, _, column = _actor(request)
    actor_id = request.match_info[column]
    if kind == "user":
        await user_row(conn, actor_id)
    elif (await conn.execute(select(groups.c.id).where(groups.c.id == actor_id))).first() is None:
        raise errors.NotFound(f"Could not find group: {actor_id}.")


async def _admin_project(conn: AsyncConnection) -> str:
    admin = (await conn.execute(select(projects.c.id).where(
        projects.c.name == ADMIN_PROJECT[0], projects.c.domain_id == ADMIN_PROJECT[1]))).scalar()
    if admin is None:
        raise errors.NotFound("The admin project, which holds system roles, does not exist.")
    return str(admin)


async def _grant(conn: AsyncConnection, request: web.Request) -> tuple[Table, dict[str, str]]:
    """The grant the path names, on the admin project; 404 for an unknown actor or role."""
    _, table, column = _actor(request)
    await _actor_exists(conn, request)
    role_id = request.match_info["role_id"]
    await assignable_role(conn, role_id)  # the system: no domain-specific role
    return table, {column: request.match_info[column], "project_id": await _admin_project(conn), "role_id": role_id}


def _missing(column: str, grant: dict[str, str]) -> errors.NotFound:
    return errors.NotFound(f"Could not find role assignment with role: {grant['role_id']}, user or group: "
                           f"{grant[column]}, project, domain, or system: system.")


def _rule(request: web.Request, action: str) -> str:
    """Keystone's rule name: create/check/revoke_system_grant_for_user|group, list_system_grants_for_..."""
    grant = "grants" if action == "list" else "grant"
    return f"{action}_system_{grant}_for_{_actor(request)[0]}"


async def create_system_grant(request: web.Request) -> web.Response:
    await authorize(request, _rule(request, "create"), _target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        await add_grant(conn, *await _grant(conn, request))
    return web.Response(status=204)


async def check_system_grant(request: web.Request) -> web.Response:
    await authorize(request, _rule(request, "check"), _target(request))
    async with request.config_dict[ENGINE].connect() as conn:
        table, grant = await _grant(conn, request)
        found = await grant_exists(conn, table, grant)
    if not found:
        raise _missing(_actor(request)[2], grant)
    return web.Response(status=204)


async def revoke_system_grant(request: web.Request) -> web.Response:
    await authorize(request, _rule(request, "revoke"), _target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        table, grant = await _grant(conn, request)
        if table is role_assignments and (await conn.execute(
                select(roles.c.name).where(roles.c.id == grant["role_id"]))).scalar() == "admin":
            admins = (await conn.execute(select(role_assignments.c.user_id).where(and_(
                role_assignments.c.project_id == grant["project_id"],
                role_assignments.c.role_id == grant["role_id"])))).all()
            if [a.user_id for a in admins] == [grant["user_id"]]:
                raise errors.Forbidden("This is the last admin of the system: the cloud would have none.")
        result = await conn.execute(delete(table).where(grant_clause(table, grant)))
    if result.rowcount == 0:
        raise _missing(_actor(request)[2], grant)
    return web.Response(status=204)


async def list_system_grants(request: web.Request) -> web.Response:
    await authorize(request, _rule(request, "list"), _target(request))
    _, table, column = _actor(request)
    async with request.config_dict[ENGINE].connect() as conn:
        await _actor_exists(conn, request)
        admin = await _admin_project(conn)
        rows = (await conn.execute(
            select(roles).join(table, table.c.role_id == roles.c.id)
            .where(and_(table.c[column] == request.match_info[column], table.c.project_id == admin))
            .order_by(roles.c.name))).all()
    base = public_url(request)
    return collection(request, "roles", (role_view(base, r) for r in rows))


def add_routes(app: web.Application) -> None:
    for actor in ("users/{user_id}", "groups/{group_id}"):
        grant = f"/v3/system/{actor}/roles/{{role_id}}"
        app.router.add_put(grant, create_system_grant)
        app.router.add_get(grant, check_system_grant)  # aiohttp adds HEAD, which is what clients send
        app.router.add_delete(grant, revoke_system_grant)
        app.router.add_get(f"/v3/system/{actor}/roles", list_system_grants)
