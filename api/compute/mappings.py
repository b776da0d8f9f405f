"""Instance mappings: which cell holds a server (plus project, name and
created_at, so the API can still say something about it when its cell is down)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from api.db.schema import instance_mappings, queued_deletes
from api.http import is_uuid
from api.timeutil import parse, utcnow
from cells import errors
from cells.context import RequestContext
from cells.db.engine import Database
from cells.db.fast import AnyRow, Fast

_INSERT = Fast(insert(instance_mappings))


async def add(db: Database, records: Sequence[dict[str, Any]], cell_path: str) -> None:
    now = utcnow()
    rows = [{"instance_uuid": r["uuid"], "cell_path": cell_path, "project_id": r["project_id"],
             "user_id": r["user_id"], "name": r["name"], "created_at": parse(r.get("created_at")) or now}
            for r in records]
    await db.write(lambda conn: _INSERT.run_many(conn, rows))


def _remove(conn: Connection, uuids: list[str]) -> None:
    conn.execute(delete(instance_mappings).where(instance_mappings.c.instance_uuid.in_(uuids)))
    conn.execute(delete(queued_deletes).where(queued_deletes.c.instance_uuid.in_(uuids)))


async def remove(db: Database, uuids: Sequence[str]) -> None:
    await db.write(lambda conn: _remove(conn, list(uuids)))


_GET = Fast(select(instance_mappings).where(instance_mappings.c.instance_uuid == bindparam("b_uuid")))  # every show


async def get(db: Database, ctx: RequestContext, server_id: str) -> AnyRow:
    """The mapping of a server the caller may see. Another project's server, a
    name instead of an id, or an unknown id are all the same 404."""
    if not is_uuid(server_id):
        raise errors.InstanceNotFound(instance_id=server_id)
    row = await db.read(lambda conn: _GET.first(conn, {"b_uuid": server_id.lower()}))
    if row is None or (not ctx.is_admin and row.project_id != ctx.project):
        raise errors.InstanceNotFound(instance_id=server_id)
    return row
