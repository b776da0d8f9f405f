"""Kill anything, lose nothing (issue 14): real processes under the supervisor, killed and
frozen with signals. Suspect is not dead: a router restart or a compute frozen for less than
the grace destroys nothing; a compute killed mid-build hands its build to the other host; a
host frozen past the grace is dead (evacuation allowed) and fenced when it comes back.

Builds are held in the compute with nothing but signals: a server of an image no host has
cached makes the compute fetch it from the API, which is frozen (SIGSTOP) right after it
accepted the boot."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.test_moves import Admin
from tools.bench.boot import TEST_NODE
from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow
GRACE = 15.0  # the test clusters' dead_after: long enough to act on a suspect host under load, short enough to wait out
TINY = "1"


def _cluster(tmp_path_factory: pytest.TempPathFactory, prefix: str, hosts: int) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp(prefix)
    node = root / "testnode.xml"  # room for every boot of the module on each host
    node.write_text(TEST_NODE)
    with running_cluster(root / "cluster", hosts=hosts, virt_uri=f"test://{node}", dead_after=GRACE,
                         name=f"{prefix}-{uuidlib.uuid4().hex[:6]}") as c:
        # up means every service answers, not that each compute's resources reached the cell DB: a test
        # that starts at once (and kills the router, say) would see only the hosts that reported first
        wait_for("every host's resources reported", lambda: hosts_reported(c) == hosts, timeout=60)
        yield c


def hosts_reported(cluster: RunningCluster) -> int:
    """Live hosts whose resources the cell knows, from the conductor's capacity summary (cellctl status)."""
    out = cluster.cellctl("status", str(cluster.cluster_file), "--json", check=False)
    [cell] = json.loads(out.stdout)["cells"]
    return int((cell.get("capacity") or {}).get("hosts_alive") or 0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from _cluster(tmp_path_factory, "live2", hosts=2)


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from _cluster(tmp_path_factory, "live1", hosts=1)


def _api(cluster: RunningCluster) -> Admin:
    admin = Admin(cluster)
    project = requests.get(cluster.endpoint + "/identity/v3/auth/tokens", timeout=10,
                           headers={**admin.admin, "X-Subject-Token": admin.h["X-Auth-Token"]}).json()
    r = requests.put(f"{admin.base}/os-quota-sets/{project['token']['project']['id']}", headers=admin.admin,
                     json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}}, timeout=10)
    assert r.status_code == 200, r.text
    return admin


@pytest.fixture(scope="module")
def api(cluster: RunningCluster) -> Admin:
    return _api(cluster)


def host_states(cluster: RunningCluster) -> dict[str, str | None]:
    """host -> the conductor's verdict, as `cellctl status --json` shows it."""
    out = cluster.cellctl("status", str(cluster.cluster_file), "--json", check=False)
    [cell] = json.loads(out.stdout)["cells"]
    return {h["name"]: h.get("state") for h in cell["hosts"] if h["name"].startswith("node")}


def create(api: Admin, name: str, image: str | None = None) -> str:
    r = requests.post(f"{api.base}/servers", headers=api.h, timeout=30, json={
        "server": {"name": name, "flavorRef": TINY, "imageRef": image or api.image}})
    assert r.status_code == 202, r.text
    return str(r.json()["server"]["id"])


def status(api: Admin, sid: str) -> str:
    return str(api.server(sid).json()["server"]["status"])


def delete(api: Admin, *sids: str) -> None:
    """Delete, and wait until they are gone (their usage no longer weighs on the next placements)."""
    for sid in sids:
        requests.delete(f"{api.base}/servers/{sid}", headers=api.h, timeout=30)
    wait_for(f"{sids} not all deleted", lambda: all(api.server(s).status_code == 404 for s in sids), timeout=30)


