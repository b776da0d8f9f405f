"""/network/v2.0 against a real network controller (real cell DB, real ZeroMQ,
real Directory): Neutron's shapes and errors, and the unmodified `openstack` CLI."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api import bootstrap
from api.app import make_app
from cells.db.schema import create_schema
from cells.network.controller import NetworkController
from cells.objects import versions
from cells.rpc.client import RpcClient
from cells.rpc.directory import SURFACE as DIRECTORY_SURFACE
from cells.rpc.directory import Directory, DirectoryView, Member
from cells.rpc.server import RpcServer
from cells.rpcapi.network import SURFACE as NETWORK_SURFACE
from node.network.linux import render_nftables
from tests.conftest import free_port
from tests.unit.api_support import PUBLIC_URL, SECRETS, auth_body, make_cluster, token
from tools import openstack_cli
from tools.devcluster import cli_env
from tools.openstack_cli import OPENSTACK, password_env

INTERVAL = 0.1


@asynccontextmanager
async def network_cell(tmp: Path) -> AsyncIterator[str]:
    """A router and a real network controller on a cell DB in `tmp`; yields the router address."""
    url = f"sqlite+aiosqlite:///{tmp}/cell1.db"
    await create_schema(url)
    router_addr, net_addr = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    directory = Directory(INTERVAL)
    router = RpcServer(router_addr, directory, DIRECTORY_SURFACE)
    await router.start()
    controller = NetworkController(db_url=url)
    await controller.start()
    server = RpcServer(net_addr, controller, NETWORK_SURFACE)
    await server.start()
    client = RpcClient()
    speaks = versions.advertised(NETWORK_SURFACE) or {}  # a controller of this release (routers need RPC 1.4)
    me = Member("cell1/network", net_addr, ("network",), version=versions.RELEASE, meta={"versions": speaks})
    view = DirectoryView(client, router_addr, me, INTERVAL)
    tasks = [asyncio.ensure_future(directory.background()), asyncio.ensure_future(view.run())]
    await view.wait_synced(2.0)
    try:
        yield router_addr
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        await controller.stop()
        await router.stop()
        client.close()


@asynccontextmanager
async def api_client(tmp: Path) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str], dict[str, str]]]:
    async with network_cell(tmp) as router:
        cluster = make_cluster(tmp, router=router, interval=INTERVAL)
        await bootstrap.ensure(cluster)
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(cluster)))
        await client.start_server()
        try:
            demo = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
            admin = {"X-Auth-Token": await token(client, "admin", SECRETS["admin_password"], "admin")}
            yield client, demo, admin
        finally:
            await client.close()


async def test_networks_subnets_ports_and_neutron_errors(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        resp = await client.post("/identity/v3/auth/tokens", json=auth_body("demo", SECRETS["demo_password"], "demo"))
        catalog = (await resp.json())["token"]["catalog"]
        assert [e["endpoints"][0]["url"] for e in catalog if e["type"] == "network"] == [f"{PUBLIC_URL}/network"]
        nets = (await (await client.get("/network/v2.0/networks", headers=demo)).json())["networks"]
        assert [n["name"] for n in nets] == ["private"]  # made on first use
        private = nets[0]
        assert len(private["subnets"]) == 1

        resp = await client.post("/network/v2.0/networks", json={"network": {"name": "blue"}}, headers=demo)
        assert resp.status == 201
        blue = (await resp.json())["network"]
        resp = await client.post("/network/v2.0/subnets", headers=demo, json={"subnet": {
            "network_id": blue["id"], "cidr": "192.168.50.0/24", "ip_version": 4, "name": "blue-sub"}})
        assert resp.status == 201, await resp.text()
        sub = (await resp.json())["subnet"]
        assert sub["gateway_ip"] == "192.168.50.1"
        assert sub["allocation_pools"] == [{"start": "192.168.50.2", "end": "192.168.50.254"}]

        resp = await client.post("/network/v2.0/subnets", headers=demo, json={"subnet": {
            "network_id": blue["id"], "cidr": "192.168.50.128/25", "ip_version": 4}})
        assert resp.status == 400
        assert (await resp.json())["NeutronError"]["type"] == "InvalidInput"

        found = (await (await client.get("/network/v2.0/networks?name=blue", headers=demo)).json())["networks"]
        assert [n["id"] for n in found] == [blue["id"]]

        resp = await client.post("/network/v2.0/ports", json={"port": {"network_id": blue["id"]}}, headers=demo)
        port = (await resp.json())["port"]
        assert resp.status == 201 and port["fixed_ips"][0]["ip_address"] == "192.168.50.2"
        assert port["mac_address"].startswith("fa:16:3e:")

        resp = await client.delete(f"/network/v2.0/networks/{blue['id']}", headers=demo)
        assert resp.status == 409
        assert (await resp.json())["NeutronError"]["type"] == "NetworkInUse"

        resp = await client.get("/network/v2.0/ports/0c2b9a5e-0000-4000-8000-000000000000", headers=demo)
        assert resp.status == 404
        assert (await resp.json())["NeutronError"]["type"] == "PortNotFound"

        # the admin's project cannot put a port on demo's network unless it is an admin acting as such;
        # a plain project of its own sees none of demo's networks
        resp = await client.get(f"/network/v2.0/networks/{blue['id']}", headers=admin)
        assert resp.status == 200  # admins see everything

        assert (await client.delete(f"/network/v2.0/ports/{port['id']}", headers=demo)).status == 204
        assert (await client.delete(f"/network/v2.0/networks/{blue['id']}", headers=demo)).status == 204
        resp = await client.get(f"/network/v2.0/networks/{blue['id']}", headers=demo)
        assert resp.status == 404
        assert (await resp.json())["NeutronError"]["type"] == "NetworkNotFound"


async def test_security_groups_and_rules(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, _):
        resp = await client.post("/network/v2.0/security-groups", headers=demo,
                                 json={"security_group": {"name": "web", "description": "http"}})
        assert resp.status == 201
        web_group = (await resp.json())["security_group"]
        assert {r["direction"] for r in web_group["security_group_rules"]} == {"egress"}
        rule = {"security_group_id": web_group["id"], "direction": "ingress", "protocol": "tcp",
                "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0", "ethertype": "IPv4"}
        resp = await client.post("/network/v2.0/security-group-rules", headers=demo,
                                 json={"security_group_rule": rule})
        assert resp.status == 201
        resp = await client.post("/network/v2.0/security-group-rules", headers=demo,
                                 json={"security_group_rule": rule})
        assert resp.status == 409
        bad = dict(rule, port_range_min=90)
        resp = await client.post("/network/v2.0/security-group-rules", headers=demo, json={"security_group_rule": bad})
        assert resp.status == 400
        groups = (await (await client.get("/network/v2.0/security-groups", headers=demo)).json())["security_groups"]
        assert sorted(g["name"] for g in groups) == ["default", "web"]


async def test_a_rules_prefix_keeps_its_host_bits_and_one_network_is_one_rule(tmp_path: Path) -> None:
    """A remote_ip_prefix with host bits is kept as given, a bare address gets /32 (Neutron's way, which
    Nova's proxy and Tempest show back); the same network spelled another way is the same rule (409)."""
    async with api_client(tmp_path) as (client, demo, _):
        group = (await (await client.post("/network/v2.0/security-groups", headers=demo, json={
            "security_group": {"name": "cidrs"}})).json())["security_group"]
        base = {"security_group_id": group["id"], "direction": "ingress", "protocol": "tcp", "ethertype": "IPv4",
                "port_range_min": 22, "port_range_max": 22}
        for given, stored in (("10.2.3.124/24", "10.2.3.124/24"), ("192.0.2.7", "192.0.2.7/32")):
            resp = await client.post("/network/v2.0/security-group-rules", headers=demo,
                                     json={"security_group_rule": {**base, "remote_ip_prefix": given}})
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["security_group_rule"]["remote_ip_prefix"] == stored
        resp = await client.post("/network/v2.0/security-group-rules", headers=demo,
                                 json={"security_group_rule": {**base, "remote_ip_prefix": "10.2.3.0/24"}})
        assert resp.status == 409, await resp.text()
    rule = {**base, "remote_ip_prefix": "10.2.3.124/24", "remote_group_id": None}
    port = {"id": "p1", "tap": "tapabc", "mac": "fa:16:3e:00:00:01", "network_id": "n1", "bridge": "brqn1",
            "device_id": "d", "ips": ["10.0.0.5"], "security_groups": ["g1"]}
    text = render_nftables({"ports": [port], "security_groups": {"rules": {"g1": [rule]}, "members": {}}},
                           {"n1": {"id": "n1"}}, conntrack=False)
    assert "ip saddr 10.2.3.0/24 ip protocol tcp" in text and "10.2.3.124" not in text  # the network it names


async def test_network_and_subnet_updates_bulk_create_and_ports_without_a_subnet(tmp_path: Path) -> None:
    """What Tempest's tempest.api.network asks beyond create/delete (issue 17), as Neutron answers it: network
    and subnet updates (fixed fields refused), ports without an address, a port's addresses replaced and
    found by the fixed_ips filter, all-or-nothing bulk create, an
    external network in use kept external and deleted with its floating IPs, Neutron's rule errors."""
    n = "/network/v2.0"
    async with api_client(tmp_path) as (client, demo, admin):
        async def call(method: str, path: str, who: dict[str, str], body: Any = None,
                       status: int = 200) -> dict[str, Any]:
            resp = await client.request(method, f"{n}/{path}", headers=who, json=body)
            assert resp.status == status, await resp.text()
            return dict(await resp.json()) if resp.status != 204 else {}

        net = (await call("POST", "networks", demo, {"network": {"name": "a", "description": "d1"}}, 201))["network"]
        updated = (await call("PUT", f"networks/{net['id']}", demo, {"network": {"name": "b", "description": "d2"}}))
        assert (updated["network"]["name"], updated["network"]["description"]) == ("b", "d2")
        assert (await call("GET", f"networks/{net['id']}", demo))["network"]["description"] == "d2"
        await call("PUT", f"networks/{net['id']}", demo, {"network": {"provider:segmentation_id": 4000}}, 403)
        await call("PUT", f"networks/{net['id']}", admin, {"network": {"provider:segmentation_id": 4000}}, 400)
        await call("PUT", f"networks/{net['id']}", demo, {"network": {"router:external": True}}, 403)  # an admin's
        gone = await call("PUT", "networks/0c2b9a5e-0000-4000-8000-000000000000", demo, {"network": {"name": "x"}}, 404)
        assert gone["NeutronError"]["type"] == "NetworkNotFound"

        # a port on a network without a subnet has no address; on a network that is not there: 404
        bare = (await call("POST", "ports", demo, {"port": {"network_id": net["id"]}}, 201))["port"]
        assert bare["fixed_ips"] == []
        missing = await call("POST", "ports", demo, {"port": {"network_id": "0c2b9a5e-0000-4000-8000-000000000000"}},
                             404)
        assert missing["NeutronError"]["type"] == "NetworkNotFound"

        sub = (await call("POST", "subnets", demo, {"subnet": {"network_id": net["id"], "cidr": "192.168.60.0/24",
                                                                "ip_version": 4}}, 201))["subnet"]
        changed = (await call("PUT", f"subnets/{sub['id']}", demo, {"subnet": {
            "name": "s2", "dns_nameservers": ["192.0.2.53"], "enable_dhcp": False}}))["subnet"]
        assert (changed["name"], changed["dns_nameservers"], changed["enable_dhcp"]) == ("s2", ["192.0.2.53"], False)
        await call("PUT", f"subnets/{sub['id']}", demo, {"subnet": {"cidr": "192.168.61.0/24"}}, 400)
        await call("PUT", "subnets/0c2b9a5e-0000-4000-8000-000000000000", demo, {"subnet": {"name": "x"}}, 404)

        # a port's addresses replaced: one from the subnet, then a given one instead (the first released)
        given = (await call("PUT", f"ports/{bare['id']}", demo, {"port": {"fixed_ips": [{"subnet_id": sub["id"]}]}}))
        first = given["port"]["fixed_ips"][0]["ip_address"]
        moved = (await call("PUT", f"ports/{bare['id']}", demo, {"port": {"fixed_ips": [
            {"ip_address": "192.168.60.50"}]}}))["port"]
        assert [f["ip_address"] for f in moved["fixed_ips"]] == ["192.168.60.50"] and first != "192.168.60.50"
        found = (await call("GET", "ports?fixed_ips=ip_address%3D192.168.60.50", demo))["ports"]
        assert [f["id"] for f in found] == [bare["id"]]
        assert (await call("GET", f"ports?fixed_ips=ip_address%3D{first}", demo))["ports"] == []

        # bulk create: all made, or none (the second names a network that is not there: the first is deleted)
        before = len((await call("GET", "ports", demo))["ports"])
        made = (await call("POST", "networks", demo, {"networks": [{"name": "n1"}, {"name": "n2"}]}, 201))["networks"]
        assert [m["name"] for m in made] == ["n1", "n2"]
        await call("POST", "ports", demo, {"ports": [{"network_id": net["id"]},
                                                     {"network_id": "0c2b9a5e-0000-4000-8000-000000000000"}]}, 404)
        assert len((await call("GET", "ports", demo))["ports"]) == before

        # an external network in use by a floating IP stays external
        public = (await call("POST", "networks", admin, {"network": {"name": "pub", "router:external": True}},
                             201))["network"]
        await call("POST", "subnets", admin, {"subnet": {"network_id": public["id"], "cidr": "203.0.113.0/24",
                                                         "ip_version": 4}}, 201)
        fip = (await call("POST", "floatingips", demo, {"floatingip": {"floating_network_id": public["id"]}},
                          201))["floatingip"]
        await call("PUT", f"networks/{public['id']}", admin, {"network": {"router:external": False}}, 409)
        await call("DELETE", f"floatingips/{fip['id']}", demo, status=204)
        flipped = (await call("PUT", f"networks/{public['id']}", admin, {"network": {"router:external": False}}))
        assert flipped["network"]["router:external"] is False
        # an external network deleted takes its floating IPs with it, as Neutron
        await call("PUT", f"networks/{public['id']}", admin, {"network": {"router:external": True}})
        fip = (await call("POST", "floatingips", demo, {"floatingip": {"floating_network_id": public["id"]}},
                          201))["floatingip"]
        await call("DELETE", f"networks/{public['id']}", admin, status=204)
        assert (await call("GET", f"floatingips/{fip['id']}", demo, status=404))["NeutronError"]["type"] == \
            "FloatingIPNotFound"

        # security groups: Neutron's wording for a bad port, one default group per project
        group = (await call("POST", "security-groups", demo, {"security_group": {"name": "g"}}, 201))["security_group"]
        bad = await call("POST", "security-group-rules", demo, {"security_group_rule": {
            "security_group_id": group["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": -16,
            "port_range_max": 80}}, 400)
        assert "Invalid value for port -16" in bad["NeutronError"]["message"]
        await call("PUT", f"security-groups/{group['id']}", demo, {"security_group": {"name": "default"}}, 409)


async def _cli(home: Path, url: str, *args: str) -> Any:
    return await cli_as(home, url, "demo", *args)


async def cli_as(home: Path, url: str, user: str, *args: str) -> Any:
    """The openstack CLI as a bootstrap user, which must succeed; its output parsed when -f is given."""
    env = cli_env(home, **password_env(f"{url}/identity/v3", user, SECRETS[f"{user}_password"], user))
    done = await openstack_cli.run_async(list(args), env)
    assert done.returncode == 0, f"openstack {' '.join(args)} failed:\n{done.stderr}"
    return json.loads(done.stdout) if "-f" in args else done.stdout


@asynccontextmanager
async def cli_api(tmp_path: Path) -> AsyncIterator[str]:
    """A real API on a TCP port over a network cell, for the openstack CLI: its URL."""
    async with network_cell(tmp_path) as router:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cluster = make_cluster(tmp_path, router=router, interval=INTERVAL)
        cluster = replace(cluster, api=replace(cluster.api, listen=f"127.0.0.1:{port}", public_url=url))
        await bootstrap.ensure(cluster)
        server = TestServer(make_app(cluster), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            yield url
        finally:
            await server.close()


@pytest.mark.slow
@pytest.mark.skipif(not OPENSTACK.exists(), reason="python-openstackclient is not installed")
async def test_openstack_cli_networks(tmp_path: Path) -> None:
    async with cli_api(tmp_path) as url:
        nets = await _cli(tmp_path, url, "network", "list", "-f", "json")
        assert [n["Name"] for n in nets] == ["private"]
        await _cli(tmp_path, url, "network", "create", "green", "-f", "json")
        sub = await _cli(tmp_path, url, "subnet", "create", "--network", "green", "--subnet-range", "172.20.0.0/24",
                         "green-sub", "-f", "json")
        assert sub["cidr"] == "172.20.0.0/24"
        made = await _cli(tmp_path, url, "port", "create", "--network", "green", "p1", "-f", "json")
        ports = await _cli(tmp_path, url, "port", "list", "-f", "json")
        assert [p["ID"] for p in ports] == [made["id"]]
        await _cli(tmp_path, url, "security", "group", "create", "web", "-f", "json")
        await _cli(tmp_path, url, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "web",
                   "-f", "json")
        rules = await _cli(tmp_path, url, "security", "group", "rule", "list", "web", "-f", "json")
        assert any(r["Port Range"] == "22:22" for r in rules)
