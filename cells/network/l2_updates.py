"""Neutron's network and subnet updates (PUT /v2.0/networks/{id}, /subnets/{id}): the fields Neutron
lets an owner (or an admin) change after create. What places a network on the wire (its type,
segmentation id, MTU) and what fixes a subnet's addresses (CIDR, version, allocation pools) stays
as made: changing them under live ports is refused with a clear 400, as Neutron does for the
immutable ones. A subnet's gateway moves to a free address outside its pools (its hosts re-sync:
the gateway host's bridge address and dnsmasq's router option follow), not while a router holds it."""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, select, update

from cells import errors
from cells.context import RequestContext
from cells.network import ipam, policy
from cells.network.resources import (
    _bool,
    _text,
    _unknown,
    get_network,
    get_subnet,
    network_row,
    privileged,
    subnet_row,
)
from cells.network.schema import ip_allocations, networks, ports, subnets
from cells.objects.instance import utcnow_iso

NETWORK_FIXED = ("provider:network_type", "provider:segmentation_id", "provider:physical_network", "mtu")
SUBNET_FIXED = ("cidr", "ip_version", "network_id", "allocation_pools", "subnetpool_id",
                "ipv6_ra_mode", "ipv6_address_mode", "prefixlen")
EXTERNAL_USERS = ("network:router_gateway", "network:floatingip")


def update_network(conn: Connection, ctx: RequestContext, net_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(body, {"name", "description", "admin_state_up", "shared", "router:external", "port_security_enabled",
                    *NETWORK_FIXED}, "network")
    row = network_row(conn, ctx, net_id)
    if not privileged(ctx) and row.project_id != ctx.project:
        raise errors.Forbidden(f"(rule:update_network) is disallowed by policy for network {net_id}")
    current = get_network(conn, ctx, net_id)
    changed = {k: v for k, v in body.items() if current.get(k) != v}
    policy.check_network_fields(ctx, changed, "update_network")  # shared, router:external, provider:*: an admin's
    fixed = sorted(set(changed) & set(NETWORK_FIXED))
    if fixed:
        raise errors.Invalid(reason=f"Cannot update read-only attribute(s) {', '.join(fixed)} of a network")
    if changed.get("port_security_enabled") is False:
        raise errors.Invalid(reason="port security cannot be turned off here (security groups always apply)")
    values: dict[str, Any] = {"updated_at": utcnow_iso()}
    for key in ("name", "description"):
        if key in changed:
            values[key] = _text(body, key)
    for key, column in (("admin_state_up", "admin_state_up"), ("shared", "shared"),
                        ("router:external", "router_external")):
        if key in changed:
            values[column] = _bool(body, key, bool(current[key]))
    if values.get("router_external") is False:
        users = conn.execute(select(func.count()).select_from(ports).where(
            ports.c.network_id == net_id, ports.c.device_owner.in_(EXTERNAL_USERS))).scalar()
        if users:  # Neutron's ExternalNetworkInUse
            raise errors.Conflict(reason=f"External network {net_id} cannot be updated, because it is in use by "
                                         f"{users} router gateway(s) or floating IP(s).")
    conn.execute(update(networks).where(networks.c.id == net_id).values(**values))
    return get_network(conn, ctx, net_id)


def update_subnet(conn: Connection, ctx: RequestContext, subnet_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(body, {"name", "description", "enable_dhcp", "dns_nameservers", "host_routes", "service_types",
                    "gateway_ip", *SUBNET_FIXED}, "subnet")
    row = subnet_row(conn, ctx, subnet_id)
    if not privileged(ctx) and row.project_id != ctx.project:
        raise errors.Forbidden(f"(rule:update_subnet) is disallowed by policy for subnet {subnet_id}")
    current = get_subnet(conn, ctx, subnet_id)
    changed = {k: v for k, v in body.items() if current.get(k) != v}
    fixed = sorted(set(changed) & set(SUBNET_FIXED))
    if fixed:
        raise errors.Invalid(reason=f"Cannot update attribute(s) {', '.join(fixed)} of a subnet here: its "
                                    "addresses are fixed at create")
    if changed.get("service_types"):
        raise errors.Invalid(reason="service_types are not supported by this cloud")
    values: dict[str, Any] = {"updated_at": utcnow_iso()}
    if "host_routes" in changed:
        values["host_routes"] = ipam.validate_host_routes(body["host_routes"], ipaddress.ip_network(row.cidr))
    if "gateway_ip" in changed:
        values["gateway_ip"] = _new_gateway(conn, row, body["gateway_ip"])
    for key in ("name", "description"):
        if key in changed:
            values[key] = _text(body, key)
    if "enable_dhcp" in changed:
        values["enable_dhcp"] = _bool(body, "enable_dhcp", True)
    if "dns_nameservers" in changed:
        dns = body["dns_nameservers"] or []
        if not isinstance(dns, list) or not all(isinstance(d, str) for d in dns):
            raise errors.Invalid(reason="dns_nameservers must be a list of addresses")
        for d in dns:
            try:
                ipaddress.ip_address(d)
            except ValueError:
                raise errors.Invalid(reason=f"dns nameserver {d!r} is not an IP address") from None
        values["dns_nameservers"] = list(dns)
    conn.execute(update(subnets).where(subnets.c.id == subnet_id).values(**values))
    return get_subnet(conn, ctx, subnet_id)


def _new_gateway(conn: Connection, row: Any, raw: Any) -> str:
    """The subnet's gateway moved to `raw`: a usable address of the subnet outside its pools and held
    by no port (Neutron's 409s), while no router interface holds the current one."""
    if row.gateway_ip is None or raw is None:
        raise errors.Invalid(reason="a subnet's gateway is set or removed only at create here (a gateway-less "
                                    "subnet's DHCP address is a port of its pools)")
    net = ipaddress.ip_network(row.cidr)
    gateway = ipam.parse_address(raw, net, "gateway_ip")
    for pool in ipam.pool_ranges(row.allocation_pools):
        if pool[0] <= int(gateway) <= pool[1]:
            raise errors.Conflict(reason=f"Gateway ip {gateway} conflicts with allocation pool "
                                         f"{ipaddress.ip_address(pool[0])}-{ipaddress.ip_address(pool[1])}")
    holders = conn.execute(select(ports.c.device_owner).join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
                           .where(ip_allocations.c.subnet_id == row.id,
                                  ip_allocations.c.address.in_([str(gateway), row.gateway_ip]))).all()
    if any(h.device_owner == "network:router_interface" for h in holders):
        raise errors.Conflict(reason=f"Gateway {row.gateway_ip} of subnet {row.id} is a router's interface: "
                                     "remove it from the router first")
    if holders:
        raise errors.Conflict(reason=f"Current gateway ip {gateway} already in use by a port on subnet {row.id}")
    return str(gateway)
