"""Keystone v3 grants on a domain: `openstack role add --domain D --user U R` (or `--group G`).

A role held on a domain is what a domain-scoped token carries (api/identity/tokens.py): an admin of
domain D manages D's projects, users and grants under Keystone's default rules (api/policy/rules.py),
and nothing outside D. The same rule names as project grants (identity:create_grant, check_grant,
revoke_grant, list_grants), with the domain in the target. Removing a grant invalidates the tokens
that carry it within the token cache's lifetime, as a project grant's removal does.
"""
from __future__ import annotations

from aiohttp import web
from sqlalchemy import Table, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import domain_role_assignments, group_domain_role_assignments, groups, roles
from api.identity.manage import add_grant_routes, domain_exists, grant_target, user_row
from api.identity.resources import authorize, collection, role_view
from api.identity.role_scope import assignable_role
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
    await assignable_role(conn, role_id, domain_id=request.match_info["domain_id"])
    return table, {column: actor_id, "domain_id": request.match_info["domain_id"], "role_id": role_id}


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
        add_grant_routes(app, f"/v3/domains/{{domain_id}}/{actor}/roles/{{role_id}}", _grant)
        app.router.add_get(f"/v3/domains/{{domain_id}}/{actor}/roles", list_domain_grants)
