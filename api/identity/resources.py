"""Keystone v3 read API: projects, users, roles, domains and role assignments.

What `openstack quota set/show PROJECT`, `project show/list`, `user show/list`,
`role list` and `role assignment list` look up before they act. Read only: the
identity is made by the bootstrap (api/bootstrap.py). Shapes and policy follow
Keystone: lists and foreign entities are admin-only; a user may read their own
user, the project their token is scoped to, that project's domain and the
projects they have a role on. A non-admin asking for another entity gets 403
whether it exists or not (Keystone's target check), so ids are not probed.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from sqlalchemy import and_, false, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.schema import domains, projects, role_assignments, roles, users
from api.identity.tokens import IMPLIED_ROLES, Token
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

def project_view(base: str, row: Any) -> dict[str, Any]:
    # a top-level project's parent is its domain (Keystone since Mitaka)
    return {"id": row.id, "name": row.name, "domain_id": row.domain_id, "description": row.description,
            "enabled": bool(row.enabled), "parent_id": row.domain_id, "is_domain": False, "tags": [],
            "options": {}, "links": {"self": f"{base}/identity/v3/projects/{row.id}"}}


def user_view(base: str, row: Any) -> dict[str, Any]:
    view = {"id": row.id, "name": row.name, "domain_id": row.domain_id, "enabled": bool(row.enabled),
            "password_expires_at": None, "options": {}, "links": {"self": f"{base}/identity/v3/users/{row.id}"}}
    if row.default_project_id:  # Keystone leaves the key out when unset
        view["default_project_id"] = row.default_project_id
    return view


def role_view(base: str, row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "domain_id": None, "description": None, "options": {},
            "links": {"self": f"{base}/identity/v3/roles/{row.id}"}}


def _domain_view(base: str, row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "description": row.description, "enabled": bool(row.enabled),
            "tags": [], "options": {}, "links": {"self": f"{base}/identity/v3/domains/{row.id}"}}


def _collection(request: web.Request, key: str, items: Iterable[dict[str, Any]]) -> web.Response:
    return web.json_response({key: list(items), "links": {"self": public_url(request) + request.path,
                                                          "previous": None, "next": None}})


def _enabled(value: str) -> bool:
    """Keystone's query boolean: '0' and 'false' (any case) are false, anything else true."""
    return value.strip().lower() not in ("0", "false")


def _filters(request: web.Request, table: Any, names: Iterable[str]) -> list[Any]:
    clauses = []
    for name in names:
        if name in request.query:
            value = request.query[name]
            clauses.append(table.c[name] == (_enabled(value) if name == "enabled" else value))
    return clauses


async def _rows(engine: AsyncEngine, table: Any, clauses: list[Any]) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(table).where(and_(true(), *clauses)).order_by(table.c.name))).all())


async def _row(engine: AsyncEngine, table: Any, entity_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(table).where(table.c.id == entity_id))).first()


# --- projects ----------------------------------------------------------------------

async def list_projects(request: web.Request) -> web.Response:
    await authorize(request, "list_projects")
    clauses = _filters(request, projects, ("name", "domain_id", "enabled"))
    if request.query.get("is_domain", "false").lower() == "true":
        clauses.append(false())  # domains are not projects here
    if "parent_id" in request.query:
        clauses.append(projects.c.domain_id == request.query["parent_id"])
    rows = await _rows(request.config_dict[ENGINE], projects, clauses)
    base = public_url(request)
    return _collection(request, "projects", (project_view(base, r) for r in rows))


