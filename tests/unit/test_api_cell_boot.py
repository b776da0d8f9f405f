"""Cell choice for a boot through the API: capacity ranking (pure), a cell that refuses
is skipped for the next one, availability zones name sites and cells."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient

from api.cell_choice import Pending, rank
from api.cell_router import CellClient, CellRouter
from api.compute.cell_boot import BUILD_BOUND
from cells import errors
from cells.config import CellSpec
from cells.rpc.directory import MISSED_BEATS
from tests.unit.api_fake_cell import INTERVAL, FakeCell, fake_cell
from tests.unit.api_support import SECRETS, make_cluster, start_client, token

A = CellSpec("a", "a", "", "", site="east")
B = CellSpec("b", "b", "", "", site="west")
C = CellSpec("c", "west!c", "", "", parent="west", site="west")


def _summary(ram: int, hosts: int = 1) -> dict[str, Any]:
    return {"hosts_alive": hosts, "memory_mb_free": ram, "vcpus_free": 16, "local_gb_free": 100,
            "max_memory_mb_free": ram, "max_vcpus_free": 16, "max_local_gb_free": 100}


def test_rank_by_free_ram_zone_hints_and_what_was_just_placed() -> None:
    flavor = {"ram": 512, "vcpus": 1, "disk": 1}
    summaries = {"a": _summary(4096), "b": _summary(2048), "west!c": _summary(1024)}
    assert rank([A, B, C], summaries, flavor, None, {}) == ["a", "b", "west!c"]
    assert rank([A, B, C], summaries, flavor, "west", {}) == ["b", "west!c"]  # a site is a zone
    assert rank([A, B, C], summaries, flavor, "c", {}) == ["west!c"]  # so is a cell
    assert rank([A, B, C], summaries, flavor, "nova", {"target_cell": "west"}) == ["west!c"]
    assert rank([A, B, C], summaries, flavor, None, {"different_cell": ["a"]}) == ["b", "west!c"]
    # full (or hostless) cells go last, not-yet-reported ones before them
    summaries["a"] = _summary(256)
    assert rank([A, B, C], {k: v for k, v in summaries.items() if k != "b"}, flavor, None, {}) == ["west!c", "b", "a"]
    # a burst spreads: what this API sent since the last report counts against a cell
    pending = Pending()
    summaries = {"a": _summary(4096), "b": _summary(3072)}
    pending.add("a", 512, 1, count=3, now=100.0)
    assert rank([A, B], summaries, flavor, None, {}, pending, now=100.5) == ["b", "a"]
    assert rank([A, B], summaries, flavor, None, {}, pending, now=200.0) == ["a", "b"]  # expired


@pytest_asyncio.fixture
async def two_cells(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], FakeCell, FakeCell, str]]:
    async with fake_cell("a") as a, fake_cell("b") as b:
        cluster = make_cluster(tmp_path)
        cluster = replace(cluster, cells=(replace(A, router=a.router), replace(B, router=b.router)))
        router = CellRouter([CellClient(c, INTERVAL) for c in cluster.cells])
        client = await start_client(cluster, router)
        try:
            demo = await token(client, "demo", SECRETS["demo_password"], "demo")
            yield client, a, b, demo
        finally:
            await client.close()


async def _boot(client: TestClient[Any, Any], tok: str, **extra: Any) -> Any:
    images = (await (await client.get("/image/v2/images", headers={"X-Auth-Token": tok})).json())["images"]
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": images[0]["id"], **extra}}
    return await client.post("/compute/v2.1/servers", json=body, headers={"X-Auth-Token": tok})


async def test_a_cell_that_refuses_is_skipped_for_the_next(two_cells: Any) -> None:
    client, a, b, tok = two_cells
    a.conductor.fail_next_build = errors.NoValidHost(reason="cell a is full")
    resp = await _boot(client, tok)
    assert resp.status == 202, await resp.text()
    sid = (await resp.json())["server"]["id"]
    assert sid in b.conductor.records and not a.conductor.records
    assert b.conductor.builds[-1]["admission"] is False  # the last candidate builds whatever happens
    shown = await client.get(f"/compute/v2.1/servers/{sid}", headers={"X-Auth-Token": tok})
    assert shown.status == 200  # the mapping points at the cell that took it


async def test_zone_picks_the_site_and_unknown_zone_is_400(two_cells: Any) -> None:
    client, a, b, tok = two_cells
    resp = await _boot(client, tok, availability_zone="west")
    assert resp.status == 202
    assert len(b.conductor.records) == 1 and not a.conductor.records
    resp = await _boot(client, tok, availability_zone="south")
    assert resp.status == 400
    assert "availability zone is not available: south" in (await resp.json())["badRequest"]["message"]


async def test_scheduler_hints_reach_the_cell_and_bad_host_hints_are_400(two_cells: Any) -> None:
    client, a, b, tok = two_cells
    images = (await (await client.get("/image/v2/images", headers={"X-Auth-Token": tok})).json())["images"]
    server = {"name": "vm", "flavorRef": "1", "imageRef": images[0]["id"]}
    near = "0d5c2c6e-6a38-4d0c-9f0c-3c2b1b0d7a11"
    for bad in ({"same_host": "not-a-uuid"}, {"different_host": [near, 5]}, {"different_host": [near, near]}):
        resp = await client.post("/compute/v2.1/servers", json={"server": server, "os:scheduler_hints": bad},
                                 headers={"X-Auth-Token": tok})
        assert resp.status == 400, (bad, await resp.text())
    assert not a.conductor.records and not b.conductor.records  # nothing made by a rejected request
    resp = await client.post("/compute/v2.1/servers", json={"server": server, "os:scheduler_hints": {
        "different_host": [near]}}, headers={"X-Auth-Token": tok})
    assert resp.status == 202, await resp.text()
    (built,) = a.conductor.builds + b.conductor.builds
    assert built["scheduler_hints"] == {"different_host": [near]}


async def test_boot_while_every_cell_is_unreachable_is_503_and_makes_nothing(two_cells: Any) -> None:
    """A boot sent while each cell's conductor is down (restarting) is refused with a 503 the
    client may retry, not Nova's 500 "No valid host"; no server is left behind."""
    client, a, b, tok = two_cells
    a.conductor.fail_next_build = errors.NoLiveMember(topic="conductor")
    b.conductor.fail_next_build = errors.RpcError(reason="send queue to the conductor is full")
    resp = await _boot(client, tok)
    assert resp.status == 503, await resp.text()
    assert "No cell can take new servers right now" in (await resp.json())["serviceUnavailable"]["message"]
    listed = await client.get("/compute/v2.1/servers", headers={"X-Auth-Token": tok})
    assert (await listed.json())["servers"] == []
    assert not a.conductor.records and not b.conductor.records


