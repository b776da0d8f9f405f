"""Server views Nova's 2.1 schemas pin down: GET /servers/{id}/ips[/{network}], ?limit=0 on lists, the
PUT /servers/{id} response, access addresses in canonical form; against a fake cell over real ZeroMQ."""
from __future__ import annotations

from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]  # fixtures used by name


async def test_ips_lists_addresses_by_network(cloud: Cloud) -> None:
    server = await cloud.boot(cloud.demo, name="web")
    resp = await cloud.client.get(f"/compute/v2.1/servers/{server['id']}/ips", headers=cloud.demo)
    assert resp.status == 200 and await resp.json() == {"addresses": {}}  # still building: no address yet
    cloud.cell.conductor.activate(server["id"])
    resp = await cloud.client.get(f"/compute/v2.1/servers/{server['id']}/ips", headers=cloud.demo)
    assert await resp.json() == {"addresses": {"private": [{"version": 4, "addr": "10.0.0.5"}]}}
    resp = await cloud.client.get(f"/compute/v2.1/servers/{server['id']}/ips/private", headers=cloud.demo)
    assert resp.status == 200 and await resp.json() == {"private": [{"version": 4, "addr": "10.0.0.5"}]}
    resp = await cloud.client.get(f"/compute/v2.1/servers/{server['id']}/ips/public", headers=cloud.demo)
    assert resp.status == 404
    assert (await resp.json())["itemNotFound"]["message"] == "Instance is not a member of specified network"


async def test_ips_of_another_projects_server_is_404(cloud: Cloud) -> None:
    server = await cloud.boot(cloud.admin, name="admins")
    resp = await cloud.client.get(f"/compute/v2.1/servers/{server['id']}/ips", headers=cloud.demo)
    assert resp.status == 404
    resp = await cloud.client.get("/compute/v2.1/servers/no-such-server/ips", headers=cloud.demo)
    assert resp.status == 404


async def test_limit_zero_is_an_empty_list(cloud: Cloud) -> None:
    await cloud.boot(cloud.demo, name="one")
    for path in ("servers", "servers/detail"):
        resp = await cloud.client.get(f"/compute/v2.1/{path}?limit=0", headers=cloud.demo)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"servers": []}


UPDATE_KEYS_2_1 = {"id", "name", "status", "tenant_id", "user_id", "metadata", "hostId", "image", "flavor", "created",
                   "updated", "addresses", "accessIPv4", "accessIPv6", "links", "OS-DCF:diskConfig"}


async def test_update_answers_only_the_2_1_update_keys(cloud: Cloud) -> None:
    server = await cloud.boot(cloud.demo, name="old")
    cloud.cell.conductor.activate(server["id"])
    resp = await cloud.client.put(f"/compute/v2.1/servers/{server['id']}", headers=cloud.demo,
                                  json={"server": {"name": "new", "accessIPv4": "192.0.2.7"}})
    assert resp.status == 200, await resp.text()
    view = (await resp.json())["server"]
    assert set(view) == UPDATE_KEYS_2_1 | {"progress"}  # ACTIVE shows progress, as Nova
    assert (view["name"], view["accessIPv4"]) == ("new", "192.0.2.7")
    assert view["addresses"] == {"private": [{"version": 4, "addr": "10.0.0.5"}]}


async def test_access_addresses_are_stored_canonical(cloud: Cloud) -> None:
    """Nova keeps the canonical spelling (RFC 5952) and Tempest compares with it."""
    server = await cloud.boot(cloud.demo, name="v6", accessIPv6="0000:0000:0000:0000:0000:babe:220.12.22.2")
    shown = (await (await cloud.client.get(f"/compute/v2.1/servers/{server['id']}", headers=cloud.demo)).json())
    assert shown["server"]["accessIPv6"] == "::babe:dc0c:1602"
    resp = await cloud.client.put(f"/compute/v2.1/servers/{server['id']}", headers=cloud.demo,
                                  json={"server": {"accessIPv6": "2001:DB8:0:0:0:0:0:1"}})
    assert (await resp.json())["server"]["accessIPv6"] == "2001:db8::1"
