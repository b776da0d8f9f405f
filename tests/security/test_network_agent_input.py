"""The network agent renders only validated values: a port row with a bad MAC (written straight
into the cell DB, past the API's checks) is skipped and logged, and the rest of the host's
configuration still applies. The real Linux driver syncs the real controller's host_config into a
network namespace this test makes: nftables takes the ruleset, dnsmasq's hosts file holds the good
port only."""
from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, update

from cells.conductor.flows.boot import validate_build
from cells.context import RequestContext
from cells.db import instances as idb
from cells.network import instance_ports
from cells.network.controller import NetworkController
from cells.network.schema import ports
from cells.objects.instance import utcnow_iso
from node.network import validate
from node.network.linux import NFT_TABLE, Capabilities, LinuxNetworkDriver, render_nftables
from tests.network_support import controller
from tests.unit.test_network_agent import UUID, AgentsByHost, add_instance, agent_for

__all__ = ["controller"]  # fixture used by name

DEMO = RequestContext(project="demo", roles=("member",))
HOST = f"ccsec-{uuid.uuid4().hex[:6]}"  # the netns standing in for the host
BAD_MAC = "zz:zz:zz:zz:zz:zz"


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=30)


async def _guest(c: NetworkController, net_id: str) -> dict[str, Any]:
    """A server's port made and bound to HOST by the boot flow's calls."""
    device = str(uuid.uuid4())
    rows = validate_build([{"uuid": device, "name": "g", "project_id": "demo", "flavor": {"vcpus": 1, "ram": 64}}],
                          {}, utcnow_iso(), "test")

    def insert(conn: Connection) -> None:
        conn.execute(idb.INSERT, rows)
    await c.db.write(insert)
    await c.allocate_for_instance(DEMO, device, "demo", [{"uuid": net_id}], None)
    await c.bind_instance(DEMO, device, HOST)
    (port,) = await c.port_list(DEMO, {"device_id": device})
    return dict(port)


async def _host_with_a_bad_row(c: NetworkController) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(HOST's config, the good port, the port whose MAC was then corrupted in the DB)."""
    net = await c.network_create(DEMO, {"name": "n"})
    await c.subnet_create(DEMO, {"network_id": net["id"], "cidr": "192.168.90.0/24"})
    good, bad = await _guest(c, net["id"]), await _guest(c, net["id"])

    def corrupt(conn: Connection) -> None:  # a row no API would write (the attack before the MAC check)
        conn.execute(update(ports).where(ports.c.id == bad["id"]).values(mac_address=BAD_MAC))
    await c.db.write(corrupt)
    return await c.host_config(DEMO, HOST), good, bad


async def test_a_bad_mac_row_is_skipped_and_logged_and_the_rest_renders(
        controller: NetworkController, caplog: pytest.LogCaptureFixture) -> None:
    config, good, bad = await _host_with_a_bad_row(controller)
    assert BAD_MAC in [p["mac"] for p in config["ports"]]  # the controller hands it out as stored
    with caplog.at_level(logging.ERROR, logger=validate.__name__):
        usable = validate.clean(config)
    assert [p["id"] for p in usable["ports"]] == [good["id"]]
    assert any(bad["id"] in r.getMessage() for r in caplog.records)
    [net] = usable["networks"]
    assert [mac for mac, _ in net["dhcp_hosts"]] == [good["mac_address"]]
    text = render_nftables(usable, {n["id"]: n for n in usable["networks"]}, conntrack=False)
    assert BAD_MAC not in text and f"ether saddr != {good['mac_address']} drop" in text


@pytest.mark.parametrize("field,value", [
    ("mac", "fa:16:3e:00:00:01; flush ruleset"), ("ips", ["10.0.0.1 } accept; {"]), ("tap", "tap$(reboot)"),
    ("security_groups", ["x; drop"]),
])
def test_a_port_with_any_unrenderable_value_is_skipped(field: str, value: Any) -> None:
    port = {"id": "p1", "tap": "tapabc", "mac": "fa:16:3e:00:00:01", "network_id": "n1", "bridge": "brqn1",
            "device_id": "d", "ips": ["10.0.0.5"], "security_groups": []}
    ok = {**port, "id": "p2", "tap": "tapdef", "mac": "fa:16:3e:00:00:02"}
    config = {"host": "h", "networks": [], "ports": [{**port, field: value}, ok],
              "security_groups": {"rules": {}, "members": {}}}
    assert [p["id"] for p in validate.clean(config)["ports"]] == ["p2"]


def test_bad_rules_and_member_addresses_are_dropped_alone() -> None:
    good = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
            "port_range_max": 22, "remote_ip_prefix": "192.0.2.0/24", "remote_group_id": None}
    bad = [{**good, "remote_ip_prefix": "0.0.0.0/0 accept"}, {**good, "protocol": "tcp; flush"},
           {**good, "port_range_min": "22 accept"}]
    config = {"host": "h", "networks": [], "ports": [],
              "security_groups": {"rules": {"g": [*bad, good]}, "members": {"g": ["10.0.0.1", "1.2.3.4 }"]}}}
    groups = validate.clean(config)["security_groups"]
    assert groups == {"rules": {"g": [good]}, "members": {"g": ["10.0.0.1"]}}


