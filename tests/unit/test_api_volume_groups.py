"""Cinder's generic volume groups (api/volume/groups.py) through the volume API with test_api_volumes' cell:
a group made of a group type and volume types, a volume created into it and one added and removed (Cinder's
checks refuse the rest and change nothing), 3.13's group_id on volumes, another project's group a 404, the
`groups` quota a 413, a delete refused while volumes remain unless delete-volumes (which deletes them), and
an admin's reset_status; below 3.13 there are no groups."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.unit.api_fake_cell import fake_cell
from tests.unit.api_support import SECRETS, make_cluster, start_client
from tests.unit.test_api_volumes import Cloud, VolumeCellConductor, cloud
from tests.volume_fakes import volume_cell

__all__ = ["cloud"]
V320 = {"OpenStack-API-Version": "volume 3.20"}
V325 = {"OpenStack-API-Version": "volume 3.25"}


async def _req(cloud: Cloud, method: str, user: str, path: str, body: Any = None,
               headers: dict[str, str] = V320) -> tuple[int, Any]:
    return await cloud.req(method, user, path, body, headers=headers)


async def _types(cloud: Cloud) -> tuple[str, str]:
    """(a group type's id, a volume type's id) made by the admin."""
    status, body = await _req(cloud, "POST", "admin", "/group_types", {"group_type": {"name": "gt"}})
    assert status == 202, body
    status, vt = await cloud.req("POST", "admin", "/types", {"volume_type": {"name": "grouped"}})
    assert status == 200, vt
    return str(body["group_type"]["id"]), str(vt["volume_type"]["id"])


async def test_group_lifecycle_membership_checks_and_deletes(cloud: Cloud) -> None:
    gtype, vtype = await _types(cloud)
    assert (await cloud.req("GET", "demo", "/groups"))[0] == 404  # 3.0: no such resource
    for bad in ({"group": {"group_type": gtype}}, {"group": {"group_type": gtype, "volume_types": "grouped"}},
                {"group": {"volume_types": [vtype]}}, {"group": {"group_type": gtype, "volume_types": [vtype],
                                                                "color": "red"}},
                {"group": {"group_type": gtype, "volume_types": [vtype], "availability_zone": "nowhere"}}):
        assert (await _req(cloud, "POST", "demo", "/groups", bad))[0] == 400, bad
    assert (await _req(cloud, "POST", "demo", "/groups", {"group": {"group_type": gtype,
                                                                     "volume_types": ["nosuch"]}}))[0] == 404
    assert (await _req(cloud, "GET", "demo", "/groups"))[1] == {"groups": []}  # the refusals made nothing

    status, body = await _req(cloud, "POST", "demo", "/groups",
                              {"group": {"name": "g1", "group_type": "gt", "volume_types": ["grouped"]}})
    assert status == 202, body
    gid = body["group"]["id"]
    status, shown = await _req(cloud, "GET", "demo", f"/groups/{gid}")
    assert status == 200 and shown["group"]["status"] == "available", shown
    assert shown["group"]["group_type"] == gtype and shown["group"]["volume_types"] == [vtype]
    assert (await _req(cloud, "GET", "demo", "/groups"))[1] == {"groups": [{"id": gid, "name": "g1"}]}
    await cloud.login("alt_demo", SECRETS["alt_demo_password"])
    assert (await _req(cloud, "GET", "alt_demo", f"/groups/{gid}"))[0] == 404
    assert (await _req(cloud, "PUT", "alt_demo", f"/groups/{gid}", {"group": {"name": "mine"}}))[0] == 404
    assert (await _req(cloud, "POST", "alt_demo", f"/groups/{gid}/action", {"delete": {}}))[0] == 404

    # a volume made into the group, one of another type refused (and not made)
    member = (await cloud.create(volume_type="grouped", group_id=gid))["id"]
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "group_id": gid}})
    assert status == 400, body
    await cloud.wait_status("demo", member, "available")
    assert (await cloud.req("GET", "demo", f"/volumes/{member}", headers=V320))[1]["volume"]["group_id"] == gid
    assert "group_id" not in (await cloud.req("GET", "demo", f"/volumes/{member}"))[1]["volume"]  # 3.0

    # add / remove with Cinder's checks: wrong type, another group's, unknown: 400 and nothing changes
    plain = (await cloud.create())["id"]
    other = (await cloud.create(volume_type="grouped"))["id"]
    for vid in (plain, other):
        await cloud.wait_status("demo", vid, "available")
    assert (await _req(cloud, "PUT", "demo", f"/groups/{gid}", {"group": {}}))[0] == 400
    for add in (plain, "f" * 8 + "-0000-0000-0000-" + "0" * 12, f"{other},{plain}"):
        status, body = await _req(cloud, "PUT", "demo", f"/groups/{gid}", {"group": {"add_volumes": add}})
        assert status == 400, (add, body)
    assert (await _req(cloud, "PUT", "demo", f"/groups/{gid}", {"group": {"remove_volumes": plain}}))[0] == 400
    members = (await _req(cloud, "GET", "demo", f"/groups/{gid}?list_volume=true", headers=V325))[1]
    assert members["group"]["volumes"] == [member]
    status, _ = await _req(cloud, "PUT", "demo", f"/groups/{gid}", {"group": {"add_volumes": other,
                                                                                "name": "g2"}})
    assert status == 202
    listed = (await _req(cloud, "GET", "demo", "/groups/detail?list_volume=true", headers=V325))[1]["groups"]
    assert [(g["name"], sorted(g["volumes"])) for g in listed] == [("g2", sorted([member, other]))]
    status, body = await _req(cloud, "POST", "demo", "/groups",
                              {"group": {"group_type": gtype, "volume_types": [vtype]}})
    second = body["group"]["id"]
    assert (await _req(cloud, "PUT", "demo", f"/groups/{second}", {"group": {"add_volumes": other}}))[0] == 400
    assert (await _req(cloud, "PUT", "demo", f"/groups/{gid}", {"group": {"remove_volumes": other}}))[0] == 202
    assert (await cloud.req("GET", "demo", f"/volumes/{other}", headers=V320))[1]["volume"]["group_id"] is None

    # delete: refused while it holds volumes, then with delete-volumes its volumes go with it
    status, body = await _req(cloud, "POST", "demo", f"/groups/{gid}/action", {"delete": {}})
    assert status == 400 and "volumes" in str(body)
    assert (await cloud.req("GET", "demo", f"/volumes/{member}"))[0] == 200
    assert (await _req(cloud, "POST", "demo", f"/groups/{second}/action", {"delete": {}}))[0] == 202  # empty
    status, _ = await _req(cloud, "POST", "demo", f"/groups/{gid}/action", {"delete": {"delete-volumes": True}})
    assert status == 202
    assert (await _req(cloud, "GET", "demo", f"/groups/{gid}"))[0] == 404
    for _ in range(200):
        await cloud.cell.settle()
        if (await cloud.req("GET", "demo", f"/volumes/{member}"))[0] == 404:
            break
    assert (await cloud.req("GET", "demo", f"/volumes/{member}"))[0] == 404
    assert (await cloud.req("GET", "demo", f"/volumes/{other}"))[0] == 200  # removed before: kept


async def test_group_quota_and_admin_reset_status(cloud: Cloud) -> None:
    gtype, vtype = await _types(cloud)
    project = cloud.who["demo"][1]
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"groups": 1}}))[0] == 200
    spec = {"group": {"group_type": gtype, "volume_types": [vtype]}}
    status, body = await _req(cloud, "POST", "demo", "/groups", spec)
    assert status == 202, body
    gid = body["group"]["id"]
    status, body = await _req(cloud, "POST", "demo", "/groups", spec)
    assert status == 413 and "groups" in str(body), body
    assert len((await _req(cloud, "GET", "demo", "/groups"))[1]["groups"]) == 1
    _, quotas = await cloud.req("GET", "demo", f"/os-quota-sets/{project}?usage=true")
    assert quotas["quota_set"]["groups"] == {"limit": 1, "in_use": 1, "reserved": 0, "allocated": 0}

    reset = {"reset_status": {"status": "error"}}
    assert (await _req(cloud, "POST", "demo", f"/groups/{gid}/action", reset))[0] == 403  # admins only
    assert (await cloud.req("POST", "admin", f"/groups/{gid}/action", reset,
                            headers={"OpenStack-API-Version": "volume 3.19"}))[0] == 404  # from 3.20
    assert (await _req(cloud, "POST", "admin", f"/groups/{gid}/action", {"reset_status": {"status": "x"}}))[0] == 400
    assert (await _req(cloud, "POST", "admin", f"/groups/{gid}/action", reset))[0] == 202
    assert (await _req(cloud, "GET", "demo", f"/groups/{gid}"))[1]["group"]["status"] == "error"
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "group_id": gid,
                                                                          "volume_type": "grouped"}})
    assert status == 400, body  # a group in error takes no new volume
    assert (await cloud.req("GET", "demo", "/volumes"))[1]["volumes"] == []
    assert (await _req(cloud, "POST", "demo", f"/groups/{gid}/action", {"delete": {}}))[0] == 202


V314 = {"OpenStack-API-Version": "volume 3.14"}


@pytest_asyncio.fixture
async def roomy_cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    """test_api_volumes' cloud with a volume host of 20 GiB: two groups of two volumes and their snapshots."""
    cell = await volume_cell(tmp_path / "cell", capacity_gb=20)
    conductor = VolumeCellConductor(cell)
    async with fake_cell(handler=conductor) as fake:
        client = await start_client(make_cluster(tmp_path, router=fake.router))
        try:
            c = Cloud(client, cell, conductor)
            await c.login("demo", SECRETS["demo_password"])
            await c.login("admin", SECRETS["admin_password"])
            yield c
        finally:
            await client.close()
            await cell.close()


