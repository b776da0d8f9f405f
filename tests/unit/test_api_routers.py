"""Neutron's L3 subset on /network/v2.0 (issue 17) against a real network controller (real cell DB,
real ZeroMQ): external networks, routers with a gateway and subnet interfaces, floating IPs, their
errors and quotas, hostile tenants, and the unmodified `openstack` CLI."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cells.config import ServiceSpec
from cells.context import RequestContext
from cells.db.schema import create_schema
from cells.network.controller import NetworkController
from tests.unit.api_support import SECRETS, token
from tests.unit.test_api_network import _cli, api_client, cli_api, cli_as
from tools.openstack_cli import OPENSTACK

Client = TestClient[Any, Any]
N = "/network/v2.0"


async def _post(client: Client, path: str, headers: dict[str, str], body: dict[str, Any],
                status: int = 201) -> dict[str, Any]:
    resp = await client.post(f"{N}/{path}", json=body, headers=headers)
    assert resp.status == status, await resp.text()
    return dict(await resp.json())


async def _put(client: Client, path: str, headers: dict[str, str], body: dict[str, Any],
               status: int = 200) -> dict[str, Any]:
    resp = await client.put(f"{N}/{path}", json=body, headers=headers)
    assert resp.status == status, await resp.text()
    return dict(await resp.json())


async def _public(client: Client, admin: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    net = (await _post(client, "networks", admin, {"network": {"name": "public", "router:external": True}}))["network"]
    sub = (await _post(client, "subnets", admin, {"subnet": {"network_id": net["id"], "cidr": "203.0.113.0/24",
                                                            "name": "public-sub"}}))["subnet"]
    return net, sub


async def _project_net(client: Client, headers: dict[str, str], cidr: str) -> tuple[dict[str, Any], dict[str, Any]]:
    net = (await _post(client, "networks", headers, {"network": {"name": "inside"}}))["network"]
    sub = (await _post(client, "subnets", headers, {"subnet": {"network_id": net["id"], "cidr": cidr}}))["subnet"]
    return net, sub


async def test_external_network_is_admin_made_and_visible_to_every_project_but_not_its_subnets(
        tmp_path: Path) -> None:
    """Every project sees the external network; its subnets only the admin (Neutron without the
    subnet-external-network extension): another project's GET is 404 and its list leaves them out."""
    async with api_client(tmp_path) as (client, demo, admin):
        resp = await client.post(f"{N}/networks", headers=demo, json={"network": {"name": "x", "router:external": True}})
        assert resp.status == 403
        assert (await resp.json())["NeutronError"]["type"] == "PolicyNotAuthorized"
        public, sub = await _public(client, admin)
        assert public["router:external"] is True
        seen = (await (await client.get(f"{N}/networks?router:external=true", headers=demo)).json())["networks"]
        assert [n["id"] for n in seen] == [public["id"]]
        assert seen[0]["subnets"] == [sub["id"]]
        resp = await client.get(f"{N}/subnets/{sub['id']}", headers=demo)
        assert resp.status == 404
        listed = (await (await client.get(f"{N}/subnets?network_id={public['id']}", headers=demo)).json())["subnets"]
        assert listed == []
        resp = await client.get(f"{N}/subnets/{sub['id']}", headers=admin)
        assert resp.status == 200


