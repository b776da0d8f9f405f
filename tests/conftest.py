"""Shared test fixtures.

Every async test runs under a watchdog that fails it when its event loop was
blocked (DESIGN: never block the loop; libvirt, subprocesses and files go
through executors).

The caller's cloud never reaches a test: the session starts by removing every
OS_* and AWS_* variable (what `source var/openrc` or an AWS profile leave in a
shell) from os.environ, so no test and no subprocess a test starts sees them;
helpers that run a client build its environment from scratch
(tools/devcluster.py cli_env).

Ports: `free_port()` (tools/devcluster.py) hands out loopback ports below the
kernel's ephemeral range, from a block of ports this process holds by an flock
that no other test process can hold at the same time: no outgoing connection
and no other test run takes a port between its pick and its bind. A port some
other program took since is refused by `cellctl up` before anything starts,
and `running_cluster` retries with fresh ports."""
from __future__ import annotations

import asyncio
import gc
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools import pgserver
from tools.devcluster import CALLER_CLOUD_PREFIXES, free_port

__all__ = ["free_port"]  # tests import it from here

BLOCKED_LOOP_LIMIT = 1.0  # CPU seconds one callback may hold its event loop
STALLED_LOOP_LIMIT = 5.0  # wall seconds one callback may hold it (a blocking wait)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos", action="store_true",
                     help="run the full kill matrix (tests/chaos: every service kind), not only its quick tier")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Cases marked chaos_full are skipped (with the reason, listed by -rs) unless --chaos is given."""
    if config.getoption("--chaos"):
        return
    skip = pytest.mark.skip(reason="full kill matrix only: make chaos (pytest --chaos)")
    for item in items:
        if item.get_closest_marker("chaos_full") is not None:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Between tests, collect the garbage and freeze what survives. Late in a run the session's heap
    holds ~1.2 M objects and a full collection of it took 1.1-1.5 s here (gc.callbacks, over
    tests/unit and tests/security); it runs inside whichever callback allocates, so every in-process
    cell of the test missed its heartbeats at once and its hosts went suspect, even dead. Frozen
    objects are never scanned again: a test's collections only see what the test made."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def _scrubbed_environment() -> Iterator[None]:
    """No OS_* / AWS_* variable of the caller's shell reaches a test or what it starts."""
    removed = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(CALLER_CLOUD_PREFIXES)}
    yield
    os.environ.update(removed)


class _GarbageCollectionTime:
    """CPU seconds each thread spent in the garbage collector (gc.callbacks brackets every collection)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.thread_time()
        if phase == "start":
            self._local.started = now
        elif hasattr(self._local, "started"):
            self._local.total = self.spent() + now - self._local.started

    def spent(self) -> float:
        return float(getattr(self._local, "total", 0.0))


@pytest.fixture(autouse=True)
def _fail_on_blocked_loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Time every event-loop callback (every loop: fixtures', tests', asyncio.run's).
    A callback that burns more than a second of its thread's CPU did work on
    the loop; one that holds it for seconds waited on something blocking. On a
    loaded 2-core machine the OS alone can delay a loop: CPU time is immune to that."""
    worst: dict[str, Any] = {"cpu": 0.0, "wall": 0.0, "cpu_at": "", "wall_at": ""}
    original = asyncio.events.Handle._run
    collecting = _GarbageCollectionTime()
    gc.callbacks.append(collecting.on_gc)

    def timed_run(self: asyncio.events.Handle) -> None:
        wall0, cpu0, gc0 = time.monotonic(), time.thread_time(), collecting.spent()
        try:
            original(self)
        finally:
            # a full collection of the test session's heap runs inside whichever callback allocated
            # last: seconds late in a long run, and not the loop's work under test
            wall = time.monotonic() - wall0
            cpu = time.thread_time() - cpu0 - (collecting.spent() - gc0)
            if cpu > worst["cpu"]:
                worst["cpu"], worst["cpu_at"] = cpu, repr(self)[:300]
            if wall > worst["wall"]:
                worst["wall"], worst["wall_at"] = wall, repr(self)[:300]

    monkeypatch.setattr(asyncio.events.Handle, "_run", timed_run)
    try:
        yield
    finally:
        gc.callbacks.remove(collecting.on_gc)
    assert worst["cpu"] < BLOCKED_LOOP_LIMIT, \
        f"one callback kept the event loop busy for {worst['cpu']:.2f} CPU s: {worst['cpu_at']}"
    assert worst["wall"] < STALLED_LOOP_LIMIT, \
        f"one callback held the event loop for {worst['wall']:.2f} s: {worst['wall_at']}"


@pytest.fixture
def tcp_address() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def embed_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one qemu:///embed root of this test process: libvirt opens a single embed root
    per process and refuses a second path."""
    return str(tmp_path_factory.mktemp("qemu-embed"))


PG_TEMP_PREFIX = "cc-pg-"


def _stop_orphaned_postgres() -> None:
    """Stop the private servers of test sessions killed before their teardown (a timeout, kill -9):
    pg_ctl daemonizes the server, so it outlives its session and would pile up, one per killed run."""
    for owner in Path(tempfile.gettempdir()).glob(f"{PG_TEMP_PREFIX}*/owner"):
        try:
            os.kill(int(owner.read_text()), 0)
            continue  # its session still runs
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        pgserver.PrivateServer(owner.parent / "pg").stop()
        shutil.rmtree(owner.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pgserver.PrivateServer]:
    """One private PostgreSQL for the test session (tools/pgserver.py), in its own temp dir (not under
    pytest's: that is closed to the postgres user the server must run as when the tests run as root)."""
    reason = pgserver.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    try:
        import psycopg  # noqa: F401 - the driver of the `postgres` extra
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    _stop_orphaned_postgres()
    base = Path(tempfile.mkdtemp(prefix=PG_TEMP_PREFIX))
    (base / "owner").write_text(str(os.getpid()))
    server = pgserver.PrivateServer(base / "pg")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


_databases = itertools.count()


def new_postgres_database(server: pgserver.PrivateServer) -> str:
    """A fresh, empty database on `server`; its URL."""
    name = f"t{os.getpid()}_{next(_databases)}"
    server.create_database(name)
    return server.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty cell DB, once on SQLite and once on PostgreSQL (a fresh database on the session's
    private server; skipped with the reason where it cannot run)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/cell.db"
        return
    server: pgserver.PrivateServer = request.getfixturevalue("postgres_server")
    url = new_postgres_database(server)
    yield url
    server.drop_database(url.split("@/", 1)[1].split("?", 1)[0])
