"""Cinder's generic volume groups (api/volume/groups.py) through the volume API with test_api_volumes' cell:
a group made of a group type and volume types, a volume created into it and one added and removed (Cinder's
checks refuse the rest and change nothing), 3.13's group_id on volumes, another project's group a 404, the
`groups` quota a 413, a delete refused while volumes remain unless delete-volumes (which deletes them), and
an admin's reset_status; below 3.13 there are no groups."""
from __future__ import annotations

from typing import Any

from tests.unit.api_support import SECRETS
from tests.unit.test_api_volumes import Cloud, cloud

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
