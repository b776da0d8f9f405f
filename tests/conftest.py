"""Shared test fixtures.

Every async test runs under a watchdog that fails it when its event loop was
blocked (DESIGN: never block the loop; libvirt, subprocesses and files go
through executors)."""
from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

BLOCKED_LOOP_LIMIT = 1.0  # seconds one callback may hold the loop doing work
STALLED_LOOP_LIMIT = 5.0  # seconds the loop may stall for any reason (a blocking wait)


@pytest_asyncio.fixture(autouse=True)
async def _fail_on_blocked_loop() -> AsyncIterator[None]:
    """A stall counts as blocking when the loop's own thread burnt the CPU
    meanwhile (work done on the loop), or when it lasted very long (a blocking
    wait). On a loaded 2-core machine the OS alone can delay the loop by a
    second; that is not the code's fault and must not fail a test."""
    loop = asyncio.get_running_loop()
    worst_busy = worst_stall = 0.0

    async def watch() -> None:
        nonlocal worst_busy, worst_stall
        while True:
            before, cpu_before = loop.time(), time.thread_time()
            await asyncio.sleep(0.05)
            lag = loop.time() - before - 0.05
            worst_stall = max(worst_stall, lag)
            if time.thread_time() - cpu_before > lag / 2:
                worst_busy = max(worst_busy, lag)

    task = asyncio.ensure_future(watch())
    yield
    task.cancel()
    assert worst_busy < BLOCKED_LOOP_LIMIT, f"the event loop was kept busy for {worst_busy:.2f}s"
    assert worst_stall < STALLED_LOOP_LIMIT, f"the event loop stalled for {worst_stall:.2f}s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tcp_address() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def embed_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one qemu:///embed root of this test process: libvirt opens a single embed root
    per process and refuses a second path."""
    return str(tmp_path_factory.mktemp("qemu-embed"))
