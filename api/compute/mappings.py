"""Instance mappings: which cell holds a server (plus project, name and
created_at, so the API can still say something about it when its cell is down)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.schema import instance_mappings, queued_deletes
from api.http import is_uuid
from api.timeutil import parse, utcnow
from cells import errors
from cells.context import RequestContext


async def add(engine: AsyncEngine, records: Sequence[dict[str, Any]], cell_path: str) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(insert(instance_mappings), [
            {"instance_uuid": r["uuid"], "cell_path": cell_path, "project_id": r["project_id"],
             "user_id": r["user_id"], "name": r["name"], "created_at": parse(r.get("created_at")) or now}
            for r in records])


async def remove(engine: AsyncEngine, uuids: Sequence[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(instance_mappings).where(instance_mappings.c.instance_uuid.in_(list(uuids))))
        await conn.execute(delete(queued_deletes).where(queued_deletes.c.instance_uuid.in_(list(uuids))))


async def get(engine: AsyncEngine, ctx: RequestContext, server_id: str) -> Row[Any]:
    """The mapping of a server the caller may see. Another project's server, a
    name instead of an id, or an unknown id are all the same 404."""
    if not is_uuid(server_id):
        raise errors.InstanceNotFound(instance_id=server_id)
    async with engine.connect() as conn:
        row = (await conn.execute(select(instance_mappings)
                                  .where(instance_mappings.c.instance_uuid == server_id.lower()))).first()
    if row is None or (not ctx.is_admin and row.project_id != ctx.project):
        raise errors.InstanceNotFound(instance_id=server_id)
    return row
