"""Keystone v3 read API: projects, users, roles and domains.

What `openstack quota set/show PROJECT`, `project show/list`, `user show/list`,
`role list` and `role assignment list` look up before they act. Read only: the
identity is made by the bootstrap (api/bootstrap.py). Shapes and policy follow
Keystone: lists and foreign entities are admin-only; a user may read their own
user, the project their token is scoped to, that project's domain and the
projects they have a role on. A non-admin asking for another entity gets 403
whether it exists or not (Keystone's target check), so ids are not probed.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.schema import domains, projects, roles, users
from api.identity import hierarchy, tag_store
from api.identity.tokens import Token, granted_domain_ids, granted_project_ids
from api.keys import ENGINE, POLICY, TOKENS, public_url
from cells import errors


class ProjectNotFound(errors.NotFound):
    code, msg = "project_not_found", "Could not find project: {project_id}."


class UserNotFound(errors.NotFound):
    code, msg = "user_not_found", "Could not find user: {user_id}."


class RoleNotFound(errors.NotFound):
    code, msg = "role_not_found", "Could not find role: {role_id}."


class DomainNotFound(errors.NotFound):
    code, msg = "domain_not_found", "Could not find domain: {domain_id}."


# --- policy --------------------------------------------------------------------

async def caller(request: web.Request) -> Token:
    token_id = request.headers.get("X-Auth-Token")
    if not token_id:
        raise errors.Unauthorized()
    return await request.config_dict[TOKENS].validate(token_id)


async def authorize(request: web.Request, action: str, target: dict[str, Any] | None = None) -> Token:
    """The caller's token if the policy rule identity:`action` allows it on `target`; 403 otherwise
    (before any lookup, so a refusal says nothing of whether the target exists)."""
    token = await caller(request)
    request.config_dict[POLICY].enforce(f"identity:{action}", token.credentials(),
                                        {"user_id": token.user.id, **(target or {})})
    return token


# --- views -----------------------------------------------------------------------

def project_view(base: str, row: Any, tags: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """A project as Keystone shows it; `tags` maps project ids to their tags (tag_store.tags_of)."""
    # a top-level project's parent is its domain (Keystone since Mitaka)
    return {"id": row.id, "name": row.name, "domain_id": row.domain_id, "description": row.description,
            "enabled": bool(row.enabled), "parent_id": row.parent_id or row.domain_id, "is_domain": False,
            "tags": list((tags or {}).get(row.id, [])),
            "options": {}, "links": {"self": f"{base}/identity/v3/projects/{row.id}"}}


def user_view(base: str, row: Any) -> dict[str, Any]:
    # extra attributes first: the fixed ones below always win (manage.py never stores those names as extra)
    view = {**(row.extra or {}), "id": row.id, "name": row.name, "domain_id": row.domain_id,
            "enabled": bool(row.enabled), "password_expires_at": None, "options": {},
            "links": {"self": f"{base}/identity/v3/users/{row.id}"}}
    if row.default_project_id:  # Keystone leaves the key out when unset
        view["default_project_id"] = row.default_project_id
    return view


def role_view(base: str, row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "domain_id": row.domain_id, "description": row.description, "options": {},
            "links": {"self": f"{base}/identity/v3/roles/{row.id}"}}


def domain_view(base: str, row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "description": row.description, "enabled": bool(row.enabled),
            "tags": [], "options": {}, "links": {"self": f"{base}/identity/v3/domains/{row.id}"}}


def collection(request: web.Request, key: str, items: Iterable[dict[str, Any]]) -> web.Response:
    return web.json_response({key: list(items), "links": {"self": public_url(request) + request.path,
                                                          "previous": None, "next": None}})


def query_flag(value: str) -> bool:
    """Keystone's query boolean: '0' and 'false' (any case) are false, anything else true."""
    return value.strip().lower() not in ("0", "false")


def query_filters(request: web.Request, table: Any, names: Iterable[str]) -> list[Any]:
    clauses = []
    for name in names:
        if name in request.query:
            value = request.query[name]
            clauses.append(table.c[name] == (query_flag(value) if name == "enabled" else value))
    return clauses


