"""Issue 18 end to end on a real cluster (cellctl up, node1 a compute and volume host on test:///default)
with the unmodified `openstack` CLI: a snapshot of a volume, a volume made from the snapshot and one
made from the volume (the bytes written before the snapshot are in both, checked in the volume host's
files: this hypervisor runs no guest), a volume with a snapshot refused deletion until --purge,
extend, the snapshots quota (413); volume types steering to a volume host by volume_backend_name; a
bootable volume made from an image; a volume uploaded to an image that boots; an attached volume extended.
(The CLI refuses a shrink itself; the API's 400 for one is tests/unit/test_volume_snapshots.py's.)"""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.image.default import MARKER as TINY_RAW_MARKER
from node.volume.backends.qcow2_chain import backing_of, virtual_size
from node.volume.targets import nbd
from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow
MARKER_BYTE = 0x5A
MARKER = bytes([MARKER_BYTE]) * 32  # written through the export as qemu-io's pattern
WRITE_TARGET = "nbd"
GIB = 1 << 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("snapshots"), volumes=True, name="snaps18") as c:
        # the module's tests share the demo project and keep their volumes: room past Cinder's default 10, so
        # each test's own quota checks (snapshots) are the only limits it meets
        c.ok("quota", "set", "--volumes", "100", "--gigabytes", "1000", "demo", who="admin")
        yield c


def refused(cluster: RunningCluster, *args: str, who: str = "demo") -> str:
    done = cluster.cli(*args, who=who)
    assert done.returncode != 0, f"openstack {' '.join(args)} should have failed: {done.stdout}"
    return done.stderr


def wait_status(cluster: RunningCluster, kind: tuple[str, ...], name: str, status: str,
                timeout: float = 30) -> dict[str, Any]:
    return dict(wait_for(f"{' '.join(kind)} {name} {status}", lambda: (
        v := cluster.ok(*kind, "show", name, "-f", "json"))["status"] == status and v, timeout, 0.3))


def files(cluster: RunningCluster) -> Path:
    return cluster.state / "hosts" / "node1" / "volumes"


