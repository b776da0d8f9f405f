"""Server operations of issue 16 end to end with the unmodified openstack CLI on the default cluster
(libvirt test:///default, real processes): lock and unlock, snapshots, reset state, zones, tags, consoles."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

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


def test_a_snapshot_of_a_running_and_a_stopped_server_is_an_image_that_boots(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "snapsrc")["id"]
    image = cluster.ok("server", "image", "create", "--name", "snap-running", "--property", "purpose=test",
                       "--wait", "-f", "json", sid)
    shown = cluster.ok("image", "show", "-f", "json", image["id"])
    props = shown["properties"]
    assert shown["status"] == "active" and shown["visibility"] == "private" and shown["disk_format"] == "raw"
    assert (props["image_type"], props["instance_uuid"], props["purpose"]) == ("snapshot", sid, "test")
    assert props["base_image_ref"] == cluster.ok("image", "show", "-f", "json", "tiny-raw")["id"]
    # the test hypervisor writes no disk: the snapshot holds the bits the guest was booted from
    assert shown["checksum"] == cluster.ok("image", "show", "-f", "json", "tiny-raw")["checksum"]
    assert status(cluster, sid) == "ACTIVE"
    events = cluster.ok("server", "event", "list", "-f", "json", sid)
    assert "createImage" in [e["Action"] for e in events]

    cluster.ok("server", "stop", sid)
    wait_for("SHUTOFF", lambda: status(cluster, sid) == "SHUTOFF", timeout=30, interval=0.3)
    stopped = cluster.ok("server", "image", "create", "--name", "snap-stopped", "--wait", "-f", "json", sid)
    assert cluster.ok("image", "show", "-f", "json", stopped["id"])["status"] == "active"
    assert status(cluster, sid) == "SHUTOFF"

    booted = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "snap-running", "--wait", "-f", "json",
                        "fromsnap")
    assert booted["status"] == "ACTIVE"
    for server in (booted["id"], sid):
        cluster.ok("server", "delete", "--wait", server)
    for img in (image["id"], stopped["id"]):
        cluster.ok("image", "delete", img)


def test_a_paused_server_snapshots_and_a_deleted_one_makes_no_image(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "snapbusy")["id"]
    before = {i["ID"] for i in cluster.ok("image", "list", "-f", "json")}
    cluster.ok("server", "pause", sid)
    wait_for("PAUSED", lambda: status(cluster, sid) == "PAUSED", timeout=30, interval=0.3)
    cluster.ok("server", "image", "create", "--name", "snap-paused", "--wait", sid)  # paused is allowed, as Nova
    cluster.ok("server", "delete", "--wait", sid)
    err = refused(cluster, "server", "image", "create", "--name", "snap-gone", sid)
    assert f"No Server found for {sid}" in err, err
    after = {i["ID"]: i["Name"] for i in cluster.ok("image", "list", "-f", "json")}
    assert [n for i, n in after.items() if i not in before] == ["snap-paused"]


def test_backups_rotate_per_type_and_bad_bodies_make_nothing(cluster: RunningCluster) -> None:
    """createBackup through `server backup create`: each backup is an image marked backup of its type; once
    the third daily one is active the oldest daily goes (rotation 2), a weekly one stays; a bad body is
    Nova's 400 before any image exists."""
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "backed")["id"]
    made = {}
    for name, kind, rotate in (("bk-d1", "daily", "2"), ("bk-w1", "weekly", "1"), ("bk-d2", "daily", "2"),
                               ("bk-d3", "daily", "2")):
        made[name] = cluster.ok("server", "backup", "create", "--name", name, "--type", kind, "--rotate", rotate,
                                "--wait", "-f", "json", sid)["id"]
    props = cluster.ok("image", "show", "-f", "json", made["bk-d3"])["properties"]
    assert (props["image_type"], props["backup_type"], props["instance_uuid"]) == ("backup", "daily", sid)

    def names() -> set[str]:
        return {i["Name"] for i in cluster.ok("image", "list", "-f", "json")} & set(made)
    wait_for("the oldest daily backup rotated out", lambda: names() == {"bk-w1", "bk-d2", "bk-d3"}, timeout=30)
    assert "createBackup" in [e["Action"] for e in cluster.ok("server", "event", "list", "-f", "json", sid)]

    headers = {"X-Auth-Token": cluster.token(), "OpenStack-API-Version": "compute 2.45"}
    url = f"{cluster.endpoint}/compute/v2.1/servers/{sid}/action"
    bad_bodies: list[dict[str, Any]] = [{"name": "b", "backup_type": "daily", "rotation": -1},
                                        {"name": "b", "rotation": 1},
                                        {"name": "b", "backup_type": "daily", "rotation": "x"}]
    for bad in bad_bodies:
        answer = requests.post(url, json={"createBackup": bad}, headers=headers, timeout=30)
        assert answer.status_code == 400, (bad, answer.text)
    stranger = {**headers, "X-Auth-Token": cluster.token("alt_demo")}  # another project: no such server, nothing made
    taken = requests.post(url, json={"createBackup": {"name": "bk-x", "backup_type": "daily", "rotation": 1}},
                          headers=stranger, timeout=30)
    assert taken.status_code == 404, taken.text
    rotated = requests.post(url, json={"createBackup": {"name": "bk-d4", "backup_type": "daily", "rotation": "2"}},
                            headers=headers, timeout=30)
    assert rotated.status_code == 202 and set(rotated.json()) == {"image_id"}  # 2.45: the id, no Location
    wait_for("bk-d4 in and bk-d2 rotated out", lambda: names() == {"bk-w1", "bk-d3"} and
             any(i["Name"] == "bk-d4" for i in cluster.ok("image", "list", "-f", "json")), timeout=30)
    assert "bk-x" not in {i["Name"] for i in cluster.ok("image", "list", "-f", "json", who="admin")}
    cluster.ok("server", "delete", "--wait", sid)
    for img in cluster.ok("image", "list", "-f", "json"):
        if img["Name"].startswith("bk-"):
            cluster.ok("image", "delete", img["ID"])