async def _rows(engine: AsyncEngine, table: Any, clauses: list[Any]) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(table).where(and_(true(), *clauses)).order_by(table.c.name))).all())


async def _row(engine: AsyncEngine, table: Any, entity_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(table).where(table.c.id == entity_id))).first()


# --- projects ----------------------------------------------------------------------

async def domain_scoped_list(request: web.Request, action: str, table: Any) -> list[Any]:
    """Authorize a project or user list; a domain-scoped token lists its own domain only (Keystone)."""
    token = await caller(request)
    scope = token.domain.id if token.domain is not None else None
    await authorize(request, action, {"target.domain_id": scope or request.query.get("domain_id")})
    return [table.c.domain_id == scope] if scope else []


async def list_projects(request: web.Request) -> web.Response:
    if query_flag(request.query.get("is_domain", "false")):
        from api.identity import project_domains  # it builds on this module
        return await project_domains.list_as_projects(request)
    clauses = await domain_scoped_list(request, "list_projects", projects)
    clauses += query_filters(request, projects, ("name", "domain_id", "enabled"))
    clauses += tag_store.filter_clauses(request.query)
    if "parent_id" in request.query:  # a project's children, or a domain's top-level projects
        parent = request.query["parent_id"]
        clauses.append(or_(projects.c.parent_id == parent,
                           and_(projects.c.parent_id.is_(None), projects.c.domain_id == parent)))
    engine = request.config_dict[ENGINE]
    rows = await _rows(engine, projects, clauses)
    base = public_url(request)
    tags = await _tags(engine, rows)
    return collection(request, "projects", (project_view(base, r, tags) for r in rows))


async def _tags(engine: AsyncEngine, rows: Iterable[Any]) -> dict[str, list[str]]:
    async with engine.connect() as conn:
        return await tag_store.tags_of(conn, [r.id for r in rows])


