"""One boot's request id, from the API's X-OpenStack-Request-ID header through the logs of every
service it touched: `cellctl logs --request` prints the trail from real processes' log files. The
real API process's /metrics listener counts the boot, and the compute's own listener (hosts.node1.metrics_port)
its RPC calls reporting the build."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tools import logtrail
from tools.devcluster import RunningCluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("reqtrail"), name="reqtrail", metrics=True) as c:
        yield c


def rpc_calls_ok(cluster: RunningCluster) -> dict[str, float]:
    """The compute's cellcloud_rpc_calls_total{outcome="ok"} by method, from its own metrics listener."""
    compute = next(s for s in cluster.config["services"] if s["id"] == "cell1/compute/node1")
    text = requests.get(f"http://{compute['options']['metrics']}/metrics", timeout=10).text
    return {s.labels["method"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "cellcloud_rpc_calls_total" and s.labels["outcome"] == "ok"}


def posted_servers(cluster: RunningCluster) -> float:
    """cellcloud_api_requests_total of accepted boots, scraped from the API process's metrics listener."""
    text = requests.get(f"http://{cluster.config['api']['metrics_listen']}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cellcloud_api_requests_total" and sample.labels == {
                    "method": "POST", "route": "/compute/v2.1/servers", "status": "202"}:
                return float(sample.value)
    return 0.0


def test_boot_trail_spans_api_conductor_scheduler_and_compute(cluster: RunningCluster) -> None:
    headers = {"X-Auth-Token": cluster.token("demo")}
    base = f"{cluster.endpoint}/compute/v2.1"
    images = requests.get(f"{cluster.endpoint}/image/v2/images?name=tiny-raw", headers=headers, timeout=30)
    image = images.json()["images"][0]["id"]
    boots_before = posted_servers(cluster)
    compute_before = rpc_calls_ok(cluster)
    resp = requests.post(f"{base}/servers", headers=headers, timeout=30,
                         json={"server": {"name": "traced", "flavorRef": "1", "imageRef": image}})
    assert resp.status_code == 202, resp.text
    assert posted_servers(cluster) - boots_before == 1
    rid = resp.headers["X-OpenStack-Request-ID"]
    assert logtrail.REQUEST_ID.fullmatch(rid)
    server = resp.json()["server"]["id"]
    deadline = time.monotonic() + 60
    while requests.get(f"{base}/servers/{server}", headers=headers, timeout=30).json()["server"]["status"] != "ACTIVE":
        assert time.monotonic() < deadline, "the server never became ACTIVE"
        time.sleep(0.2)

    # the compute reports the build's transitions to its conductor: its own listener counts those calls
    compute_after = rpc_calls_ok(cluster)
    assert compute_after.get("instance_event", 0) - compute_before.get("instance_event", 0) >= 1
    out = cluster.cellctl("logs", "--request", rid, str(cluster.cluster_file)).stdout.splitlines()
    services = [line.split()[2] for line in out]
    assert {"api", "cell1/conductor", "cell1/scheduler", "cell1/compute/node1"} <= set(services), "\n".join(out)
    stamps = [" ".join(line.split()[:2]) for line in out]
    assert stamps == sorted(stamps)  # merged in time order
    assert any("placed " + server in line for line in out)
    assert any(f"instance {server} active" in line for line in out)
    # the API's own line for the request is there, and no other request's line is
    assert any("POST /compute/v2.1/servers status: 202" in line for line in out)
    assert not any("GET /compute/v2.1/servers/" in line for line in out)


def test_logs_refuses_what_is_not_a_request_id(cluster: RunningCluster) -> None:
    bad = cluster.cellctl("logs", "--request", "../etc/passwd", str(cluster.cluster_file), check=False)
    assert bad.returncode == 2
    assert "not a request id" in bad.stderr
