"""Keystone v3 writes: projects, users, role grants, and a user's own password change.

What an operator onboards a team with (`openstack project create`, `user create`, `role add`)
and takes access away with (`role remove`, `project set --disable`, `user delete`). Every
handler asks the policy engine first (api/policy/rules.py, identity:*), then validates, then
acts in one transaction. A change reaches every API worker's token cache within
api/identity/tokens.py CACHE_TTL: tokens are re-read from the DB, where a disabled or deleted
project or user, or a removed grant, makes them invalid.

What the cluster itself needs is protected: the admin and service projects cannot be deleted,
disabled or renamed, the cluster's service users cannot be deleted or disabled, and no one
deletes or disables their own user (an admin locking themself out is a support call).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import Table, and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import domains, groups, projects, role_assignments, roles, users
from api.http import json_body
from api.identity import hierarchy, role_scope, tag_store
from api.identity.passwords import hash_password, verify_password
from api.identity.resources import (
    DomainNotFound,
    ProjectNotFound,
    UserNotFound,
    authorize,
    caller,
    project_view,
    role_view,
    user_view,
)
from api.identity.tokens import ADMIN_PROJECT, Unauthorized, new_id
from api.keys import ENGINE, public_url
from api.timeutil import utcnow
from cells import errors

MAX_NAME = 64  # Keystone's project, domain and group name limit
MAX_USER_NAME = 255  # Keystone's user name limit
MAX_DESCRIPTION = 255
MAX_PASSWORD = 4096  # Keystone's max_password_length
PROTECTED_PROJECTS = (ADMIN_PROJECT[0], "service")  # in the default domain: the cluster runs on them
PROTECTED_USERS = ("cellcloud-service", "cellcloud-image-reader")  # the cluster's own credentials


def entity_body(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise errors.Invalid(f"Invalid input for field '{key}': '{key}' is a required property")
    entity: dict[str, Any] = body[key]
    return entity


def string_field(doc: dict[str, Any], key: str, limit: int, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise errors.Invalid(f"Invalid input for field '{key}': '{key}' is a required property")
        return None
    if not isinstance(value, str) or (key in ("name", "password") and not value.strip()) or len(value) > limit:
        raise errors.Invalid(f"Invalid input for field '{key}': expected a non-empty string of at most {limit} "
                             "characters")
    return value


def flag_field(doc: dict[str, Any], key: str) -> bool | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, bool):
        raise errors.Invalid(f"Invalid input for field '{key}': {value!r} is not of type 'boolean'")
    return value


# a user's attributes Keystone keeps in their own columns; any other key of the body is an extra attribute
USER_FIELDS = frozenset({"id", "name", "domain_id", "password", "enabled", "default_project_id", "options",
                         "links", "password_expires_at", "federated"})
MAX_EXTRAS = 16  # extra attributes per user (Keystone has no limit; a hostile admin's body gets one)
MAX_EXTRA_KEY = 64


def user_extras(doc: dict[str, Any]) -> dict[str, Any]:
    """The body's extra attributes (description, email, ...): JSON scalars, strings as long as a description."""
    extras = {k: v for k, v in doc.items() if k not in USER_FIELDS}
    if len(extras) > MAX_EXTRAS:
        raise errors.Invalid(f"Invalid input for field 'user': at most {MAX_EXTRAS} extra attributes")
    for key, value in extras.items():
        if len(key) > MAX_EXTRA_KEY or not key.strip():
            raise errors.Invalid(f"Invalid input for field 'user': attribute names are 1 to {MAX_EXTRA_KEY} "
                                 "characters")
        if value is not None and not isinstance(value, (str, bool, int, float)):
            raise errors.Invalid(f"Invalid input for field '{key}': expected a string, number, boolean or null")
        if isinstance(value, str) and len(value) > MAX_DESCRIPTION:
            raise errors.Invalid(f"Invalid input for field '{key}': at most {MAX_DESCRIPTION} characters")
    return extras


def name_conflict(kind: str, name: str) -> errors.Conflict:
    return errors.Conflict(f"Conflict occurred attempting to store {kind} - Duplicate entry found with name "
                           f"{name} at domain ID.")


