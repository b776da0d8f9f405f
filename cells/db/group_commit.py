"""Group commit: the write units of work one process has queued for a database run
in one transaction, each in a SAVEPOINT of its own.

With a cell's conductor, scheduler and network controller all writing one file, its
write lock is the boot pipeline's narrowest point: under load a holder is often
descheduled mid-transaction (six busy processes on two cores), so the lock is held
~2 ms for ~0.5 ms of work, and every transaction pays the hand-over again. Units
that queued up meanwhile now take the lock once, together.

Each unit still sees the effects of the ones before it and none of the ones after
(they run in queue order, as they would one transaction each); a unit that raises
rolls back to its savepoint and fails alone; its caller learns the outcome only
after the COMMIT, and a failed COMMIT fails every unit of the batch. A lone unit
runs without a savepoint, exactly as before. A caller cancelled before its unit
started skips it; one already running commits or rolls back on its own.

On PostgreSQL the write lock is an advisory lock taken as the transaction begins
(cells/db/engine.py) and the same batching applies, savepoints included, save that a
unit's savepoint is never released: the COMMIT ends them all, and a ROLLBACK TO goes
back to the newest savepoint of that name (PostgreSQL keeps the older ones), so the
RELEASE was a round trip per unit under the write lock that changed nothing. A batch
nests at most MAX_BATCH of them, below the 64 subtransactions a session caches. A batch is a
run of queued units of one kind: units declared concurrent take the lock shared, beside other
processes' such batches, and run again when PostgreSQL rolls their transaction back
(cells/db/concurrent_writes.py).

The wait for the writer lock is bounded (`lock_timeout`, cluster.yaml db_settings): a
blocking flock cannot time out, so when the lock is taken the wait runs on a helper
thread and the writer gives up after the timeout, failing the batch with DBBusy (503).
The kernel still hands the lock to the helper the moment it is free (no polling); a
helper that gets it after its writer gave up lets it go at once.
"""
from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from cells import errors, logtrail
from cells.db import commit_hooks, concurrent_writes
from cells.metrics import DB_WRITE_BATCH, DB_WRITE_LOCK_WAIT, DB_WRITE_RETRIES

T = TypeVar("T")
MAX_BATCH = 32  # units per transaction: bounds how long one batch holds the write lock


@dataclass(frozen=True)
class _Unit:
    fn: Callable[[Connection], Any]
    fut: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    concurrent: bool = False  # declared safe beside other writers (cells/db/concurrent_writes.py)