@pytest.fixture
def netns_host() -> Iterator[str]:
    if not (shutil.which("nft") and shutil.which("dnsmasq")):
        pytest.skip("needs nft and dnsmasq")
    made = sh("ip", "netns", "add", HOST)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        sh("ip", "-n", HOST, "link", "set", "lo", "up")
        yield HOST
    finally:
        sh("ip", "netns", "del", HOST)


@pytest.mark.slow
async def test_the_real_driver_applies_the_hosts_rules_despite_a_bad_row(
        controller: NetworkController, netns_host: str, tmp_path: Path) -> None:
    config, good, bad = await _host_with_a_bad_row(controller)
    driver = LinuxNetworkDriver(str(tmp_path / "host"), netns=netns_host, tunnel_ip="127.0.0.1",
                                capabilities=Capabilities(False, "not probed", False))
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, driver.sync, config)  # raised on nft's refusal before the check
        ruleset = (await loop.run_in_executor(None, sh, "ip", "netns", "exec", netns_host, "nft", "list", "table",
                                              "bridge", NFT_TABLE)).stdout
        assert f"ether saddr != {good['mac_address']} drop" in ruleset
        assert f"chain from-tap{good['id'][:11]}" in ruleset
        assert bad["id"][:11] not in ruleset
        [net_dir] = (tmp_path / "host" / "dhcp").iterdir()
        hosts = (net_dir / "hosts").read_text()
        assert good["mac_address"] in hosts and BAD_MAC not in hosts
    finally:
        await loop.run_in_executor(None, driver.stop_all_dhcp)


async def test_a_deleted_network_leaves_its_gateway_host_at_once(controller: NetworkController,
                                                                 tmp_path: Path) -> None:
    """network_delete tells the network's hosts to re-sync, so the gateway host drops the bridge and
    VXLAN device (and its VNI) now rather than at its next periodic sync."""
    hosts = AgentsByHost()
    controller._compute = hosts  # type: ignore[assignment]
    agent, driver = agent_for(controller, tmp_path, "node1")
    hosts.agents["node1"] = agent
    await add_instance(controller.db, UUID)
    await agent.report_and_sync()
    await agent.plug(DEMO, {"uuid": UUID, "addresses": await controller.allocate_for_instance(DEMO, UUID, "demo")})
    (net,) = driver.configs[-1]["networks"]
    await controller.db.write(lambda c: instance_ports.release_instance(c, UUID))
    await agent.unplug()
    assert [n["id"] for n in driver.configs[-1]["networks"]] == [net["id"]]  # still the gateway host

    await controller.network_delete(DEMO, net["id"])
    while controller._refreshes:
        await asyncio.gather(*controller._refreshes)
    assert hosts.refreshed == ["node1"] and driver.configs[-1]["networks"] == []
