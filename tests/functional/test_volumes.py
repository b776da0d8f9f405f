"""Issue 6 end to end on a real cluster (cellctl up, node1 a compute and volume host on
test:///default): the unmodified `openstack` CLI through the whole volume lifecycle:
create, list, show, attach to a server, refusals, detach, attach to another server,
a server deleted with its volume attached, delete. Data written into the volume
before the first attach is still there after each detach/attach cycle."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow
MARKER = b"CELLCLOUD-VOLUME-MARKER-0001"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("volumes"), volumes=True) as c:
        yield c


def refused(cluster: RunningCluster, *args: str) -> str:
    done = cluster.cli(*args)
    assert done.returncode != 0, f"openstack {' '.join(args)} should have failed: {done.stdout}"
    return done.stderr


def wait_volume(cluster: RunningCluster, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
    return dict(wait_for(f"volume {name} {status}", lambda: (
        v := cluster.ok("volume", "show", name, "-f", "json"))["status"] == status and v, timeout, 0.3))


def volume_file(cluster: RunningCluster, volume_id: str) -> Path:
    return cluster.state / "hosts" / "node1" / "volumes" / f"volume-{volume_id}.raw"


def test_volume_lifecycle_with_the_cli(cluster: RunningCluster) -> None:
    made = cluster.ok("volume", "create", "--size", "1", "v1", "-f", "json")
    assert made["status"] == "creating" and made["size"] == 1
    vol = wait_volume(cluster, "v1", "available")
    vid = vol["id"]
    assert [(v["Name"], v["Size"]) for v in cluster.ok("volume", "list", "-f", "json")] == [("v1", 1)]
    path = volume_file(cluster, vid)
    assert path.stat().st_size == 1 << 30 and path.stat().st_blocks == 0  # sparse
    with path.open("r+b") as f:  # data written before the first attach
        f.write(MARKER)

    for server in ("s1", "s2"):
        cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", server)
    cluster.ok("server", "add", "volume", "s1", "v1")
    vol = wait_volume(cluster, "v1", "in-use")
    s1 = cluster.ok("server", "show", "s1", "-f", "json")
    assert [a["server_id"] for a in vol["attachments"]] == [s1["id"]]
    assert vid in json.dumps(s1["volumes_attached"])
    listed = cluster.ok("volume", "list", "-f", "json")
    assert [a["server_id"] for a in listed[0]["Attached to"]] == [s1["id"]] and listed[0]["Status"] == "in-use"

    # refusals change nothing: delete while in use, a second server, a bad size
    assert "attached" in refused(cluster, "volume", "delete", "v1")
    refused(cluster, "server", "add", "volume", "s2", "v1")
    assert "greater than 0" in refused(cluster, "volume", "create", "--size", "0", "bad")
    refused(cluster, "volume", "create", "--size", "100000", "absurd")
    assert wait_volume(cluster, "v1", "in-use")["id"] == vid
    assert [v["Name"] for v in cluster.ok("volume", "list", "-f", "json")] == ["v1"]

    cluster.ok("server", "remove", "volume", "s1", "v1")
    assert wait_volume(cluster, "v1", "available")["attachments"] == []
    assert path.read_bytes()[:len(MARKER)] == MARKER

    # to another server, which is then deleted with the volume attached: the volume is released
    cluster.ok("server", "add", "volume", "s2", "v1")
    wait_volume(cluster, "v1", "in-use")
    cluster.ok("server", "delete", "--wait", "s2")
    assert wait_volume(cluster, "v1", "available")["attachments"] == []
    assert path.read_bytes()[:len(MARKER)] == MARKER

    cluster.ok("volume", "delete", "v1")
    wait_for("volume v1 deleted", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)
    assert not path.exists()
    cluster.ok("server", "delete", "--wait", "s1")


def test_boot_from_a_volume_made_from_an_image_with_the_cli(cluster: RunningCluster) -> None:
    """server create --image tiny-raw --boot-from-volume 1 --delete-on-termination: the cell makes the volume
    from the image (its bytes in the volume file), the server boots from it (no image shown, the volume at
    /dev/vda, delete_on_termination shown) and its delete removes the volume and its file; --block-device
    source=image,...,delete_on_termination=false keeps the volume, available, after the server's delete, and a
    --block-device source_type=blank,... volume beside it is hot-plugged at /dev/vdb and goes with the server."""
    from api.image.default import MARKER as IMAGE_MARKER
    image_id = cluster.ok("image", "show", "tiny-raw", "-f", "json")["id"]
    server = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--boot-from-volume", "1",
                        "--delete-on-termination", "--wait", "bfi1", "-f", "json")
    assert server["status"] == "ACTIVE" and server["image"] in ("", "N/A (booted from volume)")
    [attached] = server["volumes_attached"]
    vid = attached["id"]
    assert attached["delete_on_termination"] is True
    vol = wait_volume(cluster, vid, "in-use")
    assert [(a["server_id"], a["device"]) for a in vol["attachments"]] == [(server["id"], "/dev/vda")]
    assert vol["bootable"] in (True, "true") and vol["size"] == 1
    with volume_file(cluster, vid).open("rb") as f:
        assert f.read(len(IMAGE_MARKER)) == IMAGE_MARKER
    cluster.ok("server", "delete", "--wait", "bfi1")
    wait_for("the root volume deleted with its server", lambda: vid not in json.dumps(
        cluster.ok("volume", "list", "-f", "json")), 60, 0.5)
    assert not volume_file(cluster, vid).exists()

    kept = cluster.ok("server", "create", "--flavor", "m1.tiny", "--block-device",
                      f"uuid={image_id},source_type=image,destination_type=volume,volume_size=1,"
                      "delete_on_termination=false,boot_index=0", "--block-device",
                      "source_type=blank,destination_type=volume,volume_size=1,delete_on_termination=true",
                      "--wait", "bfi2", "-f", "json")
    assert kept["status"] == "ACTIVE"
    vol = wait_volume(cluster, kept["volumes_attached"][0]["id"], "in-use")
    attached = {a["device"]: a for a in vol["attachments"]}
    blank = next(v for v in cluster.ok("volume", "list", "--long", "-f", "json") if v["ID"] != vol["id"])
    blank = wait_volume(cluster, blank["ID"], "in-use")  # hot-plugged once the guest runs
    assert [(a["server_id"], a["device"]) for a in blank["attachments"]] == [(kept["id"], "/dev/vdb")]
    assert blank["bootable"] in (False, "false") and list(attached) == ["/dev/vda"]
    shown = {v["id"]: v["delete_on_termination"] for v in cluster.ok("server", "show", "bfi2", "-f", "json")[
        "volumes_attached"]}
    assert shown == {vol["id"]: False, blank["id"]: True}
    cluster.ok("server", "delete", "--wait", "bfi2")
    assert wait_volume(cluster, vol["id"], "available")["attachments"] == []
    wait_for("the blank volume deleted with its server", lambda: blank["id"] not in json.dumps(
        cluster.ok("volume", "list", "-f", "json")), 60, 0.5)
    attached = vol
    cluster.ok("volume", "delete", attached["id"])
    wait_for("the kept volume deleted", lambda: attached["id"] not in json.dumps(
        cluster.ok("volume", "list", "-f", "json")), 60, 0.5)


def test_volume_groups_and_group_snapshots_with_the_cli(cluster: RunningCluster) -> None:
    """Cinder's generic groups through `openstack --os-volume-api-version 3.14`: a group of a group type and a
    volume type, a volume added to it, a group snapshot of it (one snapshot per member), a group made from the
    group snapshot (a volume per member snapshot, in the new group), then the deletes (--force takes the
    volumes with the group)."""
    v = ("--os-volume-api-version", "3.14")
    cluster.ok(*v, "volume", "group", "type", "create", "gt-cli", who="admin")
    cluster.ok("volume", "type", "create", "vt-cli", who="admin")
    group = cluster.ok(*v, "volume", "group", "create", "--volume-group-type", "gt-cli", "--volume-type", "vt-cli",
                       "--name", "g1", "-f", "json")
    made = cluster.ok("volume", "create", "--size", "1", "--type", "vt-cli", "gv1", "-f", "json")
    wait_volume(cluster, "gv1", "available")
    cluster.ok(*v, "volume", "group", "add", "volume", "g1", "gv1")
    shown = cluster.ok(*v, "volume", "group", "show", "g1", "-f", "json")
    assert shown["ID"] == group["ID"] and shown["Status"] == "available"
    assert cluster.ok("--os-volume-api-version", "3.13", "volume", "show", "gv1", "-f", "json")["group_id"] == group["ID"]

    cluster.ok(*v, "volume", "group", "snapshot", "create", "g1", "--name", "gs1")
    wait_for("group snapshot gs1 available", lambda: cluster.ok(
        *v, "volume", "group", "snapshot", "show", "gs1", "-f", "json")["Status"] == "available", 60, 0.5)
    [snap] = cluster.ok("volume", "snapshot", "list", "-f", "json")
    cluster.ok(*v, "volume", "group", "create", "--group-snapshot", "gs1", "--name", "g2")
    g2 = cluster.ok(*v, "volume", "group", "show", "g2", "-f", "json")
    [copy] = [x for x in cluster.ok("volume", "list", "--long", "-f", "json") if x["ID"] != made["id"]]
    copied = wait_volume(cluster, copy["ID"], "available")
    assert copied["snapshot_id"] == snap["ID"] and copied["type"] == "vt-cli"
    assert cluster.ok("--os-volume-api-version", "3.13", "volume", "show", copy["ID"], "-f", "json")[
        "group_id"] == g2["ID"]

    cluster.ok(*v, "volume", "group", "delete", "--force", "g2")
    cluster.ok(*v, "volume", "group", "snapshot", "delete", "gs1")
    cluster.ok(*v, "volume", "group", "delete", "--force", "g1")
    wait_for("the groups' volumes deleted", lambda: cluster.ok("volume", "list", "-f", "json") == [], 60, 0.5)
    assert cluster.ok(*v, "volume", "group", "list", "-f", "json") == []
    cluster.ok("volume", "type", "delete", "vt-cli", who="admin")