class GroupWriter:
    """Runs write units on `thread` (one thread: SQLite has one writer anyway), behind an flock
    of `lock` when given (see cells/db/engine.py). `shared`: the engine whose transactions take
    PostgreSQL's write lock shared, for batches of concurrent units (None: they run as the others)."""

    def __init__(self, engine: Engine, lock: int | None, thread: ThreadPoolExecutor, lock_timeout: float = 30.0,
                 name: str = "database", shared: Engine | None = None) -> None:
        self._engine = engine
        self._shared = shared
        self._name = name
        self._lock = lock
        self._thread = thread
        self._queued: deque[_Unit] = deque()
        self._guard = threading.Lock()
        self._draining = False
        self._flock = _BoundedFlock(lock_timeout, name)
        self._lock_wait = DB_WRITE_LOCK_WAIT.labels(name)
        self._batch_size = DB_WRITE_BATCH.labels(name)

    async def write(self, fn: Callable[[Connection], T], concurrent: bool = False) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        concurrent = concurrent and self._shared is not None
        with self._guard:
            self._queued.append(_Unit(logtrail.in_context(fn), fut, loop, concurrent))  # its lines keep its request id
            start, self._draining = not self._draining, True
        if start:
            self._thread.submit(self._drain)
        return await fut

    # --- the writer thread -----------------------------------------------------

    def _drain(self) -> None:
        while True:
            batch: list[_Unit] = []
            with self._guard:
                # a batch is a run of units of one kind: concurrent ones share PostgreSQL's lock
                while self._queued and len(batch) < MAX_BATCH \
                        and (not batch or self._queued[0].concurrent == batch[0].concurrent):
                    unit = self._queued.popleft()
                    if not unit.fut.cancelled():
                        batch.append(unit)
                if not batch:
                    self._draining = False
                    return
            _settle_all(self._run(batch))

    def _run(self, batch: list[_Unit]) -> list[tuple[_Unit, bool, Any]]:
        """A concurrent batch that PostgreSQL rolled back (deadlock, serialization failure, unique
        violation) runs again: each of its units alone, so one that keeps failing fails alone, a lone
        unit up to MAX_ATTEMPTS times (cells/db/concurrent_writes.py); any other batch runs once."""
        shared = self._shared is not None and batch[0].concurrent
        attempts = concurrent_writes.MAX_ATTEMPTS if shared and len(batch) == 1 else 1
        for attempt in range(1, attempts + 1):
            outcome = self._attempt(batch, shared)
            if isinstance(outcome, list):
                return outcome
            reason = concurrent_writes.retry_reason(outcome) if shared else None
            if reason is None or (attempt == attempts and len(batch) == 1):
                return [(unit, False, outcome) for unit in batch]
            DB_WRITE_RETRIES.labels(self._name, reason).inc()
            concurrent_writes.pause(attempt)
            if len(batch) > 1:
                return [item for unit in batch for item in self._run([unit])]
        raise AssertionError("unreachable: the last attempt returns")

    def _attempt(self, batch: list[_Unit], shared: bool) -> list[tuple[_Unit, bool, Any]] | BaseException:
        """The batch in one transaction: each unit's outcome, or what failed the whole transaction."""
        done: list[tuple[_Unit, bool, Any]] = []
        committed: list[commit_hooks.Hook] = []  # the after-commit hooks of the units that succeeded
        lock, locked = self._lock, False
        try:  # whatever fails here fails the batch's callers: the writer itself must never stop
            if lock is not None:
                waited = time.monotonic()
                self._flock.acquire(lock)  # blocks this thread only (bounded); released with the transaction
                self._lock_wait.observe(time.monotonic() - waited)
                locked = True
            with (self._shared if shared and self._shared is not None else self._engine).begin() as conn:
                try:
                    self._units(conn, batch, done, committed, shared)
                finally:
                    commit_hooks.end_unit(conn)
            self._batch_size.observe(len(batch))
            commit_hooks.run(committed)
        except BaseException as exc:  # noqa: BLE001 - nothing of the transaction was committed
            return exc
        finally:
            if locked and lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return done

    @staticmethod
    def _units(conn: Connection, batch: list[_Unit], done: list[tuple[_Unit, bool, Any]],
               committed: list[commit_hooks.Hook], shared: bool = False) -> None:
        if len(batch) == 1:
            hooks = commit_hooks.begin_unit(conn)
            done.append((batch[0], True, batch[0].fn(conn)))
            committed.extend(hooks)
            return
        # the savepoints go straight to the driver: SQLAlchemy's begin_nested() cost more
        # than a typical unit (measured: 14% of the conductor's CPU in a burst)
        driver = conn.connection.driver_connection
        # sqlite3's and psycopg's connections run plain SQL in the open transaction themselves
        raw: Any = driver if isinstance(driver, (sqlite3.Connection, psycopg_connection_type())) \
            else _DriverSQL(conn)  # another driver: through SQLAlchemy's cursor
        release = conn.dialect.name == "sqlite"  # PostgreSQL: the COMMIT ends them (module doc)
        for unit in batch:
            raw.execute("SAVEPOINT cc_unit")
            hooks = commit_hooks.begin_unit(conn)
            try:
                value = unit.fn(conn)
            except BaseException as exc:  # it fails alone, and its caller gets it
                if shared and concurrent_writes.retry_reason(exc) is not None:
                    raise  # a deadlock's locks are the batch's: its transaction must go (_run)
                raw.execute("ROLLBACK TO cc_unit")
                if release:
                    raw.execute("RELEASE cc_unit")
                done.append((unit, False, exc))
            else:
                if release:
                    raw.execute("RELEASE cc_unit")
                done.append((unit, True, value))
                committed.extend(hooks)


def psycopg_connection_type() -> type:
    """psycopg's sync Connection (its execute runs plain SQL in the open transaction), or a class nothing is an
    instance of while psycopg is not loaded: a psycopg connection exists only once SQLAlchemy's psycopg dialect
    has imported it, so a process on SQLite alone never imports it (~0.1 s of CPU in each service's start)."""
    psycopg = sys.modules.get("psycopg")
    return _NoPsycopg if psycopg is None else cast(type, psycopg.Connection)


class _NoPsycopg:
    """Stands for psycopg.Connection in isinstance checks while psycopg is not loaded."""


class _DriverSQL:
    """`execute(sql)` as plain SQL on the connection (the drivers other than sqlite3)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str) -> None:
        self._conn.exec_driver_sql(sql)


class _BoundedFlock:
    """flock(LOCK_EX) that gives up after `timeout` seconds with DBBusy (see the module doc)."""

    def __init__(self, timeout: float, name: str) -> None:
        self._timeout, self._name = timeout, name
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="db-wlock")
        self._handover = threading.Lock()
        self._abandoned = False

    def acquire(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the usual case: free, or ours to take now
            return
        except BlockingIOError:
            pass
        with self._handover:
            self._abandoned = False
        waiting = self._helper.submit(self._wait, fd)
        try:
            waiting.result(self._timeout)
            return
        except FutureTimeout:
            with self._handover:
                if not waiting.done():
                    self._abandoned = True  # the helper lets the lock go when it finally gets it
                    raise errors.DBBusy(db=self._name, seconds=self._timeout) from None
        waiting.result()  # it got the lock just as we gave up: keep it

    def _wait(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with self._handover:
            if self._abandoned:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _settle_all(done: list[tuple[_Unit, bool, Any]]) -> None:
    """Hand each caller its outcome: one wake-up per event loop, not one per unit."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Unit, bool, Any]]] = {}
    for item in done:
        by_loop.setdefault(item[0].loop, []).append(item)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _settle(items: list[tuple[_Unit, bool, Any]]) -> None:
    for unit, ok, value in items:
        if unit.fut.cancelled():
            continue
        if ok:
            unit.fut.set_result(value)
        else:
            unit.fut.set_exception(value)
