"""Which Alembic revision a cell or API DB is at, read and written without importing Alembic (the
services check it at start; Alembic itself loads only for `cellctl db upgrade`, cells/db/migrate.py).

A fresh DB is made by `create_all` and stamped at head, which is the schema the migrations build
(tests/unit/test_db_migrations.py compares them); a DB from before Alembic (a `schema_version` row,
no `alembic_version` table) is brought to the last hand-written version by the old runner and
stamped at the baseline revision, which is that schema.
"""
from __future__ import annotations

from sqlalchemy import Column, Connection, MetaData, String, Table, inspect, select

alembic_version = Table(  # Alembic's own table, as it makes it
    "alembic_version", MetaData(),
    Column("version_num", String(32), primary_key=True),
)


def revision_of(conn: Connection) -> str | None:
    """The DB's Alembic revision (None: not under Alembic yet)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(select(alembic_version.c.version_num)).scalar()


def stamp(conn: Connection, revision: str) -> None:
    """Mark the DB as being at `revision` (what `alembic stamp` writes)."""
    alembic_version.create(conn, checkfirst=True)
    conn.execute(alembic_version.delete())
    conn.execute(alembic_version.insert().values(version_num=revision))


def check_current(conn: Connection, found: str | None, head: str, known: tuple[str, ...], what: str) -> None:
    """Raise unless `found` is `head`: behind names the command that upgrades, ahead asks for newer code."""
    from cells import errors

    if found == head:
        return
    if found in known:
        raise errors.DBSchemaBehind(what=what, found=found, head=head)
    raise errors.DBSchemaTooNew(found=found, supported=head)
