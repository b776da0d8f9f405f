"""GET /v3/role_assignments: who holds which role on which project, as Keystone lists it.

Grants here are a role for a user or a group on a project or a domain (no system grants in this
list, no inheritance), so a filter on those matches nothing. Without `effective` each grant is listed as
made: a user's with `user`, a group's with `group`. With `effective` the list is what tokens
carry: a group's grant becomes one entry per member (`membership` link), and each role brings the
roles it implies (admin -> member -> reader) with the grant they come from as `prior_role`; a
domain-specific role is left out, the global roles it implies stay;
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
    domain_role_assignments,
    domains,
    group_domain_role_assignments,
    group_members,
    group_role_assignments,
    groups,
    projects,
    role_assignments,
    roles,
    users,
)
from api.identity.resources import authorize, collection, query_flag
from api.identity.tokens import implications
from api.keys import ENGINE, public_url
from cells import errors

_NEVER_MATCH = ("scope.system", "scope.OS-INHERIT:inherited_to")
# (grant table, actor column, scope column): every kind of grant kept here
_GRANTS = ((role_assignments, "user_id", "project_id"), (group_role_assignments, "group_id", "project_id"),
           (domain_role_assignments, "user_id", "domain_id"), (group_domain_role_assignments, "group_id", "domain_id"))
_SCOPE_FILTERS = {"project_id": "scope.project.id", "domain_id": "scope.domain.id"}


@dataclass(frozen=True)
class Assignment:
    project_id: str | None
    role_id: str
    user_id: str | None = None  # the user holding the role (None: a group's grant, listed as made)
    group_id: str | None = None  # the group whose grant this is
    prior_role: str | None = None  # the granted role that implies this one (effective only)
    domain_id: str | None = None  # a domain grant's domain (project_id None)


def _scoped(table: Any, scope: str, query: Any) -> list[Any] | None:
    """The WHERE clauses of the query's scope filters on a grant table; None: it cannot match."""
    other = "domain_id" if scope == "project_id" else "project_id"
    if _SCOPE_FILTERS[other] in query:
        return None
    key = _SCOPE_FILTERS[scope]
    return [table.c[scope] == query[key]] if key in query else []


def _assignment(row: Any, scope: str, **actor: str | None) -> Assignment:
    if scope == "project_id":
        return Assignment(row.project_id, row.role_id, **actor)
    return Assignment(None, row.role_id, domain_id=row.domain_id, **actor)


async def _direct(conn: AsyncConnection, query: Any) -> list[Assignment]:
    """The grants as made, filtered by user, group, role and scope where the query names them."""
    out: list[Assignment] = []
    for table, actor, scope in _GRANTS:
        other_actor = "group.id" if actor == "user_id" else "user.id"
        clauses = _scoped(table, scope, query)
        if clauses is None or other_actor in query:
            continue
        own = "user.id" if actor == "user_id" else "group.id"
        clauses += [table.c[actor] == query[own]] if own in query else []
        clauses += [table.c.role_id == query["role.id"]] if "role.id" in query else []
        rows = (await conn.execute(select(table).where(and_(true(), *clauses)))).all()
        out += [_assignment(r, scope, **{actor: getattr(r, actor)}) for r in rows]
    return out


async def _effective(conn: AsyncConnection, query: Any) -> list[Assignment]:
    """Every (user, scope, role) a token would carry, each with the grant it comes from."""
    user = query.get("user.id")
    granted: list[Assignment] = []
    for table, actor, scope in _GRANTS:
        clauses = _scoped(table, scope, query)
        if clauses is None:
            continue
        if actor == "user_id":
            clauses += [table.c.user_id == user] if user else []
            rows = (await conn.execute(select(table).where(and_(true(), *clauses)))).all()
            granted += [_assignment(r, scope, user_id=r.user_id) for r in rows]
        else:
            clauses += [group_members.c.user_id == user] if user else []
            rows = (await conn.execute(
                select(table, group_members.c.user_id)
                .join(group_members, group_members.c.group_id == table.c.group_id)
                .where(and_(true(), *clauses)))).all()
            granted += [_assignment(r, scope, user_id=r.user_id, group_id=r.group_id) for r in rows]
    role_rows = (await conn.execute(select(roles.c.id, roles.c.name, roles.c.domain_id))).all()
    by_name = {r.name: r.id for r in role_rows}
    domain_specific = {r.id for r in role_rows if r.domain_id is not None}
    name_of = {r.id: r.name for r in role_rows}
    implies = await implications(conn)
    out: list[Assignment] = []
    seen: set[Assignment] = set()
    for grant in granted:
        todo = [grant]
        while todo:
            entry = todo.pop()
            if entry in seen:
                continue
            seen.add(entry)
            if entry.role_id not in domain_specific:  # tokens never carry one: only what it implies
                out.append(entry)
            for implied_name in implies.get(name_of.get(entry.role_id, ""), ()):
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
        (projects, {a.project_id for a in found if a.project_id}),
    )
    for table, ids in wanted:
        rows = (await conn.execute(select(table.c.id, table.c.name, table.c.domain_id, domains.c.name.label("d"))
                                   .join(domains, domains.c.id == table.c.domain_id).where(table.c.id.in_(ids)))).all()
        labels.update({r.id: {"name": r.name, "domain": {"id": r.domain_id, "name": r.d}} for r in rows})
    domain_ids = {a.domain_id for a in found if a.domain_id}
    named = (await conn.execute(select(domains.c.id, domains.c.name).where(domains.c.id.in_(domain_ids)))).all()
    labels.update({r.id: {"name": r.name} for r in named})
    return labels


def _view(base: str, entry: Assignment, labels: dict[str, Any] | None) -> dict[str, Any]:
    def entity(entity_id: str) -> dict[str, Any]:
        return {"id": entity_id, **(labels.get(entity_id, {}) if labels else {})}

    granted_role = entry.prior_role or entry.role_id
    holder = f"groups/{entry.group_id}" if entry.group_id else f"users/{entry.user_id}"
    scope = f"projects/{entry.project_id}" if entry.project_id else f"domains/{entry.domain_id}"
    links: dict[str, str] = {"assignment": f"{base}/identity/v3/{scope}/{holder}/roles/{granted_role}"}
    if entry.group_id and entry.user_id:
        links["membership"] = f"{base}/identity/v3/groups/{entry.group_id}/users/{entry.user_id}"
    if entry.prior_role is not None:
        links["prior_role"] = f"{base}/identity/v3/roles/{entry.prior_role}"
    scope_view = {"project": entity(entry.project_id)} if entry.project_id else \
        {"domain": entity(str(entry.domain_id))}
    view: dict[str, Any] = {"role": entity(entry.role_id), "scope": scope_view, "links": links}
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
