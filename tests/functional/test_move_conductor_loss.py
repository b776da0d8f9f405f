"""The conductor that owns a resize is lost midway (issues 8 and 14): two conductors, two hosts
of real QEMU guests (qemu:///embed, TCG here), real processes.

The resize is made observably midway with nothing but signals: the API is held (SIGSTOP)
right after it accepted the resize, so the destination, which has never run this image,
blocks fetching it inside finish_move: the source guest stopped by prep_move, the owner
waiting on the destination, the destination logging that it is making the guest. The
owner, read from the migration record, is frozen (SIGSTOP: no more heartbeats, dead to
the cell) and the API let go, so the destination makes its copy for an owner that never
hears of it. The other conductor adopts the move when the owner leaves the directory and
drives it on from its last recorded step (accepted work ends as asked): the source's prep
and the destination's finish are asked again (both idempotent: the late copy is made again,
never doubled); the frozen owner is then killed for good (SIGKILL; the supervisor starts it
again). The server ends VERIFY_RESIZE on the destination with the new flavor and exactly one
running QEMU, the destination claim held by the migration until the confirm makes it the
server's, and the adoption on its resize action."""
from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.functional.test_moves import Admin, claims
from tests.functional.test_real_guests import BANNER, _unavailable
from tools.devcluster import RunningCluster, running_cluster, wait_for

# real guests or netns hosts: the module's cluster comes up inside its first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SMALL = "2"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    with running_cluster(tmp_path_factory.mktemp("moveloss"), hosts=2, virt_uri="qemu:///embed",
                         conductors=2) as c:
        yield c


def running_copies(cluster: RunningCluster, uuid: str) -> list[str]:
    """Hosts with a live QEMU process for the instance (from each embed root's pid file)."""
    hosts = []
    for pidfile in sorted(cluster.state.glob(f"hosts/*/embed/run/qemu/cc-{uuid}.pid")):
        try:
            pid = int(pidfile.read_text().strip())
            alive = b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes() \
                and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except (OSError, ValueError, IndexError):
            continue
        if alive:
            hosts.append(pidfile.relative_to(cluster.state / "hosts").parts[0])
    return hosts


def midway(cluster: RunningCluster, uuid: str) -> dict[str, Any] | None:
    """The migration once the source guest is stopped and the destination asked for its copy."""
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    db.row_factory = sqlite3.Row
    try:
        row = db.execute(
            "SELECT m.uuid, m.status, m.source_host, m.dest_host, m.conductor_id FROM migrations m"
            " JOIN instance_actions a ON a.instance_uuid = m.instance_uuid AND a.action = 'resize'"
            " JOIN instance_action_events e ON e.action_id = a.uuid AND e.event = 'compute_finish_resize'"
            " WHERE m.instance_uuid = ? AND e.finish_time IS NULL", (uuid,)).fetchone()
        return None if row is None else dict(row)
    finally:
        db.close()


def test_resize_whose_conductor_dies_midway_is_driven_on_by_the_other(cluster: RunningCluster) -> None:
    api = Admin(cluster)
    image = requests.get(cluster.endpoint + "/image/v2/images?name=tiny-linux", headers=api.h, timeout=10)
    r = requests.post(f"{api.base}/servers", headers=api.h, timeout=10, json={"server": {
        "name": "owner-dies", "flavorRef": "1", "imageRef": image.json()["images"][0]["id"]}})
    assert r.status_code == 202, r.text
    sid = str(r.json()["server"]["id"])
    api.wait(sid, "ACTIVE", timeout=90)
    wait_for("guest never booted", lambda: BANNER in api.post(
        sid, {"os-getConsoleOutput": {}}).json().get("output", ""), timeout=90)  # up: it obeys the power button
    source = api.host(sid)
    dest = "node2" if source == "node1" else "node1"
    held = claims(cluster)
    assert running_copies(cluster, sid) == [source] and held[sid] == (source, 512, 1)

    assert api.post(sid, {"resize": {"flavorRef": SMALL}}).status_code == 202
    api_pid = cluster.signal("api", signal.SIGSTOP)  # the destination's image fetch will wait for it
    owner_pid: int | None = None
    try:
        making = f"making the guest on {dest}"
        wait_for("destination never started its copy", lambda: making in cluster.log(f"cell1/compute/{dest}"),
                 interval=0.05)
        mig = midway(cluster, sid)
        assert mig is not None and (mig["status"], mig["source_host"], mig["dest_host"]) == (
            "migrating", source, dest)
        assert running_copies(cluster, sid) == []  # the source guest stopped, the new one not made yet
        owner = str(mig["conductor_id"])
        owner_pid = cluster.signal(owner, signal.SIGSTOP)  # frozen: gone from the directory in 3 beats
    finally:
        os.kill(api_pid, signal.SIGCONT)
    try:
        moved = f"{sid} moved here"
        wait_for("the late copy was never made", lambda: moved in cluster.log(f"cell1/compute/{dest}"))
        doc = api.wait(sid, "VERIFY_RESIZE", timeout=90)  # the other conductor drove the move on
    finally:
        if owner_pid is not None:
            os.kill(owner_pid, signal.SIGKILL)  # gone for good (the supervisor starts it again)
    assert api.host(sid) == dest and doc["flavor"]["id"] == SMALL
    assert wait_for("not exactly one running copy", lambda: running_copies(cluster, sid) == [dest])
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    try:
        [(status, adopter)] = db.execute("SELECT status, conductor_id FROM migrations WHERE uuid = ?",
                                         (mig["uuid"],)).fetchall()
    finally:
        db.close()
    assert status == "finished" and adopter not in (owner, None)
    held_now = claims(cluster)
    assert held_now[sid] == held[sid] and held_now[mig["uuid"]] == (dest, 2048, 20)  # source kept until confirm
    r = requests.get(f"{api.base}/servers/{sid}/os-instance-actions", headers=api.h, timeout=10)
    [resize] = [a for a in r.json()["instanceActions"] if a["action"] == "resize"]
    events = requests.get(f"{api.base}/servers/{sid}/os-instance-actions/{resize['request_id']}",
                          headers=api.admin, timeout=10).json()["instanceAction"]["events"]
    assert any(e["event"] == "conductor_adopt_move" and e["result"] == "Success" for e in events), events
    assert any(e["event"] == "compute_finish_resize" and e["result"] == "Success" for e in events), events

    assert api.post(sid, {"confirmResize": None}).status_code == 204
    doc = api.wait(sid, "ACTIVE", timeout=60)
    assert api.host(sid) == dest and doc["flavor"]["id"] == SMALL
    assert wait_for("the migration's claim never became the server's",
                    lambda: sid in claims(cluster) and mig["uuid"] not in claims(cluster))
    assert claims(cluster)[sid] == (dest, 2048, 20)
    assert running_copies(cluster, sid) == [dest]
