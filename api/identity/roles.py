"""Keystone v3 role writes: `openstack role create|set|delete` (identity:create_role, update_role,
delete_role: admin only, as Keystone's defaults).

Roles are global here (Keystone's domain-specific roles are refused with a 400). The roles the cluster
and every policy default are written against (admin, member, reader) cannot be renamed or deleted:
doing so would silently change who may do what. Deleting any other role takes every grant of it with
it (ON DELETE CASCADE), so tokens that carry it stop validating within the token cache's lifetime,
as Keystone revokes them.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import roles
from api.http import json_body
from api.identity.manage import MAX_DESCRIPTION, MAX_USER_NAME, entity_body, string_field
from api.identity.resources import RoleNotFound, authorize, role_view
from api.identity.tokens import IMPLIED_ROLES, new_id
from api.keys import ENGINE, public_url
from cells import errors

# every role a default rule or an implication names: renaming or deleting one changes the policy
BUILT_IN_ROLES = frozenset({*IMPLIED_ROLES, *(r for implied in IMPLIED_ROLES.values() for r in implied)})


def _fields(doc: dict[str, Any], required: bool) -> dict[str, Any]:
    if doc.get("domain_id") is not None:
        raise errors.Invalid("Domain-specific roles are not supported by this cloud: leave domain_id out")
    fields = {"name": string_field(doc, "name", MAX_USER_NAME, required=required),
              "description": string_field(doc, "description", MAX_DESCRIPTION)}
    return {k: v for k, v in fields.items() if v is not None or (k == "description" and k in doc)}


async def _role_row(conn: AsyncConnection, role_id: str) -> Any:
    row = (await conn.execute(select(roles).where(roles.c.id == role_id))).first()
    if row is None:
        raise RoleNotFound(role_id=role_id)
    return row


async def _name_free(conn: AsyncConnection, name: str) -> None:
    # Keystone compares role names case-insensitively ('Member' and 'member' are one role)
    taken = (await conn.execute(select(roles.c.name))).scalars().all()
    if name.lower() in {t.lower() for t in taken}:
        raise errors.Conflict(f"Conflict occurred attempting to store role - Duplicate entry found with name {name}.")


async def create_role(request: web.Request) -> web.Response:
    await authorize(request, "create_role")
    fields = _fields(entity_body(await json_body(request), "role"), required=True)
    async with request.config_dict[ENGINE].begin() as conn:
        await _name_free(conn, fields["name"])
        role_id = new_id()
        await conn.execute(insert(roles).values(id=role_id, **fields))
        row = await _role_row(conn, role_id)
    return web.json_response({"role": role_view(public_url(request), row)}, status=201)


async def update_role(request: web.Request) -> web.Response:
    role_id = request.match_info["role_id"]
    await authorize(request, "update_role", {"target.role.id": role_id})
    fields = _fields(entity_body(await json_body(request), "role"), required=False)
    async with request.config_dict[ENGINE].begin() as conn:
        row = await _role_row(conn, role_id)
        name = fields.get("name")
        if name is not None and name != row.name:
            if row.name in BUILT_IN_ROLES:
                raise errors.Forbidden(f"Role {row.name} is one the policy defaults name: it cannot be renamed.")
            if name.lower() != row.name.lower():
                await _name_free(conn, name)
        if fields:
            await conn.execute(update(roles).where(roles.c.id == role_id).values(**fields))
        row = await _role_row(conn, role_id)
    return web.json_response({"role": role_view(public_url(request), row)})


async def delete_role(request: web.Request) -> web.Response:
    role_id = request.match_info["role_id"]
    await authorize(request, "delete_role", {"target.role.id": role_id})
    async with request.config_dict[ENGINE].begin() as conn:
        row = await _role_row(conn, role_id)
        if row.name in BUILT_IN_ROLES:
            raise errors.Forbidden(f"Role {row.name} is one the policy defaults name: it cannot be deleted.")
        await conn.execute(delete(roles).where(roles.c.id == role_id))  # its grants cascade
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v3/roles", create_role)
    app.router.add_patch("/v3/roles/{role_id}", update_role)
    app.router.add_delete("/v3/roles/{role_id}", delete_role)