def on_hosts(api: Admin, each: int, prefix: str) -> dict[str, list[str]]:
    """Boot servers until each host has `each` of them (they spread, but not always evenly
    at once); host -> its servers."""
    by_host: dict[str, list[str]] = {}
    for i in range(8 * each):
        if len(by_host) == 2 and min(len(v) for v in by_host.values()) >= each:
            return by_host
        sid = create(api, f"{prefix}{i}")
        api.wait(sid, "ACTIVE")
        by_host.setdefault(api.host(sid), []).append(sid)
    raise AssertionError(f"servers did not spread over both hosts: {by_host}")


def fresh_image(cluster: RunningCluster, api: Admin) -> str:
    """An image no compute has cached: booting it makes the compute download it from the API."""
    r = requests.post(cluster.endpoint + "/image/v2/images", headers=api.admin, timeout=10, json={
        "name": f"fresh-{uuidlib.uuid4().hex[:8]}", "disk_format": "raw", "container_format": "bare",
        "visibility": "public"})
    assert r.status_code == 201, r.text
    image = str(r.json()["id"])
    put = requests.put(f"{cluster.endpoint}/image/v2/images/{image}/file", data=os.urandom(64 * 1024), timeout=30,
                       headers={**api.admin, "Content-Type": "application/octet-stream"})
    assert put.status_code == 204, put.text
    return image


def spawning_on(cluster: RunningCluster, sid: str) -> str | None:
    """The host a build is spawning on, from the cell DB (the API is frozen meanwhile)."""
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    try:
        row = db.execute("SELECT host, task_state FROM instances WHERE uuid = ?", (sid,)).fetchone()
        return str(row[0]) if row is not None and row[1] == "spawning" else None
    finally:
        db.close()


def held_build(cluster: RunningCluster, api: Admin, name: str) -> tuple[str, str]:
    """(server, host) of a build stuck fetching its image from the frozen API. The caller
    lets the API go (SIGCONT) after killing what it wants killed."""
    image = fresh_image(cluster, api)
    sid = create(api, name, image)
    cluster.signal("api", signal.SIGSTOP)
    try:
        host = wait_for("the build never reached a compute", lambda: spawning_on(cluster, sid), timeout=30,
                        interval=0.05)
    except BaseException:
        cluster.signal("api", signal.SIGCONT)
        raise
    return sid, str(host)


def wait_restarted(cluster: RunningCluster, service: str, old_pid: int) -> None:
    """The supervisor started the killed service again."""
    def restarted() -> bool:
        try:
            return cluster.pid(service) != old_pid
        except (OSError, ValueError):
            return False
    wait_for(f"{service} was not restarted", restarted, timeout=30)


def test_router_killed_during_a_burst_of_boots_errors_nothing(cluster: RunningCluster, api: Admin) -> None:
    sids = [create(api, f"burst{i}") for i in range(8)]
    router = cluster.signal("cell1/router", signal.SIGKILL)  # the directory's table is gone with it
    sids += [create(api, f"burst{i}") for i in range(8, 20)]
    wait_restarted(cluster, "cell1/router", router)
    for sid in sids:
        api.wait(sid, "ACTIVE", timeout=60)  # fails at once on ERROR, with the fault
    assert {api.host(sid) for sid in sids} == {"node1", "node2"}
    assert wait_for("hosts not alive after the router restart",
                    lambda: set(host_states(cluster).values()) == {"alive"}, timeout=30)
    assert "declared dead" not in cluster.log("cell1/conductor")
    delete(api, *sids)


