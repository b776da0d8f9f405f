"""Nova's os-networks and os-tenant-networks read proxies against a real network controller (real cell DB,
real ZeroMQ): the caller's networks in Nova's shapes (label the name, cidr the first IPv4 subnet's), another
project's private network not shown, 404 for an unknown one and from 2.36."""
from __future__ import annotations

from pathlib import Path

from tests.unit.test_api_network import api_client


async def test_network_proxies(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        resp = await client.post("/network/v2.0/networks", json={"network": {"name": "net1"}}, headers=demo)
        assert resp.status == 201, await resp.text()
        net = (await resp.json())["network"]
        resp = await client.post("/network/v2.0/subnets", headers=demo, json={"subnet": {
            "network_id": net["id"], "cidr": "10.9.0.0/24", "ip_version": 4}})
        assert resp.status == 201, await resp.text()
        resp = await client.post("/network/v2.0/networks", json={"network": {"name": "admins"}}, headers=admin)
        assert resp.status == 201
        hidden = (await resp.json())["network"]["id"]

        listed = (await (await client.get("/compute/v2.1/os-tenant-networks", headers=demo)).json())["networks"]
        assert {"id": net["id"], "label": "net1", "cidr": "10.9.0.0/24"} in listed
        assert hidden not in [n["id"] for n in listed]
        resp = await client.get(f"/compute/v2.1/os-tenant-networks/{net['id']}", headers=demo)
        assert await resp.json() == {"network": {"id": net["id"], "label": "net1", "cidr": "10.9.0.0/24"}}

        networks = (await (await client.get("/compute/v2.1/os-networks", headers=demo)).json())["networks"]
        mine = next(n for n in networks if n["id"] == net["id"])
        assert mine["label"] == "net1" and mine["cidr"] is None and "project_id" not in mine  # no admin fields
        shown = (await (await client.get(f"/compute/v2.1/os-networks/{net['id']}", headers=admin)).json())["network"]
        assert shown["label"] == "net1" and "project_id" in shown  # an admin's view has the admin fields

        missing = "0" * 8 + "-0000-0000-0000-" + "0" * 12
        for path in (f"/compute/v2.1/os-networks/{missing}", f"/compute/v2.1/os-tenant-networks/{missing}",
                     f"/compute/v2.1/os-tenant-networks/{hidden}"):
            assert (await client.get(path, headers=demo)).status == 404, path
        at_236 = {**demo, "OpenStack-API-Version": "compute 2.36"}
        for path in ("/compute/v2.1/os-networks", "/compute/v2.1/os-tenant-networks"):
            assert (await client.get(path, headers=at_236)).status == 404
