"""After-commit hooks (cells/db/commit_hooks.py) and the request id in the writer's and readers' threads:
a hook runs once its unit's transaction commits, never for a unit that failed alone or a batch whose
COMMIT failed; a line a unit logs on the writer thread carries the request id of its caller."""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Connection, text

from cells import errors, logtrail
from cells.db.commit_hooks import after_commit
from cells.db.engine import Database

LOG = logging.getLogger("tests.commit_hooks")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _db(db_url: str) -> Database:
    db = Database(db_url)
    await db.write(lambda c: c.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")))
    return db


def _insert(key: str, ran: list[str], fail: bool = False) -> Callable[[Connection], None]:
    def unit(conn: Connection) -> None:
        conn.execute(text(f"INSERT INTO t VALUES ('{key}', 1)"))
        after_commit(conn, lambda: ran.append(key))
        if fail:
            raise errors.Conflict(reason="no")
    return unit


async def test_hooks_run_after_commit_and_not_for_a_unit_that_failed_in_its_batch(db_url: str) -> None:
    db = await _db(db_url)
    ran: list[str] = []
    try:
        gate, started = threading.Event(), threading.Event()

        def hold(conn: Connection) -> None:  # the writer is busy: the next units queue up as one batch
            started.set()
            gate.wait(5)
            after_commit(conn, lambda: ran.append("hold"))

        first = asyncio.ensure_future(db.write(hold))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        queued = [asyncio.ensure_future(db.write(_insert(k, ran, fail=(k == "b")))) for k in ("a", "b", "c")]
        await asyncio.sleep(0.05)
        assert ran == []  # nothing committed yet
        gate.set()
        await first
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert isinstance(results[1], errors.Conflict)
        assert ran == ["hold", "a", "c"]
        await db.write(_insert("d", ran))  # a lone unit (no savepoint)
        assert ran[-1] == "d"
        with pytest.raises(errors.Conflict):
            await db.write(_insert("e", ran, fail=True))
        assert ran == ["hold", "a", "c", "d"]
    finally:
        await db.close()


async def test_no_hook_runs_when_the_commit_fails(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await _db(db_url)
    ran: list[str] = []
    try:
        def failing_commit(dbapi_connection: object) -> None:
            raise RuntimeError("disk full")
        dialect = db._sync.dialect if db._sync is not None else None
        if dialect is None:
            pytest.skip("this engine runs units through the async driver: its COMMIT is not patched here")
        monkeypatch.setattr(dialect, "do_commit", failing_commit)
        with pytest.raises(RuntimeError):
            await db.write(_insert("x", ran))
        monkeypatch.undo()
        assert ran == []
    finally:
        await db.close()


async def test_the_writer_and_reader_threads_log_with_the_callers_request_id(db_url: str) -> None:
    db = await _db(db_url)
    handler = Collect()
    records = handler.records
    handler.addFilter(logtrail.RequestIdFilter("test"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    token = logtrail.bind_request("req-00000000-0000-4000-8000-000000000001")
    try:
        def write(conn: Connection) -> None:
            LOG.info("writing on %s", threading.current_thread().name)

        def read(conn: Connection) -> None:
            LOG.info("reading on %s", threading.current_thread().name)
        await db.write(write)
        await db.read(read)
    finally:
        logtrail.unbind(token)
        LOG.removeHandler(handler)
        await db.close()
    assert [r.getMessage().split()[0] for r in records] == ["writing", "reading"]
    assert all(r.request_id == "req-00000000-0000-4000-8000-000000000001" for r in records)  # type: ignore[attr-defined]
    if db_url.startswith("sqlite"):  # both ran off the event loop's thread
        assert all("MainThread" not in r.getMessage() for r in records)


async def test_the_writer_counts_its_batches_and_lock_waits(tmp_path: object) -> None:
    db = await _db(f"sqlite+aiosqlite:///{tmp_path}/hooks.db")
    try:
        def sample(name: str) -> float:
            return REGISTRY.get_sample_value(name, {"db": "hooks.db"}) or 0.0
        batches, waits = sample("cellcloud_db_write_batch_units_count"), sample(
            "cellcloud_db_write_lock_wait_seconds_count")
        units = sample("cellcloud_db_write_batch_units_sum")
        await asyncio.gather(*(db.write(_insert(k, [])) for k in "pqrs"))
        assert sample("cellcloud_db_write_batch_units_sum") - units == 4  # every unit, in however many batches
        grew = sample("cellcloud_db_write_batch_units_count") - batches
        assert 1 <= grew <= 4
        assert sample("cellcloud_db_write_lock_wait_seconds_count") - waits == grew  # one lock taken per batch
    finally:
        await db.close()
