"""Server and key pair views and request bodies at microversions 2.3-2.96 (Nova's api-microversion-history),
against a fake cell over real ZeroMQ: each version adds exactly its keys, takes exactly its request fields,
and member views never carry the admin-only ones."""
from __future__ import annotations

from typing import Any

from api.cell_router import DownRecord
from tests.unit.test_api_servers import Cloud, cloud

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"

__all__ = ["cloud"]  # fixtures used by name


def at(headers: dict[str, str], version: str) -> dict[str, str]:
    return {**headers, "OpenStack-API-Version": f"compute {version}"}


async def show(cloud: Cloud, headers: dict[str, str], server_id: str, version: str) -> dict[str, Any]:
    resp = await cloud.client.get(f"/compute/v2.1/servers/{server_id}", headers=at(headers, version))
    assert resp.status == 200, await resp.text()
    assert resp.headers["OpenStack-API-Version"] == f"compute {version}"
    return dict((await resp.json())["server"])


async def boot(cloud: Cloud, headers: dict[str, str], version: str, **server: Any) -> str:
    body = {"server": {"name": "mv", "flavorRef": "1", "imageRef": cloud.image_id, **server}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=at(headers, version))
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["server"]["id"])


LATER_KEYS = {"locked", "description", "tags", "trusted_image_certificates", "locked_reason",
              "pinned_availability_zone", "server_groups", "host_status", "OS-EXT-SRV-ATTR:hostname"}


async def test_each_version_adds_its_server_keys(cloud: Cloud) -> None:
    server_id = await boot(cloud, cloud.demo, "2.1")
    cloud.cell.conductor.activate(server_id)
    assert not LATER_KEYS & set(await show(cloud, cloud.demo, server_id, "2.1"))
    assert set(await show(cloud, cloud.demo, server_id, "2.9")) & LATER_KEYS == {"locked"}
    assert set(await show(cloud, cloud.demo, server_id, "2.26")) & LATER_KEYS == {"locked", "description", "tags"}
    latest = await show(cloud, cloud.demo, server_id, "2.96")
    assert set(latest) & LATER_KEYS == LATER_KEYS - {"host_status"}  # host_status: admins only
    assert (latest["locked"], latest["description"], latest["tags"], latest["trusted_image_certificates"],
            latest["locked_reason"], latest["pinned_availability_zone"], latest["server_groups"]) == \
        (False, None, [], None, None, None, [])
    assert latest["OS-EXT-SRV-ATTR:hostname"] == "mv"  # 2.90: members see the hostname
    assert not {k for k in latest if k.startswith("OS-EXT-SRV-ATTR:") and k != "OS-EXT-SRV-ATTR:hostname"}
    # 2.47: the flavor itself instead of a link
    assert set(latest["flavor"]) == {"original_name", "vcpus", "ram", "disk", "ephemeral", "swap", "extra_specs"}
    assert "links" in (await show(cloud, cloud.demo, server_id, "2.46"))["flavor"]


async def test_extended_attributes_for_admins_from_2_3(cloud: Cloud) -> None:
    body = {"server": {"name": "Web Server_1", "flavorRef": "1", "imageRef": cloud.image_id,
                       "min_count": 2, "max_count": 2}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=at(cloud.demo, "2.3"))
    assert resp.status == 202, await resp.text()
    listed = (await (await cloud.client.get("/compute/v2.1/servers/detail?all_tenants=1",
                                            headers=at(cloud.admin, "2.16"))).json())["servers"]
    assert len(listed) == 2
    reservations = {s["OS-EXT-SRV-ATTR:reservation_id"] for s in listed}
    assert len(reservations) == 1 and reservations.pop().startswith("r-")  # one boot request, one reservation
    assert sorted(s["OS-EXT-SRV-ATTR:launch_index"] for s in listed) == [0, 1]
    assert {s["OS-EXT-SRV-ATTR:hostname"] for s in listed} == {"web-server-1-1", "web-server-1-2"}
    assert {s["OS-EXT-SRV-ATTR:root_device_name"] for s in listed} == {"/dev/vda"}
    assert all("host_status" in s for s in listed)
    before = (await (await cloud.client.get("/compute/v2.1/servers/detail?all_tenants=1",
                                            headers=at(cloud.admin, "2.2"))).json())["servers"]
    assert not any("OS-EXT-SRV-ATTR:reservation_id" in s or "host_status" in s for s in before)
    member = (await (await cloud.client.get("/compute/v2.1/servers/detail",
                                            headers=at(cloud.demo, "2.16"))).json())["servers"]
    assert not any(k.startswith("OS-EXT-SRV-ATTR:") or k == "host_status" for s in member for k in s)


