"""What the cell knows about its compute hosts beyond capacity: an operator's mark
(`cellctl host down`, Nova's forced_down) and the fence of a host declared dead
(cells/rpc/liveness.py). Kept in the cell DB so they outlive conductor restarts and
every conductor of the cell sees the same."""
from __future__ import annotations

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
                                                   "updated_at": now, **values}))


def set_forced_down(conn: Connection, host: str, down: bool) -> None:
    _set(conn, host, forced_down=down)


def fence(conn: Connection, host: str) -> None:
    _set(conn, host, fenced=True, declared_dead_at=utcnow_iso())


def unfence(conn: Connection, host: str) -> bool:
    """The host reconciled and rejoined; True when it was fenced."""
    c = host_marks.c
    return bool(conn.execute(host_marks.update().where(c.host == host, c.fenced.is_(True))
                             .values(fenced=False, updated_at=utcnow_iso())).rowcount)


def unusable(conn: Connection) -> set[str]:
    """Hosts nothing may be placed on: marked down or fenced."""
    c = host_marks.c
    return set(conn.execute(select(c.host).where((c.forced_down.is_(True)) | (c.fenced.is_(True)))).scalars())
