"""One scatter-gather over cells (api/scatter.py) with one bound, the cluster's api.list_bound:
each cell's answer or Down, a silent cell cut off at the bound, a refused request failing at once."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
import pytest_asyncio

from api import quota
from api.cell_router import Cell, CellClient, CellRouter
from api.scatter import Down, answered, scatter
from cells import errors
from cells.config import ApiSpec, CellSpec, ClusterConfig
from cells.context import RequestContext
from tests.conftest import free_port
from tests.unit.api_fake_cell import INTERVAL, FakeCell, fake_cell

CTX = RequestContext(project="p1", user="u1", roles=("member",))
BOUND = 0.5


@dataclass(frozen=True)
class Named:
    path: str


@pytest_asyncio.fixture
async def live_and_dead() -> AsyncIterator[tuple[CellRouter, FakeCell]]:
    """A router over one live fake cell and one whose router address nobody listens on."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(fake_cell("a"))
        dead = CellClient(CellSpec("z", "z", "", f"tcp://127.0.0.1:{free_port()}"), INTERVAL)
        router = CellRouter([CellClient(CellSpec("a", "a", "", a.router), INTERVAL), dead], bound=BOUND)
        router.start()
        try:
            yield router, a
        finally:
            await router.stop()


async def test_a_silent_cell_is_down_after_the_bound_and_the_others_answer(
        live_and_dead: tuple[CellRouter, FakeCell]) -> None:
    router, a = live_and_dead
    for uuid in ("u-1", "u-2"):
        a.conductor.records[uuid] = {"uuid": uuid, "project_id": "p1", "deleted": False,
                                     "flavor": {"vcpus": 1, "ram": 512}}

    async def usage(cell: Cell, ctx: RequestContext) -> dict[str, int]:
        return dict(await cell.conductor.project_usage(ctx, "p1"))
    started = time.monotonic()
    results = await scatter(list(router.cells.values()), CTX, router.bound, usage)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND + 0.5, elapsed
    by_path = {c.path: r for c, r in results}
    assert isinstance(by_path["z"], Down)
    assert by_path["a"] == {"instances": 2, "cores": 2, "ram": 1024}
    assert [c.path for c, _ in answered(results, "a test")] == ["a"]
    with pytest.raises(errors.RpcError, match="cell z did not answer a test"):
        answered(results, "a test", strict=True)


async def test_usage_refuses_when_a_cell_is_silent(live_and_dead: tuple[CellRouter, FakeCell]) -> None:
    """A project's usage with one cell silent is unknowable: RpcError within the router's bound."""
    router, _ = live_and_dead
    started = time.monotonic()
    with pytest.raises(errors.RpcError, match="cell z did not answer a usage count"):
        await quota.compute_usage(router, CTX, "p1")
    assert time.monotonic() - started < BOUND + 0.5


async def test_each_call_gets_a_context_bounded_by_the_bound_and_is_cut_off_there() -> None:
    seen: dict[str, float | None] = {}

    async def fn(cell: Named, ctx: RequestContext) -> str:
        seen[cell.path] = ctx.remaining()
        if cell.path == "slow":
            await asyncio.sleep(10)
        return cell.path
    results = await scatter([Named("fast"), Named("slow")], CTX, 0.2, fn)
    assert results[0] == (Named("fast"), "fast")
    slow = results[1][1]
    assert isinstance(slow, Down) and isinstance(slow.error, TimeoutError)
    assert slow.reason == "no answer within 0.2 s"
    assert all(r is not None and 0 < r <= 0.2 for r in seen.values()), seen


@pytest.mark.parametrize("failure", [errors.Invalid("bad filter"), KeyError("bug")])
async def test_a_refused_request_or_a_bug_fails_the_whole_gather(failure: Exception) -> None:
    async def fn(cell: Named, ctx: RequestContext) -> str:
        if cell.path == "b":
            raise failure
        return cell.path
    with pytest.raises(type(failure)):
        await scatter([Named("a"), Named("b")], CTX, 1.0, fn)


async def test_a_cell_error_is_down_not_a_failure() -> None:
    async def fn(cell: Named, ctx: RequestContext) -> str:
        raise errors.NoLiveMember(topic="conductor")
    [(_, result)] = await scatter([Named("a")], CTX, 1.0, fn)
    assert isinstance(result, Down) and isinstance(result.error, errors.NoLiveMember)


def test_the_router_takes_its_bound_from_the_cluster() -> None:
    cluster = ClusterConfig(name="t", state_dir="/nonexistent", api=ApiSpec("127.0.0.1:1", "http://x", "", ""),
                            cells=(CellSpec("a", "a", "", "tcp://127.0.0.1:1"),), services=(), hosts=(),
                            list_bound=2.5)
    router = CellRouter.from_cluster(cluster)
    try:
        assert router.bound == 2.5
    finally:
        for cell in router.tops.values():
            cell.close()


@dataclass(frozen=True)
class VolumeCell:
    """A cell whose conductor answers volume_get: with `held` (or NotFound), or not before `delay`."""
    path: str
    held: dict[str, str] | None = None
    delay: float = 0.0

    async def call(self, topic: str, method: object, args: dict[str, str], ctx: RequestContext,
                   timeout: float | None = None) -> dict[str, str]:
        await asyncio.sleep(self.delay)
        if self.held is None or self.held["id"] != args["volume_id"]:
            raise errors.VolumeNotFound(volume_id=args["volume_id"])
        return self.held


async def test_a_look_up_with_a_silent_cell_is_a_503_naming_it_never_a_404() -> None:
    """A volume show asks every cell: one that does not answer within the bound may hold the volume, so
    the look-up is a 503 (RpcError) that names it; a 404 only when every cell said it has none."""
    from types import SimpleNamespace

    from api.volume import cells as volume_cells

    def router(*cells: VolumeCell) -> CellRouter:
        return SimpleNamespace(cells={c.path: c for c in cells}, bound=0.2)  # type: ignore[return-value]
    record = {"id": "vol-1", "status": "available"}
    slow = VolumeCell("slow", held=record, delay=1.0)
    with pytest.raises(errors.RpcError, match=r"cell slow \(no answer within 0.2 s\) did not answer") as err:
        await volume_cells.find(router(VolumeCell("a"), slow), CTX, "vol-1")
    assert err.value.http_status == 503
    with pytest.raises(errors.VolumeNotFound):
        await volume_cells.find(router(VolumeCell("a"), VolumeCell("b")), CTX, "vol-1")
    _, found = await volume_cells.find(router(VolumeCell("a", held=record), slow), CTX, "vol-1")
    assert found == record  # the cell that has it answered: the silent one changes nothing
