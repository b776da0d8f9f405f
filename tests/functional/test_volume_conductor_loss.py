"""The conductor that owns a volume create is lost midway (issue 14): two conductors, node1
a compute and volume host (test:///default), real processes.

The create is held midway with signals: the volume worker is frozen (SIGSTOP) before the
create, so the owning conductor places the volume and waits on the worker's create_volume.
The owner, read from the volume's row (volumes.conductor_id), is then frozen (dead to the
cell in 3 beats) and the worker let go. The other conductor adopts the flow when the owner
leaves the directory and makes the volume again on its host (the worker finds the file
made: idempotent); the volume ends `available`, owned by the survivor, its allocation taken
once. The frozen owner is then killed for good (the supervisor starts it again)."""
from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow
WORKER = "cell1/volume/node1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("volloss"), volumes=True, conductors=2) as c:
        yield c


def login(cluster: RunningCluster) -> tuple[dict[str, str], str]:
    c = cluster.credentials("demo")
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": c["username"], "domain": {"name": "Default"}, "password": c["password"]}}},
        "scope": {"project": {"name": c["project_name"], "domain": {"name": "Default"}}}}}
    r = requests.post(c["auth_url"] + "/auth/tokens", json=body, timeout=10)
    return {"X-Auth-Token": r.headers["X-Subject-Token"]}, str(r.json()["token"]["project"]["id"])


def row(cluster: RunningCluster, vid: str) -> dict[str, Any] | None:
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    db.row_factory = sqlite3.Row
    try:
        found = db.execute("SELECT status, host, conductor_id FROM volumes WHERE id = ?", (vid,)).fetchone()
        return None if found is None else dict(found)
    finally:
        db.close()


def allocated(cluster: RunningCluster) -> int:
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    try:
        return int(db.execute("SELECT allocated_gb FROM volume_nodes WHERE host = 'node1'").fetchone()[0])
    finally:
        db.close()


def test_volume_create_whose_conductor_dies_midway_is_finished_by_the_other(cluster: RunningCluster) -> None:
    headers, project = login(cluster)
    base = f"{cluster.endpoint}/volume/v3/{project}/volumes"
    before = allocated(cluster)
    worker_pid = cluster.signal(WORKER, signal.SIGSTOP)  # its create_volume will wait
    owner_pid: int | None = None
    try:
        r = requests.post(base, json={"volume": {"size": 2, "name": "orphan"}}, headers=headers, timeout=10)
        assert r.status_code == 202, r.text
        vid = str(r.json()["volume"]["id"])
        placed = wait_for("volume never placed", lambda: (v := row(cluster, vid)) is not None and v["host"] and v,
                          timeout=5, interval=0.05)
        assert placed["status"] == "creating" and placed["host"] == "node1"
        owner = str(placed["conductor_id"])
        assert owner.startswith("cell1/conductor")
        owner_pid = cluster.signal(owner, signal.SIGSTOP)  # frozen: gone from the directory in 3 beats
    finally:
        os.kill(worker_pid, signal.SIGCONT)
    try:
        done = wait_for("volume never became available", lambda: (v := row(cluster, vid)) is not None
                        and v["status"] != "creating" and v, timeout=60, interval=0.2)
    finally:
        if owner_pid is not None:
            os.kill(owner_pid, signal.SIGKILL)  # gone for good (the supervisor starts it again)
    assert done["status"] == "available", done
    assert done["conductor_id"] not in (owner, None)  # the survivor drove it to the end
    survivor = str(done["conductor_id"])
    assert f"volume {vid}: adopting its creating flow" in cluster.log(survivor)
    assert allocated(cluster) == before + 2  # taken once
    shown = requests.get(f"{base}/{vid}", headers=headers, timeout=10).json()["volume"]
    assert shown["status"] == "available"
    assert (cluster.state / "hosts" / "node1" / "volumes" / f"volume-{vid}.raw").stat().st_size == 2 << 30
    assert requests.delete(f"{base}/{vid}", headers=headers, timeout=10).status_code == 202
    wait_for("volume never deleted", lambda: (v := row(cluster, vid)) is not None and v["status"] == "deleted",
             timeout=30, interval=0.2)
