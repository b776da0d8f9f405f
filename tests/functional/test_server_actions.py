"""Server actions end to end on the default cluster (libvirt test:///default): the
unmodified openstack CLI stops, starts, reboots, pauses, suspends and rebuilds a
server through real processes; actions that do not fit get Nova's 409; the
compute host's domain follows every step."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tools.devcluster import RunningCluster, running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("actions")) as c:
        yield c


def cli_ok(cluster: RunningCluster, *args: str) -> str:
    done = cluster.cli(*args)
    assert done.returncode == 0, f"openstack {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def show(cluster: RunningCluster, server: str) -> dict[str, Any]:
    return dict(json.loads(cli_ok(cluster, "server", "show", server, "-f", "json")))


def wait_for(cluster: RunningCluster, server: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = show(cluster, server)
        if doc["status"] == status and not doc.get("OS-EXT-STS:task_state"):
            return doc
        assert time.monotonic() < deadline, f"{server} stayed {doc['status']}/{doc.get('OS-EXT-STS:task_state')}"
        time.sleep(0.2)


def action(cluster: RunningCluster, server_id: str, body: dict[str, Any]) -> requests.Response:
    token = cli_ok(cluster, "token", "issue", "-f", "value", "-c", "id").strip()
    return requests.post(f"{cluster.endpoint}/compute/v2.1/servers/{server_id}/action", json=body,
                         headers={"X-Auth-Token": token}, timeout=30)


def test_power_actions_walk_the_server_through_novas_states(cluster: RunningCluster) -> None:
    server = json.loads(cli_ok(cluster, "server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw",
                               "--wait", "-f", "json", "act1"))
    sid = server["id"]
    assert server["status"] == "ACTIVE"

    cli_ok(cluster, "server", "stop", sid)
    assert wait_for(cluster, sid, "SHUTOFF")["OS-EXT-STS:power_state"] in ("Shutdown", 4)
    conflict = action(cluster, sid, {"os-stop": None})
    assert conflict.status_code == 409
    assert conflict.json() == {"conflictingRequest": {
        "code": 409, "message": f"Cannot 'stop' instance {sid} while it is in vm_state stopped"}}
    soft = action(cluster, sid, {"reboot": {"type": "SOFT"}})
    assert soft.status_code == 409 and "vm_state stopped" in soft.json()["conflictingRequest"]["message"]

    cli_ok(cluster, "server", "start", sid)
    wait_for(cluster, sid, "ACTIVE")
    started = action(cluster, sid, {"os-start": None})
    assert started.status_code == 409 and "vm_state active" in started.json()["conflictingRequest"]["message"]

    cli_ok(cluster, "server", "reboot", "--soft", "--wait", sid)
    cli_ok(cluster, "server", "reboot", "--hard", "--wait", sid)
    assert wait_for(cluster, sid, "ACTIVE")["OS-EXT-STS:power_state"] in ("Running", 1)

    cli_ok(cluster, "server", "pause", sid)
    assert wait_for(cluster, sid, "PAUSED")["OS-EXT-STS:power_state"] in ("Paused", 3)
    cli_ok(cluster, "server", "unpause", sid)
    wait_for(cluster, sid, "ACTIVE")
    cli_ok(cluster, "server", "suspend", sid)
    wait_for(cluster, sid, "SUSPENDED")
    cli_ok(cluster, "server", "resume", sid)
    wait_for(cluster, sid, "ACTIVE")

    cli_ok(cluster, "server", "rebuild", "--image", "tiny-raw", "--wait", sid)
    wait_for(cluster, sid, "ACTIVE")
    log = cli_ok(cluster, "console", "log", "show", sid)  # the test hypervisor writes no console: empty
    assert log.strip() == ""
    cli_ok(cluster, "server", "delete", "--wait", sid)


def test_bad_action_bodies_get_novas_400_and_unknown_servers_404(cluster: RunningCluster) -> None:
    server = json.loads(cli_ok(cluster, "server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw",
                               "--wait", "-f", "json", "act2"))
    sid = server["id"]
    bad = action(cluster, sid, {"reboot": {"type": "GENTLE"}})
    assert bad.status_code == 400 and "badRequest" in bad.json()
    assert action(cluster, sid, {"teleport": None}).json() == {
        "badRequest": {"code": 400, "message": "There is no such action: teleport"}}
    assert action(cluster, sid, {"os-getConsoleOutput": {"length": "x"}}).status_code == 400
    assert action(cluster, sid, {"os-getConsoleOutput": {"length": -1}}).json() == {"output": ""}
    missing = action(cluster, "8b4e4b4e-0000-4000-8000-000000000000", {"os-stop": None})
    assert missing.status_code == 404 and "itemNotFound" in missing.json()
    assert show(cluster, sid)["status"] == "ACTIVE"  # nothing changed by the bad requests
    cli_ok(cluster, "server", "delete", "--wait", sid)
