"""Migration records (resize, cold migration, evacuation; issue 8): the DB side shared by
the move flows (cells/conductor/flows/moves.py, evacuate.py) and the delete flow.

A move is in flight while its destination is being made (IN_FLIGHT), then FINISHED
(VERIFY_RESIZE: both copies kept until confirm or revert). While it is open the
destination's resources are claimed under the migration's uuid, the source's under the
instance's (cells/db/schema.py `migrations`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.engine import Row

from cells.db import claims
from cells.db.fast import AnyRow, as_mapping
from cells.db.schema import instances, migrations
from cells.objects.instance import TaskState, utcnow_iso
from cells.objects.records import MigrationRecord, field_names

IN_FLIGHT = ("pre-migrating", "migrating", "accepted")
FINISHED = "finished"
OPEN = (*IN_FLIGHT, FINISHED)
CONFIRMING, REVERTING = TaskState.RESIZE_CONFIRMING, TaskState.RESIZE_REVERTING  # a finished move's end
FIELDS = field_names(MigrationRecord)


def record(row: AnyRow | Mapping[str, Any]) -> dict[str, Any]:
    m = as_mapping(row)
    return {k: m[k] for k in FIELDS}


def get(conn: Connection, mig_uuid: str) -> Row[Any] | None:
    return conn.execute(select(migrations).where(migrations.c.uuid == mig_uuid)).first()


def pending(conn: Connection, uuid: str, statuses: Iterable[str]) -> Row[Any] | None:
    """The instance's latest migration in one of `statuses`."""
    return conn.execute(select(migrations).where(migrations.c.instance_uuid == uuid,
                                                 migrations.c.status.in_(list(statuses)))
                        .order_by(migrations.c.created_at.desc()).limit(1)).first()


def set_migration(conn: Connection, mig_uuid: str, **values: Any) -> None:
    conn.execute(update(migrations).where(migrations.c.uuid == mig_uuid).values(updated_at=utcnow_iso(), **values))


def other_copies(conn: Connection, row: AnyRow) -> list[tuple[str, dict[str, Any]]]:
    """(host, migration) for every host besides the instance's own that may hold a copy of
    it: the source of a finished move (kept until confirm), the destination of one in
    flight (being made). A same-host move has none."""
    out: list[tuple[str, dict[str, Any]]] = []
    for mig in conn.execute(select(migrations).where(migrations.c.instance_uuid == row.uuid,
                                                     migrations.c.status.in_(OPEN))):
        for host in (mig.source_host, mig.dest_host):
            if host is not None and host != row.host and host not in [h for h, _ in out]:
                out.append((str(host), record(mig)))
    return out


def end_for_delete(conn: Connection, instance_uuid: str) -> None:
    """The instance is deleted: its open moves end and their destination claims go back, in
    the caller's unit of work. A finished one ends confirmed (Nova confirms a resize on
    delete), one in flight in error (its flow sees that and stops)."""
    for mig in conn.execute(select(migrations.c.uuid, migrations.c.status).where(
            migrations.c.instance_uuid == instance_uuid, migrations.c.status.in_(OPEN))).all():
        claims.release_claim(conn, mig.uuid)
        set_migration(conn, mig.uuid, status="confirmed" if mig.status == FINISHED else "error")


def open_owners(conn: Connection) -> list[str]:
    """Conductors driving a move: one in flight, or the confirm or revert of a finished one."""
    busy = select(instances.c.uuid).where(instances.c.task_state.in_([CONFIRMING, REVERTING]))
    rows = conn.execute(select(migrations.c.conductor_id).distinct().where(
        migrations.c.conductor_id.is_not(None),
        migrations.c.status.in_(IN_FLIGHT) | ((migrations.c.status == FINISHED)
                                              & migrations.c.instance_uuid.in_(busy)))).scalars().all()
    return [str(r) for r in rows]


def holds_copy(conn: Connection, uuid: str, host: str) -> bool:
    """`host` holds a copy of the live instance: it is the instance's host or an open move's other end."""
    row = conn.execute(select(instances).where(instances.c.uuid == uuid)).first()
    if row is None or row.deleted:
        return False
    return row.host == host or host in (h for h, _ in other_copies(conn, row))