async def domain_exists(conn: AsyncConnection, domain_id: str) -> None:
    if (await conn.execute(select(domains.c.id).where(domains.c.id == domain_id))).first() is None:
        raise DomainNotFound(domain_id=domain_id)


def grant_clause(table: Table, grant: dict[str, str]) -> Any:
    """The WHERE of one role grant row (its columns named as the grant's keys)."""
    return and_(*(table.c[k] == v for k, v in grant.items()))


async def grant_exists(conn: AsyncConnection, table: Table, grant: dict[str, str]) -> bool:
    return (await conn.execute(select(table).where(grant_clause(table, grant)))).first() is not None


async def add_grant(conn: AsyncConnection, table: Table, grant: dict[str, str]) -> None:
    """Grant once: granting what is already held changes nothing (Keystone's PUT)."""
    if not await grant_exists(conn, table, grant):
        await conn.execute(insert(table).values(**grant))


# finds the grant a route names (its table and row), once the actor, the scope and the role exist
GrantFinder = Callable[[AsyncConnection, web.Request], Awaitable[tuple[Table, dict[str, str]]]]


def no_grant(grant: dict[str, str]) -> errors.NotFound:
    actor = grant.get("user_id") or grant.get("group_id")
    scope = grant.get("project_id") or grant.get("domain_id")
    return errors.NotFound(f"Could not find role assignment with role: {grant['role_id']}, user or group: "
                           f"{actor}, project, domain, or system: {scope}.")


def add_grant_routes(app: web.Application, path: str, find: GrantFinder) -> None:
    """PUT (grant), GET/HEAD (check) and DELETE (revoke) of the one grant `path` names, under Keystone's
    identity:create_grant / check_grant / revoke_grant with the path's entities and their domains."""
    async def create(request: web.Request) -> web.Response:
        await authorize(request, "create_grant", await grant_target(request))
        async with request.config_dict[ENGINE].begin() as conn:
            await add_grant(conn, *await find(conn, request))
        return web.Response(status=204)

    async def check(request: web.Request) -> web.Response:
        await authorize(request, "check_grant", await grant_target(request))
        async with request.config_dict[ENGINE].connect() as conn:
            table, grant = await find(conn, request)
            exists = await grant_exists(conn, table, grant)
        if not exists:
            raise no_grant(grant)
        return web.Response(status=204)

    async def revoke(request: web.Request) -> web.Response:
        await authorize(request, "revoke_grant", await grant_target(request))
        async with request.config_dict[ENGINE].begin() as conn:
            table, grant = await find(conn, request)
            result = await conn.execute(delete(table).where(grant_clause(table, grant)))
        if result.rowcount == 0:
            raise no_grant(grant)
        return web.Response(status=204)

    app.router.add_put(path, create)
    app.router.add_get(path, check)  # aiohttp adds HEAD, which is what clients send
    app.router.add_delete(path, revoke)


async def project_row(conn: AsyncConnection, project_id: str) -> Any:
    row = (await conn.execute(select(projects).where(projects.c.id == project_id))).first()
    if row is None:
        raise ProjectNotFound(project_id=project_id)
    return row


async def user_row(conn: AsyncConnection, user_id: str) -> Any:
    row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    if row is None:
        raise UserNotFound(user_id=user_id)
    return row


def _protected_project(row: Any) -> bool:
    return row.domain_id == ADMIN_PROJECT[1] and row.name in PROTECTED_PROJECTS


# --- projects -------------------------------------------------------------------------------

def _loose(body: Any, key: str) -> dict[str, Any]:
    """The entity of a body as far as a policy target needs it, before the body is validated (as Keystone
    builds a create's target): a refusal comes first, whatever the body holds."""
    entity = body.get(key) if isinstance(body, dict) else None
    return entity if isinstance(entity, dict) else {}


