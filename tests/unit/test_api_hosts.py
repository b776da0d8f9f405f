"""os-hosts (Nova's deprecated hosts API, up to 2.42) over HTTP with a fake cell on real ZeroMQ: every
service's host with its zone, a compute host's resources (total, used now, the servers' flavors, per project),
status enable/disable through the compute service, and Nova's 404/400/403/501 for the rest."""
from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient

from cells.config import ServiceSpec
from cells.context import RequestContext
from cells.rpc.liveness import ALIVE
from tests.unit.api_fake_cell import FakeConductor, fake_cell
from tests.unit.api_support import SECRETS, make_cluster, start_client, token

HOSTS = "/compute/v2.1/os-hosts"
FLAVOR = {"id": "1", "vcpus": 1, "ram": 64, "disk": 1, "ephemeral": 0}


class HostsConductor(FakeConductor):
    """One compute node (node1) with capacity; its compute service's marks change as os-hosts asks."""

    def __init__(self) -> None:
        super().__init__("cell1")
        self.marks: dict[str, dict[str, Any]] = {}

    async def hypervisor_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [{"host": "node1", "state": ALIVE, "vcpus": 8, "memory_mb": 4096, "local_gb": 40, "vcpus_used": 3,
                 "memory_mb_used": 192, "local_gb_used": 3}]

    async def compute_service_list(self, ctx: RequestContext) -> dict[str, Any]:
        return self.marks

    async def compute_service_update(self, ctx: RequestContext, host: str, values: dict[str, Any]) -> dict[str, Any]:
        self.marks.setdefault(host, {}).update(values)
        return self.marks[host]


def _server(n: int, project: str) -> dict[str, Any]:
    return {"uuid": f"{n:08d}-0000-0000-0000-000000000000", "name": f"s{n}", "host": "node1", "project_id": project,
            "user_id": "u", "deleted": False, "vm_state": "active", "task_state": None, "flavor": FLAVOR}


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], HostsConductor, dict[str, str],
                                                     dict[str, str]]]:
    conductor = HostsConductor()
    for n, project in ((1, "pb"), (2, "pa"), (3, "pb")):
        conductor.records[_server(n, project)["uuid"]] = _server(n, project)
    async with fake_cell("cell1", conductor) as cell:
        specs = (ServiceSpec("cell1/conductor", "conductor", "ctl", "tcp://127.0.0.1:1", "cell1"),
                 ServiceSpec("cell1/compute/node1", "compute", "node1", "tcp://127.0.0.1:2", "cell1"))
        cluster = dataclasses.replace(make_cluster(tmp_path, router=cell.router), services=specs)
        client = await start_client(cluster)
        try:
            admin = {"X-Auth-Token": await token(client, "admin", SECRETS["admin_password"], "admin")}
            demo = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
            yield client, conductor, admin, demo
        finally:
            await client.close()


async def test_hosts_list_and_zone_filter(api: tuple[TestClient[Any, Any], HostsConductor, dict[str, str],
                                                     dict[str, str]]) -> None:
    client, _, admin, demo = api
    resp = await client.get(HOSTS, headers=admin)
    assert resp.status == 200, await resp.text()
    hosts = (await resp.json())["hosts"]
    assert {(h["host_name"], h["service"]) for h in hosts} == {("ctl", "conductor"), ("node1", "compute")}
    zones = {h["host_name"]: h["zone"] for h in hosts}
    assert zones["ctl"] == "internal" and zones["node1"] not in ("", "internal")
    resp = await client.get(f"{HOSTS}?zone={zones['node1']}", headers=admin)
    assert [h["host_name"] for h in (await resp.json())["hosts"]] == ["node1"]
    assert len((await (await client.get(f"{HOSTS}?zone=", headers=admin)).json())["hosts"]) == 2
    assert (await (await client.get(f"{HOSTS}?zone=xxx", headers=admin)).json())["hosts"] == []
    assert (await client.get(HOSTS, headers=demo)).status == 403
    at_243 = {**admin, "OpenStack-API-Version": "compute 2.43"}
    assert (await client.get(HOSTS, headers=at_243)).status == 404


async def test_host_show_totals_and_per_project_use(
        api: tuple[TestClient[Any, Any], HostsConductor, dict[str, str], dict[str, str]]) -> None:
    client, _, admin, demo = api
    resp = await client.get(f"{HOSTS}/node1", headers=admin)
    assert resp.status == 200, await resp.text()
    rows = [r["resource"] for r in (await resp.json())["host"]]
    assert [(r["project"], r["cpu"], r["memory_mb"], r["disk_gb"]) for r in rows] == [
        ("(total)", 8, 4096, 40), ("(used_now)", 3, 192, 3), ("(used_max)", 3, 192, 3), ("pa", 1, 64, 1),
        ("pb", 2, 128, 2)]
    assert {r["host"] for r in rows} == {"node1"}
    resp = await client.get(f"{HOSTS}/ctl", headers=admin)  # no compute service there
    assert resp.status == 404
    assert (await resp.json())["itemNotFound"]["message"] == "Compute host ctl could not be found."
    assert (await client.get(f"{HOSTS}/node1", headers=demo)).status == 403


async def test_host_update_and_power_actions(
        api: tuple[TestClient[Any, Any], HostsConductor, dict[str, str], dict[str, str]]) -> None:
    client, conductor, admin, demo = api
    resp = await client.put(f"{HOSTS}/node1", json={"status": "disable"}, headers=admin)
    assert (resp.status, await resp.json()) == (200, {"host": "node1", "status": "disabled"})
    assert conductor.marks["node1"]["disabled"] is True
    resp = await client.put(f"{HOSTS}/node1", json={"status": "Enable"}, headers=admin)
    assert (await resp.json())["status"] == "enabled" and conductor.marks["node1"]["disabled"] is False
    # maintenance mode is not served (Nova's libvirt driver neither): 501, and the status is left alone
    resp = await client.put(f"{HOSTS}/node1", json={"status": "disable", "maintenance_mode": "enable"},
                            headers=admin)
    assert resp.status == 501
    assert conductor.marks["node1"]["disabled"] is False
    for bad in ({}, {"status": "invalid"}, {"maintenance_mode": "invalid"}, {"status": "enable", "x": 1}):
        assert (await client.put(f"{HOSTS}/node1", json=bad, headers=admin)).status == 400, bad
    resp = await client.put(f"{HOSTS}/nowhere", json={"status": "enable", "maintenance_mode": "enable"},
                            headers=admin)
    assert resp.status == 404
    assert (await client.put(f"{HOSTS}/node1", json={"status": "enable"}, headers=demo)).status == 403
    for action in ("startup", "shutdown", "reboot"):
        assert (await client.get(f"{HOSTS}/node1/{action}", headers=admin)).status == 501
        assert (await client.get(f"{HOSTS}/nowhere/{action}", headers=admin)).status == 404
        assert (await client.get(f"{HOSTS}/node1/{action}", headers=demo)).status == 403
