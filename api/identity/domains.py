"""Keystone v3 domain writes: create, update (rename, describe, disable), delete.

A domain holds projects, users and groups, each name unique within it. Disabling a domain stops
every token of its users and on its projects at once (api/identity/tokens.py reads the domain's
`enabled` with each token). As Keystone, a domain is deleted only once disabled, and its projects,
users, groups and domain-specific roles go with it (their grants, memberships and credentials cascade), in one
transaction. The `Default` domain holds the cluster's own projects and users: it cannot be
disabled, renamed or deleted.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import domains, groups, projects, roles, users
from api.http import json_body
from api.identity.manage import MAX_DESCRIPTION, MAX_NAME, entity_body, flag_field, string_field
from api.identity.resources import DomainNotFound, authorize, domain_view
from api.identity.tokens import ADMIN_PROJECT, new_id
from api.keys import ENGINE, public_url
from cells import errors

DEFAULT_DOMAIN = ADMIN_PROJECT[1]  # the cluster's own projects and users live in it


async def _domain_row(conn: AsyncConnection, domain_id: str) -> Any:
    row = (await conn.execute(select(domains).where(domains.c.id == domain_id))).first()
    if row is None:
        raise DomainNotFound(domain_id=domain_id)
    return row


async def _name_free(conn: AsyncConnection, name: str) -> None:
    if (await conn.execute(select(domains.c.id).where(domains.c.name == name))).first() is not None:
        raise errors.Conflict(f"Conflict occurred attempting to store domain - Duplicate entry found with name {name}.")


async def insert_domain(conn: AsyncConnection, doc: dict[str, Any]) -> Any:
    """A new domain from a validated-here body ({name, description, enabled}): its row."""
    name = str(string_field(doc, "name", MAX_NAME, required=True))
    description = string_field(doc, "description", MAX_DESCRIPTION) or ""
    enabled = flag_field(doc, "enabled")
    await _name_free(conn, name)
    domain_id = new_id()
    await conn.execute(insert(domains).values(id=domain_id, name=name, description=description,
                                              enabled=True if enabled is None else enabled))
    return await _domain_row(conn, domain_id)


async def create_domain(request: web.Request) -> web.Response:
    await authorize(request, "create_domain")
    doc = entity_body(await json_body(request), "domain")
    if "explicit_domain_id" in doc:
        raise errors.Invalid("Domains with an explicit id are not supported by this cloud.")
    async with request.config_dict[ENGINE].begin() as conn:
        row = await insert_domain(conn, doc)
    return web.json_response({"domain": domain_view(public_url(request), row)}, status=201)


async def update_domain(request: web.Request) -> web.Response:
    domain_id = request.match_info["domain_id"]
    await authorize(request, "update_domain", {"target.domain.id": domain_id})
    doc = entity_body(await json_body(request), "domain")
    if "id" in doc and doc["id"] != domain_id:
        raise errors.Invalid("Update of `id` is not allowed.")
    async with request.config_dict[ENGINE].begin() as conn:
        row = await change_domain(conn, domain_id, doc)
    return web.json_response({"domain": domain_view(public_url(request), row)})


async def change_domain(conn: AsyncConnection, domain_id: str, doc: dict[str, Any]) -> Any:
    """Rename, describe, enable or disable a domain from a validated-here body: its row after."""
    name = string_field(doc, "name", MAX_NAME)
    description = string_field(doc, "description", MAX_DESCRIPTION)
    enabled = flag_field(doc, "enabled")
    changes = {k: v for k, v in (("name", name), ("description", description), ("enabled", enabled))
               if v is not None}
    row = await _domain_row(conn, domain_id)
    if domain_id == DEFAULT_DOMAIN and (enabled is False or (name is not None and name != row.name)):
        raise errors.Forbidden("The default domain holds the cluster's own projects and users: it cannot be "
                               "disabled or renamed.")
    if name is not None and name != row.name:
        await _name_free(conn, name)
    if changes:
        await conn.execute(update(domains).where(domains.c.id == domain_id).values(**changes))
    return await _domain_row(conn, domain_id)


async def delete_domain(request: web.Request) -> web.Response:
    domain_id = request.match_info["domain_id"]
    await authorize(request, "delete_domain", {"target.domain.id": domain_id})
    async with request.config_dict[ENGINE].begin() as conn:
        await remove_domain(conn, domain_id)
    return web.Response(status=204)


async def remove_domain(conn: AsyncConnection, domain_id: str) -> None:
    """Delete a disabled domain and everything in it (its projects, users, groups and roles)."""
    row = await _domain_row(conn, domain_id)
    if domain_id == DEFAULT_DOMAIN:
        raise errors.Forbidden("The default domain holds the cluster's own projects and users: it cannot be "
                               "deleted.")
    if row.enabled:
        raise errors.Forbidden("Cannot delete a domain that is enabled, please disable it first.")
    # what the domain holds goes with it; grants, memberships and credentials cascade from these rows
    for table in (groups, users, projects, roles):
        await conn.execute(delete(table).where(table.c.domain_id == domain_id))
    await conn.execute(delete(domains).where(domains.c.id == domain_id))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v3/domains", create_domain)
    app.router.add_patch("/v3/domains/{domain_id}", update_domain)
    app.router.add_delete("/v3/domains/{domain_id}", delete_domain)
