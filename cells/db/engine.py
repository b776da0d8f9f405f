"""Engines for the cell DB (SQLite by default, PostgreSQL through psycopg 3), and `Database`,
the unit-of-work runner the cell and API services use. Every choice that differs by dialect is
made here (`Dialect`); the rest of the code writes one unit of work for both.

SQLite specifics, set on every new connection:
- WAL + synchronous=NORMAL (measured 2-25x faster than the default journal; FULL where
  cluster.yaml's db_settings asks: cells/db/settings.py, which also bounds the writer-lock
  wait and turns a full disk into a failed request, DBFull),
  busy_timeout so concurrent processes wait instead of failing, foreign keys on.
- We emit BEGIN ourselves (the sqlite3 driver's legacy mode skips it for SELECT),
  and write transactions use BEGIN IMMEDIATE: they take the write lock up front,
  so a read-then-write transaction can never fail half way with SQLITE_BUSY_SNAPSHOT.

A unit of work is a plain function `fn(conn) -> T` over a sync Connection, run as
one transaction by `await db.write(fn)` / `await db.read(fn)`. On SQLite it runs
in a DB thread over the sync pysqlite driver: one thread hop per transaction
instead of one per statement (measured here: aiosqlite cost ~1 ms per statement,
a whole 5-statement transaction in one hop ~0.3 ms). Writes of a process share one
writer thread (SQLite has one writer anyway); other processes are serialized by
BEGIN IMMEDIATE + busy_timeout. Write units queued while one runs share the
next transaction, each in a savepoint (cells/db/group_commit.py).

PostgreSQL runs the same model over psycopg's sync driver (a URL naming asyncpg or
no driver runs on psycopg too: the DB threads need a sync driver, and one driver
serves the async engine as well). The code's units of work were written against
SQLite's single writer (read, decide, write in one transaction); on PostgreSQL a
write transaction takes a transaction-scoped advisory lock of its database as its
first statement instead of flock + BEGIN IMMEDIATE, so write units still run one
at a time across processes, each seeing every commit before it (READ COMMITTED
reads the latest committed rows per statement), and the lock goes with the COMMIT
or ROLLBACK, even when the client dies. Units declared concurrent (the boot path's: the build's
rows, the scheduler's placement, its hand-over to a host, the compute's state reports) take that
lock shared instead and run beside each other, deciding under row locks and conditional statements,
run again when PostgreSQL rolls one back (cells/db/concurrent_writes.py); every other unit still
runs alone. The wait for either lock is cellcloud_db_write_lock_wait_seconds. Reads take no lock (MVCC). The places
where concurrency is decided also hold on their own, as they would under row
locks alone: a claim is one conditional UPDATE, a volume attach one conditional
UPDATE, IPAM inserts are conditional INSERTs on a unique key (ON CONFLICT DO
NOTHING), a server group's claims lock its row first.

Round trips are what a PostgreSQL unit pays for (each one a wake-up of the server
process and of the DB thread on a busy machine; the write lock's holder is idle
in transaction meanwhile), so the DB threads spend none that change nothing:
a read unit runs in autocommit, without BEGIN and COMMIT (under READ COMMITTED
each statement of a transaction takes its own snapshot anyway, so a read-only
transaction gave its statements nothing more), and group commit leaves its
savepoints to the COMMIT instead of releasing each (cells/db/group_commit.py).
Counted with log_statement=all over 20 concurrent boots (their status polls
included): the cell DB went from 72 to 54 statements per boot, the API DB from
33 to 20.

Writers of one SQLite file queue on an flock of `<db>-wlock` before BEGIN
IMMEDIATE: SQLite's own busy handler sleeps 1, 2, 5, 10, 25... ms between
tries, so with the conductor, scheduler and network controller of a cell all
writing, the write lock sat free while waiters slept (measured in the boot
bench: half of the scheduler's claims waited, ~8 ms each). The kernel wakes
the next flock waiter at once. SQLite's locking still decides; the flock only
orders the writers that use it (others still wait through busy_timeout).
"""
from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction, create_async_engine

from cells import errors, linear_regex, logtrail
from cells.db import commit_hooks
from cells.db import settings as dbsettings
from cells.db.group_commit import GroupWriter, psycopg_connection_type
from cells.metrics import DB_WRITE_LOCK_WAIT

T = TypeVar("T")
UnitOfWork = Callable[[Connection], T]

WRITE_OPTION = "cells_write"
READER_THREADS = 4