async def _group_of_two(cloud: Cloud) -> tuple[str, list[str]]:
    gtype, vtype = await _types(cloud)
    status, body = await _req(cloud, "POST", "demo", "/groups", {"group": {"group_type": gtype,
                                                                            "volume_types": [vtype]}})
    assert status == 202, body
    gid = body["group"]["id"]
    vids = [(await cloud.create(volume_type="grouped", group_id=gid))["id"] for _ in range(2)]
    for vid in vids:
        await cloud.wait_status("demo", vid, "available")
    return gid, vids


async def _wait_group_snapshot(cloud: Cloud, gsid: str, wanted: str) -> dict[str, Any]:
    for _ in range(200):
        await cloud.cell.settle()
        status, body = await _req(cloud, "GET", "demo", f"/group_snapshots/{gsid}")
        assert status == 200, body
        if body["group_snapshot"]["status"] == wanted:
            return dict(body["group_snapshot"])
    raise AssertionError(f"group snapshot {gsid} stayed {body['group_snapshot']['status']}, not {wanted}")


async def test_group_snapshot_and_groups_made_from_it_and_from_a_group(roomy_cloud: Cloud) -> None:
    cloud = roomy_cloud
    gid, vids = await _group_of_two(cloud)
    assert (await cloud.req("POST", "demo", "/group_snapshots", {"group_snapshot": {"group_id": gid}},
                            headers={"OpenStack-API-Version": "volume 3.13"}))[0] == 404  # from 3.14
    status, body = await _req(cloud, "POST", "demo", "/group_snapshots", {"group_snapshot": {"group_id": gid,
                                                                                           "name": "gs"}})
    assert status == 202, body
    gsid = body["group_snapshot"]["id"]
    shown = await _wait_group_snapshot(cloud, gsid, "available")
    assert shown["group_id"] == gid and shown["name"] == "gs"
    await cloud.login("alt_demo", SECRETS["alt_demo_password"])
    assert (await _req(cloud, "GET", "alt_demo", f"/group_snapshots/{gsid}"))[0] == 404
    assert (await _req(cloud, "GET", "alt_demo", "/group_snapshots"))[1] == {"group_snapshots": []}
    assert (await _req(cloud, "POST", "alt_demo", "/groups/action",
                       {"create-from-src": {"group_snapshot_id": gsid}}))[0] == 404

    # one snapshot per member, each naming its group snapshot from 3.14; none deleted alone
    snaps = (await cloud.req("GET", "demo", "/snapshots/detail", headers=V314))[1]["snapshots"]
    assert sorted(s["volume_id"] for s in snaps) == sorted(vids)
    assert {s["group_snapshot_id"] for s in snaps} == {gsid} and {s["status"] for s in snaps} == {"available"}
    assert (await cloud.req("DELETE", "demo", f"/snapshots/{snaps[0]['id']}"))[0] == 400
    status, body = await _req(cloud, "POST", "demo", f"/groups/{gid}/action", {"delete": {"delete-volumes": True}})
    assert status == 400 and "group snapshots" in str(body)

    # a group from the group snapshot: a volume per member snapshot, of its volume's type, in the new group
    assert (await _req(cloud, "POST", "demo", "/groups/action", {"create-from-src": {}}))[0] == 400
    status, body = await _req(cloud, "POST", "demo", "/groups/action",
                              {"create-from-src": {"group_snapshot_id": gsid, "name": "copy"}})
    assert status == 202, body
    copy = body["group"]["id"]
    volumes = (await cloud.req("GET", "demo", "/volumes/detail", headers=V320))[1]["volumes"]
    made = [v for v in volumes if v["group_id"] == copy]
    assert sorted(v["snapshot_id"] for v in made) == sorted(s["id"] for s in snaps)
    assert {v["volume_type"] for v in made} == {"grouped"}
    status, body = await _req(cloud, "POST", "demo", "/groups/action", {"create-from-src": {"source_group_id": gid}})
    assert status == 202, body
    clone = body["group"]["id"]
    volumes = (await cloud.req("GET", "demo", "/volumes/detail", headers=V320))[1]["volumes"]
    assert sorted(v["source_volid"] for v in volumes if v["group_id"] == clone) == sorted(vids)

    # reset_status (admin, 3.19), then a delete takes the member snapshots with it
    reset = {"reset_status": {"status": "creating"}}  # stays so: no longer being made, it follows nothing
    assert (await _req(cloud, "POST", "admin", f"/group_snapshots/{gsid}/action", reset))[0] == 202
    await cloud.cell.settle()
    assert (await _req(cloud, "GET", "demo", f"/group_snapshots/{gsid}"))[1]["group_snapshot"]["status"] == "creating"
    reset = {"reset_status": {"status": "error"}}
    assert (await _req(cloud, "POST", "demo", f"/group_snapshots/{gsid}/action", reset))[0] == 403
    assert (await _req(cloud, "POST", "admin", f"/group_snapshots/{gsid}/action", reset))[0] == 202
    assert (await _req(cloud, "GET", "demo", f"/group_snapshots/{gsid}"))[1]["group_snapshot"]["status"] == "error"
    for v in made:  # volumes made from the snapshots go first (a snapshot with clones is kept by its host)
        await cloud.wait_status("demo", v["id"], "available")
    assert (await _req(cloud, "DELETE", "demo", f"/group_snapshots/{gsid}"))[0] == 202
    assert (await _req(cloud, "GET", "demo", f"/group_snapshots/{gsid}"))[0] == 404
    for _ in range(200):
        await cloud.cell.settle()
        if not (await cloud.req("GET", "demo", "/snapshots"))[1]["snapshots"]:
            break
    assert (await cloud.req("GET", "demo", "/snapshots"))[1]["snapshots"] == []


