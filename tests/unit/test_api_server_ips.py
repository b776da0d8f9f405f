"""GET /servers/{id}/ips[/{network}] and ?limit=0 on server lists, against a fake cell over real ZeroMQ."""
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
