"""A cell's network controller over a fresh cell DB, for the tests that drive it directly
(tests/security/test_network_agent_input.py, tests/functional/test_host_network.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from cells.db.schema import create_schema
from cells.network.controller import NetworkController


@pytest_asyncio.fixture
async def controller(tmp_path: Path) -> AsyncIterator[NetworkController]:
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    c = NetworkController(db_url=url)
    await c.start()
    yield c
    await c.stop()
