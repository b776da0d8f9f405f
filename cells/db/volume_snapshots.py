"""Queries and atomic state changes of volume snapshots (the volume_snapshots table, declared with
the other volume tables in cells/db/volumes.py). A snapshot lives on its volume's host and in its
volume's cell; every state change is one conditional UPDATE, as for volumes. Functions taking a
`conn` are parts of the caller's unit of work."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, false, func, insert, select, update
from sqlalchemy.engine import Row

from cells.db.fast import AnyRow, as_mapping
from cells.db.volumes import release, volume_snapshots
from cells.objects.instance import utcnow_iso


class SnapshotStatus:
    """Cinder's snapshot statuses."""
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"


IN_PROGRESS = (SnapshotStatus.CREATING, SnapshotStatus.DELETING)
DELETABLE = (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR, SnapshotStatus.ERROR_DELETING)
UPDATABLE_FIELDS = frozenset({"name", "description", "metadata"})
WIRE_FIELDS = tuple(c.name for c in volume_snapshots.columns if c.name not in ("deleted_at", "conductor_id"))
_s = volume_snapshots.c


def snapshot_record(row: AnyRow | Mapping[str, Any], cell: str | None = None) -> dict[str, Any]:
    m = as_mapping(row)
    rec = {f: m[f] for f in WIRE_FIELDS}
    rec["deleted"] = bool(rec["deleted"])
    rec["cell"] = cell
    return rec


def get_row(conn: Connection, snapshot_id: str) -> Row[Any] | None:
    return conn.execute(select(volume_snapshots).where(_s.id == snapshot_id)).first()


def insert_snapshot(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(volume_snapshots), dict(row))


def update_snapshot(conn: Connection, snapshot_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(volume_snapshots).where(_s.id == snapshot_id).values(**values, updated_at=utcnow_iso()))


def transition(conn: Connection, snapshot_id: str, from_statuses: Sequence[str], values: Mapping[str, Any]) -> bool:
    """Set `values` only if the live snapshot is in one of `from_statuses` now; True when this caller won."""
    stmt = (update(volume_snapshots)
            .where(_s.id == snapshot_id, _s.deleted == false(), _s.status.in_(list(from_statuses)))
            .values(**values, updated_at=utcnow_iso()))
    return conn.execute(stmt).rowcount == 1


def mark_deleted(conn: Connection, snapshot_id: str) -> None:
    now = utcnow_iso()
    conn.execute(update(volume_snapshots).where(_s.id == snapshot_id, _s.deleted == false())
                 .values(status="deleted", deleted=True, deleted_at=now, updated_at=now))


def remove(conn: Connection, snapshot_id: str) -> None:
    """The copy is gone from its host: the row is deleted and the host's space freed (a snapshot
    without a host holds none). A repeat changes nothing."""
    row = get_row(conn, snapshot_id)
    if row is None or row.deleted:
        return
    mark_deleted(conn, snapshot_id)
    if row.host is not None:
        release(conn, row.host, int(row.size))


def of_volume(conn: Connection, volume_id: str) -> list[Row[Any]]:
    """The live snapshots of one volume, oldest first."""
    return list(conn.execute(select(volume_snapshots).where(_s.volume_id == volume_id, _s.deleted == false())
                             .order_by(_s.created_at)))


def list_rows(conn: Connection, project_id: str | None, name: str | None = None, status: str | None = None,
              volume_id: str | None = None, host: str | None = None) -> list[Row[Any]]:
    conds = [_s.deleted == false()]
    for column, value in ((_s.project_id, project_id), (_s.name, name), (_s.status, status),
                          (_s.volume_id, volume_id), (_s.host, host)):
        if value is not None:
            conds.append(column == value)
    return list(conn.execute(select(volume_snapshots).where(and_(*conds))
                             .order_by(_s.created_at.desc(), _s.id.desc())))


def on_host(conn: Connection, host: str) -> list[Row[Any]]:
    """The live snapshots kept on a volume host."""
    return list(conn.execute(select(volume_snapshots).where(_s.host == host, _s.deleted == false())))


def gigabytes_on(conn: Connection, host: str) -> int:
    """What the live snapshots on `host` take (each holds a full copy of its volume's size at most)."""
    return int(conn.execute(select(func.coalesce(func.sum(_s.size), 0))
                            .where(_s.host == host, _s.deleted == false())).scalar() or 0)
