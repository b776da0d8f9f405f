"""The compute's network agent (node/network/agent.py) against the real network
controller on a SQLite cell DB, with a recording host driver in place of netlink
(the real driver is exercised in tests/functional/test_host_network.py); and the
metadata service (node/network/metadata.py) over HTTP."""
from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert

from cells import errors
from cells.context import RequestContext
from cells.db.engine import Database
from cells.db.schema import create_schema, instances
from cells.network import instance_ports
from cells.network.controller import NetworkController
from node.compute.domain_xml import DomainPaths, build_domain_xml
from node.network import metadata
from node.network.agent import NetworkAgent, plumbing_decision

DEMO = RequestContext(project="demo", roles=("member",))
UUID = "11111111-2222-4333-8444-555555555555"


class RecordingDriver:
    """Stands in for LinuxNetworkDriver: keeps the last config it was asked to apply."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []

    def sync(self, config: dict[str, Any]) -> None:
        self.configs.append(config)

    @property
    def taps(self) -> set[str]:
        return {p["tap"] for p in self.configs[-1]["ports"]}


class DirectNetworkAPI:
    """NetworkAPI's calls straight into the controller (no RPC hop)."""

    def __init__(self, controller: NetworkController) -> None:
        self.c = controller

    async def agent_report(self, ctx: RequestContext, host: str, tunnel_ip: str, vlan: bool) -> None:
        await self.c.agent_report(ctx, host, tunnel_ip, vlan)

    async def bind_instance(self, ctx: RequestContext, uuid: str, host: str) -> list[dict[str, Any]]:
        return await self.c.bind_instance(ctx, uuid, host)

    async def host_config(self, ctx: RequestContext, host: str) -> dict[str, Any]:
        return await self.c.host_config(ctx, host)

    async def host_changed(self, ctx: RequestContext, host: str, network_ids: list[str]) -> None:
        await self.c.host_changed(ctx, host, network_ids)


class AgentsByHost:
    """ComputeAPI.refresh_network straight into each host's agent (no RPC hop)."""

    def __init__(self) -> None:
        self.agents: dict[str, NetworkAgent] = {}
        self.refreshed: list[str] = []

    async def refresh_network(self, ctx: RequestContext, host: str) -> None:
        self.refreshed.append(host)
        await self.agents[host].refresh()


async def add_instance(db: Database, uuid: str) -> None:
    await db.write(lambda c: c.execute(insert(instances).values(
        uuid=uuid, name="web 1", project_id="demo", user_id="u", vm_state="building", deleted=False,
        flavor={}, image={}, metadata={}, addresses={}, retry_hosts=[],
        created_at="2026-01-01T00:00:00.000000Z", updated_at="2026-01-01T00:00:00.000000Z")))


@pytest_asyncio.fixture
async def controller(tmp_path: Path) -> AsyncIterator[NetworkController]:
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    db = Database(url)
    await add_instance(db, UUID)
    await db.close()
    c = NetworkController(db_url=url)
    await c.start()
    yield c
    await c.stop()


def agent_for(c: NetworkController, tmp_path: Path, host: str = "node1",
              tunnel_ip: str = "192.0.2.1") -> tuple[NetworkAgent, RecordingDriver]:
    driver = RecordingDriver()
    agent = NetworkAgent(host, str(tmp_path), enabled=True, reason="test", tunnel_ip=tunnel_ip, driver=driver)
    agent._api = DirectNetworkAPI(c)  # type: ignore[assignment]
    return agent, driver


def test_plumbing_policy() -> None:
    assert plumbing_decision("auto", "test:///default", True)[0] is False
    assert plumbing_decision("auto", "qemu:///embed", False) == (
        False, "the compute runs in the machine's root network namespace (run it on a netns host)")
    assert plumbing_decision("auto", "qemu:///embed", True)[0] is True
    assert plumbing_decision("on", "test:///default", False)[0] is True
    assert plumbing_decision("off", "qemu:///embed", True)[0] is False
    with pytest.raises(errors.Invalid):
        plumbing_decision("maybe", "qemu:///embed", True)


