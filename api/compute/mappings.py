"""Instance mappings: which cell holds a server (plus project, name and
created_at, so the API can still say something about it when its cell is down),
what it counts against its project's quota (vcpus, ram: api/quota.py), whether
its cell took the build (`built`: api/compute/boot_sweep.py finds the ones it did not),
and the attributes only the API's views show (`ServerAttributes`: microversions 2.3, 2.19, 2.90, 2.96)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from api import quota
from api.db.schema import instance_mappings, queued_deletes
from api.http import is_uuid
from api.timeutil import parse, utcnow
from cells import errors
from cells.context import RequestContext
from cells.db.engine import Database
from cells.db.fast import AnyRow, Fast
from cells.objects.records import InstanceRecord, ShownInstance

LOG = logging.getLogger(__name__)
_INSERT = Fast(insert(instance_mappings))


_BACKGROUND: set[asyncio.Task[None]] = set()  # strong refs to background mapping updates
# the view attributes as record keys (api/compute/views.py reads them from the record)
ATTRIBUTES = ("reservation_id", "launch_index", "description", "hostname", "pinned_availability_zone", "tags")


@dataclass(frozen=True)
class ServerAttributes:
    """What one boot request gives every server it makes, for the views: its reservation (Nova's
    "r-" id, 2.3), description (2.19), hostname (2.90; None: derived from the name), the
    availability zone it asked for (2.96's pinned zone; None: any) and its tags (2.52)."""
    reservation_id: str | None = None
    description: str | None = None
    hostname: str | None = None
    pinned_availability_zone: str | None = None
    tags: tuple[str, ...] = ()


NO_ATTRIBUTES = ServerAttributes()

def _add(conn: Connection, records: Sequence[dict[str, Any]], cell_path: str,
         admission: quota.Admission | None, attributes: ServerAttributes) -> list[dict[str, Any]]:
    if admission is not None and records:  # counted in this unit: API workers queue on the DB's write lock
        records = records[:quota.admit_boot(conn, str(records[0]["project_id"]), admission, len(records))]
    now = utcnow()
    rows = [{"instance_uuid": r["uuid"], "cell_path": cell_path, "project_id": r["project_id"],
             "user_id": r["user_id"], "name": r["name"], "created_at": parse(r.get("created_at")) or now,
             "vcpus": int(r["flavor"].get("vcpus") or 0), "ram": int(r["flavor"].get("ram") or 0), "built": False,
             "reservation_id": attributes.reservation_id, "launch_index": i, "description": attributes.description,
             "hostname": attributes.hostname, "pinned_availability_zone": attributes.pinned_availability_zone,
             "tags": list(attributes.tags) or None}
            for i, r in enumerate(records)]
    if rows:
        _INSERT.run_many(conn, rows)
    return list(records)


async def add(db: Database, records: Sequence[dict[str, Any]], cell_path: str,
              admission: quota.Admission | None = None,
              attributes: ServerAttributes | None = None) -> list[dict[str, Any]]:
    """Map `records` to `cell_path`, not built yet, each with `attributes` and its launch index (its
    place in `records`). With `admission`, only as many as the project's quota admits (a prefix of
    `records`, counted in the same write unit) or TooManyInstances."""
    return await db.write(lambda conn: _add(conn, records, cell_path, admission, attributes or NO_ATTRIBUTES))


def _attributes_of(conn: Connection, uuids: list[str]) -> dict[str, dict[str, Any]]:
    m = instance_mappings.c
    rows = conn.execute(select(m.instance_uuid, *(m[name] for name in ATTRIBUTES))
                        .where(m.instance_uuid.in_(uuids))).all()
    return {row.instance_uuid: {name: getattr(row, name) for name in ATTRIBUTES} for row in rows}


async def with_attributes(db: Database, records: Sequence[ShownInstance]) -> None:
    """Add each record's ServerAttributes (and launch index) from its mapping, as record keys."""
    uuids = [r["uuid"] for r in records]
    found = await db.read(lambda conn: _attributes_of(conn, uuids)) if uuids else {}
    for record in records:
        attributes = found.get(record["uuid"]) or dict.fromkeys(ATTRIBUTES)
        record["reservation_id"] = attributes["reservation_id"]
        record["launch_index"] = attributes["launch_index"]
        record["description"] = attributes["description"]
        record["hostname"] = attributes["hostname"]
        record["pinned_availability_zone"] = attributes["pinned_availability_zone"]
        record["tags"] = list(attributes["tags"] or [])


async def set_attributes(db: Database, instance_uuid: str, values: dict[str, Any]) -> None:
    """Change a server's view attributes (description, hostname: PUT /servers/{id}, rebuild)."""
    unknown = set(values) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"not a server attribute: {sorted(unknown)}")
    await db.write(lambda conn: conn.execute(update(instance_mappings).where(
        instance_mappings.c.instance_uuid == instance_uuid).values(**values)))


