"""Alembic migrations of the cell and API DBs (cells/db/migrate.py): the migrations build exactly the
tables the code declares, on SQLite and PostgreSQL; a DB the previous release made is upgraded to
head with its rows; a DB behind the code is refused until `cellctl db upgrade`."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import String, Text, create_engine, inspect, text

from api.db import schema as api_schema
from cells import errors
from cells.db import migrate, versioning
from cells.db import schema as cell_schema
from cells.db.engine import Database, driver_url

DATA = Path(__file__).resolve().parents[1] / "data"
UUID = "11111111-1111-1111-1111-111111111111"


def _sync_url(url: str) -> str:
    return url.replace("sqlite+aiosqlite://", "sqlite://") if url.startswith("sqlite") else driver_url(url)


def _diff(url: str, kind: str) -> list[Any]:
    """What autogenerate would change to make the DB match the code's tables ([] when they agree)."""
    engine = create_engine(_sync_url(url))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, migrate.combined_metadata(kind)))
    finally:
        engine.dispose()


def _same_on_sqlite(diff: Any) -> bool:
    """A VARCHAR(n) column the model now declares TEXT: one storage class on SQLite (TEXT affinity, no length
    enforced), so the runner's step 6 (ec2_credentials.secret) widens it on PostgreSQL only."""
    if not (isinstance(diff, list) and diff and diff[0][0] == "modify_type"):
        return False
    old, new = diff[0][5], diff[0][6]
    return isinstance(old, String) and isinstance(new, Text)


@pytest.mark.parametrize("kind", migrate.KINDS)
def test_the_code_names_every_revision_of_its_scripts(kind: str) -> None:
    k = migrate.kind(kind)
    config = Config()
    config.set_main_option("script_location", k.script_location)
    script = ScriptDirectory.from_config(config)
    walked = [r.revision for r in script.walk_revisions()]  # head first
    assert tuple(reversed(walked)) == k.known
    assert script.get_current_head() == k.head and k.baseline == k.known[0]


@pytest.mark.parametrize("kind", migrate.KINDS)
def test_migrations_from_empty_build_exactly_the_models(db_url: str, kind: str) -> None:
    """Autogenerate finds nothing to change after the migrations ran, on SQLite and PostgreSQL."""
    before, after = migrate.upgrade(db_url, kind)
    assert before.state == "empty" and after.state == "current" and after.revision == migrate.kind(kind).head
    assert _diff(db_url, kind) == []
    again_before, again_after = migrate.upgrade(db_url, kind)  # idempotent: nothing to do
    assert again_before.state == again_after.state == "current"


@pytest.mark.parametrize("kind", migrate.KINDS)
def test_the_services_create_path_builds_the_models_at_head(db_url: str, kind: str) -> None:
    """What cellctl up and the services make on a fresh DB is the head's schema, stamped at head."""
    asyncio.run(cell_schema.create_schema(db_url) if kind == "cell" else api_schema.create_schema(db_url))
    assert migrate.read_state(db_url, kind).state == "current"
    assert _diff(db_url, kind) == []


@pytest.mark.parametrize("kind", migrate.KINDS)
def test_a_db_of_the_previous_release_is_upgraded_to_head_with_its_rows(tmp_path: Path, kind: str) -> None:
    """tests/data/<kind>_db_v4.sql: what the schema code of the release before made (schema v4, SQLite)."""
    path = tmp_path / f"{kind}.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / f"{kind}_db_v4.sql").read_text())
    url = f"sqlite+aiosqlite:///{path}"
    state = migrate.read_state(url, kind)
    assert (state.state, state.legacy_version) == ("legacy", 4)

    before, after = migrate.upgrade(url, kind)
    assert before.state == "legacy" and after.state == "current"
    assert after.legacy_version == (cell_schema.SCHEMA_VERSION if kind == "cell" else api_schema.LATEST)
    assert [d for d in _diff(url, kind) if not _same_on_sqlite(d)] == []
    with sqlite3.connect(path) as conn:
        if kind == "cell":
            assert conn.execute("SELECT uuid, name, host, conductor_id FROM instances").fetchall() == \
                [(UUID, "old-vm", "node1", None)]
            assert conn.execute("SELECT instance_uuid, host, memory_mb FROM claims").fetchall() == [(UUID, "node1", 512)]
            assert conn.execute("SELECT host, memory_mb_used FROM compute_nodes").fetchall() == [("node1", 512)]
        else:
            # v5 added the quota columns with their defaults; built=1: a mapping of the old release was a made server
            assert conn.execute("SELECT instance_uuid, name, vcpus, ram, built FROM instance_mappings").fetchall() == \
                [(UUID, "old-vm", 0, 0, 1)]


async def test_a_cell_db_behind_the_code_is_refused_and_one_ahead_too(db_url: str) -> None:
    await cell_schema.create_schema(db_url)
    db = Database(db_url)
    try:
        await db.write(lambda conn: versioning.stamp(conn, "c0000_older"))
        # an older revision this code knows of is "behind"; pretend the code has one
        known = (*cell_schema.ALEMBIC_REVISIONS[:-1], "c0000_older", cell_schema.ALEMBIC_HEAD)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cell_schema, "ALEMBIC_REVISIONS", known)
            with pytest.raises(errors.DBSchemaBehind, match="run `cellctl db upgrade` first"):
                await cell_schema.ensure_schema(db)
        await db.write(lambda conn: versioning.stamp(conn, "c9999_from_newer_code"))
        with pytest.raises(errors.DBSchemaTooNew, match="c9999_from_newer_code"):
            await cell_schema.ensure_schema(db)
        assert migrate.read_state(db_url, "cell").state == "newer"
        with pytest.raises(errors.DBSchemaTooNew):
            migrate.upgrade(db_url, "cell")  # never "upgrades" a DB this code does not know
        tables = await db.read(lambda conn: set(inspect(conn).get_table_names()))
        assert "instances" in tables
        revision = await db.read(lambda conn: conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
        assert revision == "c9999_from_newer_code"
    finally:
        await db.close()
