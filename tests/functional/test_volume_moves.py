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
    second = cluster.settled(sid, "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
    assert second != first and plugs(cluster, second, vid, sid) == 1  # plugged into the guest made there
    cluster.ok("server", "resize", "confirm", sid)
    cluster.settled(sid, "ACTIVE")

    cluster.ok("server", "resize", "--flavor", "m1.small", sid)
    assert cluster.settled(sid, "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"] == first
    assert plugs(cluster, first, vid, sid) == 2
    cluster.ok("server", "resize", "revert", sid)
    back = cluster.settled(sid, "ACTIVE")
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


def volume_shown(cluster: RunningCluster, vid: str) -> Any:
    return cluster.ok("volume", "show", "-f", "json", vid)


def volume_status(cluster: RunningCluster, vid: str, status: str) -> None:
    wait_for(f"{vid} {status}", lambda: volume_shown(cluster, vid)["status"] == status, 60, 0.3)


def test_shelve_of_a_volume_backed_server_offloads_it_and_unshelve_boots_the_same_volume_elsewhere(
        cluster: RunningCluster) -> None:
    """Nova's shelve of a server booted from a volume: no image, the guest offloaded at once (no host, its
    volumes still attached and in-use); an admin's unshelve to the other host (2.91) carries the volumes there,
    makes the guest on the same root volume and plugs the data volume into it; delete then frees both."""
    root = cluster.ok("volume", "create", "--image", "tiny-raw", "--size", "1", "--bootable", "-f", "json",
                      "shelf-root")["id"]
    data = cluster.ok("volume", "create", "--size", "1", "-f", "json", "shelf-data")["id"]
    for vid in (root, data):
        volume_status(cluster, vid, "available")
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--volume", root, "--wait", "-f", "json",
                     "shelver")["id"]
    cluster.ok("server", "add", "volume", sid, data)
    volume_status(cluster, data, "in-use")
    first = shown(cluster, sid)["OS-EXT-SRV-ATTR:host"]

    cluster.ok("server", "shelve", sid)
    offloaded = cluster.settled(sid, "SHELVED_OFFLOADED")
    assert offloaded["OS-EXT-SRV-ATTR:host"] in (None, ""), offloaded
    assert cluster.ok("image", "list", "--name", "shelver-shelved", "-f", "json") == []  # Nova makes no image
    for vid in (root, data):
        volume = volume_shown(cluster, vid)
        assert volume["status"] == "in-use" and [a["server_id"] for a in volume["attachments"]] == [sid], volume

    other = next(h for h in ("node1", "node2") if h != first)
    cluster.ok("--os-compute-api-version", "2.91", "server", "unshelve", "--host", other, sid, who="admin")
    back = cluster.settled(sid, "ACTIVE")
    assert back["OS-EXT-SRV-ATTR:host"] == other, back
    assert sorted(a["id"] for a in back["volumes_attached"]) == sorted([root, data]), back
    wait_for("the data volume plugged on the new host", lambda: plugs(cluster, other, data, sid) == 1, 60, 0.5)
    for vid in (root, data):
        assert volume_shown(cluster, vid)["status"] == "in-use"

    cluster.ok("server", "delete", "--wait", sid)
    for vid in (root, data):
        volume_status(cluster, vid, "available")
        cluster.ok("volume", "delete", vid)
