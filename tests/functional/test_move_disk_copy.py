"""Resize and cold migration keep what the guest wrote to its disk (issue 8): real QEMU
guests (qemu:///embed, TCG here) on two netns hosts with their own state dirs, moved with
the unmodified openstack CLI.

The guest's user data (run at every boot, from the metadata service) writes a marker of
its own over the first bytes of its root disk at first boot, and says so; at a later
boot it finds the marker and leaves it. The tiny guest prints its disk's first 32 bytes
on the console at every boot (`CELLCLOUD-DISK added vda ... head=[...]`). After a
resize and after a migration the new host's console shows the marker found, never
written again: the disk was copied from the source (and rebased onto the new host's
own cached image), not made again from the image. A revert starts the source guest
again on its own disk; a confirm removes it. The resize action's compute_finish_resize
event says the disk was copied.

An image of a server booted from a volume (issue 18) boots a guest whose root and data volumes are made
from the volumes' snapshots: it boots and reads the data volume's marker.

Volumes move with the server (issue 18): n1 is a volume host too (its local target serves n1, tgt or NBD
the other host), and a server booted from a volume with a data volume attached migrates, reverts and
resizes between the hosts; each time the guest on its new host boots from the volume and reads the
marker written on the data volume before its first attach, through whatever export its host got."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.volume.targets import nbd, tgt
from tests.functional.test_guest_network import _missing
from tools.devcluster import RunningCluster, running_netns_cluster, wait_for
from tools.tinyimage import ROOT_MARKER

# real guests or netns hosts: the module's cluster comes up inside its first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TAG = uuidlib.uuid4().hex[:4]
MARK = f"CCMARK{TAG}"  # 10 bytes: the guest's own data at the start of its root disk
USER_DATA = f"""#!/bin/sh
if [ "$(dd if=/dev/vda bs={len(MARK)} count=1 2>/dev/null)" = "{MARK}" ]; then
  echo CELLCLOUD-MARK-FOUND
else
  printf {MARK} | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null && sync && echo CELLCLOUD-MARK-WRITTEN
fi
"""


def volume_targets_missing() -> str | None:
    """Why n1 cannot export volumes to n2 here (tgt and nbd are among its targets), or None."""
    return tgt.unavailable_reason() or nbd.unavailable_reason()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    volume_host = "n1" if volume_targets_missing() is None else None  # the volume test then skips, saying why
    with running_netns_cluster(tmp_path_factory.mktemp("diskcopy"), f"dc{TAG}", volume_host=volume_host) as c:
        yield c


def host_of(c: RunningCluster, sid: str) -> str:
    return str(c.ok("server", "show", sid, "-f", "json", who="admin")["OS-EXT-SRV-ATTR:host"])


def boots(c: RunningCluster, sid: str, count: int) -> str:
    """The console once the guest has reported its root disk `count` times (one per boot on this host)."""
    def seen() -> str:
        out = c.cli("console", "log", "show", sid)
        return out.stdout if out.returncode == 0 and out.stdout.count("CELLCLOUD-DISK added vda") >= count else ""
    return str(wait_for(f"boot {count} of {sid} on the console", seen, timeout=180, interval=1))


def last_boot(console: str) -> tuple[str, str, int]:
    """(what the user data said, the root disk's head, its size in GiB) of the newest boot on a console."""
    boot = console.split("CELLCLOUD-GUEST-UP")[-1]
    said = "FOUND" if "CELLCLOUD-MARK-FOUND" in boot else "WRITTEN" if "CELLCLOUD-MARK-WRITTEN" in boot else "-"
    disk = boot.split("CELLCLOUD-DISK added vda", 1)[1]
    head = disk.split("head=[", 1)[1].split("]", 1)[0]
    sectors = int(disk.split("sectors=", 1)[1].split()[0])
    return said, head, sectors * 512 // (1 << 30)


def disk_of(c: RunningCluster, host: str, sid: str) -> Path:
    return c.state / "hosts" / host / "instances" / sid / "disk"


def finish_event(c: RunningCluster, sid: str, action: str) -> str:
    db = sqlite3.connect(c.state / "cells" / "cell1.db")
    try:
        rows = db.execute(
            "SELECT e.details FROM instance_action_events e JOIN instance_actions a ON e.action_id = a.uuid"
            " WHERE a.instance_uuid = ? AND a.action = ? AND e.event = 'compute_finish_resize'"
            " ORDER BY a.start_time", (sid, action)).fetchall()
    finally:
        db.close()
    return str(rows[-1][0])


def moved(c: RunningCluster, sid: str, source: str, action: str) -> str:
    """After a resize or migration to VERIFY_RESIZE: the guest on the other host booted on a
    copy of its disk. Returns the new host."""
    dest = host_of(c, sid)
    assert dest != source
    said, head, gib = last_boot(boots(c, sid, 1))  # a fresh console on the new host: its first boot there
    assert (said, head[:len(MARK)]) == ("FOUND", MARK), "the guest's disk was not carried over"
    assert gib == 20  # m1.small's root disk: the copy grew to it (m1.tiny's is 1 GiB)
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk_of(c, dest, sid))],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"].startswith(str(c.state / "hosts" / dest / "images")), info
    assert finish_event(c, sid, action).startswith(f"Disk copied from {source}: 1 file(s), ")
    return dest