def test_an_admin_resets_a_servers_state_and_a_member_may_not(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "reset1")["id"]
    err = refused(cluster, "server", "set", "--auto-approve", "--state", "error", sid)
    assert "reset_state" in err and "403" in err, err
    cluster.ok("server", "set", "--auto-approve", "--state", "error", sid, who="admin")
    assert status(cluster, sid) == "ERROR"
    cluster.ok("server", "set", "--auto-approve", "--state", "active", sid, who="admin")
    assert status(cluster, sid) == "ACTIVE"
    cluster.ok("server", "delete", "--wait", sid)


def test_sites_and_cells_are_availability_zones_with_hosts_for_admins(cluster: RunningCluster) -> None:
    listed = cluster.ok("availability", "zone", "list", "--compute", "-f", "json")
    assert {(z["Zone Name"], z["Zone Status"]) for z in listed} == {("site1", "available"), ("cell1", "available")}
    detail = cluster.ok("availability", "zone", "list", "--compute", "--long", "-f", "json", who="admin")
    rows = {(z["Zone Name"], z["Host Name"], z["Service Name"]) for z in detail}
    assert {("site1", "node1", "nova-compute"), ("cell1", "node1", "nova-compute")} <= rows, detail
    # a member's detail request is refused (403) and the CLI falls back to the list: no hosts
    member = cluster.ok("availability", "zone", "list", "--compute", "--long", "-f", "json")
    assert {z["Host Name"] for z in member} == {""}, member
    refused_detail = requests.get(f"{cluster.endpoint}/compute/v2.1/os-availability-zone/detail", timeout=30,
                                  headers={"X-Auth-Token": cluster.token()})
    assert refused_detail.status_code == 403, refused_detail.text


def test_server_tags_from_2_26_and_at_create_from_2_52_through_the_cli(cluster: RunningCluster) -> None:
    sid = cluster.ok("--os-compute-api-version", "2.52", "server", "create", "--flavor", "m1.tiny", "--image",
                     "tiny-raw", "--tag", "web", "--tag", "prod", "--tag", "web", "--wait", "-f", "json",
                     "tagged")["id"]
    v226 = ("--os-compute-api-version", "2.26")
    assert sorted(cluster.ok(*v226, "server", "show", "-f", "json", sid)["tags"]) == ["prod", "web"]
    cluster.ok(*v226, "server", "set", "--tag", "extra", sid)
    assert sorted(cluster.ok(*v226, "server", "show", "-f", "json", sid)["tags"]) == ["extra", "prod", "web"]
    cluster.ok(*v226, "server", "unset", "--tag", "prod", "--tag", "extra", sid)
    assert cluster.ok(*v226, "server", "show", "-f", "json", sid)["tags"] == ["web"]
    headers = {"X-Auth-Token": cluster.token(), "OpenStack-API-Version": "compute 2.26"}
    base = f"{cluster.endpoint}/compute/v2.1/servers/{sid}/tags"
    assert requests.get(f"{base}/web", headers=headers, timeout=30).status_code == 204
    assert requests.get(f"{base}/prod", headers=headers, timeout=30).status_code == 404
    assert requests.put(f"{base}/a,b", headers=headers, timeout=30).status_code == 400  # no "," in a tag
    too_many = requests.put(base, json={"tags": [f"t{i}" for i in range(51)]}, headers=headers, timeout=30)
    assert too_many.status_code == 400
    assert requests.get(base, headers={"X-Auth-Token": cluster.token()}, timeout=30).status_code == 404  # 2.1
    other = requests.get(base, headers={**headers, "X-Auth-Token": cluster.token("alt_demo")}, timeout=30)
    assert other.status_code == 404  # another project's server is not there
    assert requests.get(base, headers=headers, timeout=30).json() == {"tags": ["web"]}
    cluster.ok("server", "delete", "--wait", sid)