async def test_description_hostname_and_zone_at_create_and_update(cloud: Cloud) -> None:
    server_id = await boot(cloud, cloud.demo, "2.96", networks="none", description="first",
                           hostname="web01", availability_zone="nova")
    cloud.cell.conductor.activate(server_id)
    shown = await show(cloud, cloud.demo, server_id, "2.96")
    assert (shown["description"], shown["OS-EXT-SRV-ATTR:hostname"], shown["pinned_availability_zone"]) == \
        ("first", "web01", "nova")
    assert cloud.cell.conductor.builds[-1]["networks"] == "none"  # 2.37: no network asked of the cell
    resp = await cloud.client.put(f"/compute/v2.1/servers/{server_id}", headers=at(cloud.demo, "2.19"),
                                  json={"server": {"description": "second"}})
    assert resp.status == 200, await resp.text()
    updated = (await resp.json())["server"]
    assert updated["description"] == "second" and "OS-EXT-AZ:availability_zone" not in updated  # 2.1's update keys
    resp = await cloud.client.put(f"/compute/v2.1/servers/{server_id}", headers=at(cloud.demo, "2.75"),
                                  json={"server": {"name": "renamed"}})
    full = (await resp.json())["server"]
    assert full["name"] == "renamed" and "OS-EXT-AZ:availability_zone" in full and "server_groups" in full
    resp = await cloud.client.put(f"/compute/v2.1/servers/{server_id}", headers=at(cloud.demo, "2.18"),
                                  json={"server": {"description": "too early"}})
    assert resp.status == 400


async def test_version_gated_request_fields(cloud: Cloud) -> None:
    base = {"name": "x", "flavorRef": "1", "imageRef": cloud.image_id}
    cases = [("2.37", base, 400),  # networks is required from 2.37
             ("2.36", {**base, "networks": "auto"}, 400),  # "auto" only from 2.37
             ("2.18", {**base, "description": "d"}, 400),
             ("2.89", {**base, "networks": "auto", "hostname": "h1"}, 400),
             ("2.90", {**base, "networks": "auto", "hostname": "bad_name!"}, 400),
             ("2.57", {**base, "networks": "auto", "personality": [{"path": "/f", "contents": ""}]}, 400),
             ("2.63", {**base, "networks": "auto", "trusted_image_certificates": ["c1"]}, 400)]
    for version, server, status in cases:
        resp = await cloud.client.post("/compute/v2.1/servers", json={"server": server},
                                       headers=at(cloud.demo, version))
        assert resp.status == status, (version, server, await resp.text())
    assert await cloud.mappings() == 0  # nothing half-made


async def test_down_cell_servers_as_nova_spells_them_from_2_69(cloud: Cloud) -> None:
    from api.compute import down_cells
    rec: DownRecord = {"uuid": "u1", "name": "n", "project_id": "p", "user_id": "u", "created_at": "2026-01-01T00:00:00Z",
                       "cell": "cell1", "deleted": False, "down": True}
    assert set(down_cells.brief("http://x", rec, (2, 69))) == {"id", "status", "links"}
    assert set(down_cells.detail("http://x", rec, (2, 69))) == {"id", "status", "links", "tenant_id", "created"}
    assert "name" in down_cells.brief("http://x", rec, (2, 68))
    assert set(down_cells.shown("http://x", rec, (2, 71))) >= {"user_id", "OS-EXT-AZ:availability_zone",
                                                               "OS-EXT-STS:power_state", "server_groups"}


