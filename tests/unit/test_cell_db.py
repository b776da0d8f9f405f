"""Cell DB engine and schema: SQLite pragmas on every connection, idempotent schema."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from cells import errors
from cells.db.engine import Database
from cells.db.schema import SCHEMA_VERSION, create_schema, ensure_schema, instances, schema_version
from cells.objects.instance import FIELDS


async def test_sqlite_connections_get_wal_and_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/sub/cell.db")  # the directory is made on demand
    try:
        got = await db.read(lambda conn: {p: conn.execute(text(f"PRAGMA {p}")).scalar()
                                          for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")})
        assert got == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 10000, "foreign_keys": 1}
    finally:
        await db.close()


async def test_create_schema_concurrently_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await asyncio.gather(*(create_schema(url) for _ in range(4)))
    await create_schema(url)
    db = Database(url)
    try:
        versions = await db.read(lambda c: c.execute(select(schema_version.c.version)).scalars().all())
        assert versions == [SCHEMA_VERSION]
        names = await db.read(lambda c: set(inspect(c).get_table_names()))
        indexed = await db.read(
            lambda c: {col for ix in inspect(c).get_indexes("instances") for col in ix["column_names"]})
        assert {"instances", "instance_actions", "instance_action_events", "instance_faults", "compute_nodes",
                "claims", "schema_version"} <= names
        assert {"project_id", "host", "vm_state", "name", "created_at", "updated_at", "deleted"} <= indexed
    finally:
        await db.close()


def test_instances_table_has_every_wire_field_but_cell() -> None:
    assert set(FIELDS) - {"cell"} <= set(instances.c.keys())
    assert "cell" not in instances.c


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    db = Database(url)
    try:
        await db.write(lambda conn: conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1)))
        with pytest.raises(errors.DBSchemaTooNew):
            await ensure_schema(db)
    finally:
        await db.close()