async def test_plug_binds_ports_and_makes_their_taps_unplug_removes_them(
        controller: NetworkController, tmp_path: Path) -> None:
    addresses = await controller.allocate_for_instance(DEMO, UUID, "demo")
    (ip,) = [a["addr"] for ips in addresses.values() for a in ips]
    agent, driver = agent_for(controller, tmp_path)
    await agent.report_and_sync()
    assert driver.configs[-1]["ports"] == []

    (vif,) = await agent.plug(DEMO, {"uuid": UUID, "addresses": addresses})
    assert vif["ip"] == ip and driver.taps == {vif["tap"]}
    (net,) = driver.configs[-1]["networks"]
    assert net["gateway_host"] is True and (vif["mac"], ip) in [tuple(h) for h in net["dhcp_hosts"]]
    (port,) = await controller.port_list(DEMO, {"device_id": UUID})
    assert port["binding:host_id"] == "node1" and port["status"] == "ACTIVE"

    xml = build_domain_xml({"uuid": UUID, "flavor": {"ram": 96, "vcpus": 1}, "vifs": [vif]}, "qemu",
                           DomainPaths(console_log="/tmp/c.log"))
    assert f'<target dev="{vif["tap"]}" managed="no" />' in xml and f'<mac address="{vif["mac"]}" />' in xml

    await controller.db.write(lambda c: instance_ports.release_instance(c, UUID))  # what the conductor's delete does
    await agent.unplug()
    assert driver.taps == set()
    assert all(not n["dhcp_hosts"] for n in driver.configs[-1]["networks"])