def test_admins_see_each_compute_node_with_its_use(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "hyper1")["id"]
    [node] = cluster.ok("hypervisor", "list", "-f", "json", who="admin")
    assert (node["Hypervisor Hostname"], node["State"]) == ("node1", "up"), node
    headers = {"X-Auth-Token": cluster.token("admin")}
    # the CLI's hypervisor show also asks os-aggregates (not served): the API's show, at 2.87 (the last with use)
    one = requests.get(f"{cluster.endpoint}/compute/v2.1/os-hypervisors/{node['ID']}", timeout=30,
                       headers={**headers, "OpenStack-API-Version": "compute 2.87"})
    assert one.status_code == 200, one.text
    shown = one.json()["hypervisor"]
    assert shown["hypervisor_hostname"] == "node1" and shown["running_vms"] >= 1, shown
    assert shown["memory_mb_used"] >= 1 and shown["free_ram_mb"] == shown["memory_mb"] - shown["memory_mb_used"]
    stats = requests.get(f"{cluster.endpoint}/compute/v2.1/os-hypervisors/statistics", headers=headers, timeout=30)
    assert stats.status_code == 200 and stats.json()["hypervisor_statistics"]["count"] == 1, stats.text
    assert stats.json()["hypervisor_statistics"]["running_vms"] == shown["running_vms"]
    err = refused(cluster, "hypervisor", "list")
    assert "os-hypervisors:list" in err and "403" in err, err
    cluster.ok("server", "delete", "--wait", sid)


def test_admins_list_migrations_and_a_servers_live_ones(cluster: RunningCluster) -> None:
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "moved1")["id"]
    # one host and no resize to the same host: the move is recorded, then fails for want of a host
    cluster.cli("server", "resize", "--flavor", "m1.small", sid)

    def recorded() -> Any:
        listed = cluster.ok("server", "migration", "list", "--server", sid, "-f", "json", who="admin")
        return listed if listed and listed[0]["Status"] not in ("pre-migrating", "migrating") else None
    [mig] = wait_for("the resize recorded", recorded, timeout=60, interval=1)
    assert (mig["Source Compute"], mig["Type"]) == ("node1", "resize"), mig
    err = refused(cluster, "server", "migration", "list")
    assert "os-migrations:index" in err and "403" in err, err
    headers = {"X-Auth-Token": cluster.token("admin"), "OpenStack-API-Version": "compute 2.23"}
    live = requests.get(f"{cluster.endpoint}/compute/v2.1/servers/{sid}/migrations", headers=headers, timeout=30)
    assert live.status_code == 200 and live.json() == {"migrations": []}, live.text
    wait_for("the server settled", lambda: status(cluster, sid) in ("ACTIVE", "ERROR"), timeout=60, interval=0.5)
    cluster.ok("server", "delete", "--wait", sid)


def test_admins_list_the_compute_services_up(cluster: RunningCluster) -> None:
    services = cluster.ok("compute", "service", "list", "-f", "json", who="admin")
    found = {(s["Binary"], s["Host"], s["Zone"], s["Status"], s["State"]) for s in services}
    assert ("nova-compute", "node1", "site1", "enabled", "up") in found, services
    assert {("nova-conductor", "internal"), ("nova-scheduler", "internal")} <= {(s["Binary"], s["Zone"])
                                                                                for s in services}
    assert all(s["State"] == "up" for s in services), services
    only = cluster.ok("compute", "service", "list", "--service", "nova-compute", "-f", "json", who="admin")
    assert [s["Host"] for s in only] == ["node1"]
    err = refused(cluster, "compute", "service", "list")
    assert "os-services:list" in err and "403" in err, err


