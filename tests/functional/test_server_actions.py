"""Server actions end to end on the default cluster (libvirt test:///default): the
unmodified openstack CLI stops, starts, reboots, pauses, suspends and rebuilds a
server through real processes; actions that do not fit get Nova's 409; the
compute host's domain follows every step."""
from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
import requests

from node.compute.power import TEST_CONSOLE_BOOT
from tools.devcluster import RunningCluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("actions")) as c:
        yield c


@functools.cache
def _token(endpoint: str, password: str) -> str:
    conn = openstack.connect(auth_url=endpoint + "/identity/v3", username="demo", password=password,
                             project_name="demo", user_domain_name="Default", project_domain_name="Default",
                             region_name="RegionOne")
    return str(conn.session.get_token())


def token(cluster: RunningCluster) -> str:
    return _token(cluster.endpoint, cluster.credentials()["password"])


def show(cluster: RunningCluster, server: str) -> dict[str, Any]:
    """The server as the API shows it (requests, not the CLI: a CLI run costs a second or two)."""
    resp = requests.get(f"{cluster.endpoint}/compute/v2.1/servers/{server}", headers={"X-Auth-Token": token(cluster)},
                        timeout=30)
    assert resp.status_code == 200, resp.text
    doc = dict(resp.json()["server"])
    doc["OS-EXT-STS:power_state"] = doc.get("OS-EXT-STS:power_state")
    return doc


def wait_for(cluster: RunningCluster, server: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = show(cluster, server)
        if doc["status"] == status and not doc.get("OS-EXT-STS:task_state"):
            return doc
        assert time.monotonic() < deadline, f"{server} stayed {doc['status']}/{doc.get('OS-EXT-STS:task_state')}"
        time.sleep(0.2)


def action(cluster: RunningCluster, server_id: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{cluster.endpoint}/compute/v2.1/servers/{server_id}/action", json=body,
                         headers={"X-Auth-Token": token(cluster)}, timeout=30)


def act(cluster: RunningCluster, server_id: str, body: dict[str, Any]) -> None:
    resp = action(cluster, server_id, body)
    assert resp.status_code == 202, resp.text


def test_power_actions_walk_the_server_through_novas_states(cluster: RunningCluster) -> None:
    server = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw",
                        "--wait", "-f", "json", "act1")
    sid = server["id"]
    assert server["status"] == "ACTIVE"

    cluster.ok("server", "stop", sid)
    assert wait_for(cluster, sid, "SHUTOFF")["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    conflict = action(cluster, sid, {"os-stop": None})
    assert conflict.status_code == 409
    assert conflict.json() == {"conflictingRequest": {
        "code": 409, "message": f"Cannot 'stop' instance {sid} while it is in vm_state stopped"}}
    soft = action(cluster, sid, {"reboot": {"type": "SOFT"}})
    assert soft.status_code == 409 and "vm_state stopped" in soft.json()["conflictingRequest"]["message"]

    act(cluster, sid, {"os-start": None})
    wait_for(cluster, sid, "ACTIVE")
    started = action(cluster, sid, {"os-start": None})
    assert started.status_code == 409 and "vm_state active" in started.json()["conflictingRequest"]["message"]

    cluster.ok("server", "reboot", "--soft", "--wait", sid)
    act(cluster, sid, {"reboot": {"type": "HARD"}})
    assert wait_for(cluster, sid, "ACTIVE")["OS-EXT-STS:power_state"] in ("Running", 1)

    act(cluster, sid, {"pause": None})
    assert wait_for(cluster, sid, "PAUSED")["OS-EXT-STS:power_state"] in ("Paused", 3)
    act(cluster, sid, {"unpause": None})
    wait_for(cluster, sid, "ACTIVE")
    act(cluster, sid, {"suspend": None})
    wait_for(cluster, sid, "SUSPENDED")
    act(cluster, sid, {"resume": None})
    wait_for(cluster, sid, "ACTIVE")

    cluster.ok("server", "rebuild", "--image", "tiny-raw", "--wait", sid)
    wait_for(cluster, sid, "ACTIVE")
    # the test hypervisor runs no guest: its driver writes Nova's fake console at each start (a rebuild starts anew)
    log = cluster.ok("console", "log", "show", sid)
    assert "FAKE CONSOLE OUTPUT" in log and log.rstrip().endswith("LAST LINE")
    # --lines counts as Nova's _tail_log: the "" after the log's final newline is one of the 3
    assert cluster.ok("console", "log", "show", "--lines", "3", sid).strip() == "ANOTHER\nLAST LINE"
    act(cluster, sid, {"os-stop": None})
    wait_for(cluster, sid, "SHUTOFF")
    rebuilt = action(cluster, sid, {"rebuild": {"imageRef": show(cluster, sid)["image"]["id"], "name": "act1b"}})
    assert rebuilt.status_code == 202 and rebuilt.json()["server"]["status"] == "REBUILD"
    assert wait_for(cluster, sid, "SHUTOFF")["name"] == "act1b"  # a stopped server stays stopped, as Nova
    cluster.ok("server", "delete", "--wait", sid)


def test_bad_action_bodies_get_novas_400_and_unknown_servers_404(cluster: RunningCluster) -> None:
    server = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw",
                        "--wait", "-f", "json", "act2")
    sid = server["id"]
    bad = action(cluster, sid, {"reboot": {"type": "GENTLE"}})
    assert bad.status_code == 400 and "badRequest" in bad.json()
    assert action(cluster, sid, {"teleport": None}).json() == {
        "badRequest": {"code": 400, "message": "There is no such action: teleport"}}
    assert action(cluster, sid, {"os-getConsoleOutput": {"length": "x"}}).status_code == 400
    # -1 is the whole log, as Nova (the test hypervisor's fake console, written once at the boot)
    assert action(cluster, sid, {"os-getConsoleOutput": {"length": -1}}).json() == {"output": TEST_CONSOLE_BOOT}
    # length counts as Nova's _tail_log: the "" after the final newline is one of the 3 (Tempest counts so)
    assert action(cluster, sid, {"os-getConsoleOutput": {"length": 3}}).json() == {"output": "ANOTHER\nLAST LINE\n"}
    missing = action(cluster, "8b4e4b4e-0000-4000-8000-000000000000", {"os-stop": None})
    assert missing.status_code == 404 and "itemNotFound" in missing.json()
    assert show(cluster, sid)["status"] == "ACTIVE"  # nothing changed by the bad requests
    cluster.ok("server", "delete", "--wait", sid)