PG_WRITE_LOCK_KEY = 0x63635752  # "ccWR": the write lock of one PostgreSQL database (advisory locks are per database)
PG_WRITE_LOCK_SQL = f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK_KEY})"
# concurrent units (cells/db/concurrent_writes.py) take it shared: beside each other, never beside the others
PG_SHARED_WRITE_LOCK_SQL = f"SELECT pg_advisory_xact_lock_shared({PG_WRITE_LOCK_KEY})"
SHARED = "shared"  # the WRITE_OPTION value of a concurrent unit's transaction


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def driver_url(url: str) -> str:
    """The URL SQLAlchemy should open: PostgreSQL URLs run on psycopg (see module doc), others as given."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def writer_lock_path(url: str) -> str | None:
    """Where the writers of this SQLite file queue (None: no file, e.g. :memory:)."""
    db = make_url(url).database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return f"{db}-wlock"


def _ensure_sqlite_dir(url: str) -> None:
    db = make_url(url).database
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> AsyncEngine:
    """An AsyncEngine for `url`; SQLite URLs get the pragmas and BEGIN handling above."""
    url, settings = dbsettings.split(url)
    if not is_sqlite(url):
        engine = create_async_engine(driver_url(url), pool_pre_ping=True)
        _install_postgresql_hooks(engine.sync_engine)
        return engine
    _ensure_sqlite_dir(url)
    engine = create_async_engine(url)
    _install_sqlite_hooks(engine.sync_engine, settings)
    return engine


class _ImmediateConnection(AsyncConnection):
    __slots__ = ()

    def begin(self) -> AsyncTransaction:
        self._proxied.execution_options(**{WRITE_OPTION: True})  # in place, no I/O (raises if not started)
        return super().begin()


class _ImmediateEngine(AsyncEngine):
    __slots__ = ()
    _connection_cls = _ImmediateConnection


def immediate(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (same pool), every explicit transaction (`engine.begin()`,
    `conn.begin()`) taking SQLite's write lock up front.

    For callers whose transactions mix reads and writes through plain
    `engine.begin()`: a deferred BEGIN that reads and then writes fails at once
    with "database is locked" when another writer committed in between. The
    implicit transaction of a plain `engine.connect()` (never committed, so
    read-only) keeps a deferred BEGIN: in WAL mode a reader neither waits for
    writers nor holds them back, where taking the write lock would queue every
    read behind every write (SQLite's busy wait sleeps 1, 2, 5, 10 ms...)."""
    return _ImmediateEngine(engine.sync_engine)


def make_sync_sqlite_engine(url: str) -> Engine:
    """The same SQLite database through the sync pysqlite driver (for DB threads)."""
    url, settings = dbsettings.split(url)
    _ensure_sqlite_dir(url)
    sync_url = make_url(url).set(drivername="sqlite")
    engine = create_engine(sync_url, connect_args={"check_same_thread": False},
                           pool_size=READER_THREADS + 1, max_overflow=READER_THREADS)
    _install_sqlite_hooks(engine, settings)
    return engine


def make_sync_postgresql_engine(url: str) -> Engine:
    """A PostgreSQL database through psycopg's sync driver (for DB threads), write transactions
    taking the database's write lock (see module doc)."""
    engine = create_engine(driver_url(url), pool_size=READER_THREADS + 1, max_overflow=READER_THREADS,
                           pool_pre_ping=True)
    _install_postgresql_hooks(engine)
    return engine


def _install_postgresql_hooks(engine: Engine) -> None:
    lock_wait = DB_WRITE_LOCK_WAIT.labels(engine.url.database or "database")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(WRITE_OPTION, False)
        if mode:
            sql = PG_SHARED_WRITE_LOCK_SQL if mode == SHARED else PG_WRITE_LOCK_SQL
            waited = time.monotonic()
            raw = conn.connection.driver_connection
            if isinstance(raw, psycopg_connection_type()):  # the DB threads: straight to psycopg, as for sqlite3
                cast(Any, raw).execute(sql)
            else:  # the async engine
                conn.exec_driver_sql(sql)
            lock_wait.observe(time.monotonic() - waited)


def _install_sqlite_hooks(engine: Engine, settings: dbsettings.DbSettings) -> None:
    pragmas = dbsettings.pragmas(settings)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        # the server list's name filter (cells/db/instances.py name_search): linear time, unlike REGEXP
        dbapi_connection.create_function("cc_name_search", 2, linear_regex.search, deterministic=True)
        cur = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cur.execute(pragma)
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        begin = "BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION, False) else "BEGIN"
        raw = conn.connection.dbapi_connection
        if isinstance(raw, sqlite3.Connection):  # the DB threads' driver: straight to it, every transaction
            raw.execute(begin)  # pays SQLAlchemy's statement machinery otherwise (~12% of a scheduler's CPU)
        else:
            conn.exec_driver_sql(begin)


