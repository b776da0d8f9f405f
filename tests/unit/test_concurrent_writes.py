"""Concurrent write units on PostgreSQL (cells/db/concurrent_writes.py): two processes' units run at
the same time, never beside an ordinary (exclusive) unit, and a deadlock or serialization failure runs
a unit again, a bounded number of times. Two Database objects stand for two processes (each has its
own writer thread and connections). On a private PostgreSQL (skipped with the reason where it cannot run)."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from cells.db import concurrent_writes
from cells.db.engine import Database
from cells.metrics import DB_WRITE_RETRIES
from tests.conftest import new_postgres_database
from tools import pgserver


@pytest.fixture
async def two(postgres_server: pgserver.PrivateServer) -> AsyncIterator[tuple[Database, Database]]:
    """Two "processes" on one fresh database holding rows a and b."""
    url = new_postgres_database(postgres_server)
    first, second = Database(url), Database(url)
    await first.write(lambda c: c.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")))
    await first.write(lambda c: c.execute(text("INSERT INTO t VALUES ('a', 0), ('b', 0)")))
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def _value(conn: Connection, key: str) -> int:
    return int(conn.execute(text("SELECT v FROM t WHERE k = :k"), {"k": key}).scalar_one())


async def test_concurrent_units_are_inside_their_transactions_at_the_same_time(two: tuple[Database, Database]) -> None:
    both_inside = threading.Barrier(2, timeout=10)  # broken (an error) if the two ever ran one after the other

    def bump(key: str) -> Callable[[Connection], int]:
        def unit(conn: Connection) -> int:
            conn.execute(text("UPDATE t SET v = v + 1 WHERE k = :k"), {"k": key})
            both_inside.wait()
            return _value(conn, key)
        return unit

    first, second = two
    results = await asyncio.gather(first.write(bump("a"), concurrent=True), second.write(bump("b"), concurrent=True))
    assert list(results) == [1, 1]


async def test_an_ordinary_unit_waits_until_no_concurrent_unit_runs(two: tuple[Database, Database]) -> None:
    concurrent_in, release = threading.Event(), threading.Event()
    seen_by_exclusive: list[int] = []

    def hold(conn: Connection) -> None:
        conn.execute(text("UPDATE t SET v = 5 WHERE k = 'a'"))
        concurrent_in.set()
        release.wait(10)

    def exclusive(conn: Connection) -> None:
        seen_by_exclusive.append(_value(conn, "a"))

    first, second = two
    held = asyncio.ensure_future(first.write(hold, concurrent=True))
    await asyncio.get_running_loop().run_in_executor(None, concurrent_in.wait, 10)
    ordinary = asyncio.ensure_future(second.write(exclusive))
    await asyncio.sleep(0.3)
    assert not ordinary.done() and seen_by_exclusive == []  # queued on the advisory lock the concurrent unit shares
    release.set()
    await asyncio.gather(held, ordinary)
    assert seen_by_exclusive == [5]  # it ran after the concurrent unit committed, and saw its write


async def test_a_deadlock_between_concurrent_units_runs_the_loser_again(two: tuple[Database, Database]) -> None:
    first_locks = threading.Barrier(2, timeout=10)
    attempts = {"ab": 0, "ba": 0}
    first, second = two
    retried = DB_WRITE_RETRIES.labels(first._path, "deadlock_detected")
    before = retried._value.get()

    def crosswise(first: str, second: str) -> Callable[[Connection], None]:
        def unit(conn: Connection) -> None:
            attempts[first + second] += 1
            conn.execute(text("SET LOCAL deadlock_timeout = '50ms'"))  # found in 50 ms, not PostgreSQL's 1 s
            conn.execute(text("UPDATE t SET v = v + 1 WHERE k = :k"), {"k": first})
            if attempts[first + second] == 1:
                first_locks.wait()  # each holds its first row: the second UPDATEs wait for each other
            conn.execute(text("UPDATE t SET v = v + 10 WHERE k = :k"), {"k": second})
        return unit

    await asyncio.gather(first.write(crosswise("a", "b"), concurrent=True),
                         second.write(crosswise("b", "a"), concurrent=True))
    assert sorted(attempts.values()) == [1, 2]  # PostgreSQL rolled one back; it ran again and committed
    assert retried._value.get() == before + 1
    assert await first.read(lambda c: (_value(c, "a"), _value(c, "b"))) == (11, 11)  # each unit's writes once


async def test_a_unit_that_keeps_failing_serialization_gives_up_after_the_bound(two: tuple[Database, Database]) -> None:
    runs = 0

    def always_conflicts(conn: Connection) -> None:
        nonlocal runs
        runs += 1
        conn.execute(text("UPDATE t SET v = v + 1 WHERE k = 'a'"))
        conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = 'serialization_failure'; END $$"))

    db = two[0]
    with pytest.raises(DBAPIError) as raised:
        await db.write(always_conflicts, concurrent=True)
    assert concurrent_writes.sqlstate(raised.value) == "40001"
    assert runs == concurrent_writes.MAX_ATTEMPTS
    assert await db.read(lambda c: _value(c, "a")) == 0  # every attempt rolled back


async def test_other_errors_are_not_run_again(two: tuple[Database, Database]) -> None:
    runs = 0

    def bad(conn: Connection) -> None:
        nonlocal runs
        runs += 1
        conn.execute(text("SELECT 1 / 0"))

    with pytest.raises(DBAPIError):
        await two[0].write(bad, concurrent=True)
    assert runs == 1


async def test_a_deadlocked_batch_runs_each_unit_again_and_each_commits_once(
        two: tuple[Database, Database]) -> None:
    """A deadlock inside one unit of a batch rolls back the batch's transaction (the locks are the
    batch's): every unit of it runs again (each alone), and each one's write lands once."""
    first, second = two
    hold_a, queued, b_taken = threading.Event(), threading.Event(), threading.Event()
    runs = {"holder": 0, "x": 0, "y": 0}

    def holder(conn: Connection) -> None:  # second's unit: holds a until the batch holds b, then wants b
        runs["holder"] += 1
        conn.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
        conn.execute(text("UPDATE t SET v = v + 100 WHERE k = 'a'"))
        if runs["holder"] == 1:
            hold_a.set()
            b_taken.wait(10)
        conn.execute(text("UPDATE t SET v = v + 100 WHERE k = 'b'"))

    def gate(conn: Connection) -> None:  # first's writer busy until x and y queued: they share the next batch
        queued.wait(10)

    def unit(name: str, key: str) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            runs[name] += 1
            conn.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
            conn.execute(text("UPDATE t SET v = v + 1 WHERE k = :k"), {"k": key})
            if name == "x":
                b_taken.set()
        return run

    holding = asyncio.ensure_future(second.write(holder, concurrent=True))
    await asyncio.get_running_loop().run_in_executor(None, hold_a.wait, 10)
    gated = asyncio.ensure_future(first.write(gate, concurrent=True))
    await asyncio.sleep(0.05)
    batch = [asyncio.ensure_future(first.write(unit("x", "b"), concurrent=True)),  # x takes b, then y waits for a
             asyncio.ensure_future(first.write(unit("y", "a"), concurrent=True))]
    await asyncio.sleep(0.05)
    queued.set()
    await asyncio.gather(holding, gated, *batch)
    assert await first.read(lambda c: (_value(c, "a"), _value(c, "b"))) == (101, 101)  # every write once
    assert runs["x"] == runs["y"] and runs["x"] + runs["holder"] == 3  # one side ran again: the holder, or both units of the batch


async def test_a_unit_that_keeps_violating_a_unique_key_fails_alone_in_its_batch(
        two: tuple[Database, Database]) -> None:
    """A unique violation may be a lost race (run again, the unit reads the other's row), or the unit's
    own mistake: after the batch ran again unit by unit, only the unit that keeps failing fails."""
    first = two[0]
    gate_in, queued = threading.Event(), threading.Event()

    def gate(conn: Connection) -> None:
        gate_in.set()
        queued.wait(10)

    def good(conn: Connection) -> None:
        conn.execute(text("UPDATE t SET v = v + 1 WHERE k = 'b'"))

    def duplicate(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t VALUES ('a', 9)"))

    gated = asyncio.ensure_future(first.write(gate, concurrent=True))
    await asyncio.get_running_loop().run_in_executor(None, gate_in.wait, 10)
    batch = [asyncio.ensure_future(first.write(f, concurrent=True)) for f in (good, duplicate, good)]
    await asyncio.sleep(0.05)
    queued.set()
    await gated
    results = await asyncio.gather(*batch, return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], DBAPIError) and concurrent_writes.sqlstate(results[1]) == "23505"
    assert await first.read(lambda c: (_value(c, "a"), _value(c, "b"))) == (0, 2)
