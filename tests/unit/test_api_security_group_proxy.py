"""Nova's os-security-groups / os-security-group-rules proxies against a real network controller (real cell
DB, real ZeroMQ): Nova's views of the Neutron groups (ingress rules only, ip_range or group), create, show,
update, delete, rules, Nova's 400 for Neutron's conflicts and bad rules, 404 from 2.36."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.test_api_network import api_client

SG = "/compute/v2.1/os-security-groups"
RULES = "/compute/v2.1/os-security-group-rules"


async def test_security_group_proxy(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, _):
        resp = await client.post(SG, json={"security_group": {"name": " web ", "description": "http"}}, headers=demo)
        assert resp.status == 200, await resp.text()
        web = (await resp.json())["security_group"]
        assert set(web) == {"id", "name", "description", "tenant_id", "rules"}
        assert (web["name"], web["description"], web["rules"]) == (" web ", "http", [])  # as given; no egress rules
        listed = (await (await client.get(SG, headers=demo)).json())["security_groups"]
        assert sorted(g["name"] for g in listed) == [" web ", "default"]
        default = next(g for g in listed if g["name"] == "default")

        resp = await client.post(RULES, headers=demo, json={"security_group_rule": {
            "parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.2.3.124/8"}})
        assert resp.status == 200, await resp.text()
        ssh = (await resp.json())["security_group_rule"]
        assert ssh == {"id": ssh["id"], "parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 22,
                       "to_port": 22, "ip_range": {"cidr": "10.2.3.124/8"}, "group": {}}  # host bits as given
        resp = await client.post(RULES, headers=demo, json={"security_group_rule": {
            "parent_group_id": web["id"], "ip_protocol": "icmp", "from_port": -1, "to_port": -1,
            "group_id": default["id"]}})
        assert resp.status == 200, await resp.text()
        icmp = (await resp.json())["security_group_rule"]
        assert (icmp["from_port"], icmp["to_port"], icmp["ip_range"]) == (-1, -1, {})
        assert icmp["group"] == {"name": "default", "tenant_id": web["tenant_id"]}
        shown = (await (await client.get(f"{SG}/{web['id']}", headers=demo)).json())["security_group"]
        assert sorted(r["id"] for r in shown["rules"]) == sorted([ssh["id"], icmp["id"]])

        bad_rules: list[dict[str, Any]] = [
            {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": 22,
             "cidr": "10.0.0.0/8"},  # the same network exists already (Neutron's 409, Nova's 400)
            {"parent_group_id": web["id"], "ip_protocol": "gre", "from_port": 1, "to_port": 2},
            {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": "x", "to_port": 2},
            {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 1, "to_port": 65536},
            {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 90, "to_port": 80},
            {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "nope"},
            {"parent_group_id": "not-a-uuid", "ip_protocol": "tcp", "from_port": 1, "to_port": 2}]
        for bad in bad_rules:
            resp = await client.post(RULES, headers=demo, json={"security_group_rule": bad})
            assert resp.status == 400, bad
            assert "badRequest" in await resp.json()
        missing = "0" * 8 + "-0000-0000-0000-" + "0" * 12
        resp = await client.post(RULES, headers=demo, json={"security_group_rule": {
            "parent_group_id": missing, "ip_protocol": "tcp", "from_port": 1, "to_port": 2}})
        assert resp.status == 404

        resp = await client.put(f"{SG}/{web['id']}", headers=demo,
                                json={"security_group": {"name": "www", "description": "web"}})
        assert resp.status == 200 and (await resp.json())["security_group"]["name"] == "www"
        for bad in ({"name": "", "description": "x"}, {"name": "x" * 256, "description": "x"},
                    {"name": "x", "description": 5}):
            resp = await client.post(SG, json={"security_group": bad}, headers=demo)
            assert resp.status == 400, bad

        assert (await client.delete(f"{RULES}/{ssh['id']}", headers=demo)).status == 202
        assert (await client.delete(f"{RULES}/{ssh['id']}", headers=demo)).status == 404
        resp = await client.delete(f"{SG}/{default['id']}", headers=demo)
        assert resp.status == 400  # Neutron keeps the default group: Nova's 400
        # a group named as a rule's peer takes that rule with it when it goes (Neutron's cascade)
        resp = await client.post(SG, json={"security_group": {"name": "peer", "description": ""}}, headers=demo)
        peer = (await resp.json())["security_group"]
        resp = await client.post(RULES, headers=demo, json={"security_group_rule": {
            "parent_group_id": web["id"], "ip_protocol": "udp", "from_port": 53, "to_port": 53, "group_id": peer["id"]}})
        assert resp.status == 200, await resp.text()
        assert (await client.delete(f"{SG}/{peer['id']}", headers=demo)).status == 202
        shown = (await (await client.get(f"{SG}/{web['id']}", headers=demo)).json())["security_group"]
        assert [r["id"] for r in shown["rules"]] == [icmp["id"]]
        assert (await client.delete(f"{SG}/{web['id']}", headers=demo)).status == 202
        assert (await client.get(f"{SG}/{web['id']}", headers=demo)).status == 404
        assert (await client.get(f"{SG}/not-a-uuid", headers=demo)).status == 400
        assert (await client.get(f"/compute/v2.1/servers/{missing}/os-security-groups", headers=demo)).status == 404

        at_236 = {**demo, "OpenStack-API-Version": "compute 2.36"}
        assert (await client.get(SG, headers=at_236)).status == 404
        resp = await client.post(SG, json={"security_group": {"name": "x", "description": ""}}, headers=at_236)
        assert resp.status == 404
