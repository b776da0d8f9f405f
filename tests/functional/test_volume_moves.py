"""A server's volume goes with it when it moves (issue 18), end to end with the unmodified `openstack` CLI on
two compute hosts of libvirt's test hypervisor, node1 a volume host too (its local target serves node1, its
tgt and NBD targets the other host): migrate, resize and revert re-export the volume to the server's new host
and plug it into the guest there; a detach afterwards goes through the new host and the new export."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("volmove"), hosts=2, volumes=True, name="volmove") as c:
        yield c


def shown(cluster: RunningCluster, sid: str) -> Any:
    return cluster.ok("server", "show", "-f", "json", sid, who="admin")


def settled(cluster: RunningCluster, sid: str, status: str) -> Any:
    return wait_for(f"{sid} {status}", lambda: (s := shown(cluster, sid))["status"] == status
                    and s["OS-EXT-STS:task_state"] is None and s, timeout=90, interval=0.5)


def plugs(cluster: RunningCluster, host: str, vid: str, sid: str) -> int:
    """How many times the compute of `host` plugged the volume into the server's guest."""
    return cluster.log(f"cell1/compute/{host}").count(f"volume {vid} attached to {sid}")


def test_a_volume_follows_migrate_resize_and_revert(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "mover")["id"]
    vid = cluster.ok("volume", "create", "--size", "1", "-f", "json", "moving-data")["id"]
    wait_for("volume available", lambda: cluster.ok("volume", "show", "-f", "json", vid)["status"] == "available",
             timeout=60, interval=0.3)
    cluster.ok("server", "add", "volume", sid, vid)
    wait_for("volume in-use", lambda: cluster.ok("volume", "show", "-f", "json", vid)["status"] == "in-use",
             timeout=60, interval=0.3)
    first = shown(cluster, sid)["OS-EXT-SRV-ATTR:host"]
    assert plugs(cluster, first, vid, sid) == 1

    cluster.ok("server", "migrate", sid, who="admin")
    second = settled(cluster, sid, "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
    assert second != first and plugs(cluster, second, vid, sid) == 1  # plugged into the guest made there
    cluster.ok("server", "resize", "confirm", sid)
    settled(cluster, sid, "ACTIVE")

    cluster.ok("server", "resize", "--flavor", "m1.small", sid)
    assert settled(cluster, sid, "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"] == first
    assert plugs(cluster, first, vid, sid) == 2
    cluster.ok("server", "resize", "revert", sid)
    back = settled(cluster, sid, "ACTIVE")
    assert back["OS-EXT-SRV-ATTR:host"] == second
    assert [a["id"] for a in back["volumes_attached"]] == [vid], back
    volume = cluster.ok("volume", "show", "-f", "json", vid)
    assert volume["status"] == "in-use" and [a["server_id"] for a in volume["attachments"]] == [sid], volume

    cluster.ok("server", "remove", "volume", sid, vid)  # through the host it is on now, and its export
    wait_for("volume available", lambda: cluster.ok("volume", "show", "-f", "json", vid)["status"] == "available",
             timeout=60, interval=0.3)
    assert f"volume {vid} detached from {sid}" in cluster.log(f"cell1/compute/{second}")
    cluster.ok("server", "delete", "--wait", sid)
    cluster.ok("volume", "delete", vid)
