"""Group commit (cells/db/group_commit.py): write units queued together share one transaction,
each in a savepoint; the outcome each caller sees is what one transaction per unit would give."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from cells import errors
from cells.db.engine import Database


async def _db(db_url: str) -> Database:
    db = Database(db_url)
    await db.write(lambda c: c.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")))
    return db


def _rows(conn: Connection) -> list[tuple[str, int]]:
    return [(r.k, r.v) for r in conn.execute(text("SELECT k, v FROM t ORDER BY k"))]


async def test_queued_units_share_a_transaction_in_order_and_fail_alone(db_url: str) -> None:
    db = await _db(db_url)
    try:
        gate, started = threading.Event(), threading.Event()

        def hold(conn: Connection) -> None:  # keeps the writer busy while the others queue up
            started.set()
            gate.wait(5)
            conn.execute(text("INSERT INTO t VALUES ('a', 1)"))

        def bump(conn: Connection) -> int:  # sees what the units before it wrote
            conn.execute(text("UPDATE t SET v = v + 1 WHERE k = 'a'"))
            return int(conn.execute(text("SELECT v FROM t WHERE k = 'a'")).scalar_one())

        def half_then_fail(conn: Connection) -> None:
            conn.execute(text("INSERT INTO t VALUES ('b', 1)"))
            raise errors.Conflict(reason="no")

        def duplicate(conn: Connection) -> None:  # a DB error rolls back its own savepoint only
            conn.execute(text("INSERT INTO t VALUES ('a', 9)"))

        first = asyncio.ensure_future(db.write(hold))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        queued = [asyncio.ensure_future(db.write(f)) for f in (bump, half_then_fail, duplicate, bump)]
        cancelled = asyncio.ensure_future(db.write(bump))
        await asyncio.sleep(0)
        cancelled.cancel()  # cancelled before its unit started: it never runs
        await asyncio.sleep(0.05)
        gate.set()
        await first
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert results[0] == 2 and results[3] == 3
        assert isinstance(results[1], errors.Conflict)
        assert "unique" in str(results[2]).lower()  # SQLite: UNIQUE constraint failed; PostgreSQL: unique constraint
        assert await db.read(_rows) == [("a", 3)]  # neither 'b' nor the duplicate, and one bump per caller
    finally:
        await db.close()


async def test_a_failed_commit_fails_every_unit_of_the_batch(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await _db(db_url)
    try:
        gate, started = threading.Event(), threading.Event()

        def hold(conn: Connection) -> None:
            started.set()
            gate.wait(5)

        def insert(key: str) -> Callable[[Connection], object]:
            return lambda conn: conn.execute(text(f"INSERT INTO t VALUES ('{key}', 1)"))

        first = asyncio.ensure_future(db.write(hold))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        queued = [asyncio.ensure_future(db.write(insert(k))) for k in ("x", "y")]
        await asyncio.sleep(0.05)

        def failing_commit(dbapi_connection: object) -> None:
            raise RuntimeError("disk full")
        assert db._sync is not None
        monkeypatch.setattr(db._sync.dialect, "do_commit", failing_commit)  # every COMMIT from now on fails
        gate.set()
        assert isinstance((await asyncio.gather(first, return_exceptions=True))[0], RuntimeError)
        results = await asyncio.gather(*queued, return_exceptions=True)
        monkeypatch.undo()
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await db.read(_rows) == []
    finally:
        await db.close()


async def test_a_failure_before_the_transaction_fails_the_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    db = await _db(f"sqlite+aiosqlite:///{tmp_path}/cell.db")  # the flock of SQLite's writers
    try:
        assert db._write_lock is not None
        real, db._writer._lock = db._writer._lock, 987654  # no such descriptor: flock raises
        with pytest.raises(OSError):
            await db.write(lambda conn: conn.execute(text("INSERT INTO t VALUES ('x', 1)")))
        db._writer._lock = real
        await db.write(lambda conn: conn.execute(text("INSERT INTO t VALUES ('y', 1)")))  # not stuck
        assert await db.read(_rows) == [("y", 1)]
    finally:
        await db.close()
