"""Fixtures of the security tests: a real cell talking CURVE (curve_cell.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.security.curve_cell import CurveCell


@pytest.fixture
async def cell(tmp_path: Path) -> AsyncIterator[CurveCell]:
    c = CurveCell(tmp_path, {"node1": "ok", "node2": "ok"})
    await c.start()
    try:
        yield c
    finally:
        await c.close()
