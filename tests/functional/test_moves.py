"""Resize (confirm and revert), cold migration, shelve / unshelve and evacuation end to end on two hosts
(libvirt test:///default, real processes), with the cell's claims checked before and
after each step, bad input refused in Nova's error shapes, and a dead host's stale
copy destroyed when it comes back."""
from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.functional.test_rolling_upgrade import Rest
from tools.bench.boot import TEST_NODE
from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow
TINY, SMALL, MEDIUM = "1", "2", "3"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("moves")
    node = root / "testnode.xml"  # a test hypervisor with room for every resize of the module
    node.write_text(TEST_NODE)
    with running_cluster(root / "cluster", hosts=2, virt_uri=f"test://{node}") as c:
        yield c


def claims(cluster: RunningCluster) -> dict[str, tuple[str, int, int]]:
    """consumer (instance or migration uuid) -> (host, memory_mb, local_gb), from the cell DB."""
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in db.execute(
            "SELECT instance_uuid, host, memory_mb, local_gb FROM claims")}
    finally:
        db.close()


def usage(cluster: RunningCluster) -> dict[str, tuple[int, int, int]]:
    """host -> (vcpus, memory_mb, local_gb) in use, as the scheduler sees it."""
    db = sqlite3.connect(cluster.state / "cells" / "cell1.db")
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in db.execute(
            "SELECT host, vcpus_used, memory_mb_used, local_gb_used FROM compute_nodes")}
    finally:
        db.close()


class Admin(Rest):
    def __init__(self, cluster: RunningCluster) -> None:
        super().__init__(cluster)
        self.admin = {"X-Auth-Token": cluster.token("admin")}

    def post(self, sid: str, body: dict[str, Any], admin: bool = False) -> requests.Response:
        return requests.post(f"{self.base}/servers/{sid}/action", json=body, timeout=30,
                             headers=self.admin if admin else self.h)

    def host(self, sid: str) -> str:
        r = requests.get(f"{self.base}/servers/{sid}", headers=self.admin, timeout=10)
        return str(r.json()["server"]["OS-EXT-SRV-ATTR:host"])

    def events(self, sid: str) -> list[tuple[str, list[tuple[str, str]]]]:
        r = requests.get(f"{self.base}/servers/{sid}/os-instance-actions", headers=self.h, timeout=10)
        out = []
        for act in r.json()["instanceActions"]:
            d = requests.get(f"{self.base}/servers/{sid}/os-instance-actions/{act['request_id']}",
                             headers=self.admin, timeout=10).json()["instanceAction"]
            out.append((act["action"], [(e["event"], e["result"]) for e in d.get("events", [])]))
        return out

    def boot(self, name: str) -> str:
        r = requests.post(f"{self.base}/servers", headers=self.h, timeout=10, json={
            "server": {"name": name, "flavorRef": TINY, "imageRef": self.image}})
        assert r.status_code == 202, r.text
        sid = str(r.json()["server"]["id"])
        self.wait(sid, "ACTIVE")
        return sid


@pytest.fixture(scope="module")
def api(cluster: RunningCluster) -> Admin:
    admin = Admin(cluster)
    project = requests.get(cluster.endpoint + "/identity/v3/auth/tokens", timeout=10,
                           headers={**admin.admin, "X-Subject-Token": admin.h["X-Auth-Token"]}).json()
    r = requests.put(f"{admin.base}/os-quota-sets/{project['token']['project']['id']}", headers=admin.admin,
                     json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}}, timeout=10)
    assert r.status_code == 200, r.text  # the module boots more servers than the default quota
    return admin


def test_resize_confirm_moves_the_claim_and_the_flavor(cluster: RunningCluster, api: Admin) -> None:
    sid = api.boot("rz1")
    src = api.host(sid)
    assert claims(cluster)[sid] == (src, 512, 1)
    assert api.post(sid, {"resize": {"flavorRef": SMALL}}).status_code == 202
    doc = api.wait(sid, "VERIFY_RESIZE")
    dest = api.host(sid)
    assert dest != src and doc["flavor"]["id"] == SMALL
    held = claims(cluster)
    assert held[sid] == (src, 512, 1)  # the source is kept until confirm
    [(mig, on_dest)] = [(k, v) for k, v in held.items() if k != sid and v[0] == dest]
    assert on_dest == (dest, 2048, 20)
    assert api.post(sid, {"confirmResize": None}).status_code == 204
    api.wait(sid, "ACTIVE")
    held = claims(cluster)
    assert held[sid] == (dest, 2048, 20) and mig not in held
    acts = dict(api.events(sid))
    assert ("compute_finish_resize", "Success") in acts["resize"]
    assert ("compute_confirm_resize", "Success") in acts["confirmResize"]


