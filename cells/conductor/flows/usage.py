"""Nova's os-simple-tenant-usage, the cell's part: the instances whose life overlaps a time window
(launched before its end, not terminated before its start; deleted ones too, as Nova), one read unit of
work. Ordered by uuid, after `marker`, at most `limit` (2.40's paging: the API merges the cells' pages)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select

from cells import errors
from cells.conductor.env import FlowEnv
from cells.context import RequestContext
from cells.db.schema import instances

MAX_LIMIT = 1000  # Nova's max_limit


def _window(conn: Connection, start: str, end: str, project_id: str | None, limit: int,
            marker: str | None) -> list[dict[str, Any]]:
    c = instances.c
    query = select(c.uuid, c.name, c.project_id, c.flavor, c.vm_state, c.deleted, c.launched_at,
                   c.terminated_at).where(c.launched_at.is_not(None), c.launched_at <= end,
                                          or_(c.terminated_at.is_(None), c.terminated_at >= start))
    if project_id is not None:
        query = query.where(c.project_id == project_id)
    if marker is not None:
        query = query.where(c.uuid > marker)
    rows = conn.execute(query.order_by(c.uuid).limit(limit))
    return [{"uuid": r.uuid, "name": r.name, "project_id": r.project_id, "flavor": dict(r.flavor or {}),
             "vm_state": r.vm_state, "deleted": bool(r.deleted), "launched_at": r.launched_at,
             "terminated_at": r.terminated_at} for r in rows]


async def usage_window(env: FlowEnv, ctx: RequestContext, start: Any, end: Any, project_id: Any,
                       limit: Any, marker: Any) -> list[dict[str, Any]]:
    """Admins ask for any project or all (project_id None); a member for its own project only (403)."""
    if not (isinstance(start, str) and isinstance(end, str) and start <= end):
        raise errors.Invalid(reason="start and end must be ISO times, start first")
    if project_id is not None and not isinstance(project_id, str):
        raise errors.Invalid(reason="project_id must be a string or null")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise errors.Invalid(reason=f"limit must be an integer from 1 to {MAX_LIMIT}")
    if marker is not None and not isinstance(marker, str):
        raise errors.Invalid(reason="marker must be an instance uuid or null")
    if not (ctx.is_admin or "service" in ctx.roles) and (project_id is None or project_id != ctx.project):
        raise errors.Forbidden()
    return await env.db.read(lambda conn: _window(conn, start, end, project_id, limit, marker))