def test_compute_frozen_for_less_than_the_grace_is_suspect_and_left_alone(cluster: RunningCluster,
                                                                          api: Admin) -> None:
    before = on_hosts(api, 2, "keep")
    mine = before["node1"][0]
    pid = cluster.signal("cell1/compute/node1", signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for("node1 never became suspect", lambda: host_states(cluster)["node1"] == "suspect",
                 timeout=GRACE - 2, interval=0.2)
        during = create(api, "during")  # new boots avoid the suspect host
        api.wait(during, "ACTIVE")
        assert api.host(during) == "node2"
        r = api.post(mine, {"evacuate": {}}, admin=True)  # its guest may still run: no second copy
        assert r.status_code == 400 and "still in use" in r.text, r.text
        doc = api.server(mine).json()["server"]
        assert (doc["status"], api.host(mine)) == ("ACTIVE", "node1")
        assert time.monotonic() - stopped < GRACE, "too slow to stay under the grace: the test proves nothing"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for("node1 never came back", lambda: host_states(cluster)["node1"] == "alive", timeout=30)
    for sid in before["node1"]:
        assert status(api, sid) == "ACTIVE" and api.host(sid) == "node1"
    assert "declared dead" not in cluster.log("cell1/conductor")
    api.post(mine, {"os-stop": None})  # the host serves again
    api.wait(mine, "SHUTOFF")
    delete(api, during, *before["node1"], *before["node2"])


def test_compute_killed_mid_build_hands_the_build_to_the_other_host(cluster: RunningCluster, api: Admin) -> None:
    sid, host = held_build(cluster, api, "held")
    other = "node2" if host == "node1" else "node1"
    try:
        killed = cluster.signal(f"cell1/compute/{host}", signal.SIGKILL)
    finally:
        cluster.signal("api", signal.SIGCONT)
    wait_restarted(cluster, f"cell1/compute/{host}", killed)
    doc = api.wait(sid, "ACTIVE", timeout=60)
    assert api.host(sid) == other and doc.get("fault") is None
    assert f"build of {sid} was interrupted" in cluster.log(f"cell1/compute/{host}")
    delete(api, sid)


def test_compute_frozen_past_the_grace_is_dead_then_fenced_when_it_returns(cluster: RunningCluster,
                                                                          api: Admin) -> None:
    by_host = on_hosts(api, 3, "fence")
    evacuated, deleted = by_host["node1"][:2]
    dirs = {sid: cluster.state / "hosts" / "node1" / "instances" / sid for sid in (evacuated, deleted)}
    assert all(d.exists() for d in dirs.values())
    pid = cluster.signal("cell1/compute/node1", signal.SIGSTOP)
    try:
        wait_for("node1 never declared dead", lambda: host_states(cluster)["node1"] == "dead",
                 timeout=GRACE + 15, interval=0.5)
        r = api.post(evacuated, {"evacuate": {}}, admin=True)
        assert r.status_code == 200, r.text
        api.wait(evacuated, "ACTIVE", timeout=60)
        assert api.host(evacuated) == "node2"
        delete(api, deleted)  # a local delete now (it is waited for): the host is dead
        assert all(d.exists() for d in dirs.values())  # the frozen host's copies are still there
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for("node1 never reconciled", lambda: "reconciled and rejoined" in cluster.log("cell1/compute/node1"),
             timeout=30)
    assert not any(d.exists() for d in dirs.values())  # guests finished elsewhere: destroyed
    wait_for("node1 not alive after rejoining", lambda: host_states(cluster)["node1"] == "alive", timeout=30)
    for sid in by_host["node1"][2:]:
        assert status(api, sid) == "ACTIVE" and api.host(sid) == "node1"
    delete(api, evacuated, *by_host["node1"][2:], *by_host["node2"])


def test_the_only_host_dying_mid_build_ends_in_error_naming_it(lone: RunningCluster) -> None:
    api = _api(lone)
    sid, host = held_build(lone, api, "alone")
    try:
        killed = lone.signal(f"cell1/compute/{host}", signal.SIGKILL)
    finally:
        lone.signal("api", signal.SIGCONT)
    wait_restarted(lone, f"cell1/compute/{host}", killed)
    doc = api.wait(sid, "ERROR", timeout=60)
    assert doc["fault"]["message"] == ("Exceeded maximum number of retries. Exhausted all hosts available for "
                                       f"retrying build failures for instance {sid}. Hosts tried: node1."), doc
    events: list[Any] = api.events(sid)
    assert events[0][0] == "create" and ("compute_build_and_run_instance", "Error") in events[0][1]
    path = Path(lone.state / "cells" / "cell1.db")
    claims = sqlite3.connect(path).execute("SELECT COUNT(*) FROM claims WHERE instance_uuid = ?", (sid,)).fetchone()
    assert claims == (0,)  # the failed host's claim went back
