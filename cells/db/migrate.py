"""Alembic migrations of the cell and API DBs: one environment per kind (cells/db/migrations,
api/db/migrations), run by `cellctl db upgrade` and read by `cellctl db status` / `cellctl up`.

An upgrade is online: it runs as one write transaction of the DB (the flock and BEGIN IMMEDIATE on
SQLite, the database's advisory write lock on PostgreSQL: cells/db/engine.py), so the services'
writes wait for it and none sees half a migration. A DB from before Alembic is first brought to
the last hand-written version by the old runner and stamped at the baseline; an empty DB is built
by the migrations themselves.

Blocking: call from a thread (cellctl is synchronous).
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, inspect
from sqlalchemy.engine import make_url

from cells.db import engine as db_engine
from cells.db import settings as dbsettings
from cells.db import versioning

KINDS = ("cell", "api")


@dataclass(frozen=True)
class Kind:
    name: str  # "cell" | "api"
    what: str  # "cell DB", "API DB"
    script_location: str
    head: str
    baseline: str
    known: tuple[str, ...]  # every revision of this code, oldest first
    metadata: Callable[[], list[MetaData]]
    legacy_upgrade: Callable[[Connection], None]  # the hand-written runner: to its last version


def combined_metadata(kind_name: str) -> MetaData:
    """Every table of a DB kind in one MetaData (a cell DB's tables are declared in four)."""
    combined = MetaData()
    for md in kind(kind_name).metadata():
        for table in md.tables.values():
            table.to_metadata(combined)
    return combined


def kind(name: str) -> Kind:
    if name == "cell":
        from cells.db import schema

        return Kind("cell", "cell DB", str(Path(schema.__file__).parent / "migrations"), schema.ALEMBIC_HEAD,
                    schema.ALEMBIC_BASELINE, schema.ALEMBIC_REVISIONS, schema.all_metadata, schema.legacy_upgrade)
    if name == "api":
        from api.db import schema as api_schema

        return Kind("api", "API DB", str(Path(api_schema.__file__).parent / "migrations"), api_schema.ALEMBIC_HEAD,
                    api_schema.ALEMBIC_BASELINE, api_schema.ALEMBIC_REVISIONS, lambda: [api_schema.metadata],
                    api_schema.legacy_upgrade)
    raise ValueError(f"no DB kind {name!r} (one of {', '.join(KINDS)})")


@dataclass(frozen=True)
class DbState:
    revision: str | None  # the Alembic revision; None: not under Alembic
    legacy_version: int | None  # the old runner's schema_version, where there is one
    empty: bool  # no table at all
    head: str

    @property
    def state(self) -> str:
        """'current', 'empty', 'behind' (upgrade it), 'legacy' (from before Alembic: upgrade it) or 'newer'."""
        if self.revision == self.head:
            return "current"
        if self.empty:
            return "empty"
        if self.revision is None:
            return "legacy"
        return "behind" if self.revision in _known_cache.get(self.head, ()) else "newer"


_known_cache: dict[str, tuple[str, ...]] = {}


def _sync_engine(url: str) -> Engine:
    if db_engine.is_sqlite(url):
        return db_engine.make_sync_sqlite_engine(url)  # it reads the URL's settings itself
    return db_engine.make_sync_postgresql_engine(dbsettings.split(url)[0])


@contextmanager
def _write_transaction(url: str) -> Iterator[Connection]:
    """One write transaction holding the DB's write lock, as Database.write takes it."""
    engine = _sync_engine(url)
    lock_fd: int | None = None
    try:
        lock_path = _sqlite_lock_path(url)
        if lock_path is not None:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        writer = engine.execution_options(**{db_engine.WRITE_OPTION: True})
        with writer.begin() as conn:
            yield conn
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # releases the flock
        engine.dispose()


def _sqlite_lock_path(url: str) -> str | None:
    if not db_engine.is_sqlite(url):
        return None
    return db_engine.writer_lock_path(dbsettings.split(url)[0])


def read_state(url: str, kind_name: str) -> DbState:
    k = kind(kind_name)
    _known_cache[k.head] = k.known
    if db_engine.is_sqlite(url):
        db = make_url(dbsettings.split(url)[0]).database
        if db and db != ":memory:" and not Path(db).exists():
            return DbState(None, None, True, k.head)  # not made yet: reading it must not create it
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            return _state_of(conn, k)
    finally:
        engine.dispose()


def _state_of(conn: Connection, k: Kind) -> DbState:
    tables = set(inspect(conn).get_table_names())
    revision = versioning.revision_of(conn) if "alembic_version" in tables else None
    legacy = None
    if "schema_version" in tables:
        legacy = conn.exec_driver_sql("SELECT version FROM schema_version").scalar()
    return DbState(revision, None if legacy is None else int(legacy), not tables, k.head)


def upgrade(url: str, kind_name: str) -> tuple[DbState, DbState]:
    """Migrate the DB to head in one write transaction; (state before, state after)."""
    from alembic import command
    from alembic.config import Config

    k = kind(kind_name)
    _known_cache[k.head] = k.known
    with _write_transaction(url) as conn:
        before = _state_of(conn, k)
        if before.state == "newer":
            from cells import errors

            raise errors.DBSchemaTooNew(found=before.revision, supported=k.head)
        if before.state == "legacy":
            k.legacy_upgrade(conn)
            versioning.stamp(conn, k.baseline)
        if before.state != "current":
            config = Config()
            config.set_main_option("script_location", k.script_location)
            config.attributes["connection"] = conn
            config.attributes["target_metadata"] = combined_metadata(k.name)
            command.upgrade(config, "head")
        after = _state_of(conn, k)
    return before, after


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def cluster_databases(cluster: Any) -> list[tuple[str, str, str]]:
    """(label, kind, url) of every DB of a ClusterConfig: the API's, then each cell's."""
    return [("api", "api", cluster.api.db)] + [(f"cell {c.path}", "cell", c.db) for c in cluster.cells]