async def show_project(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    await authorize(request, "get_project", {"target.project.id": project_id})
    row = await _row(request.config_dict[ENGINE], projects, project_id)
    if row is None:
        raise ProjectNotFound(project_id=project_id)
    return web.json_response({"project": project_view(public_url(request), row)})


async def _projects_of(engine: AsyncEngine, user_id: str) -> list[Any]:
    query = (select(projects).where(projects.c.id.in_(
        select(role_assignments.c.project_id).where(role_assignments.c.user_id == user_id)))
        .order_by(projects.c.name))
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
    return _collection(request, "projects", (project_view(base, r) for r in await _projects_of(engine, user_id)))


async def auth_projects(request: web.Request) -> web.Response:
    """GET /v3/auth/projects: the projects the token's user may scope to."""
    token = await authorize(request, "get_auth_projects")
    rows = await _projects_of(request.config_dict[ENGINE], token.user.id)
    base = public_url(request)
    return _collection(request, "projects", (project_view(base, r) for r in rows if r.enabled))


# --- users ---------------------------------------------------------------------------

async def list_users(request: web.Request) -> web.Response:
    await authorize(request, "list_users")
    rows = await _rows(request.config_dict[ENGINE], users, _filters(request, users, ("name", "domain_id", "enabled")))
    base = public_url(request)
    return _collection(request, "users", (user_view(base, r) for r in rows))


async def show_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    await authorize(request, "get_user", {"target.user.id": user_id})
    row = await _row(request.config_dict[ENGINE], users, user_id)
    if row is None:
        raise UserNotFound(user_id=user_id)
    return web.json_response({"user": user_view(public_url(request), row)})


# --- roles -------------------------------------------------------------------------------

async def list_roles(request: web.Request) -> web.Response:
    await authorize(request, "list_roles")
    clauses = _filters(request, roles, ("name",))
    if request.query.get("domain_id"):
        clauses.append(false())  # every role here is global (domain_id null)
    rows = await _rows(request.config_dict[ENGINE], roles, clauses)
    base = public_url(request)
    return _collection(request, "roles", (role_view(base, r) for r in rows))


async def show_role(request: web.Request) -> web.Response:
    await authorize(request, "get_role")
    row = await _row(request.config_dict[ENGINE], roles, request.match_info["role_id"])
    if row is None:
        raise RoleNotFound(role_id=request.match_info["role_id"])
    return web.json_response({"role": role_view(public_url(request), row)})


# --- domains -----------------------------------------------------------------------------

async def list_domains(request: web.Request) -> web.Response:
    await authorize(request, "list_domains")
    rows = await _rows(request.config_dict[ENGINE], domains, _filters(request, domains, ("name", "enabled")))
    base = public_url(request)
    return _collection(request, "domains", (_domain_view(base, r) for r in rows))


async def show_domain(request: web.Request) -> web.Response:
    domain_id = request.match_info["domain_id"]
    await authorize(request, "get_domain", {"target.domain.id": domain_id})
    row = await _row(request.config_dict[ENGINE], domains, domain_id)
    if row is None:
        raise DomainNotFound(domain_id=domain_id)
    return web.json_response({"domain": _domain_view(public_url(request), row)})


# --- role assignments ----------------------------------------------------------------------

_ASSIGNMENT_FILTERS = {"user.id": role_assignments.c.user_id, "role.id": role_assignments.c.role_id,
                       "scope.project.id": role_assignments.c.project_id}
_EMPTY_FILTERS = ("group.id", "scope.domain.id", "scope.system", "scope.OS-INHERIT:inherited_to")


async def list_role_assignments(request: web.Request) -> web.Response:
    """GET /v3/role_assignments: only user-on-project grants exist here (no groups, domain or
    system grants, no inheritance), so a filter on those matches nothing. `effective` adds the
    implied roles (admin -> member -> reader) with the grant they come from as prior_role."""
    await authorize(request, "list_role_assignments")
    query = request.query
    if "include_subtree" in query and "scope.project.id" not in query:
        raise errors.Invalid("scope.project.id needs to be specified if include_subtree is also specified")
    effective = "effective" in query and _enabled(query["effective"] or "true")
    names = "include_names" in query and _enabled(query["include_names"] or "true")
    engine = request.config_dict[ENGINE]
    clauses = [column == query[key] for key, column in _ASSIGNMENT_FILTERS.items() if key in query]
    grants: list[tuple[str, str, str, str | None]] = []  # (user, project, role, prior role)
    if not any(key in query for key in _EMPTY_FILTERS):
        async with engine.connect() as conn:
            rows = (await conn.execute(select(role_assignments).where(and_(true(), *clauses)))).all()
            role_rows = (await conn.execute(select(roles.c.id, roles.c.name))).all()
        role_id = {r.name: r.id for r in role_rows}
        role_name = {r.id: r.name for r in role_rows}
        seen: set[tuple[str, str, str]] = set()
        for row in rows:
            grants.append((row.user_id, row.project_id, row.role_id, None))
            seen.add((row.user_id, row.project_id, row.role_id))
        if effective:
            for user_id, project_id, granted, _prior in list(grants):
                todo = [granted]
                while todo:
                    prior = todo.pop()
                    for implied_name in IMPLIED_ROLES.get(role_name.get(prior, ""), ()):
                        implied = role_id.get(implied_name)
                        if implied is not None and (user_id, project_id, implied) not in seen:
                            seen.add((user_id, project_id, implied))
                            grants.append((user_id, project_id, implied, prior))
                            todo.append(implied)
        if "role.id" in query:  # an implied role matches its own id, as Keystone filters after expanding
            grants = [g for g in grants if g[2] == query["role.id"]]
    labels = await _names(engine, grants) if names else None
    base = public_url(request)
    return _collection(request, "role_assignments", (_assignment_view(base, g, labels) for g in grants))


async def _names(engine: AsyncEngine, grants: list[tuple[str, str, str, str | None]]) -> dict[str, Any]:
    async with engine.connect() as conn:
        user_rows = (await conn.execute(select(users.c.id, users.c.name, users.c.domain_id, domains.c.name.label("d"))
                                        .join(domains, domains.c.id == users.c.domain_id)
                                        .where(users.c.id.in_({g[0] for g in grants})))).all()
        project_rows = (await conn.execute(select(projects.c.id, projects.c.name, projects.c.domain_id,
                                                  domains.c.name.label("d"))
                                           .join(domains, domains.c.id == projects.c.domain_id)
                                           .where(projects.c.id.in_({g[1] for g in grants})))).all()
        role_rows = (await conn.execute(select(roles.c.id, roles.c.name))).all()
    labels: dict[str, Any] = {r.id: {"name": r.name} for r in role_rows}
    for r in list(user_rows) + list(project_rows):
        labels[r.id] = {"name": r.name, "domain": {"id": r.domain_id, "name": r.d}}
    return labels


def _assignment_view(base: str, grant: tuple[str, str, str, str | None],
                     labels: dict[str, Any] | None) -> dict[str, Any]:
    user_id, project_id, role_id, prior = grant

    def entity(entity_id: str) -> dict[str, Any]:
        return {"id": entity_id, **(labels.get(entity_id, {}) if labels else {})}

    link_role = prior or role_id
    links: dict[str, str] = {"assignment": f"{base}/identity/v3/projects/{project_id}/users/{user_id}/roles/{link_role}"}
    if prior is not None:
        links["prior_role"] = f"{base}/identity/v3/roles/{prior}"
    return {"role": entity(role_id), "scope": {"project": entity(project_id)}, "user": entity(user_id),
            "links": links}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/projects", list_projects)
    app.router.add_get("/v3/projects/{project_id}", show_project)
    app.router.add_get("/v3/auth/projects", auth_projects)
    app.router.add_get("/v3/users", list_users)
    app.router.add_get("/v3/users/{user_id}", show_user)
    app.router.add_get("/v3/users/{user_id}/projects", user_projects)
    app.router.add_get("/v3/roles", list_roles)
    app.router.add_get("/v3/roles/{role_id}", show_role)
    app.router.add_get("/v3/domains", list_domains)
    app.router.add_get("/v3/domains/{domain_id}", show_domain)
    app.router.add_get("/v3/role_assignments", list_role_assignments)
