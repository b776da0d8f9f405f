"""Rescue and soft delete (issue 16) end to end with the unmodified openstack CLI on a cluster that keeps
deleted servers (reclaim_instance_interval, libvirt test:///default, real processes)."""
from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from api.compute.deferred_delete import sweep_interval
from tests.functional.test_liveness import wait_restarted
from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow
RECLAIM = 15  # seconds a deleted server is kept: the restore below must come sooner (2-4 CLI calls, ~1 s each)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("rescuedel"), name="rescuedel",
                         reclaim_instance_interval=RECLAIM) as c:
        yield c


def refused(cluster: RunningCluster, *args: str) -> str:
    done = cluster.cli(*args)
    assert done.returncode != 0, f"openstack {' '.join(args)} succeeded: {done.stdout}"
    return done.stderr


def show(cluster: RunningCluster, server: str) -> Any:
    return cluster.ok("server", "show", "-f", "json", server)


def wait_status(cluster: RunningCluster, server: str, wanted: str) -> None:
    wait_for(wanted, lambda: show(cluster, server)["status"] == wanted, timeout=30, interval=0.3)


def boot(cluster: RunningCluster, name: str) -> str:
    return str(cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                          name)["id"])


def instances_used(cluster: RunningCluster) -> int:
    limits = cluster.ok("limits", "show", "--absolute", "-f", "json")
    return int(next(item["Value"] for item in limits if item["Name"] == "total_instances_used"))


def test_rescue_boots_a_rescue_guest_and_unrescue_brings_the_server_back(cluster: RunningCluster) -> None:
    sid = boot(cluster, "rescue1")
    err = refused(cluster, "server", "unrescue", sid)
    assert f"Cannot 'unrescue' instance {sid} while it is in vm_state active" in err and "409" in err, err
    cluster.ok("server", "rescue", "--image", "tiny-raw", sid)
    wait_status(cluster, sid, "RESCUE")
    err = refused(cluster, "server", "rescue", sid)
    assert f"Cannot 'rescue' instance {sid} while it is in vm_state rescued" in err and "409" in err, err
    cluster.ok("server", "unrescue", sid)
    wait_status(cluster, sid, "ACTIVE")
    cluster.ok("server", "stop", sid)
    wait_status(cluster, sid, "SHUTOFF")
    cluster.ok("server", "rescue", sid)  # a stopped server, from its own image, as Nova
    wait_status(cluster, sid, "RESCUE")
    assert show(cluster, sid)["OS-EXT-STS:power_state"] in ("Running", 1)
    cluster.ok("server", "unrescue", sid)
    wait_status(cluster, sid, "ACTIVE")
    actions = [a["Action"] for a in cluster.ok("server", "event", "list", "-f", "json", sid)]
    assert actions.count("rescue") == 2 and actions.count("unrescue") == 2, actions
    cluster.ok("server", "delete", "--force", "--wait", sid)


def test_a_delete_keeps_the_server_until_restored_or_reclaimed(cluster: RunningCluster) -> None:
    kept, forced = boot(cluster, "kept"), boot(cluster, "forced")
    used = instances_used(cluster)
    cluster.ok("server", "delete", forced)
    wait_status(cluster, forced, "SOFT_DELETED")
    cluster.ok("server", "delete", "--force", "--wait", forced)  # forceDelete: gone now
    assert instances_used(cluster) == used - 1

    cluster.ok("server", "delete", kept)
    wait_status(cluster, kept, "SOFT_DELETED")
    cluster.ok("server", "restore", kept)
    wait_status(cluster, kept, "ACTIVE")
    err = refused(cluster, "server", "restore", kept)
    assert f"Cannot 'restore' instance {kept} while it is in vm_state active" in err and "409" in err, err

    cluster.ok("server", "delete", kept)
    wait_status(cluster, kept, "SOFT_DELETED")
    shown = show(cluster, kept)
    assert shown["OS-EXT-STS:power_state"] in ("Shutdown", 4) and shown["OS-SRV-USG:terminated_at"]
    assert instances_used(cluster) == used - 1  # a soft-deleted server still counts, as Nova
    # the reclaim lives in the cell's record, not in a process: an API restarted meanwhile still reclaims it
    wait_restarted(cluster, "api", cluster.signal("api", signal.SIGKILL))
    wait_for("the reclaim", lambda: "No Server found" in cluster.cli("server", "show", kept).stderr,
             timeout=RECLAIM + 2 * sweep_interval(RECLAIM) + 30, interval=1)
    assert instances_used(cluster) == used - 2
