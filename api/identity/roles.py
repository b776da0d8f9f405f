"""Keystone v3 role writes: `openstack role create|set|delete` (identity:create_role, update_role,
delete_role: admin only, as Keystone's defaults).

A role is global, or belongs to a domain (Keystone's domain-specific roles, identity:*_domain_role; what
they may be granted on and what tokens carry of them: api/identity/role_scope.py). Role names are unique
across the cloud, not per domain as in Keystone: a policy rule names a role by name ("role:admin"), so no
domain's role may share a global role's name. A domain's roles go with the domain. The roles the cluster
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
from api.identity.manage import MAX_DESCRIPTION, MAX_USER_NAME, domain_exists, entity_body, string_field
from api.identity.resources import RoleNotFound, authorize, role_view
from api.identity.tokens import IMPLIED_ROLES, new_id
from api.keys import ENGINE, public_url
from cells import errors

# every role a default rule or an implication names: renaming or deleting one changes the policy
BUILT_IN_ROLES = frozenset({*IMPLIED_ROLES, *(r for implied in IMPLIED_ROLES.values() for r in implied)})


def _fields(doc: dict[str, Any], required: bool) -> dict[str, Any]:
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
    body = await json_body(request)
    loose = body.get("role") if isinstance(body, dict) else None
    domain_id = loose.get("domain_id") if isinstance(loose, dict) else None
    await authorize(request, "create_domain_role" if domain_id is not None else "create_role",
                    {"target.role.domain_id": domain_id})
    doc = entity_body(body, "role")
    fields = _fields(doc, required=True)
    if domain_id is not None and not isinstance(domain_id, str):
        raise errors.Invalid("Invalid input for field 'domain_id': expected a string or null")
    async with request.config_dict[ENGINE].begin() as conn:
        if domain_id is not None:
            await domain_exists(conn, domain_id)
        await _name_free(conn, fields["name"])
        role_id = new_id()
        await conn.execute(insert(roles).values(id=role_id, domain_id=domain_id, **fields))
        row = await _role_row(conn, role_id)
    return web.json_response({"role": role_view(public_url(request), row)}, status=201)


async def _rule(request: web.Request, action: str, role_id: str) -> None:
    """identity:`action`_role, or `action`_domain_role for a domain's role (as Keystone picks)."""
    async with request.config_dict[ENGINE].connect() as conn:
        domain_id = (await conn.execute(select(roles.c.domain_id).where(roles.c.id == role_id))).scalar()
    await authorize(request, f"{action}_domain_role" if domain_id else f"{action}_role",
                    {"target.role.id": role_id, "target.role.domain_id": domain_id})


async def update_role(request: web.Request) -> web.Response:
    role_id = request.match_info["role_id"]
    await _rule(request, "update", role_id)
    doc = entity_body(await json_body(request), "role")
    fields = _fields(doc, required=False)
    async with request.config_dict[ENGINE].begin() as conn:
        row = await _role_row(conn, role_id)
        if "domain_id" in doc and doc["domain_id"] != row.domain_id:
            raise errors.Invalid("Update of `domain_id` is not allowed.")
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
    await _rule(request, "delete", role_id)
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
