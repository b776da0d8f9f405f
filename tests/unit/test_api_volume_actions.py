"""Cinder's state actions through the volume API (api/volume/actions.py, cells/conductor/flows/volume_states.py)
with test_api_volumes' cell (real volume flows, cell DB and volume worker): admin resets and force deletes of
volumes and snapshots, the legacy attach bookkeeping Nova calls (reserve, attach, begin/roll detaching,
detach, force detach), the readonly flag and retype; each refusal is Cinder's code and changes nothing."""
from __future__ import annotations

import uuid
from typing import Any

from tests.unit.api_support import SECRETS
from tests.unit.test_api_volume_types import make_type
from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]


async def _act(cloud: Cloud, user: str, vid: str, body: object, what: str = "volumes") -> tuple[int, object]:
    return await cloud.req("POST", user, f"/{what}/{vid}/action", body)


async def test_admin_resets_and_force_deletes_volumes_and_snapshots(cloud: Cloud) -> None:
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    status, _ = await _act(cloud, "demo", vid, {"os-reset_status": {"status": "error"}})
    assert status == 403  # volume_extension:volume_admin_actions:reset_status is admin_api
    status, body = await _act(cloud, "admin", vid, {"os-reset_status": {"status": "sideways"}})
    assert status == 400 and "sideways" in str(body)
    for wanted in ("error", "maintenance", "available"):
        assert (await _act(cloud, "admin", vid, {"os-reset_status": {"status": wanted}}))[0] == 202
        assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == wanted

    status, body = await cloud.req("POST", "demo", "/snapshots", {"snapshot": {"volume_id": vid}})
    assert status == 202, body
    sid = body["snapshot"]["id"]
    for _ in range(200):
        await cloud.cell.settle()
        if (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[1]["snapshot"]["status"] == "available":
            break
    assert (await _act(cloud, "demo", sid, {"os-reset_status": {"status": "error"}}, "snapshots"))[0] == 403
    assert (await _act(cloud, "admin", sid, {"os-reset_status": {"status": "gone"}}, "snapshots"))[0] == 400
    assert (await _act(cloud, "admin", sid, {"os-reset_status": {"status": "creating"}}, "snapshots"))[0] == 202
    assert (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[1]["snapshot"]["status"] == "creating"
    # what a compute reports of an assisted snapshot: the owner may, within Cinder's moves
    update = {"os-update_snapshot_status": {"status": "error", "progress": "80%"}}
    assert (await _act(cloud, "demo", sid, {"os-update_snapshot_status": {"status": "deleting"}}, "snapshots"))[0] == 400
    assert (await _act(cloud, "demo", sid, {"os-update_snapshot_status": {"status": "error", "progress": "x"}},
                       "snapshots"))[0] == 400
    assert (await _act(cloud, "demo", sid, update, "snapshots"))[0] == 202
    shown = (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[1]["snapshot"]
    assert (shown["status"], shown["os-extended-snapshot-attributes:progress"]) == ("error", "80%")
    assert (await _act(cloud, "demo", sid, update, "snapshots"))[0] == 400  # error is no status it moves from
    assert (await _act(cloud, "admin", sid, {"os-reset_status": {"status": "creating"}}, "snapshots"))[0] == 202
    assert (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[1]["snapshot"][
        "os-extended-snapshot-attributes:progress"] == "0%"  # a reset forgets the reported progress
    status, body = await _act(cloud, "admin", vid, {"os-force_delete": {}})
    assert status == 400 and "snapshots" in str(body)  # as Cinder: a force delete keeps the snapshot rule
    assert (await _act(cloud, "admin", sid, {"os-force_delete": {}}, "snapshots"))[0] == 202
    await cloud.cell.settle()
    assert (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[0] == 404

    assert (await _act(cloud, "admin", vid, {"os-reset_status": {"status": "creating"}}))[0] == 202
    assert (await _act(cloud, "demo", vid, {"os-force_delete": {}}))[0] == 403
    assert (await cloud.req("DELETE", "demo", f"/volumes/{vid}"))[0] == 400  # creating: a plain delete refuses
    assert (await _act(cloud, "admin", vid, {"os-force_delete": {}}))[0] == 202
    await cloud.cell.settle()
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[0] == 404
    assert await cloud.cell.env.db.read(lambda conn: conn.exec_driver_sql(
        "SELECT deleted FROM volumes WHERE id = ?", (vid,)).scalar())


async def test_legacy_attach_bookkeeping_as_nova_calls_it(cloud: Cloud) -> None:
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    server = str(uuid.uuid4())
    assert (await _act(cloud, "demo", vid, {"os-reserve": None}))[0] == 202
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "attaching"
    assert (await _act(cloud, "demo", vid, {"os-reserve": None}))[0] == 400  # attaching already
    assert (await _act(cloud, "demo", vid, {"os-unreserve": None}))[0] == 202
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "available"

    status, body = await _act(cloud, "demo", vid, {"os-attach": {"instance_uuid": server}})
    assert status == 400 and "mountpoint" in str(body)
    status, _ = await _act(cloud, "demo", vid, {"os-attach": {"host_name": "h1", "mountpoint": "/dev/vdb"}})
    assert status == 400  # attaching to a host, not a server, is not served
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "available"
    assert (await _act(cloud, "demo", vid, {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdc"}}))[0] == 202
    shown = (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]
    assert shown["status"] == "in-use"
    [att] = shown["attachments"]
    assert (att["server_id"], att["device"], att["volume_id"]) == (server, "/dev/vdc", vid)
    assert cloud.cell.compute.plugged.get(vid) is None  # a record only: Nova plugs, not Cinder

    assert (await _act(cloud, "demo", vid, {"os-begin_detaching": None}))[0] == 202
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "detaching"
    assert (await _act(cloud, "demo", vid, {"os-roll_detaching": None}))[0] == 202
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "in-use"
    status, _ = await _act(cloud, "demo", vid, {"os-detach": {"attachment_id": str(uuid.uuid4())}})
    assert status == 404  # not its attachment
    assert (await _act(cloud, "demo", vid, {"os-detach": {"attachment_id": att["attachment_id"]}}))[0] == 202
    shown = (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]
    assert shown["status"] == "available" and shown["attachments"] == []
    assert (await _act(cloud, "demo", vid, {"os-detach": {}}))[0] == 202  # detached already: nothing to do

    # an admin frees a volume whose attachment went wrong: reset to error, force detach
    assert (await _act(cloud, "demo", vid, {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb"}}))[0] == 202
    att_id = (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["attachments"][0]["attachment_id"]
    assert (await _act(cloud, "admin", vid, {"os-reset_status": {"status": "error"}}))[0] == 202
    assert (await _act(cloud, "demo", vid, {"os-force_detach": {"attachment_id": att_id}}))[0] == 403
    assert (await _act(cloud, "admin", vid, {"os-force_detach": {"attachment_id": att_id, "connector": None}}))[0] == 202
    shown = (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]
    assert shown["status"] == "available" and shown["attachments"] == []


async def test_readonly_flag_and_retype_within_the_volume_host(cloud: Cloud) -> None:
    vid = (await cloud.create(metadata={"k": "v"}))["id"]
    await cloud.wait_status("demo", vid, "available")
    for readonly in (True, False):
        assert (await _act(cloud, "demo", vid, {"os-update_readonly_flag": {"readonly": readonly}}))[0] == 202
        meta = (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["metadata"]
        assert meta == {"k": "v", "readonly": str(readonly)}
    assert (await _act(cloud, "demo", vid, {"os-update_readonly_flag": {"readonly": "maybe"}}))[0] == 400

    await make_type(cloud, "here", volume_backend_name="file")  # node1's backend
    await make_type(cloud, "elsewhere", volume_backend_name="nvme")
    status, body = await _act(cloud, "demo", vid, {"os-retype": {"new_type": "elsewhere", "migration_policy": "on-demand"}})
    assert status == 400 and "migration" in str(body)
    assert (await _act(cloud, "demo", vid, {"os-retype": {"new_type": "gold"}}))[0] == 404
    assert (await _act(cloud, "demo", vid, {"os-retype": {"new_type": "here", "migration_policy": "always"}}))[0] == 400
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["volume_type"] == "__DEFAULT__"
    assert (await _act(cloud, "demo", vid, {"os-retype": {"new_type": "here"}}))[0] == 202
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["volume_type"] == "here"
    assert (await _act(cloud, "demo", vid, {"os-retype": {"new_type": "here"}}))[0] == 400  # already that type

    project = cloud.who["demo"][1]
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"volumes_here": 1}}))[0] == 200
    other = (await cloud.create())["id"]
    await cloud.wait_status("demo", other, "available")
    status, body = await _act(cloud, "demo", other, {"os-retype": {"new_type": "here"}})
    assert status == 413 and "volumes_here" in str(body)  # the type's own quota holds one volume
    assert (await cloud.req("GET", "demo", f"/volumes/{other}"))[1]["volume"]["volume_type"] == "__DEFAULT__"


async def test_volume_and_snapshot_metadata_routes(cloud: Cloud) -> None:
    await cloud.login("alt_demo", SECRETS["alt_demo_password"])
    vid = (await cloud.create(metadata={"a": "1"}))["id"]
    await cloud.wait_status("demo", vid, "available")
    status, body = await cloud.req("POST", "demo", "/snapshots", {"snapshot": {"volume_id": vid}})
    assert status == 202, body
    for base in (f"/volumes/{vid}/metadata", f"/snapshots/{body['snapshot']['id']}/metadata"):
        start = {"a": "1"} if base.startswith("/volumes") else {}
        assert (await cloud.req("GET", "demo", base))[1] == {"metadata": start}
        status, body = await cloud.req("POST", "demo", base, {"metadata": {"b": "2", "c": "<&>"}})
        assert status == 200 and body == {"metadata": {**start, "b": "2", "c": "<&>"}}
        status, body = await cloud.req("PUT", "demo", base, {"metadata": {"c": "3", "d": "4"}})
        assert status == 200 and body == {"metadata": {"c": "3", "d": "4"}}
        assert (await cloud.req("GET", "demo", f"{base}/c"))[1] == {"meta": {"c": "3"}}
        assert (await cloud.req("GET", "demo", f"{base}/zz"))[0] == 404
        status, body = await cloud.req("PUT", "demo", f"{base}/d", {"meta": {"d": "5"}})
        assert status == 200 and body == {"meta": {"d": "5"}}
        assert (await cloud.req("PUT", "demo", f"{base}/d", {"meta": {"e": "5"}}))[0] == 400  # not the URL's key
        assert (await cloud.req("POST", "demo", base, {"metadata": {"k": 7}}))[0] == 400  # not a string
        assert (await cloud.req("DELETE", "demo", f"{base}/c"))[0] == 200
        assert (await cloud.req("DELETE", "demo", f"{base}/c"))[0] == 404
        assert (await cloud.req("GET", "demo", base))[1] == {"metadata": {"d": "5"}}
        assert (await cloud.req("POST", "alt_demo", base, {"metadata": {"x": "y"}}))[0] == 404  # another project's
        assert (await cloud.req("GET", "demo", base))[1] == {"metadata": {"d": "5"}}


async def test_create_and_update_answers_carry_no_extension_keys_and_full_pages_link_on(cloud: Cloud) -> None:
    """As Cinder's (and Tempest's schemas): an admin's create and update answers have no host, migration or
    tenant attributes, its show has them; a page as full as the limit links to the next one, even the last;
    snapshots sort by display_name too."""
    extension_keys = {"os-vol-host-attr:host", "os-vol-mig-status-attr:migstat", "os-vol-mig-status-attr:name_id",
                      "os-vol-tenant-attr:tenant_id"}
    made = await cloud.create("admin", name="a1")
    assert not extension_keys & set(made)
    status, body = await cloud.req("PUT", "admin", f"/volumes/{made['id']}", {"volume": {"name": "a2"}})
    assert status == 200 and body["volume"]["name"] == "a2" and not extension_keys & set(body["volume"])
    shown = await cloud.wait_status("admin", made["id"], "available")
    assert extension_keys <= set(shown)

    second = await cloud.create("admin")
    await cloud.wait_status("admin", second["id"], "available")
    _, first_page = await cloud.req("GET", "admin", "/volumes?limit=1")
    _, last_page = await cloud.req("GET", "admin", f"/volumes?limit=1&marker={first_page['volumes'][0]['id']}")
    assert len(last_page["volumes"]) == 1 and "volumes_links" in last_page
    _, past = await cloud.req("GET", "admin", f"/volumes?limit=1&marker={last_page['volumes'][0]['id']}")
    assert past["volumes"] == [] and "volumes_links" not in past
    _, unfilled = await cloud.req("GET", "admin", "/volumes?limit=3")
    assert len(unfilled["volumes"]) == 2 and "volumes_links" not in unfilled
    assert (await cloud.req("GET", "admin", "/snapshots?sort_key=display_name&sort_dir=asc"))[0] == 200


async def test_services_pools_hosts_capabilities_summary_and_extensions(cloud: Cloud) -> None:
    """Admin reads over the cell's volume host (node1, backend file): one name everywhere, host@file#file
    for the pool and a volume's host attribute; members are refused them (403) but have their summary."""
    vid = (await cloud.create(size=2, metadata={"tier": "gold"}))["id"]
    await cloud.wait_status("demo", vid, "available")
    for path in ("/os-services", "/scheduler-stats/get_pools", "/os-hosts", "/os-hosts/node1", "/capabilities/node1"):
        assert (await cloud.req("GET", "demo", path))[0] == 403, path
    _, body = await cloud.req("GET", "admin", "/os-services?binary=cinder-volume")
    [svc] = body["services"]
    assert (svc["host"], svc["state"], svc["status"], svc["zone"]) == ("node1@file", "up", "enabled", "nova")
    _, body = await cloud.req("GET", "admin", "/os-services?host=node1")
    assert [s["binary"] for s in body["services"]] == ["cinder-volume"]
    _, body = await cloud.req("GET", "admin", "/os-services")
    assert sorted(s["binary"] for s in body["services"]) == ["cinder-scheduler", "cinder-volume"]
    assert all(s["state"] == "up" and s["updated_at"] for s in body["services"])  # the cell's conductor answered

    _, body = await cloud.req("GET", "admin", "/scheduler-stats/get_pools")
    assert body == {"pools": [{"name": "node1@file#file"}]}
    _, body = await cloud.req("GET", "admin", "/scheduler-stats/get_pools?detail=true")
    caps = body["pools"][0]["capabilities"]
    assert caps["volume_backend_name"] == "file" and caps["vendor_name"] == "Cellcloud"
    assert caps["total_capacity_gb"] - caps["free_capacity_gb"] == caps["allocated_capacity_gb"] >= 2
    assert (await cloud.req("GET", "admin", "/scheduler-stats/get_pools?detail=maybe"))[0] == 400
    shown = (await cloud.req("GET", "admin", f"/volumes/{vid}"))[1]["volume"]
    assert shown["os-vol-host-attr:host"] == "node1@file#file"
    for name in ("node1", "node1@file", "node1@file#file"):
        status, cap = await cloud.req("GET", "admin", f"/capabilities/{name}")
        assert status == 200 and cap["namespace"] == "OS::Storage::Capabilities::node1@file"
        assert (cap["volume_backend_name"], cap["storage_protocol"]) == (caps["volume_backend_name"],
                                                                         caps["storage_protocol"])
    assert (await cloud.req("GET", "admin", "/capabilities/nowhere"))[0] == 404

    _, body = await cloud.req("GET", "admin", "/os-hosts")
    assert {(h["service"], h["host_name"], h["service-status"]) for h in body["hosts"]} >= {
        ("cinder-volume", "node1@file", "available")}
    _, body = await cloud.req("GET", "admin", "/os-hosts/node1@file")
    [usage] = body["host"]
    assert usage["resource"]["volume_count"] == "1" and usage["resource"]["total_volume_gb"] == "2"
    assert (await cloud.req("GET", "admin", "/os-hosts/nowhere"))[0] == 404

    v312 = {"OpenStack-API-Version": "volume 3.12"}
    assert (await cloud.req("GET", "demo", "/volumes/summary"))[0] == 404  # no such route before 3.12
    _, body = await cloud.req("GET", "demo", "/volumes/summary", headers=v312)
    assert body == {"volume-summary": {"total_size": 2, "total_count": 1}}
    _, body = await cloud.req("GET", "demo", "/volumes/summary", headers={"OpenStack-API-Version": "volume 3.36"})
    assert body["volume-summary"]["metadata"] == {"tier": ["gold"]}
    _, body = await cloud.req("GET", "admin", "/volumes/summary", headers=v312)
    assert body["volume-summary"]["total_count"] == 0  # the admin's own project has none
    _, body = await cloud.req("GET", "demo", "/extensions")
    assert "Hosts" in [e["name"] for e in body["extensions"]]


async def test_lists_take_cinders_offset(cloud: Cloud) -> None:
    ids = []
    for _ in range(3):
        ids.append((await cloud.create())["id"])
        await cloud.wait_status("demo", ids[-1], "available")
    _, page = await cloud.req("GET", "demo", "/volumes?offset=2&limit=3&sort=created_at:asc")
    assert [v["id"] for v in page["volumes"]] == ids[2:]
    for vid in ids:
        assert (await cloud.req("POST", "demo", "/snapshots", {"snapshot": {"volume_id": vid}}))[0] == 202
    _, snaps = await cloud.req("GET", "demo", "/snapshots?offset=2&limit=3")
    assert len(snaps["snapshots"]) == 1
    assert (await cloud.req("GET", "demo", "/snapshots?offset=-1"))[0] == 400
    assert (await cloud.req("GET", "demo", "/volumes?offset=x"))[0] == 400


async def test_image_metadata_actions_set_show_unset_and_refuse_others(cloud: Cloud) -> None:
    """os-set/show/unset_image_metadata, as Cinder's: set merges and answers the whole, the volume's views show
    it as volume_image_metadata, unset of a key not there is a 404, a bad body a 400 that changes nothing, and
    another project's volume a 404."""
    await cloud.login("alt_demo", SECRETS["alt_demo_password"])
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    assert "volume_image_metadata" not in (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]
    assert await _act(cloud, "demo", vid, {"os-show_image_metadata": {}}) == (200, {"metadata": {}})
    status, body = await _act(cloud, "demo", vid, {"os-set_image_metadata": {"metadata": {"a": "1", "b": "2"}}})
    assert (status, body) == (200, {"metadata": {"a": "1", "b": "2"}})
    status, body = await _act(cloud, "demo", vid, {"os-set_image_metadata": {"metadata": {"b": "3", "c": "4"}}})
    assert (status, body) == (200, {"metadata": {"a": "1", "b": "3", "c": "4"}})
    bad_bodies: tuple[dict[str, Any], ...] = (
        {"os-set_image_metadata": {"metadata": {"k": 7}}}, {"os-set_image_metadata": {"meta": {"k": "v"}}},
        {"os-set_image_metadata": {"metadata": {"": "v"}}}, {"os-unset_image_metadata": {"key": ""}},
        {"os-unset_image_metadata": {}}, {"os-set_image_metadata": {"metadata": {"k": "v" * 256}}})
    for bad in bad_bodies:
        assert (await _act(cloud, "demo", vid, bad))[0] == 400, bad
    assert (await _act(cloud, "demo", vid, {"os-unset_image_metadata": {"key": "a"}}))[0] == 200
    status, body = await _act(cloud, "demo", vid, {"os-unset_image_metadata": {"key": "a"}})
    assert status == 404 and "has no metadata with key a" in str(body), body
    others: tuple[dict[str, Any], ...] = ({"os-show_image_metadata": {}}, {"os-unset_image_metadata": {"key": "b"}},
                                          {"os-set_image_metadata": {"metadata": {"x": "y"}}})
    for act in others:  # another project's volume: not there, for show, set and unset alike
        assert (await _act(cloud, "alt_demo", vid, act))[0] == 404, act
    shown = (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]
    assert shown["volume_image_metadata"] == {"b": "3", "c": "4"}
    assert await _act(cloud, "demo", vid, {"os-show_image_metadata": {}}) == (200, {"metadata": {"b": "3", "c": "4"}})
    listed = (await cloud.req("GET", "demo", "/volumes/detail"))[1]["volumes"]
    assert [v["volume_image_metadata"] for v in listed if v["id"] == vid] == [{"b": "3", "c": "4"}]


async def test_volume_service_disable_enable_freeze_thaw(cloud: Cloud) -> None:
    """os-services actions on the cinder-volume of node1 (admins): disabled with a reason or frozen, os-services
    shows it and the cell's placement gives the host no new volume (the create ends in error); enabled or
    thawed, volumes are made there again. Members are refused (403); a missing reason, a cinder-scheduler or
    a malformed host is a 400, an unknown binary or host a 404 for enable/disable and a 400 for freeze/thaw,
    each changing nothing."""
    async def act(user: str, name: str, body: object) -> tuple[int, Any]:
        return await cloud.req("PUT", user, f"/os-services/{name}", body)

    async def service() -> dict[str, Any]:
        _, body = await cloud.req("GET", "admin", "/os-services?binary=cinder-volume")
        return dict(body["services"][0])

    volume = {"host": "node1@file", "binary": "cinder-volume"}
    assert (await act("demo", "disable", volume))[0] == 403
    refused = [("disable-log-reason", {**volume, "disabled_reason": None}, 400),
               ("disable-log-reason", {**volume, "disabled_reason": "x" * 256}, 400),
               ("disable", {"host": "cell1", "binary": "cinder-scheduler"}, 400),
               ("enable", {"host": "invalid_host", "binary": "cinder-scheduler"}, 404),
               ("disable", {"host": "node1", "binary": "invalid_binary"}, 404),
               ("enable", {"host": "invalid_host", "binary": "cinder-volume"}, 404),
               ("disable", {"host": 7, "binary": "cinder-volume"}, 400),
               ("freeze", {"host": "invalid_host"}, 400), ("thaw", {"host": "invalid_host"}, 400),
               ("failover_host", {"host": "node1"}, 404)]
    for name, body, code in refused:
        assert (await act("admin", name, body))[0] == code, (name, body)
    assert (await service())["status"] == "enabled"

    status, body = await act("admin", "disable-log-reason", {**volume, "disabled_reason": "disk swap"})
    assert (status, body) == (200, {"disabled": True, "status": "disabled", "host": "node1@file",
                                    "service": "cinder-volume", "binary": "cinder-volume",
                                    "disabled_reason": "disk swap"})
    shown = await service()
    assert (shown["status"], shown["disabled_reason"], shown["frozen"]) == ("disabled", "disk swap", False)
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "error")
    status, body = await act("admin", "enable", {"host": "node1", "binary": "cinder-volume"})
    assert status == 200 and (body["status"], body["disabled_reason"]) == ("enabled", None)
    await cloud.wait_status("demo", (await cloud.create())["id"], "available")
    status, body = await act("admin", "disable", volume)
    assert (status, body) == (200, {"disabled": True, "status": "disabled", "host": "node1@file",
                                    "service": "cinder-volume", "binary": "cinder-volume"})
    assert (await act("admin", "enable", volume))[0] == 200

    assert (await act("admin", "freeze", {"host": "node1@file"}))[0] == 200
    assert (await service())["frozen"] is True
    await cloud.wait_status("demo", (await cloud.create())["id"], "error")
    assert (await act("admin", "thaw", {"host": "node1@file"}))[0] == 200
    assert (await service())["frozen"] is False
    await cloud.wait_status("demo", (await cloud.create())["id"], "available")
