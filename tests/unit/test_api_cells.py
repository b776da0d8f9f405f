"""The cell router: scatter-gather listings merged across several cells
(sort order, limit, a marker owned by another cell, a cell that is down)."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, cast

import pytest_asyncio

from api.cell_router import CellClient, CellRouter, sort_key
from cells.config import CellSpec
from cells.context import RequestContext
from cells.objects.instance import utcnow_iso
from cells.objects.records import InstanceRecord
from tests.conftest import free_port
from tests.unit.api_fake_cell import INTERVAL, FakeCell, fake_cell

CTX = RequestContext(project="p1", user="u1", roles=("member",))


def _record(uuid: str, name: str, cell: str, project: str = "p1") -> dict[str, Any]:
    now = utcnow_iso()
    return {"uuid": uuid, "name": name, "project_id": project, "user_id": "u1", "vm_state": "building",
            "task_state": "scheduling", "deleted": False, "created_at": now, "updated_at": now, "cell": cell}


@pytest_asyncio.fixture
async def two_cells() -> AsyncIterator[tuple[CellRouter, FakeCell, FakeCell]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(fake_cell("a"))
        b = await stack.enter_async_context(fake_cell("b"))
        router = CellRouter([CellClient(CellSpec("a", "a", "", a.router), INTERVAL),
                             CellClient(CellSpec("b", "b", "", b.router), INTERVAL)])
        router.start()
        try:
            yield router, a, b
        finally:
            await router.stop()


def _fill(a: FakeCell, b: FakeCell) -> None:
    # names interleave across the two cells: a holds n0, n2, n4; b holds n1, n3, n5
    for i in range(6):
        cell = a if i % 2 == 0 else b
        rec = _record(f"00000000-0000-0000-0000-00000000000{i}", f"n{i}", cell.conductor.cell)
        cell.conductor.records[rec["uuid"]] = rec
    b.conductor.records["other"] = _record("other", "n9", "b", project="p2")


async def test_merge_sorts_across_cells(two_cells: tuple[CellRouter, FakeCell, FakeCell]) -> None:
    router, a, b = two_cells
    _fill(a, b)
    keys, dirs = ["name", "uuid"], ["asc", "asc"]
    got = await router.list_instances(CTX, {"project_id": "p1"}, keys, dirs, 100, None)
    assert [r["name"] for r in got] == ["n0", "n1", "n2", "n3", "n4", "n5"]
    got = await router.list_instances(CTX, {"project_id": "p1"}, keys, ["desc", "desc"], 4, None)
    assert [r["name"] for r in got] == ["n5", "n4", "n3", "n2"]


async def test_marker_owned_by_another_cell(two_cells: tuple[CellRouter, FakeCell, FakeCell]) -> None:
    router, a, b = two_cells
    _fill(a, b)
    keys, dirs = ["name", "uuid"], ["asc", "asc"]
    marker = cast(InstanceRecord, b.conductor.records["00000000-0000-0000-0000-000000000001"])  # n1 lives in cell b
    got = await router.list_instances(CTX, {"project_id": "p1"}, keys, dirs, 3, marker)
    assert [r["name"] for r in got] == ["n2", "n3", "n4"]
    marker = cast(InstanceRecord, a.conductor.records["00000000-0000-0000-0000-000000000004"])  # n4 lives in cell a
    got = await router.list_instances(CTX, {"project_id": "p1"}, keys, dirs, 3, marker)
    assert [r["name"] for r in got] == ["n5"]


async def test_a_down_cell_is_left_out_within_the_bound(two_cells: tuple[CellRouter, FakeCell, FakeCell]) -> None:
    router, a, b = two_cells
    _fill(a, b)
    dead = CellClient(CellSpec("c", "c", "", f"tcp://127.0.0.1:{free_port()}"), INTERVAL)
    router.cells["c"] = dead
    started = time.monotonic()
    got = await router.list_instances(CTX, {"project_id": "p1"}, ["name"], ["asc"], 100, None, bound=0.5)
    assert time.monotonic() - started < 2.0
    assert len(got) == 6
    dead.close()


def test_sort_key_orders_nulls_like_the_cell_db() -> None:
    recs: list[dict[str, Any]] = [{"k": None, "u": "1"}, {"k": "b", "u": "2"}, {"k": "a", "u": "3"}]
    asc = sorted(recs, key=sort_key(["k", "u"], ["asc", "asc"]))
    assert [r["k"] for r in asc] == [None, "a", "b"]  # NULLs first ascending
    desc = sorted(recs, key=sort_key(["k", "u"], ["desc", "asc"]))
    assert [r["k"] for r in desc] == ["b", "a", None]  # and last descending


async def test_skewed_cells_page_exactly_like_the_sorted_union(two_cells: tuple[CellRouter, FakeCell, FakeCell],
                                                                monkeypatch: Any) -> None:
    """Each cell is first asked for its share of the page only: a cell holding most of the page
    is asked again (after its own last record) until the page cannot change."""
    from api import cell_router

    monkeypatch.setattr(cell_router, "MIN_BATCH", 2)
    router, a, b = two_cells
    for i in range(30):  # a holds n00..n29 but n03 and n17, which b holds
        cell = b if i in (3, 17) else a
        rec = _record(f"00000000-0000-0000-0000-0000000000{i:02d}", f"n{i:02d}", cell.conductor.cell)
        cell.conductor.records[rec["uuid"]] = rec
    union = sorted([*a.conductor.records.values(), *b.conductor.records.values()], key=lambda r: r["name"])
    for limit in (1, 5, 8, 20, 29, 40):
        got = await router.list_instances(CTX, {"project_id": "p1"}, ["name", "uuid"], ["asc", "asc"], limit, None)
        assert [r["name"] for r in got] == [r["name"] for r in union[:limit]], limit
    marker = cast(InstanceRecord, union[9])
    got = await router.list_instances(CTX, {"project_id": "p1"}, ["name", "uuid"], ["asc", "asc"], 12, marker)
    assert [r["name"] for r in got] == [r["name"] for r in union[10:22]]