async def test_keypairs_pages_other_users_and_import_only(cloud: Cloud) -> None:
    for name in ("k1", "k2", "k3"):
        resp = await cloud.client.post("/compute/v2.1/os-keypairs", headers=at(cloud.demo, "2.92"),
                                       json={"keypair": {"name": name, "public_key": SSH_KEY}})
        assert resp.status == 201, await resp.text()
    resp = await cloud.client.post("/compute/v2.1/os-keypairs", headers=at(cloud.demo, "2.92"),
                                   json={"keypair": {"name": "gen"}})
    assert resp.status == 400  # 2.92: nothing generated
    page = await (await cloud.client.get("/compute/v2.1/os-keypairs?limit=2", headers=at(cloud.demo, "2.35"))).json()
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["k1", "k2"] and "marker=k2" in \
        page["keypairs_links"][0]["href"]
    rest = await (await cloud.client.get("/compute/v2.1/os-keypairs?marker=k2", headers=at(cloud.demo, "2.35"))).json()
    assert [k["keypair"]["name"] for k in rest["keypairs"]] == ["k3"]
    demo_user = (await (await cloud.client.get("/compute/v2.1/os-keypairs/k1",
                                               headers=at(cloud.demo, "2.10"))).json())["keypair"]["user_id"]
    resp = await cloud.client.get(f"/compute/v2.1/os-keypairs?user_id={demo_user}", headers=at(cloud.admin, "2.10"))
    assert len((await resp.json())["keypairs"]) == 3  # an admin sees another user's key pairs
    resp = await cloud.client.get("/compute/v2.1/os-keypairs?user_id=someone", headers=at(cloud.demo, "2.10"))
    assert resp.status == 403


async def test_flavor_description_extra_specs_and_swap_by_version(cloud: Cloud) -> None:
    resp = await cloud.client.post("/compute/v2.1/flavors", headers=at(cloud.admin, "2.55"), json={"flavor": {
        "name": "described", "ram": 64, "vcpus": 1, "disk": 1, "id": "d1", "description": "for tests"}})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["flavor"]["description"] == "for tests"
    resp = await cloud.client.post("/compute/v2.1/flavors", headers=at(cloud.admin, "2.54"), json={"flavor": {
        "name": "early", "ram": 64, "vcpus": 1, "disk": 1, "description": "too early"}})
    assert resp.status == 400
    resp = await cloud.client.post("/compute/v2.1/flavors/d1/os-extra_specs", headers=cloud.admin,
                                   json={"extra_specs": {"hw:cpu_policy": "shared"}})
    assert resp.status == 200, await resp.text()
    old = (await (await cloud.client.get("/compute/v2.1/flavors/d1", headers=at(cloud.demo, "2.54"))).json())["flavor"]
    assert "description" not in old and "extra_specs" not in old and old["swap"] == ""
    new = (await (await cloud.client.get("/compute/v2.1/flavors/d1", headers=at(cloud.demo, "2.75"))).json())["flavor"]
    assert (new["description"], new["extra_specs"], new["swap"]) == ("for tests", {"hw:cpu_policy": "shared"}, 0)
    listed = (await (await cloud.client.get("/compute/v2.1/flavors", headers=at(cloud.demo, "2.55"))).json())
    assert all("description" in f for f in listed["flavors"])
    resp = await cloud.client.put("/compute/v2.1/flavors/d1", headers=at(cloud.admin, "2.55"),
                                  json={"flavor": {"description": None}})
    assert resp.status == 200 and (await resp.json())["flavor"]["description"] is None
    resp = await cloud.client.put("/compute/v2.1/flavors/d1", headers=at(cloud.demo, "2.55"),
                                  json={"flavor": {"description": "mine"}})
    assert resp.status == 403
    resp = await cloud.client.put("/compute/v2.1/flavors/d1", headers=at(cloud.admin, "2.54"),
                                  json={"flavor": {"description": "x"}})
    assert resp.status == 404