def test_no_console_on_the_test_hypervisor_is_novas_400_and_the_proxy_wants_a_token(cluster: RunningCluster) -> None:
    """libvirt's test hypervisor has no console: `console url show --serial` and `--novnc` are Nova's 400 for
    an unavailable console type; so is any graphics console; a stopped server's is a 409; before 2.6 there
    is no remote-consoles resource; the websockets without a valid console token are a 401."""
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "console1")["id"]
    err = refused(cluster, "console", "url", "show", "--serial", sid)
    assert "Unavailable console type serial." in err and "400" in err, err
    err = refused(cluster, "console", "url", "show", "--novnc", sid)
    assert "Unavailable console type novnc." in err and "400" in err, err
    token = cluster.token()

    def post(path: str, body: dict[str, Any], version: str = "2.6") -> requests.Response:
        return requests.post(f"{cluster.endpoint}/compute/v2.1/servers/{sid}{path}", json=body, timeout=30,
                             headers={"X-Auth-Token": token, "OpenStack-API-Version": f"compute {version}"})

    def remote(protocol: str, kind: str, version: str = "2.6", **extra: str) -> requests.Response:
        return post("/remote-consoles", {"remote_console": {"protocol": protocol, "type": kind, **extra}}, version)

    vnc = remote("vnc", "novnc")
    assert vnc.status_code == 400 and "Unavailable console type novnc." in vnc.text, vnc.text
    mismatched = remote("serial", "novnc")
    assert mismatched.status_code == 400 and "Invalid console type novnc" in mismatched.text, mismatched.text
    gone = remote("vnc", "xvpvnc")  # Nova's XVP proxy is gone: an invalid type for its compute
    assert gone.status_code == 400 and "Invalid console type xvpvnc" in gone.text, gone.text
    assert remote("serial", "serial", port="1").status_code == 400  # unknown member
    assert remote("mks", "webmks").status_code == 400  # not before 2.8
    assert remote("serial", "serial", version="2.5").status_code == 404
    legacy = post("/action", {"os-getSerialConsole": {"type": "serial"}}, "2.1")
    assert legacy.status_code == 400 and "Unavailable console type serial." in legacy.text, legacy.text
    assert post("/action", {"os-getSerialConsole": {"type": "novnc"}}, "2.1").status_code == 400
    cluster.ok("server", "stop", sid)
    wait_for("SHUTOFF", lambda: status(cluster, sid) == "SHUTOFF", timeout=30, interval=0.3)
    stopped = remote("serial", "serial")
    assert stopped.status_code == 409 and f"Instance {sid} is not ready" in stopped.text, stopped.text
    for proxy in (f"{cluster.endpoint}/compute/serial-console", f"{cluster.endpoint}/compute/vnc-console"):
        for bad in ("", sid, f"{sid}.guessed", f"{sid.replace('-', '')}.x"):
            assert requests.get(proxy, params={"token": bad}, timeout=30).status_code == 401, (proxy, bad)
    cluster.ok("server", "delete", "--wait", sid)


def test_force_delete_deletes_and_restore_finds_nothing_soft_deleted(cluster: RunningCluster) -> None:
    """No server is soft-deleted here (Nova with reclaim_instance_interval 0): restore is Nova's 409 for a
    server that is not, forceDelete a delete; an unknown server is a 404 for both."""
    sid = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "-f", "json",
                     "forced1")["id"]
    headers = {"X-Auth-Token": cluster.token()}

    def act(server: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{cluster.endpoint}/compute/v2.1/servers/{server}/action", json=body, headers=headers,
                             timeout=30)

    for name in ("restore", "forceDelete"):
        assert act("8a3e2f4c-0000-4000-8000-000000000000", {name: None}).status_code == 404
    restore = act(sid, {"restore": None})
    assert restore.status_code == 409 and f"Cannot 'restore' instance {sid} while it is in vm_state active" \
        in restore.text, restore.text
    assert act(sid, {"forceDelete": {"extra": 1}}).status_code == 400
    assert act(sid, {"forceDelete": None}).status_code == 202
    wait_for("deleted", lambda: sid not in [s["ID"] for s in cluster.ok("server", "list", "-f", "json")],
             timeout=30, interval=0.3)
