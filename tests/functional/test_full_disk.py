"""A whole cluster on a file system that fills up (issue 14): its state dir (API DB, cell DB,
logs, images; the hosts' guest disks stay on the real disk) on a 256 MiB tmpfs, real
processes, test:///default.

Below the free-space watermark (db_settings.min_free_mb, 64 MiB by default) a new server is
refused with 507 and a clear message while a delete still goes through; with the disk
completely full a request that must write fails with 507 (the DB is out of space) or goes
through, never a hang or a dead service; every service stays alive throughout
(`cellctl status`), and once space is freed servers boot again."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.test_db_durability import fill
from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    where = Path(tempfile.mkdtemp(prefix="cc-fulldisk-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", str(where)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here for the full-disk cluster: {done.stderr.strip()}")
    hosts = Path(tempfile.mkdtemp(prefix="cc-fulldisk-hosts-"))  # guests' disks on the real disk: the
    try:  # compute's capacity is that file system's (a tiny tmpfs would fit no m1.tiny)
        (where / "cluster" / "var").mkdir(parents=True)
        (where / "cluster" / "var" / "hosts").symlink_to(hosts)
        with running_cluster(where / "cluster") as c:
            yield c
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()
        shutil.rmtree(hosts, ignore_errors=True)


class Api:
    def __init__(self, cluster: RunningCluster) -> None:
        self.h = {"X-Auth-Token": cluster.token("demo")}
        self.base = cluster.endpoint + "/compute/v2.1"
        images = requests.get(cluster.endpoint + "/image/v2/images?name=tiny-raw", headers=self.h, timeout=10)
        self.image = images.json()["images"][0]["id"]

    def create(self, name: str) -> requests.Response:
        return requests.post(f"{self.base}/servers", headers=self.h, timeout=30, json={
            "server": {"name": name, "flavorRef": "1", "imageRef": self.image}})

    def status(self, sid: str) -> str | None:
        r = requests.get(f"{self.base}/servers/{sid}", headers=self.h, timeout=30)
        return None if r.status_code == 404 else str(r.json()["server"]["status"])

    def boot(self, name: str) -> str:
        r = self.create(name)
        assert r.status_code == 202, r.text
        sid = str(r.json()["server"]["id"])
        wait_for(f"{name} ACTIVE", lambda: self.status(sid) == "ACTIVE", timeout=60, interval=0.2)
        return sid


def free_mb(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // (1 << 20)


def all_alive(cluster: RunningCluster) -> Any:
    return cluster.cellctl("status", str(cluster.cluster_file), check=False).returncode == 0


def test_a_filling_disk_refuses_new_servers_first_and_every_service_keeps_running(cluster: RunningCluster) -> None:
    api = Api(cluster)
    kept, doomed = api.boot("kept"), api.boot("doomed")
    filler = cluster.state / "filler"
    assert free_mb(cluster.state) > 64
    fill(filler)
    os.truncate(filler, filler.stat().st_size - (24 << 20))  # 24 MiB left: below the 64 MiB watermark
    time.sleep(1.1)  # the services' free-space readings (cached for a second) expire
    refused = api.create("refused")
    assert refused.status_code == 507, refused.text
    fault = refused.json()["computeFault"]
    assert fault["code"] == 507 and fault["message"].startswith(
        "Not enough free disk space for new servers: they are refused until space is freed. Request id req-")
    assert requests.delete(f"{api.base}/servers/{doomed}", headers=api.h, timeout=30).status_code == 204
    wait_for("doomed gone", lambda: api.status(doomed) is None, timeout=30, interval=0.2)  # deletes find room

    fill(filler)  # now nothing at all is left
    full = api.create("full")
    assert full.status_code == 507, full.text  # refused before anything is written
    renamed = requests.put(f"{api.base}/servers/{kept}", headers=api.h, timeout=30,
                           json={"server": {"name": "kept-renamed"}})
    assert renamed.status_code in (200, 507), renamed.text  # a write either fits in a free page or fails clearly
    if renamed.status_code == 507:
        assert "The database is out of disk space" in renamed.json()["computeFault"]["message"]
    assert all_alive(cluster)  # no service died of the full disk

    filler.unlink()
    time.sleep(1.1)
    again = api.boot("again")
    assert api.status(again) == "ACTIVE" and api.status(kept) == "ACTIVE"
    assert all_alive(cluster)
