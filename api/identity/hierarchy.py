"""Project hierarchies, as Keystone keeps them: a project's parent is another project of its domain, or
(parent_id None in the DB) the domain itself, shown as its parent_id.

The rules Keystone enforces (max_project_tree_depth 5, a leaf-only delete, no enabled project under a
disabled one) are checked here inside the writer's transaction; `show` answers Keystone's
parents_as_list / subtree_as_list (each a project the caller may see) and parents_as_ids /
subtree_as_ids (nested {id: {...} | None}).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import projects
from cells import errors

MAX_DEPTH = 5  # Keystone's max_project_tree_depth: a domain's top-level project is depth 1


async def parents(conn: AsyncConnection, row: Any) -> list[Any]:
    """The project's ancestors, nearest first (its domain not included)."""
    out: list[Any] = []
    seen = {row.id}
    parent_id = row.parent_id
    while parent_id is not None and parent_id not in seen and len(out) < MAX_DEPTH:
        parent = (await conn.execute(select(projects).where(projects.c.id == parent_id))).first()
        if parent is None:
            break
        out.append(parent)
        seen.add(parent.id)
        parent_id = parent.parent_id
    return out


async def subtree(conn: AsyncConnection, row: Any) -> list[Any]:
    """Every project below this one, breadth first (one query per level: the depth is at most 5)."""
    out: list[Any] = []
    level = [row.id]
    for _ in range(MAX_DEPTH):
        children = (await conn.execute(select(projects).where(projects.c.parent_id.in_(level))
                                       .order_by(projects.c.name))).all()
        if not children:
            break
        out += children
        level = [c.id for c in children]
    return out


async def checked_parent(conn: AsyncConnection, parent_id: str, domain_id: str, enabled: bool) -> Any:
    """The row of a new project's parent project, after Keystone's checks (same domain, depth, enabled)."""
    parent = (await conn.execute(select(projects).where(projects.c.id == parent_id))).first()
    if parent is None:
        raise errors.NotFound(f"Could not find project: {parent_id}.")
    if parent.domain_id != domain_id:
        raise errors.Invalid("Cannot create project with parent in a different domain: the parent's domain is "
                             f"{parent.domain_id}.")
    ancestors = await parents(conn, parent)
    if len(ancestors) + 2 > MAX_DEPTH:
        raise errors.Forbidden(f"Max hierarchy depth reached for {parent_id} branch.")
    if enabled and not all(p.enabled for p in (parent, *ancestors)):
        raise errors.Invalid(f"cannot create a project in a branch containing a disabled project: {parent_id}")
    return parent


async def check_delete(conn: AsyncConnection, row: Any) -> None:
    child = (await conn.execute(select(projects.c.id).where(projects.c.parent_id == row.id).limit(1))).first()
    if child is not None:
        raise errors.Forbidden(f"Cannot delete the project {row.id}, since it is not a leaf in the hierarchy.")


async def check_enabled_change(conn: AsyncConnection, row: Any, enabled: bool) -> None:
    """Keystone's rule: no enabled project below a disabled one, either way round."""
    if enabled and not row.enabled and not all(p.enabled for p in await parents(conn, row)):
        raise errors.Forbidden(f"cannot enable project {row.id} since it has disabled parents")
    if not enabled and row.enabled and any(p.enabled for p in await subtree(conn, row)):
        raise errors.Forbidden(f"cannot disable project {row.id} since its subtree contains enabled projects.")


def _as_ids(chain: list[Any], key: str) -> dict[str, Any] | None:
    """Keystone's nested ids: parents {parent: {grandparent: None}}; subtree {child: {grandchild: None}}."""
    if key == "parent":
        nested: dict[str, Any] | None = None
        for p in reversed(chain):
            nested = {p.id: nested}
        return nested
    by_parent: dict[str, list[Any]] = {}
    for p in chain:
        by_parent.setdefault(p.parent_id, []).append(p)

    def below(project_id: str) -> dict[str, Any] | None:
        kids = by_parent.get(project_id, [])
        return {k.id: below(k.id) for k in kids} or None
    return below(key)


async def show_extras(conn: AsyncConnection, row: Any, query: Any, visible: Callable[[Any], bool],
                      view: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The keys a project show adds for ?parents_as_list, ?subtree_as_list, ?parents_as_ids, ?subtree_as_ids."""
    for which in ("parents", "subtree"):
        if f"{which}_as_list" in query and f"{which}_as_ids" in query:
            raise errors.Invalid(f"Cannot use {which}_as_list and {which}_as_ids query params at the same time.")
    extra: dict[str, Any] = {}
    if "parents_as_list" in query or "parents_as_ids" in query:
        up = [p for p in await parents(conn, row) if visible(p)]
        if "parents_as_list" in query:
            extra["parents"] = [{"project": view(p)} for p in up]
        else:
            extra["parents"] = _as_ids(up, "parent")
    if "subtree_as_list" in query or "subtree_as_ids" in query:
        down = [p for p in await subtree(conn, row) if visible(p)]
        if "subtree_as_list" in query:
            extra["subtree"] = [{"project": view(p)} for p in down]
        else:
            extra["subtree"] = _as_ids(down, row.id)
    return extra
