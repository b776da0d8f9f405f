"""Network tables of the cell DB: networks, subnets, ports, fixed IP allocations,
security groups and rules, routers and floating IPs, and the tunnel endpoint of each host's network agent.

They live in their own MetaData and are created (idempotently, only the missing
ones) by the network controller at start: only the controller writes them.
Uniqueness the IPAM relies on is in the schema, not in code: one row per
(subnet, address), one port per MAC, one network per segmentation id.
"""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

TIME = String(32)
metadata = MetaData()

networks = Table(
    "networks", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, index=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("shared", Boolean, nullable=False, default=False),
    Column("admin_state_up", Boolean, nullable=False, default=True),
    Column("network_type", String(16), nullable=False),  # vxlan (vlan where the kernel has 802.1Q)
    Column("segmentation_id", Integer, nullable=False, unique=True),  # the VXLAN VNI
    Column("mtu", Integer, nullable=False),
    Column("is_default", Boolean, nullable=False, default=False),  # the project's network made on first use
    Column("gateway_host", String(255), nullable=True),  # host holding the gateway address and dnsmasq
    Column("router_external", Boolean, nullable=False, default=False),  # router:external (admin-made)
    Column("description", String(255), nullable=False, default=""),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

subnets = Table(
    "subnets", metadata,
    Column("id", String(36), primary_key=True),
    Column("network_id", String(36), ForeignKey("networks.id"), nullable=False, index=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("ip_version", Integer, nullable=False),
    Column("cidr", String(64), nullable=False),
    Column("gateway_ip", String(64), nullable=True),
    Column("allocation_pools", JSON, nullable=False),  # [{"start", "end"}]
    Column("enable_dhcp", Boolean, nullable=False, default=True),
    Column("dns_nameservers", JSON, nullable=False),
    Column("host_routes", JSON, nullable=True),  # [{"destination", "nexthop"}]; None: none (older rows)
    Column("description", String(255), nullable=False, default=""),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

ports = Table(
    "ports", metadata,
    Column("id", String(36), primary_key=True),
    Column("network_id", String(36), ForeignKey("networks.id"), nullable=False, index=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False, default=""),
    Column("mac_address", String(17), nullable=False, unique=True),
    Column("device_id", String(255), nullable=False, default="", index=True),
    Column("device_owner", String(255), nullable=False, default=""),
    Column("binding_host", String(255), nullable=True, index=True),
    Column("status", String(16), nullable=False),  # DOWN until a host binds it, then ACTIVE
    Column("admin_state_up", Boolean, nullable=False, default=True),
    Column("security_groups", JSON, nullable=False),  # [group id]
    Column("auto_delete", Boolean, nullable=False, default=False),  # made by a boot: deleted with the server
    Column("description", String(255), nullable=False, default=""),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

ip_allocations = Table(
    "ip_allocations", metadata,
    Column("subnet_id", String(36), ForeignKey("subnets.id"), primary_key=True),
    Column("address", String(64), primary_key=True),  # never handed out twice: the primary key says so
    Column("port_id", String(36), ForeignKey("ports.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("network_id", String(36), nullable=False, index=True),
)

# IPAM's next candidate per subnet: allocation starts here and moves on round-robin, so
# it costs O(1) statements instead of a scan of the subnet's addresses. A hint only: the
# primary key of ip_allocations is what makes an address unique.
ip_cursors = Table(
    "ip_cursors", metadata,
    Column("subnet_id", String(36), ForeignKey("subnets.id", ondelete="CASCADE"), primary_key=True),
    Column("next_address", String(64), nullable=False),
)

security_groups = Table(
    "security_groups", metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("description", String(255), nullable=False, default=""),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

security_group_rules = Table(
    "security_group_rules", metadata,
    Column("id", String(36), primary_key=True),
    Column("security_group_id", String(36), ForeignKey("security_groups.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("project_id", String(255), nullable=False),
    Column("direction", String(8), nullable=False),  # ingress | egress
    Column("ethertype", String(8), nullable=False),  # IPv4 | IPv6
    Column("protocol", String(16), nullable=True),  # tcp | udp | icmp | None (any)
    Column("port_range_min", Integer, nullable=True),
    Column("port_range_max", Integer, nullable=True),
    Column("remote_ip_prefix", String(64), nullable=True),
    Column("remote_group_id", String(36), nullable=True),
    Column("description", String(255), nullable=False, default=""),
    Column("created_at", TIME, nullable=False),
    UniqueConstraint("security_group_id", "direction", "ethertype", "protocol", "port_range_min",
                     "port_range_max", "remote_ip_prefix", "remote_group_id", name="uq_security_group_rule"),
)

network_agents = Table(
    "network_agents", metadata,
    Column("host", String(255), primary_key=True),
    Column("tunnel_ip", String(64), nullable=False),
    Column("vlan_supported", Boolean, nullable=False, default=False),
    Column("updated_at", TIME, nullable=False),
)

# Neutron's L3 (issue 17): a router with an optional gateway on an external network; its interfaces
# and its gateway are ports (device_owner network:router_interface / network:router_gateway, device_id
# the router), so an address on a subnet stays unique through ip_allocations' primary key.
routers = Table(
    "routers", metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("name", String(255), nullable=False, default=""),
    Column("description", String(255), nullable=False, default=""),
    Column("admin_state_up", Boolean, nullable=False, default=True),
    Column("gw_port_id", String(36), ForeignKey("ports.id"), nullable=True),
    Column("enable_snat", Boolean, nullable=False, default=True),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

# a floating IP holds its address through a port on the external network (device_owner
# network:floatingip); port_id is the associated port, one floating IP per (port, fixed address)
floatingips = Table(
    "floatingips", metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(255), nullable=False, index=True),
    Column("floating_network_id", String(36), ForeignKey("networks.id"), nullable=False, index=True),
    Column("floating_port_id", String(36), ForeignKey("ports.id"), nullable=False),
    Column("floating_ip_address", String(64), nullable=False),
    Column("port_id", String(36), nullable=True, index=True),
    Column("fixed_ip_address", String(64), nullable=True),
    Column("router_id", String(36), nullable=True, index=True),
    Column("description", String(255), nullable=False, default=""),
    # Neutron's revision_number: +1 on every update; an update with If-Match: revision_number=N is
    # refused (412) once another has moved it on
    Column("revision_number", Integer, nullable=False, default=1, server_default="1"),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    UniqueConstraint("port_id", "fixed_ip_address", name="uq_floatingip_fixed"),
)

Index("ix_ports_device_network", ports.c.device_id, ports.c.network_id)