def test_resize_revert_returns_to_the_old_flavor_and_host(cluster: RunningCluster, api: Admin) -> None:
    sid = api.boot("rz2")
    src = api.host(sid)
    assert api.post(sid, {"resize": {"flavorRef": SMALL}}).status_code == 202
    api.wait(sid, "VERIFY_RESIZE")
    assert api.post(sid, {"revertResize": None}).status_code == 202
    doc = api.wait(sid, "ACTIVE")
    assert api.host(sid) == src and doc["flavor"]["id"] == TINY
    assert [v for k, v in claims(cluster).items() if k == sid] == [(src, 512, 1)]
    assert not [k for k, v in claims(cluster).items() if v[1] == 2048 and k != sid and k not in _servers(api)]


def test_delete_in_verify_resize_gives_back_both_claims(cluster: RunningCluster, api: Admin) -> None:
    before_claims, before = claims(cluster), usage(cluster)
    sid = api.boot("rzdel")
    src = api.host(sid)
    assert api.post(sid, {"resize": {"flavorRef": SMALL}}).status_code == 202
    api.wait(sid, "VERIFY_RESIZE")
    dest = api.host(sid)
    held = {k: v for k, v in claims(cluster).items() if k not in before_claims}
    assert sorted(held.values()) == sorted([(src, 512, 1), (dest, 2048, 20)])  # the source's and the migration's
    assert requests.delete(f"{api.base}/servers/{sid}", headers=api.h, timeout=10).status_code == 204
    wait_for("server never went away", lambda: api.server(sid).status_code == 404, timeout=30, interval=0.1)
    assert claims(cluster) == before_claims and usage(cluster) == before  # nothing leaked on either host
    removed = f"instance {sid} on {src}: old guest removed after confirm"  # the source copy goes too
    wait_for(f"copy of {sid} on {src} removed", lambda: removed in cluster.log(f"cell1/compute/{src}"), timeout=30)


def _servers(api: Admin) -> set[str]:
    r = requests.get(f"{api.base}/servers", headers=api.h, timeout=10)
    return {s["id"] for s in r.json()["servers"]}


def test_bad_resizes_and_confirms_are_refused(api: Admin) -> None:
    sid = api.boot("rz3")
    same = api.post(sid, {"resize": {"flavorRef": TINY}})
    assert same.status_code == 400 and "must change flavor" in same.json()["badRequest"]["message"]
    assert api.post(sid, {"resize": {"flavorRef": "no-such"}}).status_code == 400
    confirm = api.post(sid, {"confirmResize": None})
    assert confirm.status_code == 409 and "conflictingRequest" in confirm.json()
    assert api.post(sid, {"revertResize": None}).status_code == 409
    assert api.post(sid, {"migrate": None}).status_code == 403  # admin only
    assert api.post(sid, {"resize": {"flavorRef": MEDIUM}}).status_code == 202
    api.wait(sid, "VERIFY_RESIZE")
    smaller = api.post(sid, {"resize": {"flavorRef": SMALL}})  # busy (VERIFY_RESIZE): 409
    assert smaller.status_code == 409
    assert api.post(sid, {"confirmResize": None}).status_code == 204
    api.wait(sid, "ACTIVE")
    shrink = api.post(sid, {"resize": {"flavorRef": SMALL}})
    assert shrink.status_code == 400 and "smaller disk" in shrink.json()["badRequest"]["message"]


def test_migrate_moves_to_the_other_host(cluster: RunningCluster, api: Admin) -> None:
    sid = api.boot("mig1")
    src = api.host(sid)
    assert api.post(sid, {"migrate": None}, admin=True).status_code == 202
    doc = api.wait(sid, "VERIFY_RESIZE")
    assert api.host(sid) != src and doc["flavor"]["id"] == TINY
    assert api.post(sid, {"confirmResize": None}).status_code == 204
    api.wait(sid, "ACTIVE")
    assert claims(cluster)[sid][0] == api.host(sid) != src


def _hypervisor_used(cluster: RunningCluster, host: str) -> tuple[int, int]:
    """(vCPUs used, memory MB used) of `host` as `openstack hypervisor list --long` prints them (its show
    asks os-hypervisors/uptime, which is not served)."""
    [doc] = [h for h in cluster.ok("--os-compute-api-version", "2.87", "hypervisor", "list", "--long", "-f", "json",
                                   who="admin")
             if h["Hypervisor Hostname"] == host]
    return int(doc["vCPUs Used"]), int(doc["Memory MB Used"])


def _shelve_images(cluster: RunningCluster, name: str) -> list[dict[str, Any]]:
    return [i for i in cluster.ok("image", "list", "-f", "json", who="admin") if i["Name"] == f"{name}-shelved"]


