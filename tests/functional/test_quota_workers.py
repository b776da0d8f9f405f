"""Quotas hold across API worker processes (issue 14): a cluster with `api: {workers: 3}` (three
API processes on one port, the kernel spreading connections), real processes, test:///default.

A project with an instances quota of 5 fires 24 boots at once over separate connections:
exactly 5 are accepted (202), the rest refused with Nova's 403, and the project holds 5
servers. Then the same with volumes (quota 3, 12 creates at once: exactly 3 accepted, the
others Cinder's 413)."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("quotaworkers"), api_workers=3, volumes=True) as c:
        yield c


def project_of(cluster: RunningCluster, token: str) -> str:
    r = requests.get(cluster.endpoint + "/identity/v3/auth/tokens", timeout=10,
                     headers={"X-Auth-Token": token, "X-Subject-Token": token})
    return str(r.json()["token"]["project"]["id"])


def burst(n: int, send: Any) -> list[requests.Response]:
    with ThreadPoolExecutor(n) as pool:  # each request on its own connection: spread over the workers
        return list(pool.map(lambda i: send(i), range(n)))


def test_boots_and_volume_creates_racing_through_three_api_workers_take_exactly_the_quota(
        cluster: RunningCluster) -> None:
    demo, admin = cluster.token("demo"), cluster.token("admin")
    project = project_of(cluster, demo)
    h = {"X-Auth-Token": demo}
    compute = cluster.endpoint + "/compute/v2.1"
    r = requests.put(f"{compute}/os-quota-sets/{project}", headers={"X-Auth-Token": admin}, timeout=10,
                     json={"quota_set": {"instances": 5, "cores": -1, "ram": -1}})
    assert r.status_code == 200, r.text
    image = requests.get(cluster.endpoint + "/image/v2/images?name=tiny-raw", headers=h,
                         timeout=10).json()["images"][0]["id"]

    def boot(i: int) -> requests.Response:
        return requests.post(f"{compute}/servers", headers=h, timeout=60, json={
            "server": {"name": f"race-{i}", "flavorRef": "1", "imageRef": image}})
    answers = burst(24, boot)
    assert sorted(a.status_code for a in answers) == [202] * 5 + [403] * 19, [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 403).json()["forbidden"]["message"]
    assert refused.startswith("Quota exceeded for instances: Requested 1, but already used 5 of 5 instances")
    listed = wait_for("5 servers listed", lambda: (s := requests.get(
        f"{compute}/servers", headers=h, timeout=10).json()["servers"]) and len(s) == 5 and s, timeout=30)
    assert {s["name"] for s in listed} == {f"race-{i}" for i, a in enumerate(answers) if a.status_code == 202}

    volumes = f"{cluster.endpoint}/volume/v3/{project}"
    r = requests.put(f"{cluster.endpoint}/volume/v3/{project_of(cluster, admin)}/os-quota-sets/{project}",
                     headers={"X-Auth-Token": admin}, timeout=10,
                     json={"quota_set": {"volumes": 3}})
    assert r.status_code == 200, r.text
    made = burst(12, lambda i: requests.post(f"{volumes}/volumes", headers=h, timeout=60,
                                             json={"volume": {"size": 1, "name": f"v{i}"}}))
    assert sorted(a.status_code for a in made) == [202] * 3 + [413] * 9, [a.text for a in made]
    held = requests.get(f"{volumes}/volumes", headers=h, timeout=10).json()["volumes"]
    assert len(held) == 3