async def test_quota_sets_and_limits_drop_what_later_versions_removed(cloud: Cloud) -> None:
    projects = (await (await cloud.client.get("/identity/v3/auth/projects", headers=cloud.demo)).json())["projects"]
    project = projects[0]["id"]
    path = f"/compute/v2.1/os-quota-sets/{project}"
    old = (await (await cloud.client.get(path, headers=at(cloud.demo, "2.35"))).json())["quota_set"]
    assert {"floating_ips", "security_groups", "injected_files"} <= set(old)
    mid = (await (await cloud.client.get(path, headers=at(cloud.demo, "2.36"))).json())["quota_set"]
    assert not {"fixed_ips", "floating_ips", "security_groups", "security_group_rules"} & set(mid)
    assert "injected_files" in mid
    new = (await (await cloud.client.get(path, headers=at(cloud.demo, "2.57"))).json())["quota_set"]
    assert not {"injected_files", "injected_file_content_bytes", "injected_file_path_bytes"} & set(new)
    resp = await cloud.client.put(path, headers=at(cloud.admin, "2.36"), json={"quota_set": {"floating_ips": 5}})
    assert resp.status == 400  # a resource the version no longer has
    resp = await cloud.client.put(path, headers=at(cloud.admin, "2.57"), json={"quota_set": {"instances": 7}})
    assert resp.status == 200 and (await resp.json())["quota_set"]["instances"] == 7
    limits = {v: (await (await cloud.client.get("/compute/v2.1/limits", headers=at(cloud.demo, v))).json())
              ["limits"]["absolute"] for v in ("2.1", "2.36", "2.39", "2.57")}
    assert {"maxSecurityGroups", "maxTotalFloatingIps", "maxImageMeta", "maxPersonality"} <= set(limits["2.1"])
    assert not {"maxSecurityGroups", "maxTotalFloatingIps"} & set(limits["2.36"]) and "maxImageMeta" in limits["2.36"]
    assert "maxImageMeta" not in limits["2.39"] and "maxPersonality" in limits["2.39"]
    assert not {"maxPersonality", "maxPersonalitySize"} & set(limits["2.57"])
    assert limits["2.57"]["maxTotalInstances"] == limits["2.1"]["maxTotalInstances"]


async def test_server_groups_by_version(cloud: Cloud) -> None:
    groups = "/compute/v2.1/os-server-groups"
    resp = await cloud.client.post(groups, headers=at(cloud.demo, "2.15"),
                                   json={"server_group": {"name": "soft", "policies": ["soft-anti-affinity"]}})
    assert resp.status == 200, await resp.text()
    soft = (await resp.json())["server_group"]
    assert soft["policies"] == ["soft-anti-affinity"] and {"project_id", "user_id"} <= set(soft)  # 2.13
    resp = await cloud.client.post(groups, headers=at(cloud.demo, "2.64"), json={"server_group": {
        "name": "two-per-host", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}})
    assert resp.status == 200, await resp.text()
    ruled = (await resp.json())["server_group"]
    assert (ruled["policy"], ruled["rules"]) == ("anti-affinity", {"max_server_per_host": 2})
    assert "policies" not in ruled and "metadata" not in ruled
    old = (await (await cloud.client.get(f"{groups}/{ruled['id']}", headers=at(cloud.demo, "2.12"))).json())
    assert set(old["server_group"]) == {"id", "name", "policies", "members", "metadata"}
    for version, body in (("2.64", {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}),
                          ("2.64", {"name": "x", "policies": ["affinity"]}),
                          ("2.63", {"name": "x", "policy": "affinity"}),
                          ("2.14", {"name": "x", "policies": ["soft-affinity"]})):
        resp = await cloud.client.post(groups, headers=at(cloud.demo, version), json={"server_group": body})
        assert resp.status == 400, (version, body)
    boot_body: dict[str, Any] = {"server": {"name": "member", "flavorRef": "1", "imageRef": cloud.image_id, "networks": "none"},
            "os:scheduler_hints": {"group": ruled["id"]}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=boot_body, headers=at(cloud.demo, "2.64"))
    assert resp.status == 202, await resp.text()
    assert cloud.cell.conductor.builds[-1]["group"] == {"uuid": ruled["id"], "policy": "anti-affinity",
                                                        "max_per_host": 2}
    member = (await resp.json())["server"]["id"]
    assert (await show(cloud, cloud.demo, member, "2.71"))["server_groups"] == [ruled["id"]]