class Database:
    """Runs units of work against one cell DB; see the module doc.

    A cancelled caller does not cancel a unit already running in its thread: it
    commits or rolls back on its own, as a transaction in flight on a server would.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        plain, self.settings = dbsettings.split(url)
        self.sqlite = is_sqlite(plain)
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        self._write_lock: int | None = None
        self.free_space: dbsettings.FreeSpace | None = None  # SQLite files: the watermark's reading
        self._path = make_url(plain).database or "database"
        if self.sqlite or is_postgresql(plain):
            lock_path = None
            if self.sqlite:
                self._sync = make_sync_sqlite_engine(url)
                lock_path = writer_lock_path(plain)
                self._write_lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600) if lock_path else None
            else:
                self._sync = make_sync_postgresql_engine(plain)
            self._sync_writer = self._sync.execution_options(**{WRITE_OPTION: True})
            # PostgreSQL reads: no BEGIN/COMMIT round trips (see module doc); SQLite reads keep their snapshot
            self._sync_reader = self._sync if self.sqlite else self._sync.execution_options(
                isolation_level="AUTOCOMMIT")
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="celldb-write")
            shared = None if self.sqlite else self._sync.execution_options(**{WRITE_OPTION: SHARED})
            self._writer = GroupWriter(self._sync_writer, self._write_lock, self._write_thread,
                                       self.settings.lock_timeout, os.path.basename(self._path), shared)
            if lock_path:
                self.free_space = dbsettings.FreeSpace(self._path, self.settings.min_free_mb)
            self._read_threads = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="celldb-read")
        else:
            self._async = make_engine(url)

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql" (SQLAlchemy's backend name)."""
        return make_url(self.url).get_backend_name()

    async def write(self, fn: UnitOfWork[T], concurrent: bool = False) -> T:
        """Run `fn` as one write transaction (commit on return, rollback on exception). The units
        queued meanwhile share it, each in a savepoint (cells/db/group_commit.py).

        `concurrent`: `fn` decides only under row locks or in conditional statements and may run
        again from the start; on PostgreSQL its batch runs beside other processes' batches of such
        units (cells/db/concurrent_writes.py). SQLite ignores it."""
        if self._sync is None:
            return await self._run_async(fn)
        try:
            return await self._writer.write(fn, concurrent)
        except (SAOperationalError, sqlite3.OperationalError) as exc:
            if dbsettings.is_disk_full(exc):  # rolled back: the request fails, the service goes on
                raise dbsettings.full_error(self._path, exc) from exc
            if "database is locked" in str(exc):  # a writer outside the flock held SQLite's lock past busy_timeout
                raise errors.DBBusy(db=os.path.basename(self._path), seconds=10) from exc
            raise

    async def check_free_space(self, what: str) -> None:
        """LowDiskSpace (507) when the DB's file system is below its watermark (SQLite files only)."""
        if self.free_space is not None:
            await self.free_space.check(what)

    async def read(self, fn: UnitOfWork[T]) -> T:
        if self._sync is None:
            return await self._run_async(fn)
        return await asyncio.get_running_loop().run_in_executor(
            self._read_threads, logtrail.in_context(functools.partial(_run_sync, self._sync_reader, fn)))

    async def _run_async(self, fn: UnitOfWork[T]) -> T:
        assert self._async is not None
        hooks: list[commit_hooks.Hook] = []

        def unit(conn: Connection) -> T:
            registered = commit_hooks.begin_unit(conn)
            try:
                value = fn(conn)
            finally:
                commit_hooks.end_unit(conn)
            hooks.extend(registered)
            return value
        async with self._async.begin() as conn:
            value = await conn.run_sync(unit)
        commit_hooks.run(hooks)
        return value

    async def close(self) -> None:
        if self._sync is not None:
            loop = asyncio.get_running_loop()
            # let queued units finish, then drop the connections; the join runs off the loop
            await loop.run_in_executor(None, self._write_thread.shutdown)
            await loop.run_in_executor(None, self._read_threads.shutdown)
            self._sync.dispose()
            if self._write_lock is not None:
                os.close(self._write_lock)
                self._write_lock = None
        if self._async is not None:
            await self._async.dispose()


def _run_sync(engine: Engine, fn: UnitOfWork[T]) -> T:
    with engine.begin() as conn:
        return fn(conn)
