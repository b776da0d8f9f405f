"""Servers of a cell that is down: what the API's instance mappings know.

When a cell does not answer a listing within the bound (or a show), its
servers still appear, from the mapping, with status UNKNOWN and only the
fields the mapping has (id, name, tenant_id, user_id, created, the links), as
Nova's down-cell handling does from microversion 2.69. We do it at 2.1 too
(Nova there omits them unless list_records_by_skipping_down_cells = False):
a user who lists servers while a site is cut off expects to see that their
servers exist and are unknown, not that they vanished.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.cell_router import DownRecord
from api.compute.microversions import Microversion
from api.compute.views import links
from api.db.schema import instance_mappings, queued_deletes
from api.timeutil import iso_micro, iso_seconds, parse, utcnow
from cells import linear_regex
from cells.db.engine import Database
from cells.db.fast import AnyRow

UNKNOWN = "UNKNOWN"
MAX_KNOWN = 10_000  # mappings read per down cell for one listing


def record(row: AnyRow) -> DownRecord:
    """A mapping as an instance record (for merging with the cells' records), marked `down`."""
    return {"uuid": row.instance_uuid, "name": row.name, "project_id": row.project_id, "user_id": row.user_id,
            "created_at": iso_micro(row.created_at), "cell": row.cell_path, "deleted": False, "down": True,
            "pinned_availability_zone": getattr(row, "pinned_availability_zone", None)}


async def records(engine: AsyncEngine, paths: list[str], filters: dict[str, Any], page: int | None = None,
                  after: Mapping[str, Any] | None = None) -> list[DownRecord]:
    """Mapping records of the servers in the cells `paths` that pass the filters a mapping can answer.
    Filters it cannot answer (status, host, changes-since) keep the server: it may match, we cannot tell.

    `page`: the listing is in the default order (created_at, uuid, both descending: the order read here) and
    wants at most this many after `after` (a record): only those are read, not every server of the down
    cells (a listing of 100,000 servers while a cell is slow read up to 10,000 of its mappings and sorted
    them on the event loop). A name filter is matched here, after the read, so it reads them all."""
    m = instance_mappings.c
    stmt = select(instance_mappings).where(
        m.cell_path.in_(paths), m.instance_uuid.not_in(select(queued_deletes.c.instance_uuid)))
    if filters.get("project_id") is not None:
        stmt = stmt.where(m.project_id == filters["project_id"])
    if filters.get("user_id") is not None:
        stmt = stmt.where(m.user_id == filters["user_id"])
    if filters.get("name"):
        page = None
    created = parse(after.get("created_at")) if page is not None and after is not None else None
    if after is not None and created is not None:
        stmt = stmt.where(or_(m.created_at < created,
                              and_(m.created_at == created, m.instance_uuid < str(after["uuid"]))))
    stmt = stmt.order_by(m.created_at.desc(), m.instance_uuid.desc()).limit(
        MAX_KNOWN * len(paths) if page is None else page)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    out = [record(r) for r in rows]
    if filters.get("name") and out:  # linear time (cells/linear_regex.py), off the event loop
        pattern = linear_regex.compile_pattern(str(filters["name"]))
        out = await asyncio.to_thread(lambda: [r for r in out if pattern.search(r["name"] or "")])
    return out


def _queue_delete(conn: Connection, instance_uuid: str) -> None:
    exists = conn.execute(select(queued_deletes.c.instance_uuid)
                          .where(queued_deletes.c.instance_uuid == instance_uuid)).first()
    if exists is None:
        conn.execute(insert(queued_deletes).values(instance_uuid=instance_uuid, requested_at=utcnow()))


async def queue_delete(db: Database, instance_uuid: str) -> None:
    """A delete was accepted: the server no longer lists from its mapping (its cell lists it until gone)."""
    await db.write(lambda conn: _queue_delete(conn, instance_uuid))


DOWN_CELLS_VERSION = (2, 69)  # from here exactly Nova's spelling of a down cell's servers


def brief(base: str, rec: DownRecord, version: Microversion) -> dict[str, Any]:
    """A listing's entry: Nova's id, status and links from 2.69; with the name before (our own)."""
    view = {"id": rec["uuid"], "status": UNKNOWN, "links": links(base, "servers", rec["uuid"])}
    if version < DOWN_CELLS_VERSION:
        view["name"] = rec.get("name") or ""
    return view


def detail(base: str, rec: DownRecord, version: Microversion) -> dict[str, Any]:
    """A detailed listing's entry: from 2.69 Nova's (brief + tenant_id, created)."""
    view = {**brief(base, rec, version), "tenant_id": rec.get("project_id") or "",
            "created": iso_seconds(rec.get("created_at"))}
    if version < DOWN_CELLS_VERSION:
        view["user_id"] = rec.get("user_id") or ""
    return view


def shown(base: str, rec: DownRecord, version: Microversion) -> dict[str, Any]:
    """GET /servers/{id} of a server whose cell is down: the detail entry with its user, and from 2.69 what
    Nova adds that a mapping knows (the zone it asked for, else UNKNOWN; power state 0 = NOSTATE; 2.71 group)."""
    view = {**detail(base, rec, version), "user_id": rec.get("user_id") or ""}
    if version >= DOWN_CELLS_VERSION:
        view["OS-EXT-AZ:availability_zone"] = rec.get("pinned_availability_zone") or UNKNOWN
        view["OS-EXT-STS:power_state"] = 0
    if version >= (2, 71):
        view["server_groups"] = list(rec.get("server_groups") or [])
    return view
