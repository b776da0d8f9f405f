"""Issue 19 end to end on a real cluster (cellctl up, two API workers on one port) with the unmodified
`openstack` CLI and openstacksdk: an admin onboards team2 (project, user, member role); team2's user
boots and sees only team2's servers; an image demo shares with team2 is accepted and booted there;
an application credential authenticates openstacksdk, restricted to its project, until deleted."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools import openstack_cli
from tools.devcluster import RunningCluster, cli_env, running_cluster
from tools.openstack_cli import WAIT_POLL, password_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("onboard"), name="onboard", api_workers=2) as c:
        yield c


def as_user(cluster: RunningCluster, user: str, password: str, project: str, *args: str,
            check: bool = True) -> Any:
    env = cli_env(cluster.root, **password_env(cluster.endpoint + "/identity/v3", user, password, project))
    done = openstack_cli.run(list(args), env, timeout=180)
    if not check:
        return done
    assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if "json" in args else done.stdout


def test_a_team_onboarded_boots_a_shared_image_and_sees_only_its_own(cluster: RunningCluster,
                                                                      tmp_path: Path) -> None:
    team2 = cluster.ok("project", "create", "team2", "-f", "json", who="admin")
    cluster.ok("user", "create", "--project", "team2", "--password", "alice-pw", "alice", who="admin")
    cluster.ok("role", "add", "--user", "alice", "--project", "team2", "member", who="admin")

    disk = tmp_path / "shared.raw"
    disk.write_bytes(b"\x00" * (1 << 20))
    image = cluster.ok("image", "create", "--disk-format", "raw", "--container-format", "bare", "--file", str(disk),
                       "--shared", "team-image", "-f", "json")
    cluster.ok("image", "add", "project", image["id"], team2["id"])
    as_user(cluster, "alice", "alice-pw", "team2", "image", "set", "--accept", image["id"])
    made = as_user(cluster, "alice", "alice-pw", "team2", "server", "create", "--flavor", "m1.tiny", "--image",
                   image["id"], "--wait", "alice-vm", "-f", "json")
    assert made["status"] == "ACTIVE"
    cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "demo-vm")
    listed = as_user(cluster, "alice", "alice-pw", "team2", "server", "list", "-f", "json")
    assert [(s["Name"], s["Image"]) for s in listed] == [("alice-vm", "team-image")]
    assert [s["Name"] for s in cluster.ok("server", "list", "-f", "json")] == ["demo-vm"]
    everyone = cluster.ok("server", "list", "--all-projects", "-f", "json", who="admin")
    assert sorted(s["Name"] for s in everyone) == ["alice-vm", "demo-vm"]
    # a member of team2 is no admin: another project's server is not found, all-projects refused
    assert as_user(cluster, "alice", "alice-pw", "team2", "server", "show", "demo-vm", check=False).returncode != 0
    refused = as_user(cluster, "alice", "alice-pw", "team2", "server", "list", "--all-projects", check=False)
    assert refused.returncode != 0 and "403" in refused.stderr

    as_user(cluster, "alice", "alice-pw", "team2", "server", "delete", "--wait", "alice-vm")
    cluster.ok("server", "delete", "--wait", "demo-vm")


def test_an_application_credential_drives_openstacksdk(cluster: RunningCluster) -> None:
    import openstack

    cred = cluster.ok("application", "credential", "create", "ci", "--role", "member", "-f", "json")
    cred = {k.lower(): v for k, v in cred.items()}
    conn = openstack.connect(auth_url=cluster.endpoint + "/identity/v3", auth_type="v3applicationcredential",
                             application_credential_id=cred["id"], application_credential_secret=cred["secret"],
                             region_name="RegionOne", load_yaml_config=False, load_envvars=False)
    try:
        demo_project = cluster.ok("token", "issue", "-f", "json")["project_id"]
        assert conn.current_project_id == demo_project
        assert [f.name for f in conn.compute.flavors()][:1] == ["m1.tiny"]
        server = conn.compute.create_server(name="ci-vm", flavor_id="1", networks="auto",
                                            image_id=cluster.ok("image", "show", "tiny-raw", "-f", "json")["id"])
        conn.compute.wait_for_server(server, wait=120, interval=WAIT_POLL)
        assert [s.name for s in conn.compute.servers()] == ["ci-vm"]
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120, interval=WAIT_POLL)
    finally:
        conn.close()
    cluster.ok("application", "credential", "delete", "ci")
    again = openstack.connect(auth_url=cluster.endpoint + "/identity/v3", auth_type="v3applicationcredential",
                              application_credential_id=cred["id"], application_credential_secret=cred["secret"],
                              region_name="RegionOne", load_yaml_config=False, load_envvars=False)
    from keystoneauth1.exceptions.http import Unauthorized

    with pytest.raises(Unauthorized):  # the deleted credential no longer authenticates
        list(again.compute.servers())
