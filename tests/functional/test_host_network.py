"""The host side for real, in network namespaces this test makes (traffic never
leaves them): two hosts joined by a veth "wan", the real network controller's
host_config applied by the Linux driver (bridge, VXLAN, taps, gateway address,
dnsmasq, nftables). A guest NIC is a veth whose host end carries the port's tap
name and whose guest end sits in its own namespace, where busybox udhcpc asks
for a lease as the tiny guest's /init does.

Checked: each guest leases exactly its allocated IP; the gateway pings a guest;
a guest on the other host pings it over VXLAN; a guest of another project and a
guest outside the default group cannot; a subnet's host_routes reach a guest as DHCP
option 121 (with the default route) once set, and its moved gateway as the router; a
gateway-less subnet's guest leases its address from the DHCP port's address with no
router; a re-sync changes nothing; a deleted port's tap and DHCP entry go; leftovers
of a crashed agent are removed. And a network host that also runs a compute: the compute's
agent applies the routers too (cells/network/shared_host.py), so its own syncs keep them.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection

from cells.conductor.flows.boot import validate_build
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db.schema import create_schema
from cells.network.controller import NetworkController
from cells.network.shared_host import ComputeAgentNetworkHost
from cells.objects.instance import utcnow_iso
from node.network.agent import NetworkAgent
from node.network.linux import LinuxNetworkDriver, detect_capabilities
from tests.network_support import controller
from tests.unit.test_network_agent import DirectNetworkAPI

__all__ = ["controller"]  # fixture used by name

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (shutil.which("dnsmasq") and shutil.which("busybox") and shutil.which("nft")),
                                 reason="needs dnsmasq, busybox (udhcpc) and nft")]

TAG = uuid.uuid4().hex[:4]
H1, H2 = f"cc5h1-{TAG}", f"cc5h2-{TAG}"
WAN = {H1: "192.168.77.1", H2: "192.168.77.2"}
DEMO = RequestContext(project="demo", roles=("member",))
ALT = RequestContext(project="alt", roles=("member",))
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
               [ -n "$router" ] && ip route replace default via ${router%% *} dev "$interface"
               echo "CELLCLOUD-NET dhcp bound $interface ip=$ip/$mask router=$router routes=$staticroutes" ;;
esac
exit 0
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {result.stderr}")
    return result


async def ash(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: sh(*argv, check=check))


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[str]]:
    made: list[str] = []
    try:
        for ns in (H1, H2):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"w1-{TAG}", "netns", H1, "type", "veth", "peer", "name", f"w2-{TAG}", "netns", H2)
        for ns, dev in ((H1, f"w1-{TAG}"), (H2, f"w2-{TAG}")):
            sh("ip", "-n", ns, "addr", "add", f"{WAN[ns]}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield made
    finally:
        for ns in made + [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(f"cc5g-{TAG}")]:
            sh("ip", "netns", "del", ns, check=False)


async def guest_port(c: NetworkController, ctx: RequestContext, net_id: str, host: str,
                     groups: list[str] | None = None) -> dict[str, Any]:
    """The port of an instance (a row in the cell DB), made and bound to `host` as the boot flow does
    (a member may not set a port's device_id or a compute device_owner itself)."""
    device = str(uuid.uuid4())
    rows = validate_build([{"uuid": device, "name": "g", "project_id": ctx.project,
                            "flavor": {"vcpus": 1, "ram": 64}}], {}, utcnow_iso(), "test")

    def insert(conn: Connection) -> None:
        conn.execute(idb.INSERT, rows)
    await c.db.write(insert)
    await c.allocate_for_instance(ctx, device, str(ctx.project), [{"uuid": net_id}], groups)
    (vif,) = await c.bind_instance(ctx, device, host)
    (port,) = await c.port_list(ctx, {"device_id": device})
    return {**port, "vif": vif, "guest_ns": f"cc5g-{TAG}-{port['id'][:6]}", "host": host}


async def plug_guest(port: dict[str, Any]) -> None:
    """The guest's NIC: host end = the port's tap name, guest end eth0 with the port's MAC."""
    ns, tap = port["guest_ns"], port["vif"]["tap"]
    await ash("ip", "netns", "add", ns)
    await ash("ip", "link", "add", tap, "netns", port["host"], "type", "veth", "peer", "name", "eth0", "netns", ns)
    await ash("ip", "-n", ns, "link", "set", "eth0", "address", port["mac_address"])
    await ash("ip", "-n", ns, "link", "set", "eth0", "up")
    await ash("ip", "-n", ns, "link", "set", "lo", "up")


async def lease_line(port: dict[str, Any], script: Path) -> str:
    """udhcpc's bound line (asking for option 121, staticroutes, as cloud-init's clients do)."""
    out = await ash("ip", "netns", "exec", port["guest_ns"], "busybox", "udhcpc", "-i", "eth0", "-n", "-q",
                    "-t", "8", "-T", "1", "-O", "staticroutes", "-s", str(script))
    return next(x for x in out.stdout.splitlines() if "CELLCLOUD-NET dhcp bound" in x)


async def lease(port: dict[str, Any], script: Path) -> str:
    return (await lease_line(port, script)).split("ip=")[1].split("/")[0]


async def pings(ns: str, addr: str) -> bool:
    return (await ash("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", addr, check=False)).returncode == 0


async def sync(c: NetworkController, host: str, tmp: Path) -> dict[str, Any]:
    config = await c.host_config(DEMO, host)
    driver = LinuxNetworkDriver(str(tmp / host), netns=host, tunnel_ip=WAN[host], capabilities=CAPS)
    await asyncio.get_running_loop().run_in_executor(None, driver.sync, config)
    return config


CAPS = detect_capabilities()


def test_vlan_capability_is_detected_and_reported() -> None:
    if not CAPS.vlan:
        pytest.skip(f"802.1Q VLAN segmentation unavailable: {CAPS.vlan_reason}")
    assert CAPS.vlan_reason == ""


async def test_dhcp_vxlan_gateway_and_security_groups(hosts: list[str], controller: NetworkController,
                                                      tmp_path: Path) -> None:
    c = controller
    script = tmp_path / "udhcpc.script"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    for host in (H1, H2):
        await c.agent_report(DEMO, host, WAN[host], CAPS.vlan)
    demo_net = await c.network_create(DEMO, {"name": "demo-net"})
    demo_sub = await c.subnet_create(DEMO, {"network_id": demo_net["id"], "cidr": "10.77.1.0/24",
                                            "allocation_pools": [{"start": "10.77.1.2", "end": "10.77.1.200"}]})
    alt_net = await c.network_create(ALT, {"name": "alt-net"})
    await c.subnet_create(ALT, {"network_id": alt_net["id"], "cidr": "10.77.2.0/24"})
    loner = await c.security_group_create(DEMO, {"name": "loner"})

    g1 = await guest_port(c, DEMO, demo_net["id"], H1)  # first bound: H1 becomes the gateway host
    g2 = await guest_port(c, DEMO, demo_net["id"], H2)
    g3 = await guest_port(c, ALT, alt_net["id"], H2)
    g4 = await guest_port(c, DEMO, demo_net["id"], H2, groups=[loner["id"]])
    guests = (g1, g2, g3, g4)
    for g in guests:
        await plug_guest(g)
    await sync(c, H1, tmp_path)
    await sync(c, H2, tmp_path)

    for g in guests:  # each guest leases exactly the address IPAM gave its port
        assert await lease(g, script) == g["fixed_ips"][0]["ip_address"]
    ip1 = g1["fixed_ips"][0]["ip_address"]
    assert await pings(H1, ip1)  # the gateway (on H1's bridge) reaches its guest
    assert await pings(g2["guest_ns"], ip1)  # same project, same group, other host: over VXLAN
    assert not await pings(g3["guest_ns"], ip1)  # another project's guest
    assert not await pings(g4["guest_ns"], ip1)  # same network, not in g1's group: ingress refused
    assert "routes= " in (await lease_line(g1, script)) + " "  # no host_routes: no option 121

    # host_routes and a moved gateway: dnsmasq re-reads its options file, the next lease has them
    await c.subnet_update(DEMO, demo_sub["id"], {"host_routes": [{"destination": "10.99.0.0/24",
                                                                  "nexthop": "10.77.1.250"}],
                                                 "gateway_ip": "10.77.1.254"})
    with pytest.raises(Exception, match="allocation pool"):  # inside the pools: Neutron's 409
        await c.subnet_update(DEMO, demo_sub["id"], {"gateway_ip": "10.77.1.20"})
    await sync(c, H1, tmp_path)
    line = await lease_line(g1, script)
    assert "router=10.77.1.254 " in line and "routes=10.99.0.0/24 10.77.1.250 0.0.0.0/0 10.77.1.254" in line
    assert "10.77.1.254/24" in (await ash("ip", "-n", H1, "-br", "addr")).stdout  # the gateway moved on H1
    assert await pings(H1, ip1)

    # a subnet without a gateway: the guest leases from the DHCP port's address, and gets no router
    bare_net = await c.network_create(DEMO, {"name": "bare-net"})
    await c.subnet_create(DEMO, {"network_id": bare_net["id"], "cidr": "10.77.3.0/29", "gateway_ip": None})
    g5 = await guest_port(c, DEMO, bare_net["id"], H1)
    await plug_guest(g5)
    config = await sync(c, H1, tmp_path)
    (bare,) = [n for n in config["networks"] if n["id"] == bare_net["id"]]
    assert bare["gateway_ip"] is None and bare["host_ip"] not in (None, g5["fixed_ips"][0]["ip_address"])
    line = await lease_line(g5, script)
    assert f"ip={g5['fixed_ips'][0]['ip_address']}/" in line and "router= " in line
    assert await pings(H1, g5["fixed_ips"][0]["ip_address"])  # the DHCP address reaches its guest
    await c.port_delete(DEMO, g5["id"])

    # a re-sync (an agent restart) changes nothing and breaks nothing
    before = (await ash("ip", "-n", H2, "-br", "link")).stdout
    await sync(c, H2, tmp_path)
    assert (await ash("ip", "-n", H2, "-br", "link")).stdout == before
    assert await pings(g2["guest_ns"], ip1)

    # a crashed agent's leftovers and a deleted port: the next sync removes them
    await ash("ip", "-n", H1, "link", "add", "tapdeadbeef000", "type", "bridge")
    await c.port_delete(DEMO, g2["id"])
    await sync(c, H1, tmp_path)
    await sync(c, H2, tmp_path)
    h1_links = (await ash("ip", "-n", H1, "-br", "link")).stdout
    h2_links = (await ash("ip", "-n", H2, "-br", "link")).stdout
    assert "tapdeadbeef000" not in h1_links
    assert g2["vif"]["tap"] not in h2_links
    hosts_file = (tmp_path / H1 / "dhcp" / demo_net["id"] / "hosts").read_text()
    assert g2["mac_address"] not in hosts_file and g1["mac_address"] in hosts_file

    # nothing left running once the hosts have no ports
    for g in (g1, g3, g4):
        await c.port_delete(DEMO if g is not g3 else ALT, g["id"])
    for host in (H1, H2):
        driver = LinuxNetworkDriver(str(tmp_path / host), netns=host, tunnel_ip=WAN[host], capabilities=CAPS)
        await asyncio.get_running_loop().run_in_executor(None, driver.stop_all_dhcp)


class _ComputeOf:
    """ComputeAPI's network calls straight into the host's compute agent (the process boundary)."""

    def __init__(self, agent: NetworkAgent) -> None:
        self.agent = agent
        self.synced = 0

    async def sync_network(self, ctx: RequestContext, host: str) -> None:
        assert host == self.agent.host
        self.synced += 1
        await self.agent.sync()

    async def refresh_network(self, ctx: RequestContext, host: str) -> None:
        if host == self.agent.host:
            await self.agent.refresh()


async def test_network_host_that_runs_a_compute_plumbs_routers_through_its_agent(
        hosts: list[str], tmp_path: Path) -> None:
    """One owner of the host's devices: the controller's network host on H1 asks H1's compute agent to
    sync (sync_network) and that agent's configuration carries the routers, so a floating IP is in the
    host's NAT table when the API call returns, and the agent's own syncs (a plug, a refresh) keep the
    external bridge and the NAT table instead of removing them as another driver's leftovers."""
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    shared = ComputeAgentNetworkHost(H1, WAN[H1])
    c = NetworkController(db_url=url, plumbing=shared)
    driver = LinuxNetworkDriver(str(tmp_path / H1), netns=H1, tunnel_ip=WAN[H1], capabilities=CAPS)
    agent = NetworkAgent(H1, str(tmp_path / H1), enabled=True, reason="test", tunnel_ip=WAN[H1], driver=driver,
                         metadata_address=None)
    agent._api = DirectNetworkAPI(c)  # type: ignore[assignment]
    compute = _ComputeOf(agent)
    await c.start()
    shared._compute = compute
    c._compute = compute  # type: ignore[assignment]
    admin = RequestContext(project="admin", roles=("admin",))
    try:
        public = await c.network_create(admin, {"name": "public", "router:external": True})
        await c.subnet_create(admin, {"network_id": public["id"], "cidr": "203.0.113.0/24"})
        net = await c.network_create(DEMO, {"name": "routed"})
        sub = await c.subnet_create(DEMO, {"network_id": net["id"], "cidr": "10.77.5.0/24"})
        router = await c.router_create(DEMO, {"name": "r", "external_gateway_info": {"network_id": public["id"]}})
        await c.router_add_interface(DEMO, router["id"], {"subnet_id": sub["id"]})
        guest = await guest_port(c, DEMO, net["id"], H1)
        await plug_guest(guest)
        await agent.sync()  # the compute's own sync (a plug): the router comes with it
        fip = await c.floatingip_create(DEMO, {"floating_network_id": public["id"]})
        fip = await c.floatingip_update(DEMO, fip["id"], {"port_id": guest["id"]})
        assert compute.synced >= 1  # applied through the agent, before the call returned
        table = (await ash("ip", "netns", "exec", H1, "nft", "list", "table", "ip", "cellcloud_l3")).stdout
        fixed = guest["fixed_ips"][0]["ip_address"]
        assert f"{fip['floating_ip_address']} : {fixed}" in table
        ext_bridge = next(e["bridge"] for e in (await c.host_config(admin, H1))["l3"]["external_networks"])

        await agent.refresh()  # a compute-side re-sync (refresh_network) keeps the routers' devices
        links = (await ash("ip", "-n", H1, "-br", "link")).stdout
        assert ext_bridge in links and guest["vif"]["tap"] in links
        assert f"{fip['floating_ip_address']} : {fixed}" in (
            await ash("ip", "netns", "exec", H1, "nft", "list", "table", "ip", "cellcloud_l3")).stdout
        gateway = sub["gateway_ip"]
        assert f"{gateway}/24" in (await ash("ip", "-n", H1, "-br", "addr")).stdout  # the router's subnet gateway

        await c.floatingip_update(DEMO, fip["id"], {"port_id": None})  # gone when the call returns
        assert fixed not in (await ash("ip", "netns", "exec", H1, "nft", "list", "table", "ip", "cellcloud_l3")).stdout
        await c.port_delete(DEMO, guest["id"])
        await c.floatingip_delete(DEMO, fip["id"])
        await c.router_remove_interface(DEMO, router["id"], {"subnet_id": sub["id"]})
        await c.router_delete(DEMO, router["id"])
        await agent.sync()
        assert ext_bridge not in (await ash("ip", "-n", H1, "-br", "link")).stdout  # nothing left with the router
    finally:
        await asyncio.get_running_loop().run_in_executor(None, driver.stop_all_dhcp)
        await c.stop()