def test_resize_and_migration_carry_the_disk_and_revert_keeps_the_source(cluster: RunningCluster) -> None:
    c = cluster
    net = c.ok("network", "list", "-f", "json")[0]["ID"]
    script = c.root / "mark.sh"
    script.write_text(USER_DATA)
    sid = c.ok("server", "create", "--image", "tiny-linux", "--flavor", "m1.tiny", "--network", net,
               "--user-data", str(script), "--wait", "-f", "json", f"mover{TAG}")["id"]
    first = host_of(c, sid)
    said, head, gib = last_boot(boots(c, sid, 1))
    assert said == "WRITTEN" and head.startswith(MARK)  # over the image's "CELLCLOUDtiny-linux..."
    assert gib == 1  # the flavor's root disk, not the 1 MiB image
    c.ok("server", "reboot", "--wait", sid)
    said, head, _ = last_boot(boots(c, sid, 2))
    assert said == "FOUND" and head.startswith(MARK)  # on the disk for good

    c.ok("server", "resize", "--flavor", "m1.small", "--wait", sid)
    second = moved(c, sid, first, "resize")
    c.ok("server", "resize", "revert", sid)
    wait_for("revert", lambda: c.ok("server", "show", sid, "-f", "json")["status"] == "ACTIVE", 120)
    assert host_of(c, sid) == first and not disk_of(c, second, sid).exists()
    said, head, gib = last_boot(boots(c, sid, 3))  # the source guest again, on its own disk
    assert said == "FOUND" and head.startswith(MARK) and gib == 1

    c.ok("server", "resize", "--flavor", "m1.small", "--wait", sid)
    assert moved(c, sid, first, "resize") == second
    c.ok("server", "resize", "confirm", sid)
    wait_for("confirm", lambda: c.ok("server", "show", sid, "-f", "json")["status"] == "ACTIVE", 120)
    assert not disk_of(c, first, sid).exists()  # the old copy went with the confirm

    c.ok("server", "migrate", "--wait", sid, who="admin")
    assert moved(c, sid, second, "migrate") == first
    c.ok("server", "resize", "confirm", sid)
    wait_for("confirm", lambda: c.ok("server", "show", sid, "-f", "json")["status"] == "ACTIVE", 120)
    c.ok("server", "delete", "--wait", sid)


DISK = re.compile(r"CELLCLOUD-DISK added (vd[a-z]+) sectors=\d+ head=\[([^\]]*)\]")
BOOT_HEAD = re.sub(r"[^A-Za-z0-9_.-]", "", ROOT_MARKER[:32].decode())  # as the guest prints its first 32 bytes


def disks_of_boot(c: RunningCluster, sid: str, count: int) -> list[str]:
    """The heads of the disks the guest's `count`-th boot on this host sees once both are there (the
    root disk and the data volume: made with the guest, or hot-plugged after it)."""
    def seen() -> list[str]:
        out = c.cli("console", "log", "show", sid)
        boots = out.stdout.split("CELLCLOUD-GUEST-UP")[1:] if out.returncode == 0 else []
        heads = [head for _, head in DISK.findall(boots[count - 1])] if len(boots) >= count else []
        return sorted(heads) if len(heads) >= 2 else []
    return list(wait_for(f"boot {count} of {sid} with its two disks", seen, timeout=180, interval=1))


def volume_status(c: RunningCluster, vid: str, status: str) -> Any:
    return wait_for(f"volume {vid} {status}", lambda: (v := c.ok("volume", "show", vid, "-f", "json"))["status"]
                    == status and v, timeout=120, interval=0.5)


def served_by(c: RunningCluster, *volume_ids: str) -> set[str]:
    """The kinds of export the volumes' attachments record (local on n1, iSCSI or NBD for n2)."""
    db = sqlite3.connect(c.state / "cells" / "cell1.db")
    try:
        return {json.loads(db.execute("SELECT connection_info FROM volume_attachments WHERE volume_id = ?",
                                      (vid,)).fetchone()[0])["driver_volume_type"] for vid in volume_ids}
    finally:
        db.close()


def expected_export(host: str) -> set[str]:
    return {"local"} if host == "n1" else {"iscsi"}  # tgt before nbd in the volume host's targets


