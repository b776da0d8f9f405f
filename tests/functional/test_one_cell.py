"""One cell, end to end: real processes (router, conductor, scheduler, compute,
API) started by `cellctl up`, driven by the unmodified openstack CLI and SDK."""
from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
import requests

from tools.devcluster import RunningCluster, running_cluster
from tools.openstack_cli import WAIT_POLL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("onecell")) as c:
        yield c


def sdk(cluster: RunningCluster, who: str = "demo") -> openstack.connection.Connection:
    creds: dict[str, Any] = cluster.credentials(who)
    return openstack.connect(**creds, region_name="RegionOne")


def token(cluster: RunningCluster, who: str = "demo") -> str:
    conn = sdk(cluster, who)
    return str(conn.session.get_token())


def compute(cluster: RunningCluster, method: str, path: str, who: str = "demo", **kw: Any) -> requests.Response:
    headers = {"X-Auth-Token": token(cluster, who), **kw.pop("headers", {})}
    return requests.request(method, f"{cluster.endpoint}/compute/v2.1{path}", headers=headers, timeout=30, **kw)


def wait_status(conn: openstack.connection.Connection, server_id: str, statuses: set[str],
                timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server_id)
        if server.status in statuses:
            return server
        assert time.monotonic() < deadline, f"server stayed {server.status}"
        time.sleep(0.1)


def claims(cluster: RunningCluster) -> list[tuple[Any, ...]]:
    url = str(cluster.config["cells"][0]["db"])
    if url.startswith("postgresql"):  # tests/functional/test_one_cell_postgres.py
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text("SELECT instance_uuid, host FROM claims"))]
        finally:
            engine.dispose()
    db = cluster.state / "cells" / "cell1.db"
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT instance_uuid, host FROM claims").fetchall()


def test_status_reports_every_service_alive(cluster: RunningCluster) -> None:
    out = cluster.cellctl("status", str(cluster.cluster_file), "--json")
    status = json.loads(out.stdout)
    text = json.dumps(status)
    for service in ("cell1/router", "cell1/conductor", "cell1/scheduler", "cell1/compute/node1"):
        assert service in text
    assert "down" not in cluster.cellctl("status", str(cluster.cluster_file)).stdout.lower()