def _mark_built(conn: Connection, uuids: list[str]) -> None:
    conn.execute(update(instance_mappings).where(instance_mappings.c.instance_uuid.in_(uuids)).values(built=True))


def mark_built(db: Database, uuids: Sequence[str]) -> None:
    """The cell took the build. Written in the background (the boot's answer does not wait for it;
    queued writes share a commit): if this process dies first, the boot sweep asks the cell."""
    _background(db.write(lambda conn: _mark_built(conn, list(uuids))))


def _background(write: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(write)
    _BACKGROUND.add(task)
    task.add_done_callback(_written)


def _written(task: asyncio.Task[None]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:  # the boot sweep / the next show tries again
        LOG.warning("background mapping update failed: %s", task.exception())


def recount_if_stale(db: Database, mapping: AnyRow, record: InstanceRecord) -> None:
    """A server at rest counts its cell's flavor: a reverted or failed resize (counted with the new
    flavor when asked), or a mapping made before v5 (counted 0), is corrected in the background."""
    flavor = record.get("flavor") or {}
    now = (int(flavor.get("vcpus") or 0), int(flavor.get("ram") or 0))
    if record.get("task_state") is None and (int(mapping.vcpus), int(mapping.ram)) != now:
        uuid = str(mapping.instance_uuid)
        _background(db.write(lambda conn: quota.count_as(conn, uuid, *now)))


async def set_built(db: Database, uuids: Sequence[str]) -> None:
    await db.write(lambda conn: _mark_built(conn, list(uuids)))


def _remove(conn: Connection, uuids: list[str]) -> None:
    conn.execute(delete(instance_mappings).where(instance_mappings.c.instance_uuid.in_(uuids)))
    conn.execute(delete(queued_deletes).where(queued_deletes.c.instance_uuid.in_(uuids)))


async def remove(db: Database, uuids: Sequence[str]) -> None:
    await db.write(lambda conn: _remove(conn, list(uuids)))


async def of_reservation(db: Database, reservation_id: str, project_id: str | None) -> list[str]:
    """The servers one boot request made (Nova's reservation_id list filter), within a project when given
    (the project's index narrows it; an all-projects admin listing reads every mapping)."""
    query = select(instance_mappings.c.instance_uuid).where(instance_mappings.c.reservation_id == reservation_id)
    if project_id is not None:
        query = query.where(instance_mappings.c.project_id == project_id)
    return [str(uuid) for uuid in await db.read(lambda conn: conn.execute(query).scalars().all())]


_GET = Fast(select(instance_mappings).where(instance_mappings.c.instance_uuid == bindparam("b_uuid")))  # every show


async def get(db: Database, ctx: RequestContext, server_id: str) -> AnyRow:
    """The mapping of a server the caller may see. Another project's server, a
    name instead of an id, or an unknown id are all the same 404."""
    if not is_uuid(server_id):
        raise errors.InstanceNotFound(instance_id=server_id)
    row = await db.read(lambda conn: _GET.first(conn, {"b_uuid": server_id.lower()}))
    if row is None or (row.project_id != ctx.project
                       and not ctx.allows("os_compute_api:servers:show", {"project_id": row.project_id})):
        raise errors.InstanceNotFound(instance_id=server_id)
    return row
