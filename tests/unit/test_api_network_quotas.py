"""/network/v2.0/quotas against a real network controller: every limit is -1
(this cloud does not limit network resources), details count what the project
really holds, a change is refused with the reason, policy as Neutron's."""
from __future__ import annotations

from pathlib import Path

from tests.unit.test_api_network import api_client


async def test_network_quotas_are_unlimited_and_count_real_use(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        me = await (await client.get("/identity/v3/auth/tokens",
                                     headers={**demo, "X-Subject-Token": demo["X-Auth-Token"]})).json()
        project = me["token"]["project"]["id"]
        resp = await client.post("/network/v2.0/networks", json={"network": {"name": "blue"}}, headers=demo)
        assert resp.status == 201
        [private] = [n for n in (await (await client.get("/network/v2.0/networks", headers=demo)).json())["networks"]
                     if n["name"] == "private"]  # made on first use, with its subnet
        resp = await client.post("/network/v2.0/ports", json={"port": {"network_id": private["id"]}}, headers=demo)
        assert resp.status == 201, await resp.text()

        shown = (await (await client.get(f"/network/v2.0/quotas/{project}", headers=demo)).json())["quota"]
        assert shown["network"] == shown["port"] == shown["floatingip"] == -1
        default = await (await client.get(f"/network/v2.0/quotas/{project}/default", headers=demo)).json()
        assert default["quota"] == shown
        details = (await (await client.get(f"/network/v2.0/quotas/{project}/details", headers=demo)).json())["quota"]
        networks = (await (await client.get("/network/v2.0/networks", headers=demo)).json())["networks"]
        ports = (await (await client.get("/network/v2.0/ports", headers=demo)).json())["ports"]
        assert details["network"] == {"limit": -1, "used": len(networks), "reserved": 0}
        assert details["port"]["used"] == len(ports) >= 1 and details["router"]["used"] == 0

        resp = await client.put(f"/network/v2.0/quotas/{project}", json={"quota": {"network": 5}}, headers=admin)
        assert resp.status == 400 and "unlimited" in (await resp.json())["NeutronError"]["message"]
        resp = await client.put(f"/network/v2.0/quotas/{project}", json={"quota": {"network": 5}}, headers=demo)
        assert resp.status == 403
        resp = await client.get("/network/v2.0/quotas/someone-else", headers=demo)
        assert resp.status == 403 and (await resp.json())["NeutronError"]["type"] == "PolicyNotAuthorized"
        assert (await (await client.get("/network/v2.0/quotas", headers=admin)).json()) == {"quotas": []}
        # the generic collection routes still answer everything else
        assert (await client.get("/network/v2.0/networks", headers=demo)).status == 200
