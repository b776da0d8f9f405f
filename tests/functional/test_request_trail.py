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


def test_a_failing_boot_is_followed_to_the_compute_failure_that_ended_it(cluster: RunningCluster) -> None:
    """The image's stored bytes corrupted: the compute's checksum check fails the build (one host, no
    retry), and the boot's request id leads from the API's line through the scheduler's placement to the
    compute's failure and the conductor's fault, each line naming the server."""
    headers = {"X-Auth-Token": cluster.token("demo")}
    base = f"{cluster.endpoint}/compute/v2.1"
    image = requests.get(f"{cluster.endpoint}/image/v2/images?name=tiny-raw", headers=headers,
                         timeout=30).json()["images"][0]["id"]
    stored = [p for p in (cluster.state / "images").rglob("*") if p.is_file()]
    originals = {p: p.read_bytes() for p in stored}
    for cached in (cluster.state / "hosts").rglob("images/*"):
        cached.unlink()  # the host must fetch the image again
    try:
        for p in stored:
            p.write_bytes(b"corrupted" + originals[p][9:])
        resp = requests.post(f"{base}/servers", headers=headers, timeout=30,
                             json={"server": {"name": "doomed", "flavorRef": "1", "imageRef": image}})
        assert resp.status_code == 202, resp.text
        server = resp.json()["server"]["id"]
        deadline = time.monotonic() + 60
        while (doc := requests.get(f"{base}/servers/{server}", headers=headers,
                                   timeout=30).json()["server"])["status"] != "ERROR":
            assert doc["status"] != "ACTIVE" and time.monotonic() < deadline, doc
            time.sleep(0.2)
    finally:
        for p, data in originals.items():
            p.write_bytes(data)
    out = cluster.cellctl("logs", "--request", resp.headers["X-OpenStack-Request-ID"],
                          str(cluster.cluster_file)).stdout.splitlines()
    by_service: dict[str, list[str]] = {}
    for line in out:
        by_service.setdefault(line.split()[2], []).append(line)
    assert any("POST /compute/v2.1/servers status: 202" in line for line in by_service["api"]), "\n".join(out)
    assert any("placed " + server in line for line in by_service["cell1/scheduler"]), "\n".join(out)
    assert any(f"build of {server} failed" in line for line in by_service["cell1/compute/node1"]), "\n".join(out)
    assert any(f"build of {server} on node1 failed, not retried: Image {image}" in line
               for line in by_service["cell1/conductor"]), "\n".join(out)


def test_logs_refuses_what_is_not_a_request_id(cluster: RunningCluster) -> None:
    bad = cluster.cellctl("logs", "--request", "../etc/passwd", str(cluster.cluster_file), check=False)
    assert bad.returncode == 2
    assert "not a request id" in bad.stderr


def scrape(cluster: RunningCluster, service_id: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one cell service's /metrics listener: (name, sorted labels) -> value."""
    service = next(s for s in cluster.config["services"] if s["id"] == service_id)
    text = requests.get(f"http://{service['options']['metrics']}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for f in text_string_to_metric_families(text) for s in f.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


BURST = 4  # node1 (test:///default) holds 6 m1.tiny guests; the trail test above keeps one


def test_a_boot_burst_moves_the_outcome_counters_by_exactly_its_boots(cluster: RunningCluster) -> None:
    """Scraped during and after a burst of BURST boots then their deletes: the conductor's boots and
    deletes, and the scheduler's placements, move by exactly BURST (never more while it runs); the cell
    DB's group-commit and lock-wait histograms move; the state gauges show the servers, their guests and
    the host's capacity and claims."""
    headers = {"X-Auth-Token": cluster.token("demo")}
    base = f"{cluster.endpoint}/compute/v2.1"
    image = requests.get(f"{cluster.endpoint}/image/v2/images?name=tiny-raw", headers=headers,
                         timeout=30).json()["images"][0]["id"]
    conductor, scheduler = "cell1/conductor", "cell1/scheduler"
    before, placed_before = scrape(cluster, conductor), scrape(cluster, scheduler)

    def moved(now: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
        return value(now, name, **labels) - value(before, name, **labels)

    servers = []
    for n in range(BURST):
        resp = requests.post(f"{base}/servers", headers=headers, timeout=30,
                             json={"server": {"name": f"burst-{n}", "flavorRef": "1", "imageRef": image}})
        assert resp.status_code == 202, resp.text
        servers.append(resp.json()["server"]["id"])
    deadline = time.monotonic() + 90
    while True:
        during = scrape(cluster, conductor)
        assert 0 <= moved(during, "cellcloud_boots_total", outcome="active") <= BURST
        statuses = [requests.get(f"{base}/servers/{s}", headers=headers, timeout=30).json()["server"]["status"]
                    for s in servers]
        if all(s == "ACTIVE" for s in statuses):
            break
        assert "ERROR" not in statuses and time.monotonic() < deadline, [
            requests.get(f"{base}/servers/{s}", headers=headers, timeout=30).json()["server"].get("fault")
            for s in servers]
        time.sleep(0.3)
    after = scrape(cluster, conductor)
    assert moved(after, "cellcloud_boots_total", outcome="active") == BURST
    assert moved(after, "cellcloud_boots_total", outcome="error") == 0
    placed = scrape(cluster, scheduler)
    assert value(placed, "cellcloud_scheduler_placements_total") - value(
        placed_before, "cellcloud_scheduler_placements_total") == BURST
    db = {"db": "cell1.db"}
    assert moved(after, "cellcloud_db_write_batch_units_sum", **db) >= BURST  # a boot writes more than once
    assert 1 <= moved(after, "cellcloud_db_write_batch_units_count", **db) \
        <= moved(after, "cellcloud_db_write_batch_units_sum", **db)
    assert moved(after, "cellcloud_db_write_lock_wait_seconds_count", **db) \
        == moved(after, "cellcloud_db_write_batch_units_count", **db)  # a lock taken per batch

    # the state gauges (refreshed every few seconds by the conductor, every sweep by the compute)
    deadline = time.monotonic() + 30
    while True:
        state, compute = scrape(cluster, conductor), scrape(cluster, "cell1/compute/node1")
        if value(state, "cellcloud_servers", state="active") >= BURST \
                and value(compute, "cellcloud_guests", state="running") >= BURST:
            break
        assert time.monotonic() < deadline, "the servers and guests gauges never showed the burst"
        time.sleep(0.5)
    assert value(state, "cellcloud_compute_hosts", state="alive") == 1
    assert value(state, "cellcloud_compute_hosts", state="dead") == 0
    assert value(state, "cellcloud_host_capacity", host="node1", resource="vcpus") > 0
    assert value(state, "cellcloud_host_used", host="node1", resource="memory_mb") > 0
    router = scrape(cluster, "cell1/router")
    assert value(router, "cellcloud_directory_members", service="compute", state="alive") == 1
    assert value(router, "cellcloud_directory_members", service="conductor", state="alive") == 1
    assert value(compute, "cellcloud_image_cache_files") >= 1

    for server in servers:
        assert requests.delete(f"{base}/servers/{server}", headers=headers, timeout=30).status_code == 204
    deadline = time.monotonic() + 60
    while moved(scrape(cluster, conductor), "cellcloud_deletes_total", outcome="deleted") < BURST:
        assert time.monotonic() < deadline, "the deletes were never counted"
        time.sleep(0.3)
    final = scrape(cluster, conductor)
    assert moved(final, "cellcloud_deletes_total", outcome="deleted") == BURST
    assert moved(final, "cellcloud_boots_total", outcome="active") == BURST
