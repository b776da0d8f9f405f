"""Keystone's `is_domain` projects: a domain seen through the projects API.

Keystone keeps a domain as a project with is_domain true; here domains have their own table, so the
projects API shows each domain as such a project (domain_id and parent_id null, is_domain true, the
domain's id, name, description and enabled) and acts on the domain: `POST /v3/projects` with
`is_domain: true` creates a domain, and PATCH / DELETE of `/v3/projects/{domain_id}` update or delete it
(delete once disabled, everything in it going with it, api/identity/domains.py). Each asks the
project rule and the domain rule both: a domain admin stays in their domain, and only a cloud admin makes,
changes or deletes a domain through either API.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import and_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import domains
from api.identity import domains as domain_writes
from api.identity.resources import authorize, collection, query_filters
from api.keys import ENGINE, public_url
from cells import errors


def view(base: str, row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "domain_id": None, "description": row.description,
            "enabled": bool(row.enabled), "parent_id": None, "is_domain": True, "tags": [], "options": {},
            "links": {"self": f"{base}/identity/v3/projects/{row.id}"}}


async def domain_row(conn: AsyncConnection, project_id: str) -> Any:
    """The domain a project id names, if it names one (None: it is no domain)."""
    return (await conn.execute(select(domains).where(domains.c.id == project_id))).first()


async def authorize_both(request: web.Request, action: str, domain_id: str | None) -> None:
    """identity:`action`_project on the domain as a project (no domain of its own), then `action`_domain."""
    await authorize(request, f"{action}_project", {"target.project.id": domain_id, "target.project.domain_id": None})
    await authorize(request, f"{action}_domain", {"target.domain.id": domain_id})


async def list_as_projects(request: web.Request) -> web.Response:
    """GET /v3/projects?is_domain=true: the domains, as projects (name and enabled filter them)."""
    await authorize(request, "list_projects", {"target.domain_id": None})
    await authorize(request, "list_domains")
    clauses = query_filters(request, domains, ("name", "enabled"))
    if "domain_id" in request.query or "parent_id" in request.query:  # a domain is in no domain, under nothing
        return collection(request, "projects", [])
    async with request.config_dict[ENGINE].connect() as conn:
        rows = (await conn.execute(select(domains).where(and_(true(), *clauses)).order_by(domains.c.name))).all()
    base = public_url(request)
    return collection(request, "projects", (view(base, r) for r in rows))


async def create(request: web.Request, doc: dict[str, Any]) -> web.Response:
    """POST /v3/projects with is_domain true: a new domain (no parent, no domain of its own)."""
    await authorize_both(request, "create", None)
    for key in ("domain_id", "parent_id"):
        if doc.get(key) is not None:
            raise errors.Invalid(f"A project acting as a domain has no `{key}`.")
    if doc.get("tags"):
        raise errors.Invalid("A project acting as a domain has no tags here.")
    async with request.config_dict[ENGINE].begin() as conn:
        row = await domain_writes.insert_domain(conn, doc)
    return web.json_response({"project": view(public_url(request), row)}, status=201)


async def update(request: web.Request, domain_id: str, doc: dict[str, Any]) -> web.Response:
    await authorize_both(request, "update", domain_id)
    for key in ("domain_id", "parent_id", "is_domain", "tags"):
        if key in doc:
            raise errors.Invalid(f"Update of `{key}` is not allowed.")
    async with request.config_dict[ENGINE].begin() as conn:
        row = await domain_writes.change_domain(conn, domain_id, doc)
    return web.json_response({"project": view(public_url(request), row)})


async def delete(request: web.Request, domain_id: str) -> web.Response:
    await authorize_both(request, "delete", domain_id)
    async with request.config_dict[ENGINE].begin() as conn:
        await domain_writes.remove_domain(conn, domain_id)
    return web.Response(status=204)
