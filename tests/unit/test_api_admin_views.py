"""Admin views Tempest's response schemas check: an aggregate's create answer (no hosts, no metadata, as Nova's
create) and a hypervisor's cpu_info (a JSON string before 2.28, an object from 2.28)."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from api.compute.hypervisors import _detail
from tests.unit.api_support import admin_headers, client, cluster

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
