"""GET /v3/role_assignments: who holds which role on which project, as Keystone lists it.

Grants here are a role for a user or a group on a project (no domain or system grants, no
inheritance), so a filter on those matches nothing. Without `effective` each grant is listed as
made: a user's with `user`, a group's with `group`. With `effective` the list is what tokens
carry: a group's grant becomes one entry per member (`membership` link), and each role brings the
roles it implies (admin -> member -> reader) with the grant they come from as `prior_role`;
`user.id` and `role.id` then filter the expanded list, as Keystone filters after expanding.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from sqlalchemy import and_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import (
    domains,
    group_members,
    group_role_assignments,
    groups,
    projects,
    role_assignments,
    roles,
    users,
)
from api.identity.resources import authorize, collection, query_flag
from api.identity.tokens import IMPLIED_ROLES
from api.keys import ENGINE, public_url
from cells import errors

_NEVER_MATCH = ("scope.domain.id", "scope.system", "scope.OS-INHERIT:inherited_to")


@dataclass(frozen=True)
class Assignment:
    project_id: str
    role_id: str
    user_id: str | None = None  # the user holding the role (None: a group's grant, listed as made)
    group_id: str | None = None  # the group whose grant this is
    prior_role: str | None = None  # the granted role that implies this one (effective only)


async def _direct(conn: AsyncConnection, query: Any) -> list[Assignment]:
    """The grants as made, filtered by user, group, role and project where the query names them."""
    out: list[Assignment] = []
    project = query.get("scope.project.id")
    role = query.get("role.id")
    if "group.id" not in query:
        table = role_assignments
        clauses = [table.c[col] == query[key] for key, col in (("user.id", "user_id"), ("role.id", "role_id"),
                                                                ("scope.project.id", "project_id")) if key in query]
        rows = (await conn.execute(select(table).where(and_(true(), *clauses)))).all()
        out += [Assignment(r.project_id, r.role_id, user_id=r.user_id) for r in rows]
    if "user.id" not in query:
        table = group_role_assignments
        clauses = [table.c.group_id == query["group.id"]] if "group.id" in query else []
        clauses += [table.c.role_id == role] if role else []
        clauses += [table.c.project_id == project] if project else []
        rows = (await conn.execute(select(table).where(and_(true(), *clauses)))).all()
        out += [Assignment(r.project_id, r.role_id, group_id=r.group_id) for r in rows]
    return out


async def _effective(conn: AsyncConnection, query: Any) -> list[Assignment]:
    """Every (user, project, role) a token would carry, each with the grant it comes from."""
    project = query.get("scope.project.id")
    user = query.get("user.id")
    direct = role_assignments
    clauses = [direct.c.user_id == user] if user else []
    clauses += [direct.c.project_id == project] if project else []
    rows = (await conn.execute(select(direct).where(and_(true(), *clauses)))).all()
    granted = [Assignment(r.project_id, r.role_id, user_id=r.user_id) for r in rows]
    clauses = [group_members.c.user_id == user] if user else []
    clauses += [group_role_assignments.c.project_id == project] if project else []
    rows = (await conn.execute(
        select(group_role_assignments, group_members.c.user_id)
        .join(group_members, group_members.c.group_id == group_role_assignments.c.group_id)
        .where(and_(true(), *clauses)))).all()
    granted += [Assignment(r.project_id, r.role_id, user_id=r.user_id, group_id=r.group_id) for r in rows]
    role_rows = (await conn.execute(select(roles.c.id, roles.c.name))).all()
    by_name = {r.name: r.id for r in role_rows}
    name_of = {r.id: r.name for r in role_rows}
    out: list[Assignment] = []
    seen: set[Assignment] = set()
    for grant in granted:
        todo = [grant]
        while todo:
            entry = todo.pop()
            if entry in seen:
                continue
            seen.add(entry)
            out.append(entry)
            for implied_name in IMPLIED_ROLES.get(name_of.get(entry.role_id, ""), ()):
                if implied_name in by_name:
                    todo.append(replace(entry, role_id=by_name[implied_name], prior_role=entry.role_id))
    if "role.id" in query:
        out = [a for a in out if a.role_id == query["role.id"]]
    return out


async def _names(conn: AsyncConnection, found: list[Assignment]) -> dict[str, Any]:
    """id -> {name, domain} of every user, group, project and role named by `found`."""
    labels: dict[str, Any] = {r.id: {"name": r.name} for r in (await conn.execute(select(roles.c.id, roles.c.name)))}
    wanted = (
        (users, {a.user_id for a in found if a.user_id}),
        (groups, {a.group_id for a in found if a.group_id}),
        (projects, {a.project_id for a in found}),
    )
    for table, ids in wanted:
        rows = (await conn.execute(select(table.c.id, table.c.name, table.c.domain_id, domains.c.name.label("d"))
                                   .join(domains, domains.c.id == table.c.domain_id).where(table.c.id.in_(ids)))).all()
        labels.update({r.id: {"name": r.name, "domain": {"id": r.domain_id, "name": r.d}} for r in rows})
    return labels


def _view(base: str, entry: Assignment, labels: dict[str, Any] | None) -> dict[str, Any]:
    def entity(entity_id: str) -> dict[str, Any]:
        return {"id": entity_id, **(labels.get(entity_id, {}) if labels else {})}

    granted_role = entry.prior_role or entry.role_id
    holder = f"groups/{entry.group_id}" if entry.group_id else f"users/{entry.user_id}"
    links: dict[str, str] = {
        "assignment": f"{base}/identity/v3/projects/{entry.project_id}/{holder}/roles/{granted_role}"}
    if entry.group_id and entry.user_id:
        links["membership"] = f"{base}/identity/v3/groups/{entry.group_id}/users/{entry.user_id}"
    if entry.prior_role is not None:
        links["prior_role"] = f"{base}/identity/v3/roles/{entry.prior_role}"
    view: dict[str, Any] = {"role": entity(entry.role_id), "scope": {"project": entity(entry.project_id)},
                            "links": links}
    if entry.user_id:
        view["user"] = entity(entry.user_id)
    else:
        view["group"] = entity(str(entry.group_id))
    return view


async def list_role_assignments(request: web.Request) -> web.Response:
    await authorize(request, "list_role_assignments")
    query = request.query
    if "include_subtree" in query and "scope.project.id" not in query:
        raise errors.Invalid("scope.project.id needs to be specified if include_subtree is also specified")
    effective = "effective" in query and query_flag(query["effective"] or "true")
    names = "include_names" in query and query_flag(query["include_names"] or "true")
    if effective and "group.id" in query:
        raise errors.Invalid("Combining effective and group filter will always result in an empty list.")
    found: list[Assignment] = []
    labels = None
    async with request.config_dict[ENGINE].connect() as conn:
        if not any(key in query for key in _NEVER_MATCH):
            found = await (_effective(conn, query) if effective else _direct(conn, query))
        if names:
            labels = await _names(conn, found)
    base = public_url(request)
    views: Iterable[dict[str, Any]] = (_view(base, a, labels) for a in found)
    return collection(request, "role_assignments", views)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/role_assignments", list_role_assignments)