async def test_a_group_snapshot_over_the_snapshots_quota_is_413_and_makes_nothing(cloud: Cloud) -> None:
    gid, _ = await _group_of_two(cloud)
    project = cloud.who["demo"][1]
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"snapshots": 1}}))[0] == 200
    status, body = await _req(cloud, "POST", "demo", "/group_snapshots", {"group_snapshot": {"group_id": gid}})
    assert status == 413 and "snapshots" in str(body), body
    assert (await _req(cloud, "GET", "demo", "/group_snapshots"))[1] == {"group_snapshots": []}
    assert (await cloud.req("GET", "demo", "/snapshots"))[1]["snapshots"] == []
    # a group from a group, over the volumes quota: 413 and no group, no volume made
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"volumes": 3}}))[0] == 200
    status, body = await _req(cloud, "POST", "demo", "/groups/action", {"create-from-src": {"source_group_id": gid}})
    assert status == 413, body
    assert len((await _req(cloud, "GET", "demo", "/groups"))[1]["groups"]) == 1
    assert len((await cloud.req("GET", "demo", "/volumes"))[1]["volumes"]) == 2


async def test_a_member_snapshot_failing_on_its_host_ends_the_group_snapshot_error_without_snapshots(
        cloud: Cloud) -> None:
    """The volume host holds 5 GiB: volumes of 1 and 3 GiB leave room for the first's snapshot, not the second's."""
    gtype, vtype = await _types(cloud)
    status, body = await _req(cloud, "POST", "demo", "/groups", {"group": {"group_type": gtype,
                                                                            "volume_types": [vtype]}})
    gid = body["group"]["id"]
    for size in (1, 3):
        vid = (await cloud.create(volume_type="grouped", group_id=gid, size=size))["id"]
        await cloud.wait_status("demo", vid, "available")
    status, body = await _req(cloud, "POST", "demo", "/group_snapshots", {"group_snapshot": {"group_id": gid}})
    assert status == 202, body
    gsid = body["group_snapshot"]["id"]
    await _wait_group_snapshot(cloud, gsid, "error")
    for _ in range(200):  # the first member's snapshot is deleted once it is made
        await cloud.cell.settle()
        if not (await cloud.req("GET", "demo", "/snapshots"))[1]["snapshots"]:
            break
        await _req(cloud, "GET", "demo", f"/group_snapshots/{gsid}")
    assert (await cloud.req("GET", "demo", "/snapshots"))[1]["snapshots"] == []
    assert (await _req(cloud, "DELETE", "demo", f"/group_snapshots/{gsid}"))[0] == 202
    assert (await _req(cloud, "POST", "demo", f"/groups/{gid}/action", {"delete": {"delete-volumes": True}}))[0] == 202
