"""The API's Prometheus metrics (cells/metrics.py): requests counted by route template and status, never
by raw id, served on a listener of their own (cluster.yaml api.metrics), not on the API port."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from api.workers import worker_index
from cells import metrics
from tests.unit.api_support import client, cluster, demo_headers
from tools import clusterfile
from tools.clusterfile_fields import ClusterFileError
from tools.devcluster import cluster_yaml, free_port

__all__ = ["client", "cluster", "demo_headers"]  # fixtures used by name

SHOW = "/compute/v2.1/servers/{server_id}"


def requests_counted(method: str, route: str, status: str) -> float:
    return REGISTRY.get_sample_value("cellcloud_api_requests_total",
                                     {"method": method, "route": route, "status": status}) or 0.0


async def test_requests_are_counted_by_route_template_and_status(client: TestClient[Any, Any],
                                                                 demo_headers: dict[str, str]) -> None:
    """Three shows of three unknown servers move the template's 404 counter by exactly three; no id is a label."""
    before = requests_counted("GET", SHOW, "404")
    seen_before = REGISTRY.get_sample_value("cellcloud_api_request_seconds_count", {"method": "GET", "route": SHOW})
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for server_id in ids:
        resp = await client.get(f"/compute/v2.1/servers/{server_id}", headers=demo_headers)
        assert resp.status == 404
    assert requests_counted("GET", SHOW, "404") - before == 3
    assert (REGISTRY.get_sample_value("cellcloud_api_request_seconds_count", {"method": "GET", "route": SHOW})
            or 0) - (seen_before or 0) == 3
    unmatched = requests_counted("GET", metrics.UNMATCHED, "404")
    resp = await client.get(f"/no/such/{ids[0]}")
    assert resp.status == 404
    assert requests_counted("GET", metrics.UNMATCHED, "404") - unmatched == 1
    exposition = await scrape()
    assert not any(server_id in exposition for server_id in ids)


async def scrape() -> str:
    """GET /metrics from a listener of its own, as Prometheus does."""
    port = free_port()
    runner = await metrics.start_listener("127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            return await resp.text()
    finally:
        await runner.cleanup()


async def test_metrics_listener_serves_the_exposition_and_the_api_port_does_not(
        client: TestClient[Any, Any]) -> None:
    await client.get("/compute/v2.1/servers")  # 401 without a token: counted all the same
    body = await scrape()
    assert 'cellcloud_api_requests_total{method="GET",route="/compute/v2.1/servers",status="401"}' in body
    assert (await client.get("/metrics")).status == 404  # tenants reach the API port only


def _cluster_file(tmp_path: Path, **api: Any) -> Path:
    doc = cluster_yaml()
    doc["api"].update(api)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_cluster_file_api_metrics_listener_one_port_per_worker(tmp_path: Path) -> None:
    assert clusterfile.load(_cluster_file(tmp_path)).api.metrics_listen == ""
    port = free_port()
    loaded = clusterfile.load(_cluster_file(tmp_path, metrics=f"127.0.0.1:{port}", workers=3))
    assert loaded.api.metrics_listen == f"127.0.0.1:{port}"
    assert [worker_index(s.id) for s in loaded.services if s.kind == "api"] == [0, 1, 2]


@pytest.mark.parametrize("value", ["9180", "127.0.0.1:99999", "127.0.0.1:65535"])
def test_cluster_file_refuses_a_bad_metrics_listener(tmp_path: Path, value: str) -> None:
    with pytest.raises(ClusterFileError) as exc:
        clusterfile.load(_cluster_file(tmp_path, metrics=value, workers=2))
    assert "api.metrics" in str(exc.value)


def test_cluster_file_host_metrics_port_gives_each_cell_service_its_own(tmp_path: Path) -> None:
    doc = cluster_yaml()
    base = free_port()
    doc["hosts"]["ctl"]["metrics_port"] = base
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    on_ctl = [s for s in clusterfile.load(path).services if s.host == "ctl" and s.kind != "api"]
    assert {s.kind for s in on_ctl} == {"router", "conductor", "scheduler", "network"}
    assert sorted(s.options["metrics"] for s in on_ctl) == [f"127.0.0.1:{base + n}" for n in range(4)]
    doc["hosts"]["ctl"]["metrics_port"] = int(doc["sites"][0]["cells"][0]["services"]["router"].split(":")[1])
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ClusterFileError) as exc:  # a port another service holds
        clusterfile.load(path)
    assert "metrics_port" in str(exc.value) and "router" in str(exc.value)