async def create_project(request: web.Request) -> web.Response:
    body = await json_body(request)
    loose = _loose(body, "project")
    if loose.get("is_domain") is True:  # a domain, made through the projects API (Keystone's is_domain)
        from api.identity import project_domains  # it builds on this module
        return await project_domains.create(request, entity_body(body, "project"))
    if loose.get("parent_id") is None:  # else the parent's domain, once read, is the target's
        await authorize(request, "create_project", {"target.project.domain_id": str(loose.get("domain_id")
                                                                                    or "default")})
    doc = entity_body(body, "project")
    name = string_field(doc, "name", MAX_NAME, required=True)
    description = string_field(doc, "description", MAX_DESCRIPTION) or ""
    enabled = flag_field(doc, "enabled")
    if doc.get("is_domain") not in (None, False):
        raise errors.Invalid(f"Invalid input for field 'is_domain': {doc['is_domain']!r} is not of type 'boolean'")
    tags = tag_store.checked_tags(doc["tags"]) if "tags" in doc else []
    parent = doc.get("parent_id")
    if parent is not None and not isinstance(parent, str):
        raise errors.Invalid("Invalid input for field 'parent_id': expected a string")
    domain_id = doc.get("domain_id")
    async with request.config_dict[ENGINE].begin() as conn:
        if domain_id is None and parent is not None:  # Keystone: the child of a project is in its domain
            found = (await conn.execute(select(projects.c.domain_id).where(projects.c.id == parent))).scalar()
            is_domain = (await conn.execute(select(domains.c.id).where(domains.c.id == parent))).first()
            # a parent that is neither a project nor a domain is looked up (404) as the project it claims to be
            domain_id = found if found is not None else parent if is_domain is not None else "default"
        domain_id = str(domain_id or "default")
        # a domain admin creates projects in their own domain (Keystone's target.project.domain_id)
        await authorize(request, "create_project", {"target.project.domain_id": domain_id})
        await domain_exists(conn, domain_id)
        parent_id = None
        if parent is not None and parent != domain_id:
            parent_id = (await hierarchy.checked_parent(conn, parent, domain_id, enabled is not False)).id
        taken = (await conn.execute(select(projects.c.id).where(
            and_(projects.c.name == name, projects.c.domain_id == domain_id)))).first()
        if taken is not None:
            raise name_conflict("project", str(name))
        project_id = new_id()
        await conn.execute(insert(projects).values(id=project_id, name=name, domain_id=domain_id,
                                                   enabled=True if enabled is None else enabled,
                                                   description=description, parent_id=parent_id))
        await tag_store.replace_tags(conn, project_id, tags)
        row = await project_row(conn, project_id)
    return web.json_response({"project": project_view(public_url(request), row, {project_id: tags})}, status=201)


async def _project_target(request: web.Request, project_id: str) -> dict[str, Any]:
    """The policy target of a project write: its id and, when it exists, its domain (a domain admin's)."""
    async with request.config_dict[ENGINE].connect() as conn:
        domain_id = (await conn.execute(select(projects.c.domain_id).where(projects.c.id == project_id))).scalar()
    return {"target.project.id": project_id, "target.project.domain_id": domain_id}


async def _acting_domain(request: web.Request, project_id: str) -> bool:
    """Whether the project id is a domain's (a project acting as a domain, Keystone's is_domain)."""
    from api.identity import project_domains  # it builds on this module
    async with request.config_dict[ENGINE].connect() as conn:
        if (await conn.execute(select(projects.c.id).where(projects.c.id == project_id))).first() is not None:
            return False
        return await project_domains.domain_row(conn, project_id) is not None


