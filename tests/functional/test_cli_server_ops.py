"""Server operations of issue 16 end to end with the unmodified openstack CLI on the default cluster
(libvirt test:///default, real processes): lock and unlock."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("ops"), name="compops") as c:
        yield c


def refused(cluster: RunningCluster, *args: str, who: str = "demo") -> str:
    """Run the CLI, which must fail; its error output."""
    done = cluster.cli(*args, who=who)
    assert done.returncode != 0, f"openstack {' '.join(args)} succeeded: {done.stdout}"
    return done.stderr


def status(cluster: RunningCluster, server: str) -> Any:
    return cluster.ok("server", "show", "-f", "json", server)["status"]


def test_a_locked_server_refuses_its_members_until_unlocked(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "locked1")["id"]
    cluster.ok("server", "lock", sid)
    for args in (("server", "stop", sid), ("server", "delete", sid), ("server", "reboot", sid)):
        err = refused(cluster, *args)
        assert f"Instance {sid} is locked" in err and "409" in err, err
    assert status(cluster, sid) == "ACTIVE"
    actions = [a["Action"] for a in cluster.ok("server", "event", "list", "-f", "json", sid)]
    assert "lock" in actions and "stop" not in actions
    cluster.ok("server", "unlock", sid)
    cluster.ok("--os-compute-api-version", "2.73", "server", "lock", "--reason", "disk check", sid)
    shown = cluster.ok("--os-compute-api-version", "2.73", "server", "show", "-f", "json", sid)
    assert (shown["locked"], shown["locked_reason"]) == (True, "disk check")
    cluster.ok("server", "unlock", sid)
    cluster.ok("server", "stop", sid)
    wait_for("SHUTOFF", lambda: status(cluster, sid) == "SHUTOFF", timeout=30, interval=0.3)
    cluster.ok("server", "delete", "--wait", sid)


def test_an_admins_lock_holds_the_owner_and_not_the_admin(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "locked2")["id"]
    cluster.ok("server", "lock", sid, who="admin")
    err = refused(cluster, "server", "unlock", sid)
    assert "unlock_override" in err and "403" in err, err
    assert "is locked" in refused(cluster, "server", "pause", sid)
    cluster.ok("server", "pause", sid, who="admin")  # an admin acts on a locked server, as Nova
    wait_for("PAUSED", lambda: status(cluster, sid) == "PAUSED", timeout=30, interval=0.3)
    cluster.ok("server", "unlock", sid, who="admin")
    cluster.ok("server", "delete", "--wait", sid)
