"""Volumes in real QEMU guests (qemu:///embed, TCG here): one volume, a marker
written into it from the host before the first attach, hot-plugged into a running
tiny guest through each export target this machine offers (local, tgt iSCSI, nbd),
each time seen by the guest on its console (`CELLCLOUD-DISK added vdX sectors=...
head=[marker]`), then unplugged (`CELLCLOUD-DISK removed vdX`) and back to available.
Each target serves the volume's own data: the guest reads the host-written marker
through it, after the earlier targets' attach/detach cycles. The tiny guest only
reads: that a guest's own writes persist is not checked here (tests/functional/
test_volumes.py checks data across cycles from the host side). Targets this machine
lacks are skipped with the reason."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator

import openstack
import pytest

from node.volume.targets import nbd, tgt
from tests.functional.test_real_guests import _unavailable, boot, console, sdk, wait_console, wait_status
from tools.devcluster import RunningCluster, running_cluster
from tools.openstack_cli import WAIT_POLL

# real guests or netns hosts: the module's cluster comes up inside its first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
MARKER = b"CELLCLOUD-VOLUME-MARKER-42"
SECTORS = (1 << 30) // 512


def targets_here() -> list[object]:
    out: list[object] = ["local"]
    for name, reason in (("tgt", tgt.unavailable_reason()), ("nbd", nbd.unavailable_reason())):
        out.append(name if reason is None else pytest.param(name, marks=pytest.mark.skip(reason=reason)))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    with running_cluster(tmp_path_factory.mktemp("qemu-volumes"), virt_uri="qemu:///embed", volumes=True) as c:
        yield c


@pytest.fixture(scope="module")
def guest(cluster: RunningCluster) -> Iterator[tuple[openstack.connection.Connection, str, str]]:
    """A running tiny guest and one volume holding the marker (written from the host before any attach)."""
    conn = sdk(cluster)
    sid = boot(conn, "vol-guest", "tiny-linux")
    wait_status(conn, sid, "ACTIVE")
    wait_console(conn, sid, "CELLCLOUD-READY")
    vol = conn.block_storage.create_volume(size=1, name="data")
    conn.block_storage.wait_for_status(vol, "available", wait=60, interval=WAIT_POLL)
    path = cluster.state / "hosts" / "node1" / "volumes" / f"volume-{vol.id}.raw"
    with path.open("r+b") as f:
        f.write(MARKER)
    yield conn, sid, str(vol.id)
    conn.compute.delete_server(sid)
    conn.compute.wait_for_delete(conn.compute.get_server(sid), wait=60, interval=WAIT_POLL)


def wait_volume(conn: openstack.connection.Connection, vid: str, status: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while True:
        vol = conn.block_storage.get_volume(vid)
        if vol.status == status:
            return vol
        assert time.monotonic() < deadline, f"volume stayed {vol.status}"
        time.sleep(0.25)


ADDED = re.compile(r"CELLCLOUD-DISK added (vd[b-z]+) sectors=(\d+) head=\[([^\]]*)\]")  # vda: the root disk


def wait_added(conn: openstack.connection.Connection, sid: str, count: int, timeout: float = 60) -> tuple[str, ...]:
    deadline = time.monotonic() + timeout
    while True:
        found = ADDED.findall(console(conn, sid))
        if len(found) >= count:
            return tuple(found[count - 1])
        assert time.monotonic() < deadline, f"no new disk in the guest within {timeout}s"
        time.sleep(0.25)


@pytest.mark.parametrize("target", targets_here())
def test_hot_plug_through_each_export_target(guest: tuple[openstack.connection.Connection, str, str],
                                             target: str) -> None:
    conn, sid, vid = guest
    conn.block_storage.update_volume(vid, metadata={"cellcloud:target": target})
    before = len(ADDED.findall(console(conn, sid)))
    conn.compute.create_volume_attachment(sid, volume=vid)
    try:
        vol = wait_volume(conn, vid, "in-use")
        assert [a["server_id"] for a in vol.attachments] == [sid]  # type: ignore[attr-defined]
        dev, sectors, head = wait_added(conn, sid, before + 1)
        assert int(sectors) == SECTORS  # the guest sees a 1 GiB disk ...
        assert head.startswith(MARKER.decode())  # ... holding what was written before the first attach
        removed_before = console(conn, sid).count(f"CELLCLOUD-DISK removed {dev}")
        conn.compute.delete_volume_attachment(sid, vid)
        wait_volume(conn, vid, "available")
        wait_console(conn, sid, f"CELLCLOUD-DISK removed {dev}", count=removed_before + 1, timeout=60)
        assert conn.compute.get_server(sid).status == "ACTIVE"
    finally:  # a failed step must not leave the volume attached for the next target
        if conn.block_storage.get_volume(vid).status == "in-use":
            conn.compute.delete_volume_attachment(sid, vid)
            wait_volume(conn, vid, "available")