def test_a_boot_volume_and_a_data_volume_move_with_the_guest(cluster: RunningCluster) -> None:
    reason = volume_targets_missing()
    if reason is not None:
        pytest.skip(f"n1 exports volumes to n2 through tgt or nbd: {reason}")
    c = cluster
    net = c.ok("network", "list", "-f", "json")[0]["ID"]
    boot = c.ok("volume", "create", "--image", "tiny-linux", "--size", "1", "--bootable", "-f", "json",
                f"root{TAG}")["id"]
    data = c.ok("volume", "create", "--size", "1", "-f", "json", f"data{TAG}")["id"]
    volume_status(c, boot, "available")
    volume_status(c, data, "available")
    with (c.state / "hosts" / "n1" / "volumes" / f"volume-{data}.raw").open("r+b") as f:
        f.write(MARK.encode())  # before any export: every later export serves the volume's own bytes
    sid = c.ok("server", "create", "--volume", boot, "--flavor", "m1.tiny", "--network", net, "--wait",
               "-f", "json", f"onvol{TAG}")["id"]
    c.ok("server", "add", "volume", sid, data)
    volume_status(c, data, "in-use")
    both = sorted([BOOT_HEAD, MARK])
    assert disks_of_boot(c, sid, 1) == both  # the data volume hot-plugged into the first guest
    first = host_of(c, sid)
    assert served_by(c, boot, data) == expected_export(first)

    c.ok("server", "migrate", "--wait", sid, who="admin")
    second = c.settled(sid, "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
    assert second != first and served_by(c, boot, data) == expected_export(second)  # a local export moves too
    assert disks_of_boot(c, sid, 1) == both  # a fresh guest on the new host, its first boot there
    c.ok("server", "resize", "revert", sid)
    assert c.settled(sid, "ACTIVE")["OS-EXT-SRV-ATTR:host"] == first
    assert disks_of_boot(c, sid, 2) == both  # the source guest again, with the volumes carried back
    assert served_by(c, boot, data) == expected_export(first)

    c.ok("server", "resize", "--flavor", "m1.small", "--wait", sid)
    assert c.settled(sid, "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"] == second
    assert disks_of_boot(c, sid, 1) == both  # the destination's console starts again with its guest
    c.ok("server", "resize", "confirm", sid)
    shown = c.settled(sid, "ACTIVE")
    assert sorted(v["id"] for v in shown["volumes_attached"]) == sorted([boot, data])
    for vid in (boot, data):
        assert [a["server_id"] for a in volume_status(c, vid, "in-use")["attachments"]] == [sid]
    c.ok("server", "delete", "--wait", sid)
    for vid in (boot, data):
        volume_status(c, vid, "available")
        c.ok("volume", "delete", vid)


def test_an_image_of_a_volume_backed_guest_boots_a_guest_reading_the_snapshots(cluster: RunningCluster) -> None:
    """Issue 18's createImage of a server booted from a volume, bytes through a real guest: the image holds no
    data, only the mappings of the volumes' snapshots; the server booted from it boots from a root volume made
    from the root's snapshot and sees the data volume's marker through the volume made from its snapshot."""
    reason = volume_targets_missing()
    if reason is not None:
        pytest.skip(f"n1 exports volumes to n2 through tgt or nbd: {reason}")
    c = cluster
    net = c.ok("network", "list", "-f", "json")[0]["ID"]
    boot = c.ok("volume", "create", "--image", "tiny-linux", "--size", "1", "--bootable", "-f", "json",
                f"imgroot{TAG}")["id"]
    data = c.ok("volume", "create", "--size", "1", "-f", "json", f"imgdata{TAG}")["id"]
    volume_status(c, boot, "available")
    volume_status(c, data, "available")
    with (c.state / "hosts" / "n1" / "volumes" / f"volume-{data}.raw").open("r+b") as f:
        f.write(MARK.encode())
    sid = c.ok("server", "create", "--volume", boot, "--flavor", "m1.tiny", "--network", net, "--wait",
               "-f", "json", f"imgsrc{TAG}")["id"]
    c.ok("server", "add", "volume", sid, data)
    volume_status(c, data, "in-use")
    both = sorted([BOOT_HEAD, MARK])
    assert disks_of_boot(c, sid, 1) == both

    c.ok("server", "image", "create", "--name", f"vbimg{TAG}", "--wait", sid)
    assert c.ok("image", "show", f"vbimg{TAG}", "-f", "json")["size"] == 0
    def snapshots_available() -> bool:
        listed = [s for s in c.ok("volume", "snapshot", "list", "-f", "json")
                  if s["Name"] == f"snapshot for vbimg{TAG}"]
        assert len(listed) == 2, listed  # the root's and the data volume's
        return all(s["Status"] == "available" for s in listed)
    wait_for("both snapshots available", snapshots_available, timeout=120, interval=0.5)
    clone = c.ok("server", "create", "--image", f"vbimg{TAG}", "--flavor", "m1.tiny", "--network", net, "--wait",
                 "-f", "json", f"imgclone{TAG}")["id"]
    assert disks_of_boot(c, clone, 1) == both  # its root from one snapshot, its data volume from the other
    made = [v["id"] for v in c.settled(clone, "ACTIVE")["volumes_attached"]]
    assert len(made) == 2 and not {boot, data} & set(made)

    for server in (clone, sid):
        c.ok("server", "delete", "--wait", server)
    c.ok("image", "delete", f"vbimg{TAG}")
    for vid in made:
        volume_status(c, vid, "available")
        c.ok("volume", "delete", vid)
    for vid in (boot, data):
        volume_status(c, vid, "available")
    wait_for("the clones gone", lambda: not {v["ID"] for v in c.ok("volume", "list", "-f", "json")} & set(made),
             timeout=60, interval=0.5)
    c.ok("volume", "delete", "--purge", boot, data)
