"""Shared test fixtures.

Every async test runs under a watchdog that fails it when its event loop was
blocked (DESIGN: never block the loop; libvirt, subprocesses and files go
through executors)."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

BLOCKED_LOOP_LIMIT = 1.0  # seconds one callback may hold the loop


@pytest_asyncio.fixture(autouse=True)
async def _fail_on_blocked_loop() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    worst = 0.0

    async def watch() -> None:
        nonlocal worst
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            worst = max(worst, loop.time() - before - 0.05)

    task = asyncio.ensure_future(watch())
    yield
    task.cancel()
    assert worst < BLOCKED_LOOP_LIMIT, f"the event loop was blocked for {worst:.2f}s"


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
