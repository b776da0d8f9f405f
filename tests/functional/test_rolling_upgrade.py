"""Old and new services side by side: a compute worker pinned to the previous release
(RPC 1.0, Instance 1.0, no versions advertised: what the code before versioning spoke)
boots, stops, starts and deletes servers through upgraded cell services, and
`cellctl status` shows each service's release and what the cell pins to."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cells.objects import versions
from cells.rpcapi.conductor import SURFACE as CONDUCTOR
from tools.devcluster import RunningCluster, running_cluster

pytestmark = pytest.mark.slow
OLD = "cell1/compute/node1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    before = os.environ.get("CELLCLOUD_PIN_RELEASE")
    os.environ["CELLCLOUD_PIN_RELEASE"] = f"{OLD}=1"  # the supervisor's children inherit it
    try:
        with running_cluster(tmp_path_factory.mktemp("upgrade")) as c:
            yield c
    finally:
        if before is None:
            os.environ.pop("CELLCLOUD_PIN_RELEASE", None)
        else:
            os.environ["CELLCLOUD_PIN_RELEASE"] = before


class Rest:
    def __init__(self, cluster: RunningCluster) -> None:
        c = cluster.credentials("demo")
        body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": c["username"], "domain": {"name": "Default"}, "password": c["password"]}}},
            "scope": {"project": {"name": c["project_name"], "domain": {"name": "Default"}}}}}
        r = requests.post(c["auth_url"] + "/auth/tokens", json=body, timeout=10)
        self.h = {"X-Auth-Token": r.headers["X-Subject-Token"]}
        self.base = cluster.endpoint + "/compute/v2.1"
        images = requests.get(cluster.endpoint + "/image/v2/images?name=tiny-raw", headers=self.h, timeout=10)
        self.image = images.json()["images"][0]["id"]

    def server(self, sid: str) -> requests.Response:
        return requests.get(f"{self.base}/servers/{sid}", headers=self.h, timeout=10)

    def wait(self, sid: str, status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.server(sid).json()["server"]
            if doc["status"] == status and not doc.get("OS-EXT-STS:task_state"):
                return dict(doc)
            assert doc["status"] != "ERROR" or status == "ERROR", doc.get("fault")
            assert time.monotonic() < deadline, f"{sid} stayed {doc['status']}"
            time.sleep(0.1)

    def act(self, sid: str, body: dict[str, Any]) -> None:
        r = requests.post(f"{self.base}/servers/{sid}/action", json=body, headers=self.h, timeout=10)
        assert r.status_code == 202, r.text


def test_status_shows_each_services_release_and_the_pin(cluster: RunningCluster) -> None:
    status = json.loads(cluster.cellctl("status", str(cluster.cluster_file), "--json").stdout)
    [cell] = status["cells"]
    services = {s["id"]: s for h in cell["hosts"] for s in h["services"]}
    assert (services[OLD]["release"], services[OLD]["rpc"]) == ("1", "1.0")
    newest = max(m.version for m in CONDUCTOR.values())  # what this release's conductor speaks
    assert (services["cell1/conductor"]["release"], services["cell1/conductor"]["rpc"]) == (versions.RELEASE, newest)
    assert cell["pins"]["Instance"] == "1.0" and cell["pins"]["release"] == "1"
    text = cluster.cellctl("status", str(cluster.cluster_file), "--hosts").stdout  # each service's release
    assert "release 1 rpc 1.0" in text and "pinned to the lowest live versions: Instance 1.0" in text


def test_previous_release_compute_boots_stops_starts_deletes(cluster: RunningCluster) -> None:
    api = Rest(cluster)
    r = requests.post(f"{api.base}/servers", headers=api.h, timeout=10, json={
        "server": {"name": "old-host", "flavorRef": "1", "imageRef": api.image}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    api.wait(sid, "ACTIVE")
    api.act(sid, {"os-stop": None})
    api.wait(sid, "SHUTOFF")
    api.act(sid, {"os-start": None})
    api.wait(sid, "ACTIVE")
    assert requests.delete(f"{api.base}/servers/{sid}", headers=api.h, timeout=10).status_code == 204
    deadline = time.monotonic() + 30
    while api.server(sid).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # the old worker got every record as the plain 1.0 dict: it refuses fields it does not know
    assert "unknown to version 1.0" not in cluster.log(OLD) and "Traceback" not in cluster.log(OLD)
