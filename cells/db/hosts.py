"""What the cell knows about its compute hosts beyond capacity: an operator's mark
(`cellctl host down`, Nova's forced_down), the fence of a host declared dead
(cells/rpc/liveness.py), and its compute service's os-services state (disabled with a reason: no new
placement there; deleted: hidden until its compute reports again). Kept in the cell DB so they outlive
conductor restarts and every conductor of the cell sees the same."""
from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Boolean, Column, Connection, MetaData, String, Table, select

from cells.objects.instance import utcnow_iso

metadata = MetaData()  # own MetaData: the table is created where missing (cells/db/schema.py)
TIME = String(32)

host_marks = Table(
    "host_marks", metadata,
    Column("host", String(255), primary_key=True),
    Column("forced_down", Boolean, nullable=False, default=False),  # the operator said it is down
    Column("fenced", Boolean, nullable=False, default=False),  # declared dead: reconcile before serving
    Column("declared_dead_at", TIME, nullable=True),
    Column("updated_at", TIME, nullable=False),
    # c0007: os-services (issue 16)
    Column("disabled", Boolean, nullable=False, default=False),
    Column("disabled_reason", String(255), nullable=True),
    Column("deleted", Boolean, nullable=False, default=False),
)


def read_marks(conn: Connection) -> tuple[set[str], set[str]]:
    """(hosts an operator marked down, fenced hosts)."""
    rows = conn.execute(select(host_marks.c.host, host_marks.c.forced_down, host_marks.c.fenced)).all()
    return {r.host for r in rows if r.forced_down}, {r.host for r in rows if r.fenced}


def _set(conn: Connection, host: str, **values: object) -> None:
    now = utcnow_iso()
    c = host_marks.c
    if conn.execute(host_marks.update().where(c.host == host).values(updated_at=now, **values)).rowcount == 0:
        conn.execute(host_marks.insert().values(**{"host": host, "forced_down": False, "fenced": False,
                                                   "disabled": False, "deleted": False, "updated_at": now,
                                                   **values}))


def set_forced_down(conn: Connection, host: str, down: bool) -> None:
    _set(conn, host, forced_down=down)


def fence(conn: Connection, host: str) -> None:
    _set(conn, host, fenced=True, declared_dead_at=utcnow_iso())


def unfence(conn: Connection, host: str) -> bool:
    """The host reconciled and rejoined; True when it was fenced."""
    c = host_marks.c
    return bool(conn.execute(host_marks.update().where(c.host == host, c.fenced.is_(True))
                             .values(fenced=False, updated_at=utcnow_iso())).rowcount)


def set_service(conn: Connection, host: str, values: dict[str, object]) -> None:
    """os-services update: any of disabled, disabled_reason, forced_down."""
    _set(conn, host, **values)


def service_marks(conn: Connection) -> dict[str, dict[str, object]]:
    """host -> its os-services state: disabled, disabled_reason, forced_down, deleted, updated_at."""
    c = host_marks.c
    rows = conn.execute(select(c.host, c.disabled, c.disabled_reason, c.forced_down, c.deleted, c.updated_at))
    return {r.host: {"disabled": bool(r.disabled), "disabled_reason": r.disabled_reason,
                     "forced_down": bool(r.forced_down), "deleted": bool(r.deleted), "updated_at": r.updated_at}
            for r in rows}


def mark_deleted(conn: Connection, host: str) -> None:
    """os-services delete: the host's marks start over, hidden until its compute reports again."""
    conn.execute(host_marks.delete().where(host_marks.c.host == host))
    _set(conn, host, deleted=True)


def reported(conn: Connection, host: str) -> None:
    """The host's compute reported its capacity: a deleted service is back (Nova re-creates it too)."""
    c = host_marks.c
    conn.execute(host_marks.update().where(c.host == host, c.deleted.is_(True))
                 .values(deleted=False, updated_at=utcnow_iso()))


def reported_many(conn: Connection, hosts: Collection[str]) -> None:
    """reported() for several hosts in one statement."""
    c = host_marks.c
    conn.execute(host_marks.update().where(c.host.in_(list(hosts)), c.deleted.is_(True))
                 .values(deleted=False, updated_at=utcnow_iso()))


def unusable(conn: Connection) -> set[str]:
    """Hosts nothing new may be placed on: marked down, fenced, or its compute service disabled or deleted."""
    c = host_marks.c
    return set(conn.execute(select(c.host).where(c.forced_down.is_(True) | c.fenced.is_(True)
                                                  | c.disabled.is_(True) | c.deleted.is_(True))).scalars())
