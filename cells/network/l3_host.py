"""What the cell's network host must build for routers and floating IPs (issue 17), read from
the cell DB; the plumbing itself is node/network/l3.py.

The network host is the host the cell's network controller runs on. A network attached to a
router has its gateway there (the router interface holds the subnet's gateway address, which
that host's bridge carries, with the network's DHCP server and metadata listener), so the host's
own namespace routes between the router's subnets and, through policy routing, out of the
external network's bridge: SNAT for the subnets, DNAT for each floating IP. Placement is that
simple on purpose: one host per cell does L3, as Nova's network host did.

`NetworkHostPlumbing` is what the controller is given (tools/serve.py makes the node side) so
this package never imports `node`.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from sqlalchemy import Connection, select, update

from cells.network import instance_ports
from cells.network.resources import L3_OWNERS
from cells.network.schema import floatingips, ip_allocations, networks, ports, routers, subnets
from cells.objects.instance import utcnow_iso

GATEWAY_OWNER, INTERFACE_OWNER, _ = L3_OWNERS
TABLE_BASE, TABLE_SPAN = 10000, 50000  # policy-routing tables: one per external network, by its VNI


class NetworkHostPlumbing(Protocol):
    """The node side of the network host: applies network_host_config, idempotently."""

    host: str
    tunnel_ip: str

    async def start(self, service: Any) -> None: ...

    async def apply(self, config: dict[str, Any]) -> None: ...

    async def stop(self) -> None: ...


def routing_table(vni: int) -> int:
    return TABLE_BASE + vni % TABLE_SPAN


def _addresses(conn: Connection, port_id: str) -> list[str]:
    return [str(r.address) for r in conn.execute(select(ip_allocations.c.address)
                                                 .where(ip_allocations.c.port_id == port_id))
            if ":" not in str(r.address)]


def router_config(conn: Connection) -> dict[str, Any]:
    """Every router that routes something: its gateway address on an external network, its subnets
    (their CIDR and bridge) and its associated floating IPs; and the external networks they use."""
    externals: dict[str, dict[str, Any]] = {}
    out = []
    for r in conn.execute(select(routers).order_by(routers.c.created_at, routers.c.id)):
        entry: dict[str, Any] = {"id": r.id, "external_network_id": None, "address": None,
                                 "snat": bool(r.enable_snat), "subnets": [], "floating_ips": []}
        for p in conn.execute(select(ports.c.id, ports.c.network_id).where(
                ports.c.device_id == r.id, ports.c.device_owner == INTERFACE_OWNER).order_by(ports.c.id)):
            for a in conn.execute(select(subnets.c.cidr).join(ip_allocations,
                                                               ip_allocations.c.subnet_id == subnets.c.id)
                                  .where(ip_allocations.c.port_id == p.id)):
                if ipaddress.ip_network(a.cidr).version == 4:
                    entry["subnets"].append({"cidr": a.cidr, "bridge": instance_ports.bridge_name(p.network_id)})
        if r.gw_port_id is not None:
            gw = conn.execute(select(ports.c.network_id).where(ports.c.id == r.gw_port_id)).first()
            addrs = _addresses(conn, r.gw_port_id)
            if gw is not None and addrs:
                entry["external_network_id"], entry["address"] = gw.network_id, addrs[0]
                if gw.network_id not in externals:
                    externals[gw.network_id] = _external(conn, gw.network_id)
                entry["floating_ips"] = [
                    {"address": f.floating_ip_address, "fixed_ip": f.fixed_ip_address}
                    for f in conn.execute(select(floatingips).where(floatingips.c.router_id == r.id,
                                                                    floatingips.c.port_id.is_not(None))
                                          .order_by(floatingips.c.floating_ip_address))
                    if f.fixed_ip_address and ":" not in f.fixed_ip_address]
        if entry["address"] or len(entry["subnets"]) > 1:
            out.append(entry)
    return {"external_networks": [e for e in externals.values() if e], "routers": out}


def _external(conn: Connection, net_id: str) -> dict[str, Any]:
    net = conn.execute(select(networks).where(networks.c.id == net_id)).one()
    subnet = conn.execute(select(subnets).where(subnets.c.network_id == net_id, subnets.c.ip_version == 4)
                          .order_by(subnets.c.created_at)).first()
    if subnet is None:
        return {}
    return {"id": net.id, "bridge": instance_ports.bridge_name(net.id), "cidr": subnet.cidr,
            "gateway_ip": subnet.gateway_ip, "table": routing_table(int(net.segmentation_id)), "mtu": 1500}


def network_host_config(conn: Connection, host: str) -> dict[str, Any]:
    """The network host's whole configuration: what a compute's agent builds (its networks: here
    the router-attached ones, with gateway, DHCP and metadata) plus the routers (`l3`)."""
    return {**instance_ports.host_config(conn, host), "l3": router_config(conn)}


def adopt_router_networks(conn: Connection, host: str) -> set[str]:
    """Networks with a router interface get their gateway on the network host `host`; the hosts
    that held those gateways until now (they drop gateway address, DHCP and metadata)."""
    attached = select(ports.c.network_id).where(ports.c.device_owner == INTERFACE_OWNER)
    moved = conn.execute(select(networks.c.id, networks.c.gateway_host).where(
        networks.c.id.in_(attached), (networks.c.gateway_host.is_(None)) | (networks.c.gateway_host != host)))
    rows = list(moved)
    if rows:
        conn.execute(update(networks).where(networks.c.id.in_([r.id for r in rows]))
                     .values(gateway_host=host, updated_at=utcnow_iso()))
    return {str(r.gateway_host) for r in rows if r.gateway_host}
