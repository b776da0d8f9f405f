"""Keystone v3 grants on a domain: `openstack role add --domain D --user U R` (or `--group G`).

A role held on a domain is what a domain-scoped token carries (api/identity/tokens.py): an admin of
domain D manages D's projects, users and grants under Keystone's default rules (api/policy/rules.py),
and nothing outside D. The same rule names as project grants (identity:create_grant, check_grant,
revoke_grant, list_grants), with the domain in the target. Removing a grant invalidates the tokens
that carry it within the token cache's lifetime, as a project grant's removal does.
"""
from __future__ import annotations

from aiohttp import web
from sqlalchemy import Table, and_, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import domain_role_assignments, group_domain_role_assignments, groups, roles
from api.identity.manage import add_grant, domain_exists, grant_clause, grant_exists, grant_target, user_row
from api.identity.resources import RoleNotFound, authorize, collection, role_view
from api.keys import ENGINE, public_url
from cells import errors


def _actor(request: web.Request) -> tuple[Table, str, str]:
    """(grant table, actor column, actor id) of the path: a user's grant or a group's."""
    m = request.match_info
    if "user_id" in m:
        return domain_role_assignments, "user_id", m["user_id"]
    return group_domain_role_assignments, "group_id", m["group_id"]


async def _actor_and_domain_exist(conn: AsyncConnection, request: web.Request) -> tuple[Table, str, str]:
    table, column, actor_id = _actor(request)
    await domain_exists(conn, request.match_info["domain_id"])
    if column == "user_id":
        await user_row(conn, actor_id)
    elif (await conn.execute(select(groups.c.id).where(groups.c.id == actor_id))).first() is None:
        raise errors.NotFound(f"Could not find group: {actor_id}.")
    return table, column, actor_id


async def _grant(conn: AsyncConnection, request: web.Request) -> tuple[Table, dict[str, str]]:
    """The grant table and row the path names, once the domain, the actor and the role exist."""
    table, column, actor_id = await _actor_and_domain_exist(conn, request)
    role_id = request.match_info["role_id"]
    if (await conn.execute(select(roles.c.id).where(roles.c.id == role_id))).first() is None:
        raise RoleNotFound(role_id=role_id)
    return table, {column: actor_id, "domain_id": request.match_info["domain_id"], "role_id": role_id}


def _no_grant(grant: dict[str, str]) -> errors.NotFound:
    actor = grant.get("user_id") or grant.get("group_id")
    return errors.NotFound(f"Could not find role assignment with role: {grant['role_id']}, user or group: "
                           f"{actor}, project, domain, or system: {grant['domain_id']}.")


async def create_domain_grant(request: web.Request) -> web.Response:
    await authorize(request, "create_grant", await grant_target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        table, grant = await _grant(conn, request)
        await add_grant(conn, table, grant)
    return web.Response(status=204)


async def check_domain_grant(request: web.Request) -> web.Response:
    await authorize(request, "check_grant", await grant_target(request))
    async with request.config_dict[ENGINE].connect() as conn:
        table, grant = await _grant(conn, request)
        exists = await grant_exists(conn, table, grant)
    if not exists:
        raise _no_grant(grant)
    return web.Response(status=204)


async def revoke_domain_grant(request: web.Request) -> web.Response:
    await authorize(request, "revoke_grant", await grant_target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        table, grant = await _grant(conn, request)
        result = await conn.execute(delete(table).where(grant_clause(table, grant)))
    if result.rowcount == 0:
        raise _no_grant(grant)
    return web.Response(status=204)


async def list_domain_grants(request: web.Request) -> web.Response:
    """GET /v3/domains/{domain_id}/(users|groups)/{id}/roles: the roles granted there directly."""
    await authorize(request, "list_grants", await grant_target(request))
    async with request.config_dict[ENGINE].connect() as conn:
        table, column, actor_id = await _actor_and_domain_exist(conn, request)
        rows = (await conn.execute(
            select(roles).join(table, table.c.role_id == roles.c.id)
            .where(and_(table.c.domain_id == request.match_info["domain_id"], table.c[column] == actor_id))
            .order_by(roles.c.name))).all()
    base = public_url(request)
    return collection(request, "roles", (role_view(base, r) for r in rows))


def add_routes(app: web.Application) -> None:
    for actor in ("users/{user_id}", "groups/{group_id}"):
        grant = f"/v3/domains/{{domain_id}}/{actor}/roles/{{role_id}}"
        app.router.add_put(grant, create_domain_grant)
        app.router.add_get(grant, check_domain_grant)  # aiohttp adds HEAD, which is what clients send
        app.router.add_delete(grant, revoke_domain_grant)
        app.router.add_get(f"/v3/domains/{{domain_id}}/{actor}/roles", list_domain_grants)