async def test_ports_coming_and_going_on_one_host_refresh_the_other_hosts_of_the_network(
        controller: NetworkController, tmp_path: Path) -> None:
    """VXLAN peers, the gateway host's DHCP entries and security-group members follow ports
    bound on other hosts: without the refresh, guests on two hosts could not reach each other."""
    other = "22222222-3333-4444-8555-666666666666"
    hosts = AgentsByHost()
    controller._compute = hosts  # type: ignore[assignment]
    one, driver1 = agent_for(controller, tmp_path / "1", "node1", "192.0.2.1")
    two, _ = agent_for(controller, tmp_path / "2", "node2", "192.0.2.2")
    hosts.agents.update(node1=one, node2=two)
    await add_instance(controller.db, other)
    for agent in (one, two):
        await agent.report_and_sync()

    async def settled() -> None:
        while controller._refreshes:
            await asyncio.gather(*controller._refreshes)

    await one.plug(DEMO, {"uuid": UUID, "addresses": await controller.allocate_for_instance(DEMO, UUID, "demo")})
    (vif,) = await two.plug(DEMO, {"uuid": other,
                                   "addresses": await controller.allocate_for_instance(DEMO, other, "demo")})
    await settled()
    assert hosts.refreshed == ["node1"]  # node2 synced itself; only node1 was told
    (net,) = driver1.configs[-1]["networks"]
    assert net["peers"] == ["192.0.2.2"] and (vif["mac"], vif["ip"]) in [tuple(h) for h in net["dhcp_hosts"]]
    assert vif["ip"] in driver1.configs[-1]["security_groups"]["members"][vif_group(driver1)]

    await controller.db.write(lambda c: instance_ports.release_instance(c, other))
    await two.unplug()
    await settled()
    (net,) = driver1.configs[-1]["networks"]
    assert net["peers"] == [] and all(vif["mac"] != mac for mac, _ in net["dhcp_hosts"])

    rule = await controller.security_group_rule_create(DEMO, {
        "security_group_id": vif_group(driver1), "direction": "ingress", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"})
    await settled()
    assert rule["id"] in {r["id"] for r in driver1.configs[-1]["security_groups"]["rules"][vif_group(driver1)]}
    assert hosts.refreshed == ["node1", "node1", "node1"]


def vif_group(driver: RecordingDriver) -> str:
    (port,) = driver.configs[-1]["ports"]
    (group,) = port["security_groups"]
    return str(group)


async def test_disabled_agent_touches_nothing(controller: NetworkController, tmp_path: Path) -> None:
    addresses = await controller.allocate_for_instance(DEMO, UUID, "demo")
    agent = NetworkAgent("node1", str(tmp_path), enabled=False, reason="test hypervisor", tunnel_ip="192.0.2.1")
    agent._api = DirectNetworkAPI(controller)  # type: ignore[assignment]
    assert await agent.plug(DEMO, {"uuid": UUID, "addresses": addresses}) == []
    (port,) = await controller.port_list(DEMO, {"device_id": UUID})
    assert port["status"] == "DOWN" and not port["binding:host_id"]


async def test_restarted_agent_rebuilds_the_same_host(controller: NetworkController, tmp_path: Path) -> None:
    addresses = await controller.allocate_for_instance(DEMO, UUID, "demo")
    first, driver1 = agent_for(controller, tmp_path)
    (vif,) = await first.plug(DEMO, {"uuid": UUID, "addresses": addresses})
    second, driver2 = agent_for(controller, tmp_path)  # a new process: nothing in memory
    await second.report_and_sync()
    assert driver2.configs[-1] == driver1.configs[-1] and driver2.taps == {vif["tap"]}


# --- the metadata service ------------------------------------------------------------------

INSTANCE = {"uuid": UUID, "name": "Web 1!", "project_id": "demo", "availability_zone": "site1",
            "flavor": {"name": "m1.tiny"}, "metadata": {"role": "web"}, "key_name": "mykey",
            "key_data": "ssh-ed25519 AAAA demo@x", "user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
            "addresses": {"private": [{"addr": "127.0.0.1", "OS-EXT-IPS:type": "fixed"}]}}


@pytest_asyncio.fixture
async def md_client() -> AsyncIterator[tuple[TestClient[Any, Any], list[str], dict[str, Any]]]:
    asked: list[str] = []
    known: dict[str, Any] = {"127.0.0.1": INSTANCE}

    async def lookup(address: str) -> dict[str, Any]:
        asked.append(address)
        if address not in known:
            raise errors.InstanceNotFound(instance_id=address)
        found: dict[str, Any] = known[address]
        return found

    client: TestClient[Any, Any] = TestClient(TestServer(metadata.make_app(lookup), host="127.0.0.1"))
    await client.start_server()
    yield client, asked, known
    await client.close()


async def test_metadata_identifies_the_guest_by_its_source_address(
        md_client: tuple[TestClient[Any, Any], list[str], dict[str, Any]]) -> None:
    client, asked, _ = md_client
    r = await client.get("/latest/meta-data/")
    index = (await r.text()).split("\n")
    assert r.status == 200 and {"instance-id", "hostname", "local-ipv4", "public-keys/"} <= set(index)
    assert await (await client.get("/latest/meta-data/instance-id")).text() == UUID
    assert await (await client.get("/latest/meta-data/hostname")).text() == "web-1"
    assert await (await client.get("/latest/meta-data/local-ipv4")).text() == "127.0.0.1"
    assert await (await client.get("/latest/meta-data/placement/availability-zone")).text() == "site1"
    assert await (await client.get("/latest/meta-data/public-keys")).text() == "0=mykey"
    assert await (await client.get("/latest/meta-data/public-keys/0/openssh-key")).text() == \
        "ssh-ed25519 AAAA demo@x\n"
    assert (await client.get("/latest/meta-data/public-keys/1/openssh-key")).status == 404
    assert await (await client.get("/latest/user-data")).read() == b"#!/bin/sh\necho hi\n"
    assert await (await client.get("/openstack/latest/user_data")).read() == b"#!/bin/sh\necho hi\n"
    md = await (await client.get("/openstack/latest/meta_data.json")).json()
    assert md["uuid"] == UUID and md["meta"] == {"role": "web"} and md["public_keys"] == {
        "mykey": "ssh-ed25519 AAAA demo@x"}
    assert set(asked) == {"127.0.0.1"}


async def test_metadata_refuses_unknown_addresses_and_missing_user_data(
        md_client: tuple[TestClient[Any, Any], list[str], dict[str, Any]]) -> None:
    client, _, known = md_client
    known["127.0.0.1"] = {**INSTANCE, "user_data": None}
    assert (await client.get("/latest/user-data")).status == 404
    del known["127.0.0.1"]
    r = await client.get("/latest/meta-data/instance-id")
    assert r.status == 404 and "no instance has the address 127.0.0.1" in await r.text()
