"""Keystone v3 groups: a group of users in a domain, and the roles a group holds on a project.

`openstack group create`, `group add user`, `role add --group G --project P member`: every member
of the group then has the role on the project, in the tokens they are issued and in
`role assignment list --effective`. Taking a user out of the group, or the role from the group,
invalidates their tokens that carry it within the token cache's lifetime (api/identity/tokens.py
re-reads a user's roles, group ones included). A group's members may belong to any domain, as in
Keystone.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import Table, and_, delete, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import group_members, group_role_assignments, groups, roles, users
from api.http import json_body
from api.identity.manage import (
    MAX_DESCRIPTION,
    MAX_NAME,
    add_grant_routes,
    domain_exists,
    entity_body,
    grant_target,
    name_conflict,
    project_row,
    string_field,
    user_row,
)
from api.identity.resources import authorize, collection, query_filters, role_view, user_view
from api.identity.role_scope import assignable_role
from api.identity.tokens import new_id
from api.keys import ENGINE, public_url
from cells import errors


class GroupNotFound(errors.NotFound):
    code, msg = "group_not_found", "Could not find group: {group_id}."


def group_view(base: str, row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "domain_id": row.domain_id, "description": row.description,
            "links": {"self": f"{base}/identity/v3/groups/{row.id}"}}


async def _group_row(conn: AsyncConnection, group_id: str) -> Any:
    row = (await conn.execute(select(groups).where(groups.c.id == group_id))).first()
    if row is None:
        raise GroupNotFound(group_id=group_id)
    return row


async def _name_free(conn: AsyncConnection, domain_id: str, name: str) -> None:
    taken = (await conn.execute(select(groups.c.id).where(
        and_(groups.c.domain_id == domain_id, groups.c.name == name)))).first()
    if taken is not None:
        raise name_conflict("group", name)


# --- groups ------------------------------------------------------------------------------

async def create_group(request: web.Request) -> web.Response:
    await authorize(request, "create_group")
    doc = entity_body(await json_body(request), "group")
    name = str(string_field(doc, "name", MAX_NAME, required=True))
    description = string_field(doc, "description", MAX_DESCRIPTION) or ""
    domain_id = str(doc.get("domain_id") or "default")
    async with request.config_dict[ENGINE].begin() as conn:
        await domain_exists(conn, domain_id)
        await _name_free(conn, domain_id, name)
        group_id = new_id()
        await conn.execute(insert(groups).values(id=group_id, name=name, domain_id=domain_id,
                                                 description=description))
        row = await _group_row(conn, group_id)
    return web.json_response({"group": group_view(public_url(request), row)}, status=201)


async def list_groups(request: web.Request) -> web.Response:
    await authorize(request, "list_groups")
    clauses = query_filters(request, groups, ("name", "domain_id"))
    async with request.config_dict[ENGINE].connect() as conn:
        rows = (await conn.execute(select(groups).where(and_(true(), *clauses)).order_by(groups.c.name))).all()
    base = public_url(request)
    return collection(request, "groups", (group_view(base, r) for r in rows))


async def show_group(request: web.Request) -> web.Response:
    group_id = request.match_info["group_id"]
    await authorize(request, "get_group", {"target.group.id": group_id})
    async with request.config_dict[ENGINE].connect() as conn:
        row = await _group_row(conn, group_id)
    return web.json_response({"group": group_view(public_url(request), row)})


async def update_group(request: web.Request) -> web.Response:
    group_id = request.match_info["group_id"]
    await authorize(request, "update_group", {"target.group.id": group_id})
    doc = entity_body(await json_body(request), "group")
    name = string_field(doc, "name", MAX_NAME)
    description = string_field(doc, "description", MAX_DESCRIPTION)
    if "domain_id" in doc:
        raise errors.Invalid("Update of `domain_id` is not allowed.")
    changes = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
    async with request.config_dict[ENGINE].begin() as conn:
        row = await _group_row(conn, group_id)
        if name is not None and name != row.name:
            await _name_free(conn, row.domain_id, name)
        if changes:
            await conn.execute(update(groups).where(groups.c.id == group_id).values(**changes))
        row = await _group_row(conn, group_id)
    return web.json_response({"group": group_view(public_url(request), row)})


async def delete_group(request: web.Request) -> web.Response:
    group_id = request.match_info["group_id"]
    await authorize(request, "delete_group", {"target.group.id": group_id})
    async with request.config_dict[ENGINE].begin() as conn:
        await _group_row(conn, group_id)
        await conn.execute(delete(groups).where(groups.c.id == group_id))  # memberships and grants cascade
    return web.Response(status=204)


# --- membership ----------------------------------------------------------------------------

def _membership(request: web.Request) -> tuple[str, str]:
    return request.match_info["group_id"], request.match_info["user_id"]


def _member_target(request: web.Request) -> dict[str, Any]:
    group_id, user_id = _membership(request)
    return {"target.group.id": group_id, "target.user.id": user_id}


def _not_member(group_id: str, user_id: str) -> errors.NotFound:
    return errors.NotFound(f"User {user_id} is not a member of group {group_id}.")


async def _is_member(conn: AsyncConnection, group_id: str, user_id: str) -> bool:
    """Whether the user is in the group; 404 when either does not exist."""
    await _group_row(conn, group_id)
    await user_row(conn, user_id)
    return (await conn.execute(select(group_members.c.user_id).where(
        and_(group_members.c.group_id == group_id, group_members.c.user_id == user_id)))).first() is not None


async def add_user_to_group(request: web.Request) -> web.Response:
    await authorize(request, "add_user_to_group", _member_target(request))
    group_id, user_id = _membership(request)
    async with request.config_dict[ENGINE].begin() as conn:
        if not await _is_member(conn, group_id, user_id):
            await conn.execute(insert(group_members).values(group_id=group_id, user_id=user_id))
    return web.Response(status=204)


async def check_user_in_group(request: web.Request) -> web.Response:
    await authorize(request, "check_user_in_group", _member_target(request))
    group_id, user_id = _membership(request)
    async with request.config_dict[ENGINE].connect() as conn:
        member = await _is_member(conn, group_id, user_id)
    if not member:
        raise _not_member(group_id, user_id)
    return web.Response(status=204)


async def remove_user_from_group(request: web.Request) -> web.Response:
    await authorize(request, "remove_user_from_group", _member_target(request))
    group_id, user_id = _membership(request)
    async with request.config_dict[ENGINE].begin() as conn:
        await _group_row(conn, group_id)
        await user_row(conn, user_id)
        result = await conn.execute(delete(group_members).where(
            and_(group_members.c.group_id == group_id, group_members.c.user_id == user_id)))
    if result.rowcount == 0:
        raise _not_member(group_id, user_id)
    return web.Response(status=204)


async def list_users_in_group(request: web.Request) -> web.Response:
    group_id = request.match_info["group_id"]
    await authorize(request, "list_users_in_group", {"target.group.id": group_id})
    async with request.config_dict[ENGINE].connect() as conn:
        await _group_row(conn, group_id)
        rows = (await conn.execute(select(users).join(group_members, group_members.c.user_id == users.c.id)
                                   .where(and_(group_members.c.group_id == group_id,
                                               *query_filters(request, users, ("name", "domain_id", "enabled"))))
                                   .order_by(users.c.name))).all()
    base = public_url(request)
    return collection(request, "users", (user_view(base, r) for r in rows))


async def list_groups_for_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    await authorize(request, "list_groups_for_user", {"target.user.id": user_id})
    async with request.config_dict[ENGINE].connect() as conn:
        await user_row(conn, user_id)
        rows = (await conn.execute(select(groups).join(group_members, group_members.c.group_id == groups.c.id)
                                   .where(group_members.c.user_id == user_id).order_by(groups.c.name))).all()
    base = public_url(request)
    return collection(request, "groups", (group_view(base, r) for r in rows))


# --- grants: a role for a group on a project --------------------------------------------------

async def _grant(conn: AsyncConnection, request: web.Request) -> tuple[Table, dict[str, str]]:
    m = request.match_info
    await project_row(conn, m["project_id"])
    await _group_row(conn, m["group_id"])
    await assignable_role(conn, m["role_id"], project_id=m["project_id"])
    return group_role_assignments, {"project_id": m["project_id"], "group_id": m["group_id"],
                                    "role_id": m["role_id"]}


async def list_group_grants(request: web.Request) -> web.Response:
    """GET /v3/projects/{project_id}/groups/{group_id}/roles: the roles the group holds there."""
    await authorize(request, "list_grants", await grant_target(request))
    m = request.match_info
    async with request.config_dict[ENGINE].connect() as conn:
        await project_row(conn, m["project_id"])
        await _group_row(conn, m["group_id"])
        rows = (await conn.execute(
            select(roles).join(group_role_assignments, group_role_assignments.c.role_id == roles.c.id)
            .where(and_(group_role_assignments.c.project_id == m["project_id"],
                        group_role_assignments.c.group_id == m["group_id"])).order_by(roles.c.name))).all()
    base = public_url(request)
    return collection(request, "roles", (role_view(base, r) for r in rows))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v3/groups", create_group)
    app.router.add_get("/v3/groups", list_groups)
    app.router.add_get("/v3/groups/{group_id}", show_group)
    app.router.add_patch("/v3/groups/{group_id}", update_group)
    app.router.add_delete("/v3/groups/{group_id}", delete_group)
    app.router.add_get("/v3/groups/{group_id}/users", list_users_in_group)
    member = "/v3/groups/{group_id}/users/{user_id}"
    app.router.add_put(member, add_user_to_group)
    app.router.add_get(member, check_user_in_group)  # aiohttp adds HEAD, which is what clients send
    app.router.add_delete(member, remove_user_from_group)
    app.router.add_get("/v3/users/{user_id}/groups", list_groups_for_user)
    add_grant_routes(app, "/v3/projects/{project_id}/groups/{group_id}/roles/{role_id}", _grant)
    app.router.add_get("/v3/projects/{project_id}/groups/{group_id}/roles", list_group_grants)