def test_openstack_cli_lifecycle(cluster: RunningCluster) -> None:
    flavors = json.loads(cluster.cli("flavor", "list", "-f", "json").stdout)
    assert {"m1.tiny", "m1.small", "m1.medium"} <= {f["Name"] for f in flavors}
    images = json.loads(cluster.cli("image", "list", "-f", "json").stdout)
    assert "tiny-raw" in {i["Name"] for i in images}

    created = cluster.cli("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait",
                          "-f", "json", "demo1")
    assert created.returncode == 0, created.stderr
    server = json.loads(created.stdout)
    assert server["status"] == "ACTIVE"

    listed = json.loads(cluster.cli("server", "list", "-f", "json").stdout)
    assert [(s["Name"], s["Status"]) for s in listed] == [("demo1", "ACTIVE")]

    shown = cluster.cli("server", "show", "demo1", "-f", "json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["OS-EXT-STS:vm_state"] == "active" and body["OS-EXT-STS:power_state"] in ("Running", 1)
    assert "m1.tiny" in json.dumps(body["flavor"]) and "tiny-raw" in json.dumps(body["image"])

    deleted = cluster.cli("server", "delete", "--wait", "demo1")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(cluster.cli("server", "list", "-f", "json").stdout) == []
    assert claims(cluster) == []


def test_projects_are_isolated(cluster: RunningCluster) -> None:
    admin, demo = sdk(cluster, "admin"), sdk(cluster, "demo")
    image = admin.image.find_image("tiny-raw", ignore_missing=False)
    flavor = admin.compute.find_flavor("m1.tiny", ignore_missing=False)
    theirs = admin.compute.create_server(name="admins", image_id=image.id, flavor_id=flavor.id, networks="auto")
    wait_status(admin, theirs.id, {"ACTIVE"})
    try:
        assert [s.name for s in demo.compute.servers()] == []
        assert compute(cluster, "GET", f"/servers/{theirs.id}").status_code == 404
        assert compute(cluster, "DELETE", f"/servers/{theirs.id}").status_code == 404
    finally:
        admin.compute.delete_server(theirs.id)
        admin.compute.wait_for_delete(theirs, wait=30, interval=WAIT_POLL)


@pytest.mark.parametrize("body, needle", [
    ({"server": {"name": "x", "flavorRef": "no-such-flavor", "imageRef": "IMAGE"}}, "flavor"),
    ({"server": {"name": "x", "flavorRef": "1", "imageRef": "00000000-0000-0000-0000-000000000000"}}, "image"),
    ({"server": {"flavorRef": "1", "imageRef": "IMAGE"}}, "name"),
    ({"server": {"name": "   ", "flavorRef": "1", "imageRef": "IMAGE"}}, "name"),
    ({"server": {"name": 7, "flavorRef": "1", "imageRef": "IMAGE"}}, "name"),
    ({"nothing": {}}, "server"),
])
def test_bad_create_is_400_and_creates_nothing(cluster: RunningCluster, body: dict[str, Any], needle: str) -> None:
    image = sdk(cluster).image.find_image("tiny-raw", ignore_missing=False).id
    raw = json.loads(json.dumps(body).replace("IMAGE", image))
    resp = compute(cluster, "POST", "/servers", json=raw)
    assert resp.status_code == 400, resp.text
    assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    assert needle in resp.json()["badRequest"]["message"].lower()
    assert compute(cluster, "GET", "/servers").json()["servers"] == []


def test_malformed_json_unknown_server_and_bad_token(cluster: RunningCluster) -> None:
    resp = compute(cluster, "POST", "/servers", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "badRequest" in resp.json()
    resp = compute(cluster, "GET", "/servers/demo1")  # a name where an id is expected
    assert resp.status_code == 404 and resp.json()["itemNotFound"]["code"] == 404
    assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    for headers in ({}, {"X-Auth-Token": "bogus"}):
        r = requests.get(f"{cluster.endpoint}/compute/v2.1/servers", headers=headers, timeout=10)
        assert r.status_code == 401


def test_spawn_failure_ends_in_error_with_fault_and_releases_claim(cluster: RunningCluster) -> None:
    admin = sdk(cluster, "admin")
    image = admin.image.find_image("tiny-raw", ignore_missing=False)
    # corrupt the stored bits: the compute host's checksum check must catch it
    stored = [p for p in (cluster.state / "images").rglob("*") if p.is_file()]
    assert stored, "image store is empty"
    originals = {p: p.read_bytes() for p in stored}
    cache = list((cluster.state / "hosts").rglob("images/*"))
    for p in cache:  # and make the host fetch again
        p.unlink()
    try:
        for p in stored:
            p.write_bytes(b"corrupted" + originals[p][9:])
        server = admin.compute.create_server(name="broken", image_id=image.id, flavor_id="1", networks="auto")
        server = wait_status(admin, server.id, {"ERROR"})
        assert server.fault and image.id in server.fault["message"]
        assert server.id not in [c[0] for c in claims(cluster)]
        admin.compute.delete_server(server.id)
        admin.compute.wait_for_delete(server, wait=30, interval=WAIT_POLL)
    finally:
        for p, data in originals.items():
            p.write_bytes(data)


def test_boot_onto_a_frozen_compute_errors_and_the_restarted_compute_serves(cluster: RunningCluster) -> None:
    """The only compute is frozen (SIGSTOP) before the boot, so the build sent to it goes unanswered
    while it is suspect; the operator declares it dead (`cellctl host down`) and the server ends in
    ERROR with a fault naming node1 (no other host to retry on) and its claim released. The frozen
    worker is then killed; the supervisor restarts it, the operator takes the mark back, it rejoins
    its cell and a new boot goes ACTIVE.
    (A compute killed in the middle of a build is a case of tests/chaos.)"""
    admin = sdk(cluster, "admin")
    image = admin.image.find_image("tiny-raw", ignore_missing=False)
    pid = cluster.signal("cell1/compute/node1", signal.SIGSTOP)  # frozen: no heartbeats, no builds
    try:
        server = admin.compute.create_server(name="orphan", image_id=image.id, flavor_id="1", networks="auto")
        time.sleep(2)  # the build went to the frozen host, or finds no live one: either way it waits
        assert cluster.cellctl("host", "down", "node1", str(cluster.cluster_file)).stdout.strip() == "host node1 dead"
        server = wait_status(admin, server.id, {"ERROR"}, timeout=20)
        assert "node1" in server.fault["message"]
        assert server.id not in [c[0] for c in claims(cluster)]
    finally:
        import os
        os.kill(pid, signal.SIGKILL)
    # the supervisor restarts the worker and it serves again
    deadline = time.monotonic() + 30
    while cluster.pid("cell1/compute/node1") == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    cluster.cellctl("host", "up", "node1", str(cluster.cluster_file))
    while cluster.cellctl("status", str(cluster.cluster_file), check=False).returncode != 0:
        assert time.monotonic() < deadline, "the restarted compute worker never rejoined its cell"
        time.sleep(0.2)
    again = admin.compute.create_server(name="after-restart", image_id=image.id, flavor_id="1", networks="auto")
    wait_status(admin, again.id, {"ACTIVE"}, timeout=30)
    for s in list(admin.compute.servers()):
        admin.compute.delete_server(s.id)
    for s in list(admin.compute.servers()):
        admin.compute.wait_for_delete(s, wait=30, interval=WAIT_POLL)


def test_concurrent_deletes_all_succeed(cluster: RunningCluster) -> None:
    """Many deletes at once: each API transaction must take SQLite's write lock up
    front, or read-then-write transactions fail with 'database is locked' (500)."""
    from concurrent.futures import ThreadPoolExecutor
    demo = sdk(cluster)
    image = demo.image.find_image("tiny-raw", ignore_missing=False)
    servers = [demo.compute.create_server(name=f"many-{i}", image_id=image.id, flavor_id="1", networks="auto") for i in range(4)]  # the test host has 3 GB
    for s in servers:
        wait_status(demo, s.id, {"ACTIVE"})
    tok = token(cluster)
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda s: requests.delete(f"{cluster.endpoint}/compute/v2.1/servers/{s.id}",
                                                         headers={"X-Auth-Token": tok}, timeout=30).status_code,
                              servers))
    assert codes == [204] * 4
    for s in servers:
        demo.compute.wait_for_delete(s, wait=30, interval=WAIT_POLL)
