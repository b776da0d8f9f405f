"""os-hypervisors beyond the list (issue 16), over HTTP with a fake cell on real ZeroMQ: a hypervisor's
uptime (up to 2.87, from when its host said it booted; 501 for a host that never said; in the hypervisor
itself from 2.88), its servers (/{pattern}/servers up to 2.52; ?with_servers from 2.53, an empty list too
from 2.75) and ?hypervisor_hostname_pattern; admins only."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient

from api.compute.hypervisors import uptime
from cells.context import RequestContext
from cells.rpc.liveness import ALIVE
from tests.unit.api_fake_cell import FakeConductor, fake_cell
from tests.unit.api_support import SECRETS, make_cluster, start_client, token

HYPERVISORS = "/compute/v2.1/os-hypervisors"
BOOTED_AT = 1_700_000_000


class HostsConductor(FakeConductor):
    """Two compute nodes: node1 said when it booted, node2 (an older compute) did not."""

    async def hypervisor_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [{"host": "node1", "state": ALIVE, "vcpus": 2, "memory_mb": 1024, "local_gb": 10,
                 "booted_at": BOOTED_AT},
                {"host": "node2", "state": ALIVE, "vcpus": 2, "memory_mb": 1024, "local_gb": 10}]


def _server(uuid: str, name: str, host: str, deleted: bool = False) -> dict[str, Any]:
    return {"uuid": uuid, "name": name, "host": host, "project_id": "p", "user_id": "u", "deleted": deleted,
            "vm_state": "active", "task_state": None, "created_at": "2026-01-01T00:00:00Z"}


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str], dict[str, str]]]:
    conductor = HostsConductor("cell1")
    for rec in (_server("a" * 8 + "-0000-0000-0000-000000000001", "web", "node1"),
                _server("b" * 8 + "-0000-0000-0000-000000000002", "db", "node1"),
                _server("c" * 8 + "-0000-0000-0000-000000000003", "gone", "node1", deleted=True)):
        conductor.records[rec["uuid"]] = rec
    async with fake_cell("cell1", conductor) as cell:
        client = await start_client(make_cluster(tmp_path, router=cell.router))
        try:
            admin = {"X-Auth-Token": await token(client, "admin", SECRETS["admin_password"], "admin")}
            demo = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
            yield client, admin, demo
        finally:
            await client.close()


def _at(headers: dict[str, str], version: str) -> dict[str, str]:
    return {**headers, "OpenStack-API-Version": f"compute {version}"}


def test_uptime_reads_like_the_uptime_command() -> None:
    now = BOOTED_AT + 3 * 86400 + 4 * 3600 + 5 * 60 + 7
    assert uptime({"booted_at": BOOTED_AT}, now) == \
        f" {time.strftime('%H:%M:%S', time.gmtime(now))} up 3 days,  4:05"
    assert str(uptime({"booted_at": BOOTED_AT}, BOOTED_AT + 86400)).endswith(" up 1 day,  0:00")
    assert uptime({}, now) is None


async def test_hypervisor_uptime_up_to_2_87_then_in_the_hypervisor(
        api: tuple[TestClient[Any, Any], dict[str, str], dict[str, str]]) -> None:
    client, admin, demo = api
    listed = {h["hypervisor_hostname"]: h["id"] for h in (await (await client.get(HYPERVISORS, headers=admin)).json())
              ["hypervisors"]}
    resp = await client.get(f"{HYPERVISORS}/{listed['node1']}/uptime", headers=admin)
    assert resp.status == 200, await resp.text()
    shown = (await resp.json())["hypervisor"]
    assert set(shown) == {"id", "hypervisor_hostname", "state", "status", "uptime"}
    assert (shown["id"], shown["hypervisor_hostname"]) == (listed["node1"], "node1")
    since_boot = {str(uptime({"booted_at": BOOTED_AT}, t)).split(" up ")[1] for t in (time.time() - 60, time.time())}
    assert shown["uptime"].split(" up ")[1] in since_boot  # the time since node1 said it booted
    assert (await client.get(f"{HYPERVISORS}/{listed['node2']}/uptime", headers=admin)).status == 501
    assert (await client.get(f"{HYPERVISORS}/{listed['node1']}/uptime", headers=demo)).status == 403
    assert (await client.get(f"{HYPERVISORS}/12345/uptime", headers=admin)).status == 404

    at_288 = _at(admin, "2.88")
    ids = {h["hypervisor_hostname"]: h["id"] for h in (await (await client.get(HYPERVISORS, headers=at_288)).json())
           ["hypervisors"]}
    assert (await client.get(f"{HYPERVISORS}/{ids['node1']}/uptime", headers=at_288)).status == 404
    one = (await (await client.get(f"{HYPERVISORS}/{ids['node1']}", headers=at_288)).json())["hypervisor"]
    assert " up " in one["uptime"]
    other = (await (await client.get(f"{HYPERVISORS}/{ids['node2']}", headers=at_288)).json())["hypervisor"]
    assert other["uptime"] is None


async def test_hypervisor_servers_up_to_2_52(api: tuple[TestClient[Any, Any], dict[str, str], dict[str, str]]) -> None:
    client, admin, demo = api
    resp = await client.get(f"{HYPERVISORS}/node/servers", headers=admin)
    assert resp.status == 200, await resp.text()
    found = {h["hypervisor_hostname"]: h for h in (await resp.json())["hypervisors"]}
    assert sorted(found) == ["node1", "node2"]
    assert found["node1"]["servers"] == [{"name": "web", "uuid": "a" * 8 + "-0000-0000-0000-000000000001"},
                                         {"name": "db", "uuid": "b" * 8 + "-0000-0000-0000-000000000002"}]
    assert "servers" not in found["node2"]  # Nova's pre-2.53 view: no key for a host without servers
    assert set(found["node1"]) == {"id", "hypervisor_hostname", "state", "status", "servers"}
    resp = await client.get(f"{HYPERVISORS}/nowhere/servers", headers=admin)
    assert resp.status == 404
    assert (await client.get(f"{HYPERVISORS}/node/servers", headers=demo)).status == 403
    assert (await client.get(f"{HYPERVISORS}/node/servers", headers=_at(admin, "2.53"))).status == 404


async def test_with_servers_and_hostname_pattern_from_2_53(
        api: tuple[TestClient[Any, Any], dict[str, str], dict[str, str]]) -> None:
    client, admin, _ = api
    for version, empty in (("2.53", None), ("2.75", [])):
        for path in (HYPERVISORS, f"{HYPERVISORS}/detail"):
            resp = await client.get(f"{path}?with_servers=true", headers=_at(admin, version))
            assert resp.status == 200, await resp.text()
            found = {h["hypervisor_hostname"]: h for h in (await resp.json())["hypervisors"]}
            assert [s["name"] for s in found["node1"]["servers"]] == ["web", "db"]
            assert found["node2"].get("servers") == empty
        one = found["node1"]["id"]
        shown = (await (await client.get(f"{HYPERVISORS}/{one}?with_servers=1", headers=_at(admin, version))).json())
        assert [s["name"] for s in shown["hypervisor"]["servers"]] == ["web", "db"]
    plain = (await (await client.get(HYPERVISORS, headers=_at(admin, "2.53"))).json())["hypervisors"]
    assert all("servers" not in h for h in plain)
    assert (await client.get(f"{HYPERVISORS}?with_servers=maybe", headers=_at(admin, "2.53"))).status == 400
    resp = await client.get(f"{HYPERVISORS}?hypervisor_hostname_pattern=de2", headers=_at(admin, "2.53"))
    assert [h["hypervisor_hostname"] for h in (await resp.json())["hypervisors"]] == ["node2"]
    resp = await client.get(f"{HYPERVISORS}?hypervisor_hostname_pattern=zz", headers=_at(admin, "2.53"))
    assert resp.status == 404
