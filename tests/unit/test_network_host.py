"""The cell's network host (issue 17) against the real network controller on a SQLite cell DB,
with a recording plumbing in place of the host (the real one is exercised in
tests/functional/test_guest_network.py): what each router and floating-IP change applies before
the call returns, the rules rendered from it, the agent-side check of the `l3` section, and when
a controller plumbs at all."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cells.context import RequestContext
from cells.db.schema import create_schema
from cells.network.controller import NetworkController
from node.network import validate
from node.network.l3 import nat_changes, render_l3_nftables
from node.network.network_host import plumbing_decision, shared_decision

DEMO = RequestContext(project="demo", roles=("member",))
ADMIN = RequestContext(project="admin", roles=("admin",))


class RecordingPlumbing:
    """Stands in for node/network/network_host.NetworkHost: keeps every config it was asked to apply."""

    host = "netnode"
    tunnel_ip = "192.0.2.50"

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []

    async def start(self, service: Any) -> None:
        pass

    async def apply(self, config: dict[str, Any]) -> None:
        self.configs.append(config)

    async def stop(self) -> None:
        pass

    @property
    def routers(self) -> list[dict[str, Any]]:
        return list(self.configs[-1]["l3"]["routers"])


@pytest_asyncio.fixture
async def host_and_controller(tmp_path: Path) -> AsyncIterator[tuple[RecordingPlumbing, NetworkController]]:
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    plumbing = RecordingPlumbing()
    c = NetworkController(db_url=url, plumbing=plumbing)
    await c.start()
    yield plumbing, c
    await c.stop()


async def test_each_router_and_floating_ip_change_is_applied_before_the_call_returns(
        host_and_controller: tuple[RecordingPlumbing, NetworkController]) -> None:
    plumbing, c = host_and_controller
    assert plumbing.configs and plumbing.routers == []  # applied once at start
    public = await c.network_create(ADMIN, {"name": "public", "router:external": True})
    await c.subnet_create(ADMIN, {"network_id": public["id"], "cidr": "203.0.113.0/24"})
    inside = await c.network_create(DEMO, {"name": "inside"})
    subnet = await c.subnet_create(DEMO, {"network_id": inside["id"], "cidr": "10.61.0.0/24"})
    router = await c.router_create(DEMO, {"name": "r1", "external_gateway_info": {"network_id": public["id"]}})
    gateway = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    (applied,) = plumbing.routers
    assert (applied["address"], applied["subnets"], applied["snat"]) == (gateway, [], True)

    await c.router_add_interface(DEMO, router["id"], {"subnet_id": subnet["id"]})
    (applied,) = plumbing.routers
    assert applied["subnets"] == [{"cidr": "10.61.0.0/24", "bridge": "brq" + inside["id"][:11]}]
    (net,) = [n for n in plumbing.configs[-1]["networks"] if n["id"] == inside["id"]]
    assert net["gateway_host"] and net["gateway_ip"] == subnet["gateway_ip"]  # its gateway is on the network host
    (ext,) = plumbing.configs[-1]["l3"]["external_networks"]
    assert (ext["id"], ext["cidr"], ext["gateway_ip"]) == (public["id"], "203.0.113.0/24", "203.0.113.1")

    port = await c.port_create(DEMO, {"network_id": inside["id"]})
    fixed = port["fixed_ips"][0]["ip_address"]
    fip = await c.floatingip_create(DEMO, {"floating_network_id": public["id"], "port_id": port["id"]})
    (applied,) = plumbing.routers
    assert applied["floating_ips"] == [{"address": fip["floating_ip_address"], "fixed_ip": fixed}]
    with_fip = validate.clean(plumbing.configs[-1])["l3"]
    rules = render_l3_nftables(with_fip)
    bridge = f'"{ext["bridge"]}"'
    assert f"      {fip['floating_ip_address']} : {fixed},\n" in rules  # DNAT map: FIP -> fixed
    assert f"      {bridge} . {fixed} : {fip['floating_ip_address']},\n" in rules  # SNAT map, leaving by public
    assert f"oifname {bridge} ip saddr 10.61.0.0/24 snat to {gateway}" in rules

    await c.floatingip_update(DEMO, fip["id"], {"port_id": None})
    assert plumbing.routers[0]["floating_ips"] == []
    without_fip = validate.clean(plumbing.configs[-1])["l3"]
    assert fip["floating_ip_address"] not in render_l3_nftables(without_fip)
    # the disassociate, as the host applies it: that floating IP's three elements out, no rule rewritten
    assert nat_changes(with_fip, without_fip) == "".join(
        f"delete element ip cellcloud_l3 {name} {{ {key} }}\n"
        for name, key in (("fip_dnat", fip["floating_ip_address"]), ("fip_snat", f"{bridge} . {fixed}"),
                          ("fip_flows", f"{fip['floating_ip_address']} . {fixed}")))

    await c.router_update(ADMIN, router["id"], {"external_gateway_info": {"network_id": public["id"],
                                                                          "enable_snat": False}})
    assert plumbing.routers[0]["snat"] is False  # an admin turned SNAT off: no SNAT rule for the subnet
    assert "10.61.0.0/24 snat" not in render_l3_nftables(plumbing.configs[-1]["l3"])
    assert nat_changes(without_fip, plumbing.configs[-1]["l3"]) is None  # a rule changed: rendered whole
    await c.router_remove_interface(DEMO, router["id"], {"subnet_id": subnet["id"]})
    await c.router_update(DEMO, router["id"], {"external_gateway_info": None})
    assert plumbing.routers == []
    assert "snat to" not in render_l3_nftables(plumbing.configs[-1]["l3"])
    assert "dnat to" not in render_l3_nftables(plumbing.configs[-1]["l3"])


def test_the_agent_drops_a_router_with_a_bad_value_and_keeps_the_others() -> None:
    good = {"id": "r1", "external_network_id": "e1", "address": "203.0.113.2", "snat": True,
            "subnets": [{"cidr": "10.0.0.0/24", "bridge": "brq0123456789a"}],
            "floating_ips": [{"address": "203.0.113.9", "fixed_ip": "10.0.0.5"}]}
    bad = {**good, "id": "r2", "floating_ips": [{"address": "203.0.113.9; flush ruleset", "fixed_ip": "10.0.0.6"}]}
    ext = {"id": "e1", "bridge": "brqe1", "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1", "table": 11000}
    clean = validate.clean({"host": "h", "l3": {"external_networks": [ext, {**ext, "bridge": "eth0"}],
                                                "routers": [good, bad]}})
    assert clean["l3"] == {"external_networks": [ext], "routers": [good]}


@pytest.mark.parametrize(("mode", "own_netns", "runs_compute", "enabled"), [
    ("auto", True, False, True), ("auto", False, False, False), ("auto", True, True, False),
    ("on", False, False, True), ("on", True, True, False), ("off", True, False, False)])
def test_a_controller_plumbs_only_on_a_netns_host_without_a_compute(mode: str, own_netns: bool, runs_compute: bool,
                                                                     enabled: bool) -> None:
    assert plumbing_decision(mode, own_netns, runs_compute)[0] is enabled


@pytest.mark.parametrize(("mode", "compute_options", "shared"), [
    ("auto", {"network_plumbing": "on", "virt_uri": "qemu:///embed"}, True),  # the compute's agent plumbs
    ("on", {"network_plumbing": "on", "virt_uri": "qemu:///embed"}, True),
    ("off", {"network_plumbing": "on", "virt_uri": "qemu:///embed"}, False),  # the controller's own "off"
    ("auto", {"network_plumbing": "off", "virt_uri": "qemu:///embed"}, False),
    ("auto", {"virt_uri": "test:///default"}, False)])  # the test hypervisor's agent plumbs nothing
def test_a_network_host_that_runs_a_compute_plumbs_through_that_agent_when_it_plumbs(
        mode: str, compute_options: dict[str, str], shared: bool) -> None:
    assert shared_decision(mode, compute_options)[0] is shared