def test_shelve_offloads_and_unshelve_lands_on_the_named_host_with_the_cli(cluster: RunningCluster,
                                                                             api: Admin) -> None:
    """The unmodified openstack CLI: shelve snapshots the disk into NAME-shelved and (shelved_offload_time 0)
    offloads at once, the host's claim given back in `hypervisor list --long`; unshelve --host (2.91, admin) boots
    it on the other host from that image, which then goes; shelve actions are recorded; Nova's 409s."""
    sid = api.boot("shlv1")
    src = api.host(sid)
    other = next(h for h in ("node1", "node2") if h != src)
    used = _hypervisor_used(cluster, src)
    early = api.post(sid, {"unshelve": None})  # the CLI skips a server that is not shelved: the API's 409
    assert early.status_code == 409, early.text
    assert f"Cannot 'unshelve' instance {sid} while it is in vm_state active" in early.json()["conflictingRequest"][
        "message"]
    cluster.ok("server", "shelve", sid)
    doc = api.wait(sid, "SHELVED_OFFLOADED")
    assert api.host(sid) == "None" and doc.get("OS-EXT-SRV-ATTR:host") is None  # member view: no host at all
    [image] = _shelve_images(cluster, "shlv1")
    shown = cluster.ok("image", "show", "-f", "json", image["ID"], who="admin")
    assert shown["status"] == "active" and shown["properties"]["image_type"] == "snapshot"
    assert shown["properties"]["instance_uuid"] == sid
    assert sid not in claims(cluster)  # offload freed the claim: the hypervisor shows it
    assert _hypervisor_used(cluster, src) == (used[0] - 1, used[1] - 512)
    assert api.post(sid, {"shelveOffload": None}).status_code == 403  # an admin's
    again = api.post(sid, {"shelveOffload": None}, admin=True)  # offloaded already (the CLI skips it)
    assert again.status_code == 409 and "while it is in vm_state shelved_offloaded" in again.text, again.text
    err = cluster.cli("--os-compute-api-version", "2.91", "server", "unshelve", "--host", other, sid)
    assert err.returncode != 0 and "403" in err.stderr  # naming a host is an admin's
    cluster.ok("--os-compute-api-version", "2.91", "server", "unshelve", "--host", other, sid, who="admin")
    api.wait(sid, "ACTIVE")
    assert api.host(sid) == other and claims(cluster)[sid] == (other, 512, 1)
    wait_for("the shelve image deleted", lambda: not _shelve_images(cluster, "shlv1"), timeout=30, interval=0.5)
    acts = dict(api.events(sid))
    assert ("compute_shelve_instance", "Success") in acts["shelve"]
    assert ("compute_shelve_offload_instance", "Success") in acts["shelveOffload"]
    assert ("compute_unshelve_instance", "Success") in acts["unshelve"]
    # a shelved server's delete takes its shelve image along
    cluster.ok("server", "shelve", sid)
    api.wait(sid, "SHELVED_OFFLOADED")
    assert len(_shelve_images(cluster, "shlv1")) == 1
    cluster.ok("server", "delete", "--wait", sid)
    assert not _shelve_images(cluster, "shlv1")


def test_evacuate_rebuilds_a_dead_hosts_server_and_the_stale_copy_goes(cluster: RunningCluster,
                                                                         api: Admin) -> None:
    sid = api.boot("evac1")
    dead = api.host(sid)
    other = "node2" if dead == "node1" else "node1"
    up = api.post(sid, {"evacuate": {}}, admin=True)
    assert up.status_code == 400 and "still in use" in up.json()["badRequest"]["message"]
    live = api.boot("stays")
    if api.host(live) == dead:  # want a server on the host that stays up: migrate it there
        assert api.post(live, {"migrate": None}, admin=True).status_code == 202
        api.wait(live, "VERIFY_RESIZE")
        assert api.post(live, {"confirmResize": None}).status_code == 204
        api.wait(live, "ACTIVE")
    pid = cluster.signal(f"cell1/compute/{dead}", signal.SIGSTOP)  # stops beating: suspect in 3 beats
    marked = False
    try:  # suspect is not dead (its guest may still run): the operator declares it dead
        deadline = time.monotonic() + 15
        while api.post(sid, {"evacuate": {}}, admin=True).status_code == 400:
            assert time.monotonic() < deadline, "host never declared dead"
            if not marked and "SUSPECT" in cluster.cellctl("status", str(cluster.cluster_file), check=False).stdout:
                marked = cluster.cellctl("host", "down", dead, str(cluster.cluster_file)).returncode == 0
            time.sleep(0.3)
        assert marked  # not evacuated before the operator said so
        api.wait(sid, "ACTIVE", timeout=30)
        assert api.host(sid) == other
        assert claims(cluster)[sid][0] == other
        # no other host with room for a migration: the server stays ACTIVE where it was
        assert api.post(live, {"migrate": None}, admin=True).status_code == 202
        api.wait(live, "ACTIVE", timeout=30)
        assert api.host(live) == other
        events = next(a for a in api.events(live) if a[0] == "migrate")[1]  # the latest migrate (newest first)
        assert any(result == "Error" for _, result in events), events  # the fault is on the action
    finally:
        import os
        os.kill(pid, signal.SIGCONT)
        cluster.cellctl("host", "up", dead, str(cluster.cluster_file), check=False)  # fenced until it reconciles
    deadline = time.monotonic() + 30  # back: it reconciles, destroying its stale copy instead of running it
    while "destroying orphan domain of instance " + sid not in cluster.log(f"cell1/compute/{dead}"):
        assert time.monotonic() < deadline, "stale copy not destroyed"
        time.sleep(0.3)
    assert api.host(sid) == other
    assert ("evacuate", [("compute_rebuild_instance", "Success")]) in api.events(sid)