async def test_router_gateway_interfaces_and_in_use_errors(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        public, public_sub = await _public(client, admin)
        _, inside = await _project_net(client, demo, "192.168.60.0/24")
        router = (await _post(client, "routers", demo, {"router": {"name": "r1"}}))["router"]
        assert router["external_gateway_info"] is None and router["status"] == "ACTIVE"

        # a project network is no gateway
        private = (await (await client.get(f"{N}/networks?name=private", headers=demo)).json())["networks"][0]
        await _put(client, f"routers/{router['id']}", demo,
                   {"router": {"external_gateway_info": {"network_id": private["id"]}}}, 400)
        router = (await _put(client, f"routers/{router['id']}", demo,
                             {"router": {"external_gateway_info": {"network_id": public["id"]}}}))["router"]
        gateway = router["external_gateway_info"]
        assert gateway["network_id"] == public["id"] and gateway["enable_snat"] is True
        assert [ip["subnet_id"] for ip in gateway["external_fixed_ips"]] == [public_sub["id"]]

        info = await _put(client, f"routers/{router['id']}/add_router_interface", demo, {"subnet_id": inside["id"]})
        assert info["subnet_id"] == inside["id"] and info["id"] == router["id"]
        port = (await (await client.get(f"{N}/ports/{info['port_id']}", headers=demo)).json())["port"]
        assert port["device_owner"] == "network:router_interface" and port["device_id"] == router["id"]
        assert port["fixed_ips"] == [{"subnet_id": inside["id"], "ip_address": "192.168.60.1"}]  # the gateway
        # a fixed_ips update that keeps the interface's address is Neutron's 200; one that changes it: 409
        kept = await _put(client, f"ports/{info['port_id']}", demo, {"port": {"fixed_ips": [
            {"subnet_id": inside["id"]}]}})
        assert kept["port"]["fixed_ips"] == port["fixed_ips"]
        await _put(client, f"ports/{info['port_id']}", demo, {"port": {"fixed_ips": [
            {"subnet_id": inside["id"], "ip_address": "192.168.60.9"}]}}, 409)
        shown = (await (await client.get(f"{N}/ports/{info['port_id']}", headers=demo)).json())["port"]
        assert shown["fixed_ips"] == port["fixed_ips"]  # the refused change left it whole
        # the same subnet twice: 400; the interface port is not deleted through the port API: 409
        await _put(client, f"routers/{router['id']}/add_router_interface", demo, {"subnet_id": inside["id"]}, 400)
        resp = await client.delete(f"{N}/ports/{info['port_id']}", headers=demo)
        assert resp.status == 409

        resp = await client.delete(f"{N}/routers/{router['id']}", headers=demo)
        assert resp.status == 409
        assert (await resp.json())["NeutronError"]["type"] == "RouterInUse"
        await _put(client, f"routers/{router['id']}/remove_router_interface", demo, {"subnet_id": inside["id"]})
        resp = await client.get(f"{N}/ports/{info['port_id']}", headers=demo)
        assert resp.status == 404
        assert (await client.delete(f"{N}/routers/{router['id']}", headers=demo)).status == 204
        left = (await (await client.get(f"{N}/ports?network_id={public['id']}", headers=admin)).json())["ports"]
        assert left == []  # the gateway port went with its router
        resp = await client.get(f"{N}/routers/{router['id']}", headers=demo)
        assert resp.status == 404
        assert (await resp.json())["NeutronError"]["type"] == "RouterNotFound"


async def test_floating_ip_associate_disassociate_and_conflicts(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        public, _ = await _public(client, admin)
        inside_net, inside = await _project_net(client, demo, "192.168.61.0/24")
        router = (await _post(client, "routers", demo, {"router": {
            "name": "r1", "external_gateway_info": {"network_id": public["id"]}}}))["router"]
        port_a = (await _post(client, "ports", demo, {"port": {"network_id": inside_net["id"]}}))["port"]
        port_b = (await _post(client, "ports", demo, {"port": {"network_id": inside_net["id"]}}))["port"]

        # no floating IP from a network that is not external
        await _post(client, "floatingips", demo, {"floatingip": {"floating_network_id": inside_net["id"]}}, 400)
        fip = (await _post(client, "floatingips", demo, {"floatingip": {"floating_network_id": public["id"]}}))[
            "floatingip"]
        assert fip["status"] == "DOWN" and fip["port_id"] is None
        assert fip["floating_ip_address"].startswith("203.0.113.")
        # the port's subnet has no router to the external network yet: 404 as Neutron answers
        resp = await client.put(f"{N}/floatingips/{fip['id']}", headers=demo,
                                json={"floatingip": {"port_id": port_a["id"]}})
        assert resp.status == 404, await resp.text()
        await _put(client, f"routers/{router['id']}/add_router_interface", demo, {"subnet_id": inside["id"]})
        fip = (await _put(client, f"floatingips/{fip['id']}", demo, {"floatingip": {"port_id": port_a["id"]}}))[
            "floatingip"]
        assert (fip["port_id"], fip["fixed_ip_address"], fip["router_id"], fip["status"]) == \
            (port_a["id"], port_a["fixed_ips"][0]["ip_address"], router["id"], "ACTIVE")

        # moving it to another port is one update, as Neutron; back again with the revision it saw
        revision = fip["revision_number"]
        moved = (await _put(client, f"floatingips/{fip['id']}", demo, {"floatingip": {"port_id": port_b["id"]}}))[
            "floatingip"]
        assert (moved["port_id"], moved["fixed_ip_address"], moved["revision_number"]) == \
            (port_b["id"], port_b["fixed_ips"][0]["ip_address"], revision + 1)
        resp = await client.put(f"{N}/floatingips/{fip['id']}", headers={**demo, "If-Match": f"revision_number={revision}"},
                                json={"floatingip": {"port_id": port_a["id"]}})  # a stale revision: 412
        assert resp.status == 412 and (await resp.json())["NeutronError"]["type"] == "RevisionNumberConstraintFailed"
        resp = await client.put(f"{N}/floatingips/{fip['id']}", headers={**demo, "If-Match": "etag"},
                                json={"floatingip": {"port_id": port_a["id"]}})
        assert resp.status == 400
        resp = await client.put(f"{N}/floatingips/{fip['id']}", headers={**demo, "If-Match": f"revision_number={revision + 1}"},
                                json={"floatingip": {"port_id": port_a["id"]}})
        assert resp.status == 200 and (await resp.json())["floatingip"]["port_id"] == port_a["id"]
        # a second floating IP on the same fixed address: 409
        other = (await _post(client, "floatingips", demo, {"floatingip": {"floating_network_id": public["id"]}}))[
            "floatingip"]
        await _put(client, f"floatingips/{other['id']}", demo, {"floatingip": {"port_id": port_a["id"]}}, 409)
        # a router port is no target: 400
        router_ports = (await (await client.get(f"{N}/ports?device_id={router['id']}", headers=admin)).json())["ports"]
        iface = next(p for p in router_ports if p["device_owner"] == "network:router_interface")
        await _put(client, f"floatingips/{other['id']}", demo, {"floatingip": {"port_id": iface["id"]}}, 400)

        # the router and its interface are held while a floating IP goes through them
        assert (await client.delete(f"{N}/routers/{router['id']}", headers=demo)).status == 409
        await _put(client, f"routers/{router['id']}/remove_router_interface", demo, {"subnet_id": inside["id"]}, 409)
        await _put(client, f"routers/{router['id']}", demo, {"router": {"external_gateway_info": None}}, 409)

        listed = (await (await client.get(f"{N}/floatingips?port_id={port_a['id']}", headers=demo)).json())
        assert [f["id"] for f in listed["floatingips"]] == [fip["id"]]
        fip = (await _put(client, f"floatingips/{fip['id']}", demo, {"floatingip": {"port_id": None}}))["floatingip"]
        assert (fip["port_id"], fip["fixed_ip_address"], fip["router_id"], fip["status"]) == (None, None, None, "DOWN")

        # deleting an associated port takes the association with it
        await _put(client, f"floatingips/{other['id']}", demo, {"floatingip": {"port_id": port_b["id"]}})
        assert (await client.delete(f"{N}/ports/{port_b['id']}", headers=demo)).status == 204
        other = (await (await client.get(f"{N}/floatingips/{other['id']}", headers=demo)).json())["floatingip"]
        assert other["port_id"] is None

        address = fip["floating_ip_address"]
        assert (await client.delete(f"{N}/floatingips/{fip['id']}", headers=demo)).status == 204
        held = (await (await client.get(f"{N}/ports?network_id={public['id']}", headers=admin)).json())["ports"]
        assert address not in [ip["ip_address"] for p in held for ip in p["fixed_ips"]]  # the address is free again
        resp = await client.get(f"{N}/floatingips/{fip['id']}", headers=demo)
        assert resp.status == 404
        assert (await resp.json())["NeutronError"]["type"] == "FloatingIPNotFound"


async def test_two_simultaneous_associations_of_one_floating_ip_one_wins(tmp_path: Path) -> None:
    """Two associations at once that both say which revision they saw (If-Match: revision_number,
    Neutron's way to make an update conditional): one wins, the other gets 412 and changes nothing."""
    async with api_client(tmp_path) as (client, demo, admin):
        public, _ = await _public(client, admin)
        inside_net, inside = await _project_net(client, demo, "192.168.62.0/24")
        router = (await _post(client, "routers", demo, {"router": {
            "external_gateway_info": {"network_id": public["id"]}}}))["router"]
        await _put(client, f"routers/{router['id']}/add_router_interface", demo, {"subnet_id": inside["id"]})
        ports = [(await _post(client, "ports", demo, {"port": {"network_id": inside_net["id"]}}))["port"]
                 for _ in range(2)]
        fip = (await _post(client, "floatingips", demo, {"floatingip": {"floating_network_id": public["id"]}}))[
            "floatingip"]
        seen = {**demo, "If-Match": f"revision_number={fip['revision_number']}"}
        answers = await asyncio.gather(*(client.put(f"{N}/floatingips/{fip['id']}", headers=seen,
                                                    json={"floatingip": {"port_id": p["id"]}}) for p in ports))
        assert sorted(r.status for r in answers) == [200, 412]
        winner = next(p for p, r in zip(ports, answers, strict=True) if r.status == 200)
        shown = (await (await client.get(f"{N}/floatingips/{fip['id']}", headers=demo)).json())["floatingip"]
        assert shown["port_id"] == winner["id"]


async def test_another_project_cannot_see_or_use_routers_subnets_ports_or_floating_ips(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        alt = {"X-Auth-Token": await token(client, "alt_demo", SECRETS["alt_demo_password"], "alt_demo")}
        public, _ = await _public(client, admin)
        demo_net, demo_sub = await _project_net(client, demo, "192.168.63.0/24")
        demo_port = (await _post(client, "ports", demo, {"port": {"network_id": demo_net["id"]}}))["port"]
        demo_router = (await _post(client, "routers", demo, {"router": {"name": "mine"}}))["router"]
        demo_fip = (await _post(client, "floatingips", demo, {"floatingip": {"floating_network_id": public["id"]}}))[
            "floatingip"]

        alt_router = (await _post(client, "routers", alt, {"router": {
            "external_gateway_info": {"network_id": public["id"]}}}))["router"]
        # demo's subnet and port: 404 to alt_demo, and nothing attached
        resp = await client.put(f"{N}/routers/{alt_router['id']}/add_router_interface", headers=alt,
                                json={"subnet_id": demo_sub["id"]})
        assert resp.status == 404 and (await resp.json())["NeutronError"]["type"] == "SubnetNotFound"
        resp = await client.put(f"{N}/routers/{alt_router['id']}/add_router_interface", headers=alt,
                                json={"port_id": demo_port["id"]})
        assert resp.status == 404 and (await resp.json())["NeutronError"]["type"] == "PortNotFound"
        # demo's router and floating IP do not exist for alt_demo
        for path in (f"routers/{demo_router['id']}", f"floatingips/{demo_fip['id']}"):
            assert (await client.get(f"{N}/{path}", headers=alt)).status == 404
            assert (await client.delete(f"{N}/{path}", headers=alt)).status == 404
        assert (await (await client.get(f"{N}/floatingips", headers=alt)).json())["floatingips"] == []
        assert [r["id"] for r in (await (await client.get(f"{N}/routers", headers=alt)).json())["routers"]] == \
            [alt_router["id"]]
        # alt_demo's floating IP cannot point at demo's port
        alt_fip = (await _post(client, "floatingips", alt, {"floatingip": {"floating_network_id": public["id"]}}))[
            "floatingip"]
        await _put(client, f"floatingips/{alt_fip['id']}", alt, {"floatingip": {"port_id": demo_port["id"]}}, 404)
        # only an admin picks the address
        await _post(client, "floatingips", alt, {"floatingip": {"floating_network_id": public["id"],
                                                                "floating_ip_address": "203.0.113.77"}}, 403)
        ports = (await (await client.get(f"{N}/ports", headers=demo)).json())["ports"]
        assert [p["id"] for p in ports] == [demo_port["id"]]  # no router or floating IP port counted as demo's


async def test_router_and_floatingip_quotas(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        public, _ = await _public(client, admin)
        project = (await (await client.get(f"{N}/routers", headers=demo)).json())  # any call: demo's project id
        assert project == {"routers": []}
        demo_project = (await (await client.get(f"{N}/networks?name=private", headers=demo)).json())[
            "networks"][0]["project_id"]
        await _put(client, f"quotas/{demo_project}", admin, {"quota": {"router": 1, "floatingip": 1}})
        await _post(client, "routers", demo, {"router": {"name": "one"}})
        resp = await client.post(f"{N}/routers", headers=demo, json={"router": {"name": "two"}})
        assert resp.status == 409 and (await resp.json())["NeutronError"]["type"] == "OverQuota"
        await _post(client, "floatingips", demo, {"floatingip": {"floating_network_id": public["id"]}})
        resp = await client.post(f"{N}/floatingips", headers=demo,
                                 json={"floatingip": {"floating_network_id": public["id"]}})
        assert resp.status == 409 and (await resp.json())["NeutronError"]["type"] == "OverQuota"
        routers = (await (await client.get(f"{N}/routers", headers=demo)).json())["routers"]
        assert [r["name"] for r in routers] == ["one"]  # the refused one left nothing


@pytest.mark.slow
@pytest.mark.skipif(not OPENSTACK.exists(), reason="python-openstackclient is not installed")
async def test_openstack_cli_router_and_floating_ip(tmp_path: Path) -> None:
    async with cli_api(tmp_path) as url:
        await _cli(tmp_path, url, "network", "create", "inside", "-f", "json")
        await _cli(tmp_path, url, "subnet", "create", "--network", "inside", "--subnet-range", "172.21.0.0/24",
                   "inside-sub", "-f", "json")
        public = await _admin_cli(tmp_path, url, "network", "create", "--external", "public", "-f", "json")
        assert public["router:external"] is True
        await _admin_cli(tmp_path, url, "subnet", "create", "--network", "public", "--subnet-range",
                         "198.51.100.0/24", "public-sub", "-f", "json")
        await _cli(tmp_path, url, "router", "create", "r1", "-f", "json")
        await _cli(tmp_path, url, "router", "set", "--external-gateway", "public", "r1")
        await _cli(tmp_path, url, "router", "add", "subnet", "r1", "inside-sub")
        port = await _cli(tmp_path, url, "port", "create", "--network", "inside", "p1", "-f", "json")
        fip = await _cli(tmp_path, url, "floating", "ip", "create", "public", "-f", "json")
        await _cli(tmp_path, url, "floating", "ip", "set", "--port", "p1", fip["id"])
        shown = await _cli(tmp_path, url, "floating", "ip", "show", fip["id"], "-f", "json")
        assert shown["port_id"] == port["id"] and shown["status"] == "ACTIVE"
        await _cli(tmp_path, url, "floating", "ip", "unset", "--port", fip["id"])
        await _cli(tmp_path, url, "floating", "ip", "delete", fip["id"])
        assert await _cli(tmp_path, url, "floating", "ip", "list", "-f", "json") == []
        await _cli(tmp_path, url, "router", "remove", "subnet", "r1", "inside-sub")
        await _cli(tmp_path, url, "router", "delete", "r1")
        assert await _cli(tmp_path, url, "router", "list", "-f", "json") == []


async def _admin_cli(home: Path, url: str, *args: str) -> Any:
    """The openstack CLI as the admin (an external network is an admin's to make)."""
    return await cli_as(home, url, "admin", *args)


async def test_cluster_yaml_external_network_is_made_once_at_start(tmp_path: Path) -> None:
    """The controller's start makes the external network cluster.yaml names, and a restart keeps it."""
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    spec = ServiceSpec(id="cell1/network", kind="network", host="node1", bind="tcp://127.0.0.1:1", cell="cell1",
                       options={"external_network": {"name": "public", "cidr": "203.0.113.0/24"}})
    seen = []
    for _ in range(2):
        controller = NetworkController(spec=spec, db_url=url)
        await controller.start()
        try:
            demo = RequestContext(project="demo-project", roles=("member",))
            nets = await controller.network_list(demo, {"router:external": "true"})
            seen.append([(n["name"], n["router:external"], n["id"]) for n in nets])
            admin = RequestContext(project="admin-project", roles=("admin",))
            [subnet] = await controller.subnet_list(admin, {"network_id": nets[0]["id"]})
            assert subnet["cidr"] == "203.0.113.0/24"
        finally:
            await controller.stop()
    assert len(seen[0]) == 1 and seen[0] == seen[1]
    assert seen[0][0][:2] == ("public", True)


async def test_compute_os_floating_ips_proxy_allocates_releases_in_the_project_and_is_gone_at_2_36(
        tmp_path: Path) -> None:
    """Nova's os-floating-ips up to 2.35 through the Neutron API: allocate from a pool by name or id (an
    unknown pool 404, over the project's Neutron quota 403), show and list in Nova's view, the pools, release
    (202, then 404); another project sees none of it and cannot release it (404); from 2.36 all of it 404."""
    async with api_client(tmp_path) as (client, demo, admin):
        public, _ = await _public(client, admin)
        old = {**demo, "X-OpenStack-Nova-API-Version": "2.35"}
        resp = await client.post("/compute/v2.1/os-floating-ips", headers=old, json={"pool": "public"})
        assert resp.status == 200, await resp.text()
        made = (await resp.json())["floating_ip"]
        assert made["ip"].startswith("203.0.113.") and \
            {k: made[k] for k in ("fixed_ip", "instance_id", "pool")} == {"fixed_ip": None, "instance_id": None,
                                                                         "pool": "public"}
        by_id = (await (await client.post("/compute/v2.1/os-floating-ips", headers=old,
                                          json={"pool": public["id"]})).json())["floating_ip"]
        neutron = (await (await client.get(f"{N}/floatingips", headers=demo)).json())["floatingips"]
        assert sorted(f["id"] for f in neutron) == sorted([made["id"], by_id["id"]])  # Neutron's own records
        listed = (await (await client.get("/compute/v2.1/os-floating-ips", headers=old)).json())["floating_ips"]
        assert made in listed and by_id in listed
        shown = await (await client.get(f"/compute/v2.1/os-floating-ips/{made['id']}", headers=old)).json()
        assert shown["floating_ip"] == made
        pools = await (await client.get("/compute/v2.1/os-floating-ip-pools", headers=old)).json()
        assert pools == {"floating_ip_pools": [{"name": "public"}]}
        resp = await client.post("/compute/v2.1/os-floating-ips", headers=old, json={"pool": "no-such-pool"})
        assert resp.status == 404 and "itemNotFound" in await resp.json()

        alt = {"X-Auth-Token": await token(client, "alt_demo", SECRETS["alt_demo_password"], "alt_demo"),
               "X-OpenStack-Nova-API-Version": "2.35"}
        assert (await client.get(f"/compute/v2.1/os-floating-ips/{made['id']}", headers=alt)).status == 404
        assert (await client.delete(f"/compute/v2.1/os-floating-ips/{made['id']}", headers=alt)).status == 404
        assert (await (await client.get("/compute/v2.1/os-floating-ips", headers=alt)).json())["floating_ips"] == []

        demo_project = neutron[0]["project_id"]
        await _put(client, f"quotas/{demo_project}", admin, {"quota": {"floatingip": 2}})
        resp = await client.post("/compute/v2.1/os-floating-ips", headers=old, json={"pool": "public"})
        assert resp.status == 403, await resp.text()
        assert "over quota" in (await resp.json())["forbidden"]["message"]

        assert (await client.delete(f"/compute/v2.1/os-floating-ips/{made['id']}", headers=old)).status == 202
        assert (await client.get(f"/compute/v2.1/os-floating-ips/{made['id']}", headers=old)).status == 404
        assert (await client.get(f"{N}/floatingips/{made['id']}", headers=demo)).status == 404
        assert (await client.delete(f"/compute/v2.1/os-floating-ips/{made['id']}", headers=old)).status == 404

        new = {**demo, "X-OpenStack-Nova-API-Version": "2.36"}
        for method, path in (("GET", "os-floating-ips"), ("POST", "os-floating-ips"),
                             ("DELETE", f"os-floating-ips/{by_id['id']}"), ("GET", "os-floating-ip-pools")):
            resp = await client.request(method, f"/compute/v2.1/{path}", headers=new, json={"pool": "public"})
            assert resp.status == 404, (method, path, resp.status)
        assert (await client.get(f"{N}/floatingips/{by_id['id']}", headers=demo)).status == 200  # 2.36 deleted none


async def test_subnet_without_gateway_gets_a_dhcp_port_and_no_router(tmp_path: Path) -> None:
    """gateway_ip null: the subnet is made (Neutron's 201) with pools from the first address; the
    gateway host answers DHCP from a `network:dhcp` port of the pools, the cloud's (hidden from the
    project, not deletable, never a guest's address, gone with its subnet); no router interface on it
    (400); the network host's configuration carries that address and no router."""
    async with api_client(tmp_path) as (client, demo, admin):
        net = (await _post(client, "networks", demo, {"network": {"name": "nogw"}}))["network"]
        sub = (await _post(client, "subnets", demo, {"subnet": {"network_id": net["id"], "cidr": "192.168.64.0/29",
                                                               "gateway_ip": None}}))["subnet"]
        assert sub["gateway_ip"] is None and sub["enable_dhcp"] is True
        assert sub["allocation_pools"] == [{"start": "192.168.64.1", "end": "192.168.64.6"}]
        seen = (await (await client.get(f"{N}/ports?network_id={net['id']}", headers=demo)).json())["ports"]
        assert seen == []
        (dhcp,) = (await (await client.get(f"{N}/ports?network_id={net['id']}", headers=admin)).json())["ports"]
        assert dhcp["device_owner"] == "network:dhcp" and dhcp["fixed_ips"][0]["subnet_id"] == sub["id"]
        server = dhcp["fixed_ips"][0]["ip_address"]
        guests = [(await _post(client, "ports", demo, {"port": {"network_id": net["id"]}}))["port"] for _ in range(5)]
        assert server not in {p["fixed_ips"][0]["ip_address"] for p in guests}
        await _post(client, "ports", demo, {"port": {"network_id": net["id"]}}, 409)  # 6 addresses: exhausted
        assert (await client.delete(f"{N}/ports/{dhcp['id']}", headers=admin)).status == 409
        router = (await _post(client, "routers", demo, {"router": {"name": "r"}}))["router"]
        await _put(client, f"routers/{router['id']}/add_router_interface", demo, {"subnet_id": sub["id"]}, 400)

        for port in guests:
            assert (await client.delete(f"{N}/ports/{port['id']}", headers=demo)).status == 204
        assert (await client.delete(f"{N}/subnets/{sub['id']}", headers=demo)).status == 204
        assert (await client.get(f"{N}/ports/{dhcp['id']}", headers=admin)).status == 404  # gone with its subnet
        sub = (await _post(client, "subnets", demo, {"subnet": {"network_id": net["id"], "cidr": "192.168.64.0/29",
                                                               "gateway_ip": None}}))["subnet"]
        assert (await client.delete(f"{N}/networks/{net['id']}", headers=demo)).status == 204
        left = (await (await client.get(f"{N}/ports?device_owner=network:dhcp", headers=admin)).json())["ports"]
        assert left == []


async def test_subnet_host_routes_and_gateway_updates_as_neutron_validates_them(tmp_path: Path) -> None:
    """host_routes are kept normalised and shown (create and update), bad ones are 400 and change
    nothing; the gateway moves only to a free address outside the pools (409 otherwise), never while
    a router interface holds it (409), and is not removed or added after create (400)."""
    async with api_client(tmp_path) as (client, demo, _admin):
        net = (await _post(client, "networks", demo, {"network": {"name": "routed"}}))["network"]
        routes = [{"destination": "10.20.0.0/32", "nexthop": "10.100.1.1"}]
        sub = (await _post(client, "subnets", demo, {"subnet": {
            "network_id": net["id"], "cidr": "192.168.65.0/24", "host_routes": routes,
            "allocation_pools": [{"start": "192.168.65.3", "end": "192.168.65.7"}]}}))["subnet"]
        assert sub["host_routes"] == routes
        for bad in ([{"destination": "10.20.0.1/24", "nexthop": "10.100.1.1"}],  # host bits
                    [{"destination": "2001::/64", "nexthop": "10.100.1.1"}],  # another version
                    [{"destination": "10.20.0.0/32"}], "10.20.0.0/32", routes * 2,
                    [{"destination": f"10.30.{i}.0/24", "nexthop": "10.100.1.1"} for i in range(21)]):
            await _put(client, f"subnets/{sub['id']}", demo, {"subnet": {"host_routes": bad}}, 400)
        await _post(client, "subnets", demo, {"subnet": {"network_id": net["id"], "cidr": "192.168.66.0/24",
                                                         "host_routes": [{"destination": "x", "nexthop": "y"}]}}, 400)
        moved = [{"destination": "10.20.0.0/32", "nexthop": "10.100.1.2"}]
        sub = (await _put(client, f"subnets/{sub['id']}", demo, {"subnet": {
            "host_routes": moved, "gateway_ip": "192.168.65.2", "name": "New_subnet"}}))["subnet"]
        assert (sub["host_routes"], sub["gateway_ip"], sub["name"]) == (moved, "192.168.65.2", "New_subnet")
        shown = (await (await client.get(f"{N}/subnets/{sub['id']}", headers=demo)).json())["subnet"]
        assert shown["host_routes"] == moved and shown["gateway_ip"] == "192.168.65.2"

        await _put(client, f"subnets/{sub['id']}", demo, {"subnet": {"gateway_ip": "192.168.65.5"}}, 409)  # a pool's
        await _put(client, f"subnets/{sub['id']}", demo, {"subnet": {"gateway_ip": "192.168.66.1"}}, 400)  # outside
        await _put(client, f"subnets/{sub['id']}", demo, {"subnet": {"gateway_ip": None}}, 400)
        held = (await _post(client, "ports", demo, {"port": {"network_id": net["id"], "fixed_ips": [
            {"subnet_id": sub["id"], "ip_address": "192.168.65.9"}]}}))["port"]
        await _put(client, f"subnets/{sub['id']}", demo, {"subnet": {"gateway_ip": "192.168.65.9"}}, 409)  # a port's
        assert held["fixed_ips"][0]["ip_address"] == "192.168.65.9"
        router = (await _post(client, "routers", demo, {"router": {"name": "r"}}))["router"]
        await _put(client, f"routers/{router['id']}/add_router_interface", demo, {"subnet_id": sub["id"]})
        await _put(client, f"subnets/{sub['id']}", demo, {"subnet": {"gateway_ip": "192.168.65.1"}}, 409)
        shown = (await (await client.get(f"{N}/subnets/{sub['id']}", headers=demo)).json())["subnet"]
        assert shown["gateway_ip"] == "192.168.65.2" and shown["host_routes"] == moved  # refusals changed nothing