async def update_project(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    if await _acting_domain(request, project_id):
        from api.identity import project_domains
        return await project_domains.update(request, project_id, entity_body(await json_body(request), "project"))
    await authorize(request, "update_project", await _project_target(request, project_id))
    doc = entity_body(await json_body(request), "project")
    name = string_field(doc, "name", MAX_NAME)
    description = string_field(doc, "description", MAX_DESCRIPTION)
    enabled = flag_field(doc, "enabled")
    for key in ("domain_id", "parent_id", "is_domain"):
        if key in doc:
            raise errors.Invalid(f"Update of `{key}` is not allowed.")
    tags = tag_store.checked_tags(doc["tags"]) if "tags" in doc else None
    changes = {k: v for k, v in (("name", name), ("description", description), ("enabled", enabled))
               if v is not None}
    async with request.config_dict[ENGINE].begin() as conn:
        row = await project_row(conn, project_id)
        if _protected_project(row) and (enabled is False or (name is not None and name != row.name)):
            raise errors.Forbidden(f"Project {row.name} is the cluster's own: it cannot be disabled or renamed.")
        if name is not None and name != row.name:
            taken = (await conn.execute(select(projects.c.id).where(
                and_(projects.c.name == name, projects.c.domain_id == row.domain_id)))).first()
            if taken is not None:
                raise name_conflict("project", name)
        if enabled is not None:
            await hierarchy.check_enabled_change(conn, row, enabled)
        if changes:
            await conn.execute(update(projects).where(projects.c.id == project_id).values(**changes))
        if tags is not None:  # the whole set, as Keystone's PATCH of `tags`
            await tag_store.replace_tags(conn, project_id, tags)
        row = await project_row(conn, project_id)
        held = await tag_store.tags_of(conn, [project_id])
    return web.json_response({"project": project_view(public_url(request), row, held)})


async def delete_project(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    if await _acting_domain(request, project_id):
        from api.identity import project_domains
        return await project_domains.delete(request, project_id)
    await authorize(request, "delete_project", await _project_target(request, project_id))
    async with request.config_dict[ENGINE].begin() as conn:
        row = await project_row(conn, project_id)
        if _protected_project(row):
            raise errors.Forbidden(f"Project {row.name} is the cluster's own: it cannot be deleted.")
        await hierarchy.check_delete(conn, row)
        # its grants and application credentials go with it (ON DELETE CASCADE); so do its tokens,
        # which name a project that no longer exists
        await conn.execute(delete(projects).where(projects.c.id == project_id))
    return web.Response(status=204)


# --- users ------------------------------------------------------------------------------------

async def _user_target(request: web.Request, user_id: str) -> dict[str, Any]:
    """The policy target of a user write: its id and, when it exists, its domain (a domain admin's)."""
    async with request.config_dict[ENGINE].connect() as conn:
        domain_id = (await conn.execute(select(users.c.domain_id).where(users.c.id == user_id))).scalar()
    return {"target.user.id": user_id, "target.user.domain_id": domain_id}


async def create_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    await authorize(request, "create_user", {"target.user.domain_id": str(_loose(body, "user").get("domain_id")
                                                                             or "default")})
    doc = entity_body(body, "user")
    name = string_field(doc, "name", MAX_USER_NAME, required=True)
    password = string_field(doc, "password", MAX_PASSWORD)
    enabled = flag_field(doc, "enabled")
    extras = user_extras(doc)
    domain_id = str(doc.get("domain_id") or "default")
    default_project = doc.get("default_project_id")
    # no password: nothing matches the hash, so the user cannot log in until one is set (as Keystone)
    password_hash = await hash_password(password) if password is not None else "!"
    async with request.config_dict[ENGINE].begin() as conn:
        await domain_exists(conn, domain_id)
        if default_project is not None:
            await project_row(conn, str(default_project))
        taken = (await conn.execute(select(users.c.id).where(
            and_(users.c.name == name, users.c.domain_id == domain_id)))).first()
        if taken is not None:
            raise name_conflict("user", str(name))
        user_id = new_id()
        await conn.execute(insert(users).values(
            id=user_id, name=name, domain_id=domain_id, password_hash=password_hash,
            enabled=True if enabled is None else enabled, default_project_id=default_project, created_at=utcnow(),
            extra=extras))
        row = await user_row(conn, user_id)
    return web.json_response({"user": user_view(public_url(request), row)}, status=201)


async def update_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    token = await authorize(request, "update_user", await _user_target(request, user_id))
    doc = entity_body(await json_body(request), "user")
    name = string_field(doc, "name", MAX_USER_NAME)
    password = string_field(doc, "password", MAX_PASSWORD)
    enabled = flag_field(doc, "enabled")
    if "domain_id" in doc:
        raise errors.Invalid("Update of `domain_id` is not allowed.")
    extras = user_extras(doc)
    changes: dict[str, Any] = {k: v for k, v in (("name", name), ("enabled", enabled)) if v is not None}
    if "default_project_id" in doc:
        changes["default_project_id"] = doc["default_project_id"]
    if password is not None:
        changes["password_hash"] = await hash_password(password)
    async with request.config_dict[ENGINE].begin() as conn:
        row = await user_row(conn, user_id)
        if enabled is False and (row.name in PROTECTED_USERS or user_id == token.user.id):
            raise errors.Forbidden("This user cannot be disabled: it is the cluster's own, or your own.")
        if name is not None and name != row.name:
            if row.name in PROTECTED_USERS:
                raise errors.Forbidden(f"User {row.name} is the cluster's own: it cannot be renamed.")
            taken = (await conn.execute(select(users.c.id).where(
                and_(users.c.name == name, users.c.domain_id == row.domain_id)))).first()
            if taken is not None:
                raise name_conflict("user", name)
        if changes.get("default_project_id") is not None:
            await project_row(conn, str(changes["default_project_id"]))
        if extras:  # merged into those stored, as Keystone updates a user's extra attributes
            changes["extra"] = {**(row.extra or {}), **extras}
            if len(changes["extra"]) > MAX_EXTRAS:
                raise errors.Invalid(f"Invalid input for field 'user': at most {MAX_EXTRAS} extra attributes")
        if changes:
            await conn.execute(update(users).where(users.c.id == user_id).values(**changes))
        row = await user_row(conn, user_id)
    return web.json_response({"user": user_view(public_url(request), row)})


async def delete_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    token = await authorize(request, "delete_user", await _user_target(request, user_id))
    async with request.config_dict[ENGINE].begin() as conn:
        row = await user_row(conn, user_id)
        if row.name in PROTECTED_USERS or user_id == token.user.id:
            raise errors.Forbidden("This user cannot be deleted: it is the cluster's own, or your own.")
        await conn.execute(delete(users).where(users.c.id == user_id))  # grants and credentials cascade
    return web.Response(status=204)


async def change_password(request: web.Request) -> web.Response:
    """POST /v3/users/{user_id}/password: a user changes their own (or a cloud admin anyone's), proving the
    current one."""
    user_id = request.match_info["user_id"]
    token = await caller(request)
    await authorize(request, "change_password", {"target.user.id": user_id, "user_id": token.user.id})
    doc = entity_body(await json_body(request), "user")
    original = string_field(doc, "original_password", MAX_PASSWORD, required=True)
    password = string_field(doc, "password", MAX_PASSWORD, required=True)
    engine = request.config_dict[ENGINE]
    async with engine.connect() as conn:
        row = await user_row(conn, user_id)
    if not await verify_password(str(original), row.password_hash):
        raise Unauthorized("The original password was wrong.")
    new_hash = await hash_password(str(password))
    async with engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(password_hash=new_hash))
    return web.Response(status=204)


# --- grants: a role for a user on a project ------------------------------------------------------

async def _grant_parts(conn: AsyncConnection, request: web.Request) -> dict[str, str]:
    m = request.match_info
    await project_row(conn, m["project_id"])
    await user_row(conn, m["user_id"])
    await role_scope.assignable_role(conn, m["role_id"], project_id=m["project_id"])
    return {"project_id": m["project_id"], "user_id": m["user_id"], "role_id": m["role_id"]}


async def grant_target(request: web.Request) -> dict[str, Any]:
    """The policy target of a grant route: the ids in its path and, of those that exist, their domains
    (what Keystone's domain-admin grant rules compare with the token's domain)."""
    m = request.match_info
    target: dict[str, Any] = {"target.role.id": m.get("role_id")}
    async with request.config_dict[ENGINE].connect() as conn:
        for key, table in (("project", projects), ("user", users), ("group", groups)):
            if f"{key}_id" in m:
                target[f"target.{key}.id"] = m[f"{key}_id"]
                target[f"target.{key}.domain_id"] = (await conn.execute(
                    select(table.c.domain_id).where(table.c.id == m[f"{key}_id"]))).scalar()
    if "domain_id" in m:
        target["target.domain.id"] = m["domain_id"]
    return target


async def create_grant(request: web.Request) -> web.Response:
    await authorize(request, "create_grant", await grant_target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        grant = await _grant_parts(conn, request)
        exists = (await conn.execute(select(role_assignments.c.user_id).where(
            and_(*(role_assignments.c[k] == v for k, v in grant.items()))))).first()
        if exists is None:
            await conn.execute(insert(role_assignments).values(**grant))
    return web.Response(status=204)


async def check_grant(request: web.Request) -> web.Response:
    await authorize(request, "check_grant", await grant_target(request))
    async with request.config_dict[ENGINE].connect() as conn:
        grant = await _grant_parts(conn, request)
        exists = (await conn.execute(select(role_assignments.c.user_id).where(
            and_(*(role_assignments.c[k] == v for k, v in grant.items()))))).first()
    if exists is None:
        raise errors.NotFound(f"Could not find role assignment with role: {grant['role_id']}, user or group: "
                              f"{grant['user_id']}, project, domain, or system: {grant['project_id']}.")
    return web.Response(status=204)


async def revoke_grant(request: web.Request) -> web.Response:
    await authorize(request, "revoke_grant", await grant_target(request))
    async with request.config_dict[ENGINE].begin() as conn:
        grant = await _grant_parts(conn, request)
        row = (await conn.execute(select(projects.c.name, projects.c.domain_id, roles.c.name.label("role"))
                                  .join(roles, roles.c.id == grant["role_id"])
                                  .where(projects.c.id == grant["project_id"]))).one()
        if (row.domain_id, row.name, row.role) == (ADMIN_PROJECT[1], ADMIN_PROJECT[0], "admin"):
            admins = (await conn.execute(select(role_assignments.c.user_id).where(and_(
                role_assignments.c.project_id == grant["project_id"],
                role_assignments.c.role_id == grant["role_id"])))).all()
            if [a.user_id for a in admins] == [grant["user_id"]]:
                raise errors.Forbidden("This is the last admin of the admin project: the cloud would have none.")
        result = await conn.execute(delete(role_assignments).where(
            and_(*(role_assignments.c[k] == v for k, v in grant.items()))))
    if result.rowcount == 0:
        raise errors.NotFound(f"Could not find role assignment with role: {grant['role_id']}, user or group: "
                              f"{grant['user_id']}, project, domain, or system: {grant['project_id']}.")
    return web.Response(status=204)


async def list_grants(request: web.Request) -> web.Response:
    """GET /v3/projects/{project_id}/users/{user_id}/roles: the roles granted directly."""
    await authorize(request, "list_grants", await grant_target(request))
    m = request.match_info
    async with request.config_dict[ENGINE].connect() as conn:
        await project_row(conn, m["project_id"])
        await user_row(conn, m["user_id"])
        rows = (await conn.execute(select(roles).join(role_assignments, role_assignments.c.role_id == roles.c.id)
                                   .where(and_(role_assignments.c.project_id == m["project_id"],
                                               role_assignments.c.user_id == m["user_id"]))
                                   .order_by(roles.c.name))).all()
    base = public_url(request)
    return web.json_response({"roles": [role_view(base, r) for r in rows],
                              "links": {"self": base + request.path, "previous": None, "next": None}})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v3/projects", create_project)
    app.router.add_patch("/v3/projects/{project_id}", update_project)
    app.router.add_delete("/v3/projects/{project_id}", delete_project)
    app.router.add_post("/v3/users", create_user)
    app.router.add_patch("/v3/users/{user_id}", update_user)
    app.router.add_delete("/v3/users/{user_id}", delete_user)
    app.router.add_post("/v3/users/{user_id}/password", change_password)
    grant = "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"
    app.router.add_put(grant, create_grant)
    app.router.add_get(grant, check_grant)  # aiohttp adds HEAD, which is what clients send
    app.router.add_delete(grant, revoke_grant)
    app.router.add_get("/v3/projects/{project_id}/users/{user_id}/roles", list_grants)
