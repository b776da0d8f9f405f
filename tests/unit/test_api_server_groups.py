"""os-server-groups at 2.1 against a fake cell over real ZeroMQ: create, list, show, delete,
validation and quotas as Nova answers them, and boots with the `group` hint (members,
the request spec the cell gets, one cell per group, nothing made on a refused boot)."""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pytest

from cells import errors
from tests.unit.test_api_cell_boot import two_cells
from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud", "two_cells"]
GROUPS = "/compute/v2.1/os-server-groups"
GROUP_KEYS_2_1 = {"id", "name", "policies", "members", "metadata"}  # project_id, user_id came with 2.13


async def make_group(cloud: Cloud, headers: dict[str, str], name: str = "g", policy: str = "anti-affinity") -> Any:
    resp = await cloud.client.post(GROUPS, json={"server_group": {"name": name, "policies": [policy]}},
                                   headers=headers)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["server_group"]


async def get(cloud: Cloud, path: str, headers: dict[str, str], status: int = 200) -> Any:
    resp = await cloud.client.get(path, headers=headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def boot_in(cloud: Cloud, group: str, status: int = 202, **server: Any) -> Any:
    body = {"server": {"name": "m", "flavorRef": "1", "imageRef": cloud.image_id, **server},
            "os:scheduler_hints": {"group": group}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_create_show_list_delete(cloud: Cloud) -> None:
    created = await make_group(cloud, cloud.demo, "web", "anti-affinity")
    assert set(created) == GROUP_KEYS_2_1
    assert (created["name"], created["policies"], created["members"], created["metadata"]) == \
        ("web", ["anti-affinity"], [], {})
    gid = created["id"]
    assert (await get(cloud, f"{GROUPS}/{gid}", cloud.demo))["server_group"] == created
    other = await make_group(cloud, cloud.admin, "db", "affinity")
    assert [g["id"] for g in (await get(cloud, GROUPS, cloud.demo))["server_groups"]] == [gid]
    assert [g["id"] for g in (await get(cloud, GROUPS, cloud.admin))["server_groups"]] == [other["id"]]
    everyone = (await get(cloud, f"{GROUPS}?all_projects=True", cloud.admin))["server_groups"]
    assert {g["id"] for g in everyone} == {gid, other["id"]}
    paged = (await get(cloud, f"{GROUPS}?all_projects=1&limit=1&offset=1", cloud.admin))["server_groups"]
    assert [g["id"] for g in paged] == [everyone[1]["id"]]
    # all_projects is an admin's: others see their own, as Nova
    assert [g["id"] for g in (await get(cloud, f"{GROUPS}?all_projects=1", cloud.demo))["server_groups"]] == [gid]

    # another project's group, a name, an unknown id: the same 404
    for path in (f"{GROUPS}/{other['id']}", f"{GROUPS}/web", f"{GROUPS}/{uuidlib.uuid4()}"):
        body = await get(cloud, path, cloud.demo, status=404)
        assert body["itemNotFound"]["message"].startswith("Instance group ")
        assert (await cloud.client.delete(path, headers=cloud.demo)).status == 404
    assert (await get(cloud, f"{GROUPS}/{gid}", cloud.admin))["server_group"]["id"] == gid  # admins see all

    assert (await cloud.client.delete(f"{GROUPS}/{gid}", headers=cloud.demo)).status == 204
    body = await get(cloud, f"{GROUPS}/{gid}", cloud.demo, status=404)
    assert body == {"itemNotFound": {"code": 404, "message": f"Instance group {gid} could not be found."}}
    assert (await get(cloud, GROUPS, cloud.demo))["server_groups"] == []


@pytest.mark.parametrize("body", [
    {"server_group": {"name": "g", "policies": ["spread"]}},
    {"server_group": {"name": "g", "policies": ["soft-anti-affinity"]}},  # 2.15's, not 2.1's
    {"server_group": {"name": "g", "policies": ["affinity", "anti-affinity"]}},
    {"server_group": {"name": "g", "policies": []}},
    {"server_group": {"name": "g", "policies": "affinity"}},
    {"server_group": {"name": "g", "policy": "affinity"}},  # 2.64's form
    {"server_group": {"policies": ["affinity"]}},
    {"server_group": {"name": " g", "policies": ["affinity"]}},
    {"server_group": {"name": "g", "policies": ["affinity"], "project_id": "x"}},
    {"group": {"name": "g", "policies": ["affinity"]}},
])
async def test_invalid_create_is_400_and_creates_nothing(cloud: Cloud, body: Any) -> None:
    resp = await cloud.client.post(GROUPS, json=body, headers=cloud.demo)
    assert resp.status == 400, await resp.text()
    assert "badRequest" in await resp.json()
    assert (await get(cloud, GROUPS, cloud.demo))["server_groups"] == []


async def test_server_groups_quota_is_403_as_nova(cloud: Cloud) -> None:
    project = (await get(cloud, "/compute/v2.1/limits", cloud.demo))["limits"]["absolute"]
    assert project["maxServerGroups"] == 10 and project["totalServerGroupsUsed"] == 0
    await make_group(cloud, cloud.demo)
    demo_id = await project_of(cloud)
    resp = await cloud.client.put(f"/compute/v2.1/os-quota-sets/{demo_id}", json={"quota_set": {"server_groups": 1}},
                                  headers=cloud.admin)
    assert resp.status == 200
    resp = await cloud.client.post(GROUPS, json={"server_group": {"name": "h", "policies": ["affinity"]}},
                                   headers=cloud.demo)
    assert resp.status == 403
    assert await resp.json() == {"forbidden": {"code": 403, "message": "Quota exceeded, too many server groups."}}
    assert len((await get(cloud, GROUPS, cloud.demo))["server_groups"]) == 1
    detail = (await get(cloud, f"/compute/v2.1/os-quota-sets/{demo_id}/detail", cloud.demo))["quota_set"]
    assert detail["server_groups"] == {"in_use": 1, "limit": 1, "reserved": 0}
    assert (await get(cloud, "/compute/v2.1/limits", cloud.demo))["limits"]["absolute"]["totalServerGroupsUsed"] == 1


async def project_of(cloud: Cloud) -> str:
    resp = await cloud.client.get("/identity/v3/auth/tokens",
                                  headers={**cloud.admin, "X-Subject-Token": cloud.demo["X-Auth-Token"]})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["token"]["project"]["id"])


async def test_boot_into_a_group_records_the_member_and_tells_the_cell(cloud: Cloud) -> None:
    group = await make_group(cloud, cloud.demo, policy="affinity")
    sid = (await boot_in(cloud, group["id"]))["server"]["id"]
    spec = cloud.cell.conductor.builds[-1]
    assert spec["group"] == {"uuid": group["id"], "policy": "affinity"}
    assert spec["scheduler_hints"] == {"group": group["id"]}
    assert (await get(cloud, f"{GROUPS}/{group['id']}", cloud.demo))["server_group"]["members"] == [sid]
    two = await cloud.client.post("/compute/v2.1/servers", headers=cloud.demo, json={
        "server": {"name": "n", "flavorRef": "1", "imageRef": cloud.image_id, "min_count": 2},
        "OS-SCH-HNT:scheduler_hints": {"group": group["id"]}})
    assert two.status == 202
    members = (await get(cloud, f"{GROUPS}/{group['id']}", cloud.demo))["server_group"]["members"]
    assert len(members) == 3 and members[0] == sid
    assert len(cloud.cell.conductor.builds[-1]["instance_uuids"]) == 2
    # a deleted server leaves its group
    assert (await cloud.client.delete(f"/compute/v2.1/servers/{sid}", headers=cloud.demo)).status == 204
    assert sid not in (await get(cloud, f"{GROUPS}/{group['id']}", cloud.demo))["server_group"]["members"]
    # a boot without the hint is no member of anything, and its spec names no group
    await cloud.boot(cloud.demo, name="loner")
    assert "group" not in cloud.cell.conductor.builds[-1]


async def test_a_bad_group_hint_is_400_and_makes_nothing(cloud: Cloud) -> None:
    theirs = await make_group(cloud, cloud.admin)  # another project's group
    unknown = str(uuidlib.uuid4())
    for hint, message in ((unknown, f"Instance group {unknown} could not be found."),
                          (theirs["id"], f"Instance group {theirs['id']} could not be found."),
                          ("not-a-uuid", "is not a 'uuid'")):
        body = await boot_in(cloud, hint, status=400)
        assert message in body["badRequest"]["message"]
    assert not cloud.cell.conductor.builds and await cloud.mappings() == 0


async def test_members_quota_is_403_and_makes_nothing(cloud: Cloud) -> None:
    group = await make_group(cloud, cloud.demo)
    await set_quota_for_demo(cloud, server_group_members=2)
    await boot_in(cloud, group["id"])
    body = await boot_in(cloud, group["id"], status=403, max_count=2)
    assert body == {"forbidden": {"code": 403, "message": "Quota exceeded, too many servers in group"}}
    assert await cloud.mappings() == 1 and len(cloud.cell.conductor.builds) == 1
    await boot_in(cloud, group["id"])
    await boot_in(cloud, group["id"], status=403)
    assert len((await get(cloud, f"{GROUPS}/{group['id']}", cloud.demo))["server_group"]["members"]) == 2


async def set_quota_for_demo(cloud: Cloud, **limits: int) -> None:
    resp = await cloud.client.put(f"/compute/v2.1/os-quota-sets/{await project_of(cloud)}",
                                  json={"quota_set": limits}, headers=cloud.admin)
    assert resp.status == 200, await resp.text()


async def test_a_deleted_group_leaves_its_servers_and_takes_no_more(cloud: Cloud) -> None:
    group = await make_group(cloud, cloud.demo)
    sid = (await boot_in(cloud, group["id"]))["server"]["id"]
    assert (await cloud.client.delete(f"{GROUPS}/{group['id']}", headers=cloud.demo)).status == 204
    assert (await get(cloud, f"/compute/v2.1/servers/{sid}", cloud.demo))["server"]["id"] == sid
    await boot_in(cloud, group["id"], status=400)


async def test_a_groups_members_stay_in_one_cell(two_cells: Any) -> None:
    client, a, b, tok = two_cells
    headers = {"X-Auth-Token": tok}
    image = (await (await client.get("/image/v2/images", headers=headers)).json())["images"][0]["id"]
    resp = await client.post(GROUPS, json={"server_group": {"name": "g", "policies": ["anti-affinity"]}},
                             headers=headers)
    gid = (await resp.json())["server_group"]["id"]

    async def boot(**hints: str) -> Any:
        body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": image}, "os:scheduler_hints": hints}
        return await client.post("/compute/v2.1/servers", json=body, headers=headers)

    a.conductor.fail_next_build = errors.NoValidHost(reason="cell a is full")
    resp = await boot(group=gid)
    assert resp.status == 202
    assert (await resp.json())["server"]["id"] in b.conductor.records  # a refused the first member: b took it
    for _ in range(2):  # cell a ranks first, but the group's members are in b
        resp = await boot(group=gid)
        assert (await resp.json())["server"]["id"] in b.conductor.records
    assert not a.conductor.records
    assert all(spec["admission"] is False for spec in b.conductor.builds[1:])  # b is the only candidate
    plain = await boot()
    assert (await plain.json())["server"]["id"] in a.conductor.records  # others still go by rank
    b.conductor.fail_next_build = errors.NoValidHost(reason="cell b is full")
    resp = await boot(group=gid, target_cell="a")
    assert resp.status == 500  # the members' cell refused, and no other cell may take a member
    assert len(a.conductor.records) == 1 and len(b.conductor.records) == 3