async def test_return_reservation_id_answers_the_reservation(cloud: Cloud) -> None:
    body = {"server": {"name": "many", "flavorRef": "1", "imageRef": cloud.image_id, "min_count": 2,
                       "return_reservation_id": True}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)
    assert resp.status == 202, await resp.text()
    reservation = (await resp.json())["reservation_id"]
    listed = (await (await cloud.client.get("/compute/v2.1/servers/detail?all_tenants=1",
                                            headers=at(cloud.admin, "2.3"))).json())["servers"]
    assert [s["OS-EXT-SRV-ATTR:reservation_id"] for s in listed] == [reservation] * 2
    lone = {"server": {"name": "lone", "flavorRef": "1", "imageRef": cloud.image_id}}
    assert (await cloud.client.post("/compute/v2.1/servers", json=lone, headers=cloud.demo)).status == 202
    # Nova's reservation_id filter: that boot's servers only, not the lone one (nor any, for another reservation)
    for query, count in ((f"reservation_id={reservation}", 2), ("reservation_id=r-none", 0)):
        found = (await (await cloud.client.get(f"/compute/v2.1/servers/detail?{query}", headers=cloud.demo)).json())
        assert len(found["servers"]) == count and all(s["name"] != "lone" for s in found["servers"]), found


def test_rebuild_bodies_by_version() -> None:
    from api.compute.server_actions import rebuild_schema
    from api.validation import validate
    from cells import errors
    from cells.conductor.flows.server_actions import validate_args
    image = {"imageRef": "6a1c8972-3692-4763-b38f-b27537a04427"}
    for version, extra, ok in (((2, 53), {"key_name": "k"}, False), ((2, 54), {"key_name": "k"}, True),
                               ((2, 54), {"key_name": None}, True), ((2, 56), {"user_data": "aGk="}, False),
                               ((2, 57), {"user_data": "aGk="}, True), ((2, 57), {"personality": []}, False),
                               ((2, 18), {"description": "d"}, False), ((2, 19), {"description": "d"}, True)):
        try:
            validate(rebuild_schema(version), {**image, **extra}, "rebuild")
            assert ok, (version, extra)
        except errors.Invalid:
            assert not ok, (version, extra)
    # the cell takes the new key pair and user data with the image
    args = validate_args("rebuild", {"image": {"id": "i"}, "key_name": "k", "key_data": "ssh-ed25519 AAAA",
                                     "user_data": None})
    assert (args["key_name"], args["key_data"], args["user_data"]) == ("k", "ssh-ed25519 AAAA", None)
    try:
        validate_args("rebuild", {"image": {"id": "i"}, "key_name": "k", "key_data": None})
        raise AssertionError("a key name without its key must be refused")
    except errors.Invalid:
        pass


async def test_an_unknown_status_filter_is_400_from_2_38(cloud: Cloud) -> None:
    await boot(cloud, cloud.demo, "2.1")
    old = await cloud.client.get("/compute/v2.1/servers?status=SLEEPING", headers=at(cloud.demo, "2.37"))
    assert old.status == 200 and (await old.json())["servers"] == []
    new = await cloud.client.get("/compute/v2.1/servers?status=SLEEPING", headers=at(cloud.demo, "2.38"))
    assert new.status == 400 and "Invalid status value" in (await new.json())["badRequest"]["message"]
    known = await cloud.client.get("/compute/v2.1/servers?status=BUILD", headers=at(cloud.demo, "2.38"))
    assert known.status == 200 and len((await known.json())["servers"]) == 1
