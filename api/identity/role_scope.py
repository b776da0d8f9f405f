"""Keystone's domain-specific roles: where a role may be granted, and what a token carries of it.

A role with a domain_id belongs to that domain: it is granted only on that domain or on a project in it
(elsewhere 403, Keystone's DomainSpecificRoleMismatch), never on the system. Tokens and effective role
assignments never carry a domain-specific role itself, only the global roles it implies: a domain admin
defines what "their" roles mean by implying global ones, and no policy rule ever names a domain's role.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import projects, roles
from api.identity.resources import RoleNotFound
from cells import errors


class DomainSpecificRoleMismatch(errors.Forbidden):
    msg = "Role {role_id} belongs to another domain than the target {target_id}: it cannot be assigned there."


async def assignable_role(conn: AsyncConnection, role_id: str, *, domain_id: str | None = None,
                          project_id: str | None = None) -> Any:
    """The role row, if it may be granted on the domain, the project (in its domain), or (neither) the
    system; 404 for an unknown role, 403 for a domain-specific role outside its domain."""
    row = (await conn.execute(select(roles).where(roles.c.id == role_id))).first()
    if row is None:
        raise RoleNotFound(role_id=role_id)
    if row.domain_id is None:
        return row
    if project_id is not None:
        domain_id = (await conn.execute(select(projects.c.domain_id).where(projects.c.id == project_id))).scalar()
    if domain_id != row.domain_id:
        raise DomainSpecificRoleMismatch(role_id=role_id, target_id=project_id or domain_id or "system")
    return row