async def test_boot_while_every_cell_router_is_silent_is_503(two_cells: Any) -> None:
    """Cells whose routers went silent are no candidates at all: the boot is a 503 naming no
    refusal (was a 500 "No valid host ... No cell is reachable"), and nothing is made."""
    client, a, b, tok = two_cells
    await a.stop_router()
    await b.stop_router()
    await asyncio.sleep((MISSED_BEATS + 2) * INTERVAL)  # the API's views go stale after MISSED_BEATS
    resp = await _boot(client, tok)
    assert resp.status == 503, await resp.text()
    assert "No cell can take new servers right now" in (await resp.json())["serviceUnavailable"]["message"]
    assert not a.conductor.records and not b.conductor.records


async def test_boot_while_the_only_cells_are_down_waits_for_one_to_come_back(two_cells: Any) -> None:
    """No cell is up when the boot arrives (their routers restarting): the API waits for one to
    come back (up to placement.BUILD_BOUND) and the boot is accepted there, not refused."""
    client, a, b, tok = two_cells
    await a.stop_router()
    await b.stop_router()
    await asyncio.sleep((MISSED_BEATS + 2) * INTERVAL)
    boot = asyncio.ensure_future(_boot(client, tok))
    await asyncio.sleep(4 * INTERVAL)
    assert not boot.done()  # waiting, not refused
    await b.restart_router()
    resp = await asyncio.wait_for(boot, BUILD_BOUND + 5)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["server"]["id"] in b.conductor.records and not a.conductor.records


async def test_rows_a_silent_cell_made_are_dropped_once_it_answers_again(two_cells: Any) -> None:
    """Cell a makes the rows and its reply is lost (its conductor killed); the boot goes to b.
    a's conductor is unreachable for the first two cleanup asks: the API asks again until it
    answers, and a's copy is deleted instead of becoming a server nobody maps."""
    client, a, b, tok = two_cells
    a.conductor.lose_next_build_reply = errors.RpcError(reason="the conductor went away")
    a.conductor.fail_deletes = 2
    resp = await _boot(client, tok)
    assert resp.status == 202, await resp.text()
    sid = (await resp.json())["server"]["id"]
    assert sid in b.conductor.records
    (made,) = a.conductor.records.values()
    for _ in range(100):
        if made["task_state"] == "deleting":
            break
        await asyncio.sleep(0.1)
    assert made["task_state"] == "deleting" and a.conductor.fail_deletes == 0


async def test_a_build_whose_conductor_died_is_sent_again_to_the_last_cell(two_cells: Any) -> None:
    """The only cell the boot can go to loses the conductor that had its build (MemberGone: it
    restarted): the API sends the build again, with the same server id, instead of answering
    503; the server is made once, mapped and shown."""
    client, a, b, tok = two_cells
    b.conductor.fail_next_build = errors.MemberGone(member="b/conductor", method="build_instances")
    resp = await _boot(client, tok, availability_zone="west")
    assert resp.status == 202, await resp.text()
    sid = (await resp.json())["server"]["id"]
    assert list(b.conductor.records) == [sid] and len(b.conductor.builds) == 1 and not a.conductor.records
    shown = await client.get(f"/compute/v2.1/servers/{sid}", headers={"X-Auth-Token": tok})
    assert shown.status == 200, await shown.text()
