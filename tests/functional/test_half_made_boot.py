"""The API dies between writing a boot's instance mapping and its cell taking the build
(issue 14): real processes, test:///default.

The cell's conductor is frozen (SIGSTOP), so a POST /servers writes its mapping and then
waits on build_instances; the API process is killed (SIGKILL) right then, and the
conductor let go only after the call's deadline passed (it drops the stale request: the
cell never makes the server). The supervisor starts the API again. The orphan mapping
counts against the project's quota (instances 2: one more boot fits, the next is 403)
until the new API's sweep asks the cell, which has never heard of it, and removes it
after the grace (api/compute/boot_sweep.py; the shortest cluster.yaml allows); then the project
can boot again."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from api.compute import boot_sweep
from api.compute.cell_boot import BUILD_BOUND
from tools.clusterfile import MIN_BOOT_GRACE
from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("halfmade"), name="halfmade",
                         half_made_boot_grace=MIN_BOOT_GRACE) as c:
        yield c


def mappings(cluster: RunningCluster) -> dict[str, dict[str, Any]]:
    db = sqlite3.connect(cluster.state / "api.db")
    db.row_factory = sqlite3.Row
    try:
        return {r["name"]: dict(r) for r in db.execute("SELECT instance_uuid, name, built FROM instance_mappings")}
    finally:
        db.close()


def api_up(cluster: RunningCluster) -> bool:
    try:
        return requests.get(cluster.endpoint + "/identity", timeout=2).status_code < 500
    except requests.RequestException:
        return False


def test_a_boot_whose_api_died_before_the_cell_got_it_is_swept_with_its_quota(cluster: RunningCluster) -> None:
    admin = {"X-Auth-Token": cluster.token("admin")}
    compute = cluster.endpoint + "/compute/v2.1"
    h = {"X-Auth-Token": cluster.token("demo")}
    project = requests.get(cluster.endpoint + "/identity/v3/auth/tokens", timeout=10,
                           headers={**h, "X-Subject-Token": h["X-Auth-Token"]}).json()["token"]["project"]["id"]
    assert requests.put(f"{compute}/os-quota-sets/{project}", headers=admin, timeout=10, json={
        "quota_set": {"instances": 2, "cores": -1, "ram": -1}}).status_code == 200
    image = requests.get(cluster.endpoint + "/image/v2/images?name=tiny-raw", headers=h,
                         timeout=10).json()["images"][0]["id"]

    def boot(name: str) -> requests.Response:
        return requests.post(f"{compute}/servers", headers=h, timeout=30,
                             json={"server": {"name": name, "flavorRef": "1", "imageRef": image}})

    conductor = cluster.signal("cell1/conductor", signal.SIGSTOP)
    try:
        outcome: list[BaseException | requests.Response] = []

        def orphan_boot() -> None:
            try:
                outcome.append(boot("orphan"))
            except requests.RequestException as exc:
                outcome.append(exc)
        lost = threading.Thread(target=orphan_boot)
        lost.start()
        wait_for("the orphan's mapping", lambda: "orphan" in mappings(cluster), timeout=BUILD_BOUND - 1,
                 interval=0.02)
        written = time.monotonic()
        cluster.signal("api", signal.SIGKILL)  # between the mapping and the cell taking the build
        lost.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], requests.RequestException)  # its API died under it
        time.sleep(BUILD_BOUND + 1)  # the build call's deadline passes while the conductor is frozen
    finally:
        os.kill(conductor, signal.SIGCONT)
    orphan = mappings(cluster)["orphan"]
    assert orphan["built"] == 0
    wait_for("the API started again", lambda: api_up(cluster), timeout=60)

    first = boot("fits")
    assert first.status_code == 202, first.text
    over = boot("over")  # the orphan still counts: 2 of 2
    assert time.monotonic() - written < MIN_BOOT_GRACE, "too slow to stay under the grace: the test proves nothing"
    assert over.status_code == 403, over.text
    wait_for("the orphan mapping swept", lambda: "orphan" not in mappings(cluster),
             timeout=MIN_BOOT_GRACE + 2 * boot_sweep.sweep_interval(MIN_BOOT_GRACE) + 30, interval=1)
    again = boot("again")
    assert again.status_code == 202, again.text
    assert mappings(cluster)["fits"]["built"] == 1