def marker_at(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(GIB // 2)
        return f.read(len(MARKER))


def qemu_marker(path: Path) -> bytes:
    """The marker's bytes as QEMU reads the file (a qcow2 through its backing chain)."""
    fmt = "qcow2" if path.suffix == ".qcow2" else "raw"
    out = subprocess.run(["qemu-io", "-f", fmt, "-c", f"read -v {GIB // 2} {len(MARKER)}", str(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return bytes.fromhex("".join(m.group(1) for m in re.finditer(r"^[0-9a-f]{8}:  ((?:[0-9a-f]{2} )+)", out,
                                                                 re.MULTILINE)))


def write_through_export(cluster: RunningCluster, name: str, volume_id: str) -> None:
    """The marker written by qemu-io through the volume's export to a server (NBD from the volume host's
    qemu-storage-daemon, as a guest's QEMU would open it; the test hypervisor runs no guest to write it),
    then the volume detached."""
    cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "writer")
    cluster.ok("server", "add", "volume", "writer", name)
    wait_status(cluster, ("volume",), name, "in-use")
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    try:
        info = json.loads(db.execute("SELECT connection_info FROM volume_attachments WHERE volume_id = ?",
                                     (volume_id,)).fetchone()[0])
    finally:
        db.close()
    data = info["data"]
    assert info["driver_volume_type"] == "nbd", info
    url = f"nbd://{data['host']}:{data['port']}/{data['name']}"
    subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {MARKER_BYTE:#x} {GIB // 2} {len(MARKER)}", url],
                   capture_output=True, timeout=30, check=True)
    cluster.ok("server", "remove", "volume", "writer", name)
    wait_status(cluster, ("volume",), name, "available")
    cluster.ok("server", "delete", "--wait", "writer")


def test_snapshots_copies_extend_and_quota_with_the_cli(cluster: RunningCluster) -> None:
    """A marker written through data1's NBD export; copy-on-write here (ext4: no reflinks, qcow2 chains): the
    snapshot is data1's former file, data1 and
    the volumes made from the snapshot and from data1 small qcow2 overlays with a backing file that read
    the marker written before the snapshot; the snapshot is busy (back to available) while data2 reads
    through it."""
    reason = nbd.unavailable_reason()
    if reason:
        pytest.skip(f"the marker is written through an NBD export: {reason}")
    vol = ("volume",)
    snap = ("volume", "snapshot")
    cluster.ok("volume", "create", "--size", "1", "--property", f"cellcloud:target={WRITE_TARGET}", "data1")
    data1 = wait_status(cluster, vol, "data1", "available")["id"]
    write_through_export(cluster, "data1", data1)

    made = cluster.ok("volume", "snapshot", "create", "--volume", "data1", "snap1", "-f", "json")
    assert made["status"] == "creating" and made["volume_id"] == data1 and made["size"] == 1
    snap1 = wait_status(cluster, snap, "snap1", "available")["id"]
    assert marker_at(files(cluster) / f"snapshot-{snap1}.raw") == MARKER
    assert backing_of(str(files(cluster) / f"volume-{data1}.qcow2")) == f"snapshot-{snap1}.raw"
    assert [s["Name"] for s in cluster.ok("volume", "snapshot", "list", "-f", "json")] == ["snap1"]

    assert "dependent snapshots" in refused(cluster, "volume", "delete", "data1")
    assert wait_status(cluster, vol, "data1", "available")["id"] == data1

    cluster.ok("volume", "create", "--snapshot", "snap1", "--size", "2", "data2", "-f", "json")
    data2 = wait_status(cluster, vol, "data2", "available")
    assert data2["snapshot_id"] == snap1 and data2["size"] == 2
    cluster.ok("volume", "create", "--source", "data1", "data3", "-f", "json")
    data3 = wait_status(cluster, vol, "data3", "available")
    assert data3["source_volid"] == data1 and data3["size"] == 1
    for made_vol, backing in ((data2, f"snapshot-{snap1}.raw"), (data3, f"base-{data3['id']}.qcow2")):
        path = files(cluster) / f"volume-{made_vol['id']}.qcow2"
        assert backing_of(str(path)) == backing and path.stat().st_size < 1 << 20  # << the 1-2 GiB volume
        assert qemu_marker(path) == MARKER

    cluster.ok("volume", "snapshot", "delete", "snap1")  # data2 reads through its file: kept as data2's base
    wait_for("snap1 deleted", lambda: snap1 not in {s["ID"] for s in cluster.ok("volume", "snapshot", "list",
                                                                                "-f", "json")}, 60, 0.5)
    data2_file = files(cluster) / f"volume-{data2['id']}.qcow2"
    assert backing_of(str(data2_file)) == f"snapshot-{snap1}.raw" and qemu_marker(data2_file) == MARKER

    cluster.ok("volume", "set", "--size", "3", "data1")
    grown = wait_status(cluster, vol, "data1", "available")
    assert grown["size"] == 3 and virtual_size(str(files(cluster) / f"volume-{data1}.qcow2"), "qcow2") == 3 * GIB

    project = cluster.ok("volume", "show", "data1", "-f", "json")["os-vol-tenant-attr:tenant_id"]
    cluster.ok("quota", "set", "--snapshots", "0", project, who="admin")  # snap1 is gone: it counts no more
    assert "exceeds the allowed snapshots quota" in refused(cluster, "volume", "snapshot", "create", "--volume",
                                                            "data3", "snap2")
    cluster.ok("quota", "set", "--snapshots", "10", project, who="admin")

    cluster.ok("volume", "delete", "data2")
    wait_for("data2 gone", lambda: "data2" not in [v["Name"] for v in cluster.ok("volume", "list", "-f", "json")],
             30, 0.3)
    cluster.ok("volume", "delete", "--purge", "data1")
    wait_for("data1 and snap1 gone", lambda: not cluster.ok("volume", "snapshot", "list", "-f", "json")
             and "data1" not in [v["Name"] for v in cluster.ok("volume", "list", "-f", "json")], 30, 0.3)
    assert qemu_marker(files(cluster) / f"volume-{data3['id']}.qcow2") == MARKER  # its base outlives data1
    cluster.ok("volume", "delete", "data3")
    wait_for("every volume gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)
    assert list(files(cluster).iterdir()) == []


def test_volume_types_steer_to_a_matching_backend_with_the_cli(cluster: RunningCluster) -> None:
    """node1's volume worker answers to backend_name "file" (its backend): a type asking for it places its
    volumes there; a type asking for a backend no host has leaves its volume in error."""
    vol = ("volume",)
    cluster.ok("volume", "type", "create", "--property", "volume_backend_name=file", "plain", who="admin")
    cluster.ok("volume", "type", "create", "--property", "volume_backend_name=nvme", "fast", who="admin")
    assert {"plain", "fast"} <= {t["Name"] for t in cluster.ok("volume", "type", "list", "-f", "json")}
    cluster.ok("volume", "create", "--type", "plain", "--size", "1", "typed", "-f", "json")
    assert wait_status(cluster, vol, "typed", "available")["type"] == "plain"
    cluster.ok("volume", "create", "--type", "fast", "--size", "1", "nowhere", "-f", "json")
    assert wait_status(cluster, vol, "nowhere", "error")["type"] == "fast"
    assert "in-use" in refused(cluster, "volume", "type", "delete", "plain", who="admin")
    for name in ("typed", "nowhere"):
        cluster.ok("volume", "delete", name)
    wait_for("typed volumes gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)
    cluster.ok("volume", "type", "delete", "plain", "fast", who="admin")


def test_a_bootable_volume_from_an_image_with_the_cli(cluster: RunningCluster) -> None:
    """The volume host downloads tiny-raw (verified) and writes its disk into the volume."""
    vol = ("volume",)
    cluster.ok("volume", "create", "--image", "tiny-raw", "--size", "1", "--bootable", "bootvol", "-f", "json")
    made = wait_status(cluster, vol, "bootvol", "available")
    assert made["bootable"] is True
    assert made["volume_image_metadata"]["image_name"] == "tiny-raw"
    with (files(cluster) / f"volume-{made['id']}.raw").open("rb") as f:
        assert f.read(len(TINY_RAW_MARKER)) == TINY_RAW_MARKER
    cluster.ok("volume", "set", "--non-bootable", "bootvol")
    assert cluster.ok("volume", "show", "bootvol", "-f", "json")["bootable"] is False
    cluster.ok("volume", "delete", "bootvol")
    wait_for("bootvol gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)


def test_upload_a_volume_to_an_image_and_boot_it_with_the_cli(cluster: RunningCluster, tmp_path: Path) -> None:
    """image create --volume: the volume host PUTs the bytes through the image API; the image holds the
    volume's bytes and boots a server (on this cluster's test hypervisor); with --disk-format qcow2 the image
    is a qcow2 file with no backing file holding the same bytes; volume set/unset --image-property change the
    volume's volume_image_metadata."""
    vol = ("volume",)
    cluster.ok("volume", "create", "--image", "tiny-raw", "--size", "1", "upvol", "-f", "json")
    upvol = wait_status(cluster, vol, "upvol", "available")["id"]
    with (files(cluster) / f"volume-{upvol}.raw").open("r+b") as f:
        f.seek(GIB // 2)
        f.write(MARKER)
    made = cluster.ok("image", "create", "--volume", "upvol", "upimg", "-f", "json")
    assert made["status"] == "uploading" and made["image_name"] == "upimg"
    wait_status(cluster, vol, "upvol", "available", timeout=120)
    image = wait_for("upimg active", lambda: (i := cluster.ok("image", "show", "upimg", "-f", "json"))["status"]
                     == "active" and i, 60, 0.5)
    assert image["size"] == GIB and image["disk_format"] == "raw" and image["min_disk"] == 1
    saved = tmp_path / "upimg.raw"
    cluster.ok("image", "save", "--file", str(saved), "upimg")
    with saved.open("rb") as f:
        assert f.read(len(TINY_RAW_MARKER)) == TINY_RAW_MARKER
        f.seek(GIB // 2)
        assert f.read(len(MARKER)) == MARKER
    server = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "upimg", "--wait", "fromvol", "-f",
                        "json")
    assert server["status"] == "ACTIVE"
    cluster.ok("server", "delete", "--wait", "fromvol")
    cluster.ok("image", "delete", "upimg")

    # as qcow2: the volume host converts, the image is one standalone file holding the same bytes
    made = cluster.ok("image", "create", "--volume", "upvol", "--disk-format", "qcow2", "upimg2", "-f", "json")
    assert made["status"] == "uploading" and made["disk_format"] == "qcow2"
    wait_status(cluster, vol, "upvol", "available", timeout=120)
    image = wait_for("upimg2 active", lambda: (i := cluster.ok("image", "show", "upimg2", "-f", "json"))["status"]
                     == "active" and i, 60, 0.5)
    assert image["disk_format"] == "qcow2" and image["min_disk"] == 1 and image["size"] < GIB
    saved = tmp_path / "upimg2.qcow2"
    cluster.ok("image", "save", "--file", str(saved), "upimg2")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(saved)], capture_output=True,
                                     text=True, timeout=30, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == GIB and "backing-filename" not in info
    assert qemu_marker(saved) == MARKER
    cluster.ok("image", "delete", "upimg2")

    # the volume's image metadata: set and unset show in volume_image_metadata (os-set/unset_image_metadata)
    cluster.ok("volume", "set", "--image-property", "note=fast", "upvol")
    shown = cluster.ok("volume", "show", "upvol", "-f", "json")["volume_image_metadata"]
    assert shown["note"] == "fast" and shown["image_name"] == "tiny-raw", shown
    cluster.ok("volume", "unset", "--image-property", "note", "upvol")
    shown = cluster.ok("volume", "show", "upvol", "-f", "json")["volume_image_metadata"]
    assert "note" not in shown and shown["image_name"] == "tiny-raw", shown
    cluster.ok("volume", "delete", "upvol")
    wait_for("upvol gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)


def test_extend_an_attached_volume_with_the_cli(cluster: RunningCluster) -> None:
    """node1 is the server's compute and the volume's host: the volume is attached through the local target,
    so it grows in use (the compute's resize of the guest's disk is a no-op on this test hypervisor)."""
    vol = ("volume",)
    cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "grower")
    cluster.ok("volume", "create", "--size", "1", "ext1", "-f", "json")
    ext1 = wait_status(cluster, vol, "ext1", "available")["id"]
    cluster.ok("server", "add", "volume", "grower", "ext1")
    wait_status(cluster, vol, "ext1", "in-use")
    cluster.ok("volume", "set", "--size", "2", "ext1")
    grown = wait_status(cluster, vol, "ext1", "in-use")
    assert grown["size"] == 2 and (files(cluster) / f"volume-{ext1}.raw").stat().st_size == 2 * GIB
    cluster.ok("server", "delete", "--wait", "grower")
    wait_status(cluster, vol, "ext1", "available")
    cluster.ok("volume", "delete", "ext1")
    wait_for("ext1 gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)


def test_boot_from_a_snapshot_as_the_root_disk_with_the_cli(cluster: RunningCluster) -> None:
    """`--block-device source_type=snapshot,...,boot_index=0`: the root volume is made from the snapshot on its
    host (a qcow2 overlay backed by the snapshot's file, no copy), the server boots from it and shows it
    attached; delete_on_termination removes it with the server. A snapshot of a volume that is not bootable is
    Nova's 400 and makes no server."""
    vol = ("volume",)
    cluster.ok("volume", "create", "--image", "tiny-raw", "--size", "1", "--bootable", "rootsrc", "-f", "json")
    wait_status(cluster, vol, "rootsrc", "available")
    cluster.ok("volume", "snapshot", "create", "--volume", "rootsrc", "rootsnap", "-f", "json")
    snap = wait_status(cluster, ("volume", "snapshot"), "rootsnap", "available")["id"]
    mapping = f"source_type=snapshot,destination_type=volume,boot_index=0,uuid={snap},volume_size=2," \
              "delete_on_termination=true"
    server = cluster.ok("server", "create", "--flavor", "m1.tiny", "--block-device", mapping, "--wait", "fromsnap",
                        "-f", "json")
    assert server["status"] == "ACTIVE" and server["image"] == "N/A (booted from volume)", server
    root_id = server["volumes_attached"][0]["id"]
    root = cluster.ok("volume", "show", root_id, "-f", "json")
    assert root["status"] == "in-use" and root["snapshot_id"] == snap and root["size"] == 2 and root["bootable"]
    assert [a["server_id"] for a in root["attachments"]] == [server["id"]]
    root_file = files(cluster) / f"volume-{root_id}.qcow2"
    assert backing_of(str(root_file)) == f"snapshot-{snap}.raw" and root_file.stat().st_size < 1 << 20

    cluster.ok("server", "delete", "--wait", "fromsnap")
    wait_for("the root volume gone", lambda: root_id not in {v["ID"] for v in cluster.ok("volume", "list", "-f",
                                                                                         "json")}, 30, 0.3)
    assert not root_file.exists()

    cluster.ok("volume", "create", "--size", "1", "plain", "-f", "json")
    wait_status(cluster, vol, "plain", "available")
    cluster.ok("volume", "snapshot", "create", "--volume", "plain", "plainsnap", "-f", "json")
    plain_snap = wait_status(cluster, ("volume", "snapshot"), "plainsnap", "available")["id"]
    assert "is not bootable" in refused(cluster, "server", "create", "--flavor", "m1.tiny", "--snapshot", plain_snap,
                                        "nope")
    assert "nope" not in [s["Name"] for s in cluster.ok("server", "list", "-f", "json")]
    assert {v["Name"] for v in cluster.ok("volume", "list", "-f", "json")} == {"rootsrc", "plain"}
    cluster.ok("volume", "delete", "--purge", "rootsrc", "plain")
    wait_for("every volume gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)


def test_create_image_of_a_volume_backed_server_and_boot_from_it_with_the_cli(cluster: RunningCluster) -> None:
    """`server image create` of a server booted from a volume with a data volume attached: each volume is
    snapshotted (forced: both in use), the image is active with no data and their BDM v2 mappings; `server create
    --image` of it makes the new server's volumes from those snapshots (overlays, no copy) and boots from the root
    one. createBackup of such a server stays Nova's 400; a createImage over the snapshots quota is Nova's 403 and
    leaves no snapshot and no image."""
    vol = ("volume",)
    cluster.ok("volume", "create", "--image", "tiny-raw", "--size", "1", "--bootable", "vbroot", "-f", "json")
    root = wait_status(cluster, vol, "vbroot", "available")["id"]
    cluster.ok("volume", "create", "--size", "1", "vbdata", "-f", "json")
    data = wait_status(cluster, vol, "vbdata", "available")["id"]
    cluster.ok("server", "create", "--flavor", "m1.tiny", "--volume", "vbroot", "--wait", "vbserver")
    cluster.ok("server", "add", "volume", "vbserver", "vbdata")
    wait_status(cluster, vol, "vbdata", "in-use")

    project = cluster.ok("volume", "show", "vbroot", "-f", "json")["os-vol-tenant-attr:tenant_id"]
    cluster.ok("quota", "set", "--snapshots", "1", project, who="admin")  # room for the root's snapshot only
    assert "Quota exceeded" in refused(cluster, "server", "image", "create", "--name", "vbfail", "vbserver")
    wait_for("the root's snapshot of the refused createImage deleted",
             lambda: not cluster.ok("volume", "snapshot", "list", "-f", "json"), 60, 0.5)
    assert cluster.ok("image", "list", "--name", "vbfail", "-f", "json") == []
    assert cluster.ok("server", "show", "vbserver", "-f", "json")["OS-EXT-STS:task_state"] is None
    cluster.ok("quota", "set", "--snapshots", "10", project, who="admin")

    cluster.ok("server", "image", "create", "--name", "vbimg", "--wait", "vbserver")
    image = cluster.ok("image", "show", "vbimg", "-f", "json")
    props = image.get("properties") or image
    assert image["status"] == "active" and image["size"] == 0, image
    assert props["bdm_v2"] == "True" and props["root_device_name"] == "/dev/vda", props
    mappings = json.loads(props["block_device_mapping"])
    by_volume = {}
    for name, vid in (("vbroot", root), ("vbdata", data)):
        listed = cluster.ok("volume", "snapshot", "list", "--volume", name, "-f", "json")
        assert [s["Name"] for s in listed] == ["snapshot for vbimg"], listed
        by_volume[vid] = listed[0]["ID"]
    assert [(m["source_type"], m["destination_type"], m["snapshot_id"], m["boot_index"], m["device_name"],
             m["volume_size"], m["delete_on_termination"]) for m in mappings] == [
        ("snapshot", "volume", by_volume[root], 0, "/dev/vda", 1, False),
        ("snapshot", "volume", by_volume[data], None, "/dev/vdb", 1, False)]
    for sid in by_volume.values():
        wait_status(cluster, ("volume", "snapshot"), sid, "available")
    assert "not supported" in refused(cluster, "server", "backup", "create", "--name", "vbbackup", "--type",
                                      "daily", "--rotate", "1", "vbserver")

    clone = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "vbimg", "--wait", "vbclone", "-f",
                       "json")
    assert clone["status"] == "ACTIVE", clone
    made = {}
    for attached in wait_for("the clone's two volumes in use", lambda: (
            v := cluster.ok("server", "show", "vbclone", "-f", "json")["volumes_attached"]) and len(v) == 2 and all(
            cluster.ok("volume", "show", a["id"], "-f", "json")["status"] == "in-use" for a in v) and v, 60, 0.5):
        shown = cluster.ok("volume", "show", attached["id"], "-f", "json")
        made[shown["snapshot_id"]] = (shown["attachments"][0]["device"], shown["bootable"], attached["id"])
    assert made.keys() == set(by_volume.values())
    assert made[by_volume[root]][:2] == ("/dev/vda", True) and made[by_volume[data]][0] == "/dev/vdb"
    for sid, (_, _, vid) in made.items():
        assert backing_of(str(files(cluster) / f"volume-{vid}.qcow2")) == f"snapshot-{sid}.raw"

    for server in ("vbclone", "vbserver"):
        cluster.ok("server", "delete", "--wait", server)
    cluster.ok("image", "delete", "vbimg")
    for _, _, vid in made.values():  # delete_on_termination false, as the snapshotted volumes had it
        wait_status(cluster, vol, vid, "available")
        cluster.ok("volume", "delete", vid)
    wait_for("the clone's volumes gone", lambda: {v["ID"] for v in cluster.ok("volume", "list", "-f", "json")}
             == {root, data}, 30, 0.3)
    cluster.ok("volume", "delete", "--purge", "vbroot", "vbdata")
    wait_for("every volume gone", lambda: not cluster.ok("volume", "list", "-f", "json"), 30, 0.3)
