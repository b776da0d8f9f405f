"""Cinder's group types and group specs (api/volume/group_types.py) through the volume API with
test_api_volumes' cell: admins make, list (sorted, by is_public), show, update and delete them and their
specs; members see only the public ones and no specs, and may change nothing; below 3.11 there are none."""
from __future__ import annotations

from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]
V311 = {"OpenStack-API-Version": "volume 3.11"}


async def test_group_types_and_specs_for_admins_and_members(cloud: Cloud) -> None:
    async def req(method: str, user: str, path: str, body: object = None) -> tuple[int, object]:
        return await cloud.req(method, user, "/group_types" + path, body, headers=V311)

    assert (await cloud.req("GET", "admin", "/group_types"))[0] == 404  # 3.0: no such resource
    status, body = await req("POST", "admin", "", {"group_type": {"name": "b-gold", "description": "d",
                                                                  "group_specs": {"k": "v"}, "is_public": False}})
    assert status == 202 and isinstance(body, dict), body
    gold = body["group_type"]
    assert gold["name"] == "b-gold" and gold["is_public"] is False and gold["group_specs"] == {"k": "v"}
    status, body = await req("POST", "admin", "", {"group_type": {"name": "a-plain"}})
    assert status == 202 and isinstance(body, dict)
    plain = body["group_type"]
    assert (await req("POST", "admin", "", {"group_type": {"name": "a-plain"}}))[0] == 409
    bad_bodies: tuple[dict[str, object], ...] = (
        {"group_type": {"name": ""}}, {"group_type": {"name": "x", "group_specs": {"k": 1}}}, {"gt": {}},
        {"group_type": {"name": "x", "is_public": "maybe"}})
    for bad in bad_bodies:
        assert (await req("POST", "admin", "", bad))[0] == 400, bad
    assert (await req("POST", "demo", "", {"group_type": {"name": "mine"}}))[0] == 403

    def names(body: object) -> list[str]:
        assert isinstance(body, dict)
        return [t["name"] for t in body["group_types"]]
    assert names((await req("GET", "admin", "?sort=name:asc&is_public=None"))[1]) == ["a-plain", "b-gold"]
    assert names((await req("GET", "admin", "?sort=name:desc&is_public=None"))[1]) == ["b-gold", "a-plain"]
    assert names((await req("GET", "admin", "?is_public=false"))[1]) == ["b-gold"]
    assert names((await req("GET", "admin", ""))[1]) == ["a-plain"]
    assert (await req("GET", "admin", "?sort=color:asc"))[0] == 400
    status, body = await req("GET", "demo", "?is_public=None")  # a member: public ones only, without specs
    assert status == 200 and isinstance(body, dict) and names(body) == ["a-plain"] \
        and "group_specs" not in body["group_types"][0]
    assert (await req("GET", "demo", f"/{gold['id']}"))[0] == 404  # private
    assert (await req("GET", "admin", "/default"))[0] == 404  # none configured

    status, body = await req("PUT", "admin", f"/{gold['id']}", {"group_type": {"name": "c-gold", "description": "e"}})
    assert status == 200 and isinstance(body, dict) and body["group_type"]["name"] == "c-gold"
    assert (await req("PUT", "admin", f"/{gold['id']}", {"group_type": {"name": "a-plain"}}))[0] == 409
    assert (await req("PUT", "demo", f"/{plain['id']}", {"group_type": {"name": "z"}}))[0] == 403

    specs = f"/{gold['id']}/group_specs"
    status, body = await req("POST", "admin", specs, {"group_specs": {"k": "w", "k2": "v2"}})
    assert (status, body) == (202, {"group_specs": {"k": "w", "k2": "v2"}})
    assert await req("GET", "admin", specs + "/k2") == (200, {"k2": "v2"})
    assert await req("PUT", "admin", specs + "/k2", {"k2": "v3"}) == (200, {"k2": "v3"})
    assert (await req("PUT", "admin", specs + "/k2", {"k9": "v3"}))[0] == 400  # not the URL's key
    assert (await req("GET", "demo", f"/{plain['id']}/group_specs"))[0] == 403
    assert (await req("DELETE", "admin", specs + "/k"))[0] == 202
    assert (await req("DELETE", "admin", specs + "/k"))[0] == 404
    assert await req("GET", "admin", specs) == (200, {"group_specs": {"k2": "v3"}})
    status, body = await req("GET", "admin", f"/{gold['id']}")
    assert status == 200 and isinstance(body, dict) and body["group_type"] == {
        "id": gold["id"], "name": "c-gold", "description": "e", "is_public": False, "group_specs": {"k2": "v3"}}

    assert (await req("DELETE", "demo", f"/{plain['id']}"))[0] == 403
    for gid in (gold["id"], plain["id"]):
        assert (await req("DELETE", "admin", f"/{gid}"))[0] == 202
        assert (await req("GET", "admin", f"/{gid}"))[0] == 404
    assert names((await req("GET", "admin", "?is_public=None"))[1]) == []