async def show_project(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    engine = request.config_dict[ENGINE]
    row = await _row(engine, projects, project_id)
    if row is None:
        from api.identity import project_domains  # it builds on this module
        async with engine.connect() as conn:
            domain = await project_domains.domain_row(conn, project_id)
        if domain is not None:  # a domain, shown as the project acting as it (Keystone's is_domain)
            await authorize(request, "get_project", {"target.project.id": project_id,
                                                     "target.project.domain_id": None})
            return web.json_response({"project": project_domains.view(public_url(request), domain)})
    # the domain is in the target (a domain reader's check) only once the project is known to exist
    token = await authorize(request, "get_project", {"target.project.id": project_id,
                                                     "target.project.domain_id": row.domain_id if row else None})
    if row is None:
        raise ProjectNotFound(project_id=project_id)
    base = public_url(request)
    policy, creds = request.config_dict[POLICY], token.credentials()

    def visible(p: Any) -> bool:
        return bool(policy.allowed("identity:get_project", creds, {
            "user_id": token.user.id, "target.project.id": p.id, "target.project.domain_id": p.domain_id}))
    async with engine.connect() as conn:
        tags = await tag_store.tags_of(conn, select(projects.c.id).where(projects.c.domain_id == row.domain_id))
        extra = await hierarchy.show_extras(conn, row, request.query, visible, lambda p: project_view(base, p, tags))
    return web.json_response({"project": {**project_view(base, row, tags), **extra}})


async def _projects_of(engine: AsyncEngine, user_id: str) -> list[Any]:
    query = select(projects).where(projects.c.id.in_(granted_project_ids(user_id))).order_by(projects.c.name)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def user_projects(request: web.Request) -> web.Response:
    """GET /v3/users/{user_id}/projects: the projects a user has a role on (their own, or admin)."""
    user_id = request.match_info["user_id"]
    await authorize(request, "list_user_projects", {"target.user.id": user_id})
    engine = request.config_dict[ENGINE]
    if await _row(engine, users, user_id) is None:
        raise UserNotFound(user_id=user_id)
    base = public_url(request)
    rows = await _projects_of(engine, user_id)
    tags = await _tags(engine, rows)
    return collection(request, "projects", (project_view(base, r, tags) for r in rows))


async def auth_projects(request: web.Request) -> web.Response:
    """GET /v3/auth/projects: the projects the token's user may scope to."""
    token = await authorize(request, "get_auth_projects")
    engine = request.config_dict[ENGINE]
    rows = await _projects_of(engine, token.user.id)
    base = public_url(request)
    tags = await _tags(engine, rows)
    return collection(request, "projects", (project_view(base, r, tags) for r in rows if r.enabled))


async def auth_domains(request: web.Request) -> web.Response:
    """GET /v3/auth/domains: the enabled domains the token's user may scope to (a role there, or a group's)."""
    token = await authorize(request, "get_auth_domains")
    query = (select(domains).where(domains.c.id.in_(granted_domain_ids(token.user.id)), domains.c.enabled == true())
             .order_by(domains.c.name))
    async with request.config_dict[ENGINE].connect() as conn:
        rows = (await conn.execute(query)).all()
    base = public_url(request)
    return collection(request, "domains", (domain_view(base, r) for r in rows))


# --- users ---------------------------------------------------------------------------

async def list_users(request: web.Request) -> web.Response:
    clauses = await domain_scoped_list(request, "list_users", users)
    clauses += query_filters(request, users, ("name", "domain_id", "enabled"))
    rows = await _rows(request.config_dict[ENGINE], users, clauses)
    base = public_url(request)
    return collection(request, "users", (user_view(base, r) for r in rows))


async def show_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    row = await _row(request.config_dict[ENGINE], users, user_id)
    await authorize(request, "get_user", {"target.user.id": user_id,
                                          "target.user.domain_id": row.domain_id if row else None})
    if row is None:
        raise UserNotFound(user_id=user_id)
    return web.json_response({"user": user_view(public_url(request), row)})


# --- roles -------------------------------------------------------------------------------

async def list_roles(request: web.Request) -> web.Response:
    """The global roles, or with ?domain_id= that domain's own (Keystone lists either, never both)."""
    domain_id = request.query.get("domain_id")
    await authorize(request, "list_domain_roles" if domain_id else "list_roles")
    clauses = query_filters(request, roles, ("name",))
    clauses.append(roles.c.domain_id == domain_id if domain_id else roles.c.domain_id.is_(None))
    rows = await _rows(request.config_dict[ENGINE], roles, clauses)
    base = public_url(request)
    return collection(request, "roles", (role_view(base, r) for r in rows))


async def show_role(request: web.Request) -> web.Response:
    row = await _row(request.config_dict[ENGINE], roles, request.match_info["role_id"])
    await authorize(request, "get_domain_role" if row is not None and row.domain_id else "get_role")
    if row is None:
        raise RoleNotFound(role_id=request.match_info["role_id"])
    return web.json_response({"role": role_view(public_url(request), row)})


# --- domains -----------------------------------------------------------------------------

async def list_domains(request: web.Request) -> web.Response:
    await authorize(request, "list_domains")
    rows = await _rows(request.config_dict[ENGINE], domains, query_filters(request, domains, ("name", "enabled")))
    base = public_url(request)
    return collection(request, "domains", (domain_view(base, r) for r in rows))


async def show_domain(request: web.Request) -> web.Response:
    domain_id = request.match_info["domain_id"]
    await authorize(request, "get_domain", {"target.domain.id": domain_id})
    row = await _row(request.config_dict[ENGINE], domains, domain_id)
    if row is None:
        raise DomainNotFound(domain_id=domain_id)
    return web.json_response({"domain": domain_view(public_url(request), row)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/projects", list_projects)
    app.router.add_get("/v3/projects/{project_id}", show_project)
    app.router.add_get("/v3/auth/projects", auth_projects)
    app.router.add_get("/v3/auth/domains", auth_domains)
    app.router.add_get("/v3/users", list_users)
    app.router.add_get("/v3/users/{user_id}", show_user)
    app.router.add_get("/v3/users/{user_id}/projects", user_projects)
    app.router.add_get("/v3/roles", list_roles)
    app.router.add_get("/v3/roles/{role_id}", show_role)
    app.router.add_get("/v3/domains", list_domains)
    app.router.add_get("/v3/domains/{domain_id}", show_domain)
