"""A down cell's servers come from the API's instance mappings (api/compute/down_cells.py). A page in
the default order reads only that page's worth of mappings, after the marker, and gives exactly what
the unbounded read gives for that page. Real API DB (SQLite)."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from api.compute import down_cells
from api.db.engine import make_engine
from api.db.schema import create_schema, instance_mappings
from api.timeutil import iso_micro

START = datetime(2026, 12, 7, 8, 0, 0)


@pytest_asyncio.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{tmp_path}/api.db"
    await create_schema(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def mapped(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(instance_mappings), rows)


async def test_a_down_cells_page_is_the_unbounded_reads_slice_after_the_marker(engine: AsyncEngine) -> None:
    rows = [{"instance_uuid": str(uuid.uuid4()), "cell_path": f"cell{1 + i % 2}", "project_id": "p",
             "user_id": "u", "name": f"vm{i}", "created_at": START + timedelta(seconds=i // 10)}  # ties, as a
            for i in range(60)]                                                                  # multi-create
    rows += [{**rows[0], "instance_uuid": str(uuid.uuid4()), "project_id": "other"}]
    await mapped(engine, rows)
    everything = await down_cells.records(engine, ["cell1", "cell2"], {"project_id": "p"})
    assert len(everything) == 60
    assert [(r["created_at"], r["uuid"]) for r in everything] == sorted(
        ((r["created_at"], r["uuid"]) for r in everything), reverse=True)  # the default order
    first = await down_cells.records(engine, ["cell1", "cell2"], {"project_id": "p"}, page=25)
    assert first == everything[:25]
    marker = {"uuid": first[-1]["uuid"], "created_at": first[-1]["created_at"]}
    second = await down_cells.records(engine, ["cell1", "cell2"], {"project_id": "p"}, page=25, after=marker)
    assert second == everything[25:50]
    one_cell = await down_cells.records(engine, ["cell2"], {"project_id": "p"}, page=5)
    assert one_cell == [r for r in everything if r["cell"] == "cell2"][:5]
    assert all(iso_micro(r["created_at"]) == r["created_at"] for r in second)


async def test_a_name_filter_reads_every_mapping_before_it_matches(engine: AsyncEngine) -> None:
    """The name pattern is matched after the read: a page bound in SQL would cut matches short."""
    await mapped(engine, [{"instance_uuid": str(uuid.uuid4()), "cell_path": "cell1", "project_id": "p",
                           "user_id": "u", "name": "wanted" if i < 3 else f"vm{i}",
                           "created_at": START + timedelta(seconds=i)} for i in range(20)])
    found = await down_cells.records(engine, ["cell1"], {"project_id": "p", "name": "^wanted$"}, page=2)
    assert sorted(str(r["name"]) for r in found) == ["wanted"] * 3  # the oldest three, past any page of 2
