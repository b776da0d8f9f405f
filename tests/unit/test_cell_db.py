"""Cell DB engine and schema: SQLite pragmas on every connection, idempotent schema."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, select, text

from cells import errors
from cells.db import migrate
from cells.db.engine import Database
from cells.db.schema import ALEMBIC_HEAD, SCHEMA_VERSION, create_schema, ensure_schema, instances, schema_version
from cells.objects.instance import FIELDS
from tests.conftest import new_postgres_database
from tools import pgserver


async def test_sqlite_connections_get_wal_and_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/sub/cell.db")  # the directory is made on demand
    try:
        got = await db.read(lambda conn: {p: conn.execute(text(f"PRAGMA {p}")).scalar()
                                          for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")})
        assert got == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 10000, "foreign_keys": 1}
    finally:
        await db.close()


async def test_create_schema_concurrently_is_idempotent(db_url: str) -> None:
    url = db_url
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
        def from_newer_runner(conn: Connection) -> None:  # a DB not under Alembic whose runner was newer
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
        await db.write(from_newer_runner)
        with pytest.raises(errors.DBSchemaTooNew):
            await ensure_schema(db)
    finally:
        await db.close()


async def test_a_v2_db_is_migrated_with_its_instances_kept(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    db = Database(url)
    try:
        def make_v2(conn: Connection) -> None:  # what release 2 left: no key_data column, version 2
            for column in ("key_data", "locked_by", "locked_reason", "password"):  # locked_*, password: c0003, c0008
                conn.execute(text(f"ALTER TABLE instances DROP COLUMN {column}"))
            conn.execute(text("INSERT INTO instances (uuid, name, project_id, flavor, vm_state, power_state, "
                              "created_at, updated_at, deleted, metadata, progress, addresses, retry_hosts) VALUES "
                              "('u1', 'vm', 'p1', '{}', 'active', 1, 't', 't', 0, '{}', 0, '{}', '[]')"))
            conn.execute(schema_version.update().values(version=2))
            conn.execute(text("DROP TABLE alembic_version"))  # from before Alembic
        await db.write(make_v2)
        # the old runner's steps reach the baseline; the revisions after it are `cellctl db upgrade`'s, so the
        # services refuse the DB (and leave it as it was) until it ran
        with pytest.raises(errors.DBSchemaBehind):
            await ensure_schema(db)
        before, after = await asyncio.to_thread(migrate.upgrade, url, "cell")
        assert (before.state, after.state, after.revision) == ("legacy", "current", ALEMBIC_HEAD)
        assert await ensure_schema(db) == ALEMBIC_HEAD
        rows = await db.read(lambda c: c.execute(select(instances.c.uuid, instances.c.key_data)).all())
        assert [tuple(r) for r in rows] == [("u1", None)]
    finally:
        await db.close()


async def test_immediate_engine_locks_for_transactions_not_for_plain_reads(tmp_path: Path) -> None:
    import sqlite3

    from cells.db.engine import immediate, make_engine
    path = tmp_path / "api.db"
    engine = immediate(make_engine(f"sqlite+aiosqlite:///{path}"))
    other = sqlite3.connect(path, timeout=0, isolation_level=None)  # a second writer that never waits
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x)"))
        async with engine.connect() as reader:  # a read's implicit transaction: deferred, no write lock
            assert (await reader.execute(text("SELECT count(*) FROM t"))).scalar() == 0
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO t VALUES (1)")
            other.execute("COMMIT")
        for explicit in (engine.begin(), _begun(engine)):  # engine.begin() and conn.begin() lock up front
            async with explicit as conn:
                await conn.execute(text("SELECT count(*) FROM t"))  # reads only, yet holds the write lock
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        await engine.dispose()


@contextlib.asynccontextmanager
async def _begun(engine: Any) -> Any:
    async with engine.connect() as conn, conn.begin():
        yield conn


@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "postgresql"])
async def test_asyncpg_and_plain_postgresql_urls_run_on_psycopg(postgres_server: pgserver.PrivateServer,
                                                                driver: str) -> None:
    """A URL naming asyncpg (or no driver), as cluster.yaml and hand-written configs may, runs: the schema is
    migrated, the DB threads write and read, the API's async engine answers and `cellctl db status` reads
    its revision, all on psycopg (asyncpg itself is not installed here, so nothing ran on it)."""
    from api.db.engine import make_engine as make_api_engine
    from cells.db import migrate
    url = new_postgres_database(postgres_server)
    given = url.replace("postgresql+psycopg://", f"{driver}://", 1)
    assert given != url
    await create_schema(given)
    db = Database(given)
    try:
        def insert(conn: Connection) -> None:
            conn.execute(text("CREATE TABLE probe (x integer)"))
            conn.execute(text("INSERT INTO probe VALUES (7)"))
        await db.write(insert)
        assert await db.read(lambda c: c.execute(text("SELECT x FROM probe")).scalar()) == 7
        assert await db.read(lambda c: c.execute(select(schema_version.c.version)).scalar()) == SCHEMA_VERSION
    finally:
        await db.close()
    engine = make_api_engine(given)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT x FROM probe"))).scalar() == 7
    finally:
        await engine.dispose()
    state = await asyncio.to_thread(migrate.read_state, given, "cell")
    assert state.state == "current"


async def test_postgresql_reads_run_without_a_transaction_and_writes_within_one(db_url: str) -> None:
    """On PostgreSQL a read unit's statements are each their own transaction (no BEGIN/COMMIT round trips:
    under READ COMMITTED a read-only transaction gave them nothing), while a write unit is one transaction:
    now() stays at its start there. SQLite reads keep their one snapshot."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite reads are one transaction (one snapshot), by design")
    db = Database(db_url)

    def later_statement_sees_its_own_start(conn: Connection) -> bool:
        conn.execute(text("SELECT pg_sleep(0.02)"))
        return bool(conn.execute(text("SELECT now() = statement_timestamp()")).scalar())
    try:
        assert await db.read(later_statement_sees_its_own_start) is True
        assert await db.write(later_statement_sees_its_own_start) is False
    finally:
        await db.close()
