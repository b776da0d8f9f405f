"""Nested cells over real ZeroMQ: routers relay hop by hop (top -> top!mid -> top!mid!leaf),
capacity summaries travel upward on heartbeats, the API's CellRouter reaches and lists a
nested cell, and a silent cell's servers come back from the mappings as UNKNOWN."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio

from api.cell_router import CellRouter, DownRecord
from cells import errors
from cells.config import ApiSpec, CellSpec, ClusterConfig, ServiceSpec
from cells.context import RequestContext
from cells.objects.instance import utcnow_iso
from cells.router_service import SURFACE as ROUTER_SURFACE
from cells.router_service import CellRouterService, next_hop
from cells.rpc import wire
from cells.rpcapi.conductor import SURFACE as CONDUCTOR_SURFACE
from cells.service_process import Service
from tests.conftest import free_port
from tests.unit.api_fake_cell import FakeConductor

INTERVAL = 0.1
CTX = RequestContext(project="p1", user="u1", roles=("member",))
CELLS = ("top", "top!mid", "top!mid!leaf", "other")


def _cluster() -> ClusterConfig:
    cells, services = [], []
    for path in CELLS:
        parent = path.rpartition("!")[0] or None
        router = f"tcp://127.0.0.1:{free_port()}"
        cells.append(CellSpec(name=path.split("!")[-1], path=path, db="", router=router, parent=parent,
                              site="east" if path.startswith("top") else "west"))
        services.append(ServiceSpec(id=f"{path}/router", kind="router", host="h", bind=router, cell=path))
        if path in ("top!mid!leaf", "other"):  # top and mid only relay
            services.append(ServiceSpec(id=f"{path}/conductor", kind="conductor", host="h",
                                        bind=f"tcp://127.0.0.1:{free_port()}", cell=path))
    return ClusterConfig(name="t", state_dir="/nonexistent", api=ApiSpec("", "", "", ""), cells=tuple(cells),
                         services=tuple(services), hosts=(), heartbeat_interval=INTERVAL, curve=False)


def _record(uuid: str, name: str, cell: str) -> dict[str, Any]:
    now = utcnow_iso()
    return {"uuid": uuid, "name": name, "project_id": "p1", "user_id": "u1", "vm_state": "active",
            "task_state": None, "deleted": False, "created_at": now, "updated_at": now, "cell": cell}


class Tree:
    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        self.conductors: dict[str, FakeConductor] = {}
        self.stops: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, spec: ServiceSpec) -> Service:
        if spec.kind == "router":
            svc = Service(self.cluster, spec, CellRouterService(self.cluster, spec), ROUTER_SURFACE, ("router",))
        else:
            conductor = self.conductors.setdefault(spec.cell or "", FakeConductor(cell=spec.cell or ""))
            svc = Service(self.cluster, spec, conductor, CONDUCTOR_SURFACE, ("conductor",))
            svc.view.set_meta(capacity={"hosts": 2, "hosts_alive": 2, "memory_mb_free": 4096, "vcpus_free": 8,
                                        "local_gb_free": 100, "max_memory_mb_free": 2048, "max_vcpus_free": 4,
                                        "max_local_gb_free": 50})
        self.stops[spec.id] = asyncio.Event()
        self.tasks[spec.id] = asyncio.ensure_future(svc.run(self.stops[spec.id]))
        return svc

    async def stop(self, service_id: str) -> None:
        self.stops[service_id].set()
        await self.tasks.pop(service_id)


@pytest_asyncio.fixture
async def tree() -> AsyncIterator[tuple[Tree, CellRouter]]:
    cluster = _cluster()
    t = Tree(cluster)
    for spec in cluster.services:
        t.start(spec)
    router = CellRouter.from_cluster(cluster)
    router.start()
    try:
        async with AsyncExitStack():
            yield t, router
    finally:
        await router.stop()
        for sid in list(t.tasks):
            await t.stop(sid)


async def _wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_next_hop_walks_the_routing_path() -> None:
    assert next_hop("top", "top!mid!leaf") == "mid"
    assert next_hop("top!mid", "top!mid!leaf") == "leaf"
    assert next_hop("top!mid!leaf", "top!mid!leaf") is None
    with pytest.raises(errors.RpcError):
        next_hop("top!mid", "other!x")


async def test_nested_cell_is_reached_hop_by_hop_and_reports_upward(tree: tuple[Tree, CellRouter]) -> None:
    t, router = tree
    assert set(router.cells) == {"top!mid!leaf", "other"}  # the cells holding instances
    # the leaf's summary climbs leaf -> mid -> top, where the API reads it
    await _wait(lambda: set(router.summaries()) == {"top!mid!leaf", "other"})
    assert router.summaries()["top!mid!leaf"]["site"] == "east"
    t.conductors["top!mid!leaf"].records["u1"] = _record("00000000-0000-0000-0000-000000000001", "deep", "leaf")
    got = await router.conductor("top!mid!leaf").instance_get(CTX, "u1")
    assert got["name"] == "deep"
    with pytest.raises(errors.InstanceNotFound):  # the cell's own error comes back through every hop
        await router.conductor("top!mid!leaf").instance_get(CTX, "nope")
    # zones: a site, a cell name or any segment of a path
    assert [c.path for c in router.candidates({"ram": 512, "vcpus": 1}, "east")] == ["top!mid!leaf"]
    assert [c.path for c in router.candidates({"ram": 512, "vcpus": 1}, "mid")] == ["top!mid!leaf"]
    assert router.zone_exists("west") and not router.zone_exists("south")


async def test_a_silent_nested_cell_lists_from_mappings_within_the_bound(tree: tuple[Tree, CellRouter]) -> None:
    t, router = tree
    await _wait(lambda: set(router.summaries()) == {"top!mid!leaf", "other"})
    t.conductors["other"].records["a"] = _record("00000000-0000-0000-0000-00000000000a", "alive", "other")
    await t.stop("top!mid/router")  # the middle hop dies: leaf is cut off from the API
    await _wait(lambda: "top!mid!leaf" not in router.summaries())

    async def known(paths: list[str]) -> list[DownRecord]:
        assert paths == ["top!mid!leaf"]
        return [{"uuid": "00000000-0000-0000-0000-00000000000b", "name": "lost", "project_id": "p1",
                 "user_id": None, "created_at": utcnow_iso(), "cell": "top!mid!leaf", "deleted": False, "down": True}]

    started = time.monotonic()
    got = await router.list_instances(CTX, {"project_id": "p1"}, ["name", "uuid"], ["asc", "asc"], 10, None,
                                      bound=0.5, down_records=known)
    assert time.monotonic() - started < 0.6
    assert [(r["name"], bool(r.get("down"))) for r in got] == [("alive", False), ("lost", True)]
    # boots skip it: only the other cell is a candidate
    assert [c.path for c in router.candidates({"ram": 512, "vcpus": 1}, None)] == ["other"]


async def test_a_router_relays_no_directory_method(tree: tuple[Tree, CellRouter]) -> None:
    """A relay of leave (or heartbeat) would carry the router's own key to a directory: refused,
    and the router stays routed in its parent's directory."""
    _, router = tree
    top = router.tops["top"]
    await _wait(lambda: bool(top.view.members("cell.mid")))
    leave = wire.Method("leave", callers=frozenset({"api"}))
    with pytest.raises(errors.RpcForbidden):
        await top.relay("top!mid", "router", leave, {"member_id": "top!mid/router"}, CTX)
    await asyncio.sleep(0.3)
    assert top.view.members("cell.mid")
