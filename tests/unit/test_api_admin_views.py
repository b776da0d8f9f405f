"""Admin views Tempest's response schemas check: an aggregate's create answer (no hosts, no metadata, as Nova's
create), a hypervisor's cpu_info (a JSON string before 2.28, an object from 2.28), and the hypervisor search
up to 2.52."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from api.compute.hypervisors import _detail
from cells.context import RequestContext
from cells.rpc.liveness import ALIVE
from tests.unit.api_fake_cell import FakeConductor, fake_cell
from tests.unit.api_support import SECRETS, admin_headers, client, cluster, make_cluster, start_client, token

__all__ = ["admin_headers", "client", "cluster"]

AGGREGATE_CREATED_KEYS = {"id", "name", "availability_zone", "created_at", "updated_at", "deleted", "deleted_at"}


async def test_an_aggregates_create_answer_has_no_hosts_or_metadata_and_its_show_has_them(
        client: TestClient[Any, Any], admin_headers: dict[str, str]) -> None:
    for version, extra in (("2.1", set()), ("2.41", {"uuid"})):
        headers = {**admin_headers, "OpenStack-API-Version": f"compute {version}"}
        resp = await client.post("/compute/v2.1/os-aggregates", headers=headers,
                                 json={"aggregate": {"name": f"agg-{version}", "availability_zone": "fast"}})
        assert resp.status == 200, await resp.text()
        made = (await resp.json())["aggregate"]
        assert set(made) == AGGREGATE_CREATED_KEYS | extra and made["availability_zone"] == "fast"
        resp = await client.get(f"/compute/v2.1/os-aggregates/{made['id']}", headers=headers)
        shown = (await resp.json())["aggregate"]
        assert (shown["hosts"], shown["metadata"]) == ([], {"availability_zone": "fast"})


def test_a_hypervisors_cpu_info_is_a_string_before_2_28_and_an_object_from_it() -> None:
    node = {"host": "node1", "state": "alive", "vcpus": 4, "memory_mb": 2048, "local_gb": 20}
    assert _detail("cell1", node, (2, 27))["cpu_info"] == "{}"
    assert _detail("cell1", node, (2, 28))["cpu_info"] == {}
    assert _detail("cell1", node, (2, 87))["cpu_info"] == {}
    assert "cpu_info" not in _detail("cell1", node, (2, 88))  # 2.88 drops the usage and cpu_info


class HypervisorConductor(FakeConductor):
    """The fake cell's conductor, reporting two compute nodes."""

    async def hypervisor_list(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return [{"host": host, "state": ALIVE, "vcpus": 2, "memory_mb": 1024, "local_gb": 10}
                for host in ("node1", "node2")]


async def test_hypervisor_search_finds_by_part_of_the_host_name_up_to_2_52(tmp_path: Path) -> None:
    async with fake_cell("cell1", HypervisorConductor("cell1")) as cell:
        api = await start_client(make_cluster(tmp_path, router=cell.router))
        try:
            admin = {"X-Auth-Token": await token(api, "admin", SECRETS["admin_password"], "admin")}
            demo = {"X-Auth-Token": await token(api, "demo", SECRETS["demo_password"], "demo")}
            resp = await api.get("/compute/v2.1/os-hypervisors/node/search", headers=admin)
            assert resp.status == 200, await resp.text()
            assert [h["hypervisor_hostname"] for h in (await resp.json())["hypervisors"]] == ["node1", "node2"]
            resp = await api.get("/compute/v2.1/os-hypervisors/e2/search", headers=admin)
            assert [h["hypervisor_hostname"] for h in (await resp.json())["hypervisors"]] == ["node2"]
            resp = await api.get("/compute/v2.1/os-hypervisors/nowhere/search", headers=admin)
            assert resp.status == 404 and "nowhere" in (await resp.json())["itemNotFound"]["message"]
            assert (await api.get("/compute/v2.1/os-hypervisors/node/search", headers=demo)).status == 403
            at_253 = {**admin, "OpenStack-API-Version": "compute 2.53"}
            assert (await api.get("/compute/v2.1/os-hypervisors/node/search", headers=at_253)).status == 404
        finally:
            await api.close()
