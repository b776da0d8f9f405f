"""Which hosts must rebuild their network after a change, so guests on other hosts see it.

A host's plumbing (VXLAN peers, DHCP entries on the gateway host, security-group
rules with the member addresses of remote groups) depends on ports bound
elsewhere. Traffic only flows between ports of one network, so a change to a
port concerns the hosts on its network; a change to a group's rules concerns
the hosts of the group's ports. The controller casts `refresh_network` to each
(cells/rpcapi/compute.py); the agent coalesces them into one sync.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from cells.network.schema import networks, ports, security_group_rules


def hosts_on_networks(conn: Connection, network_ids: Iterable[str]) -> set[str]:
    """Hosts with a bound port on these networks, and their gateway hosts."""
    ids = sorted(set(network_ids))
    if not ids:
        return set()
    bound = conn.execute(select(ports.c.binding_host).where(ports.c.network_id.in_(ids),
                                                            ports.c.binding_host.is_not(None)).distinct())
    gateways = conn.execute(select(networks.c.gateway_host).where(networks.c.id.in_(ids),
                                                                 networks.c.gateway_host.is_not(None)))
    return {str(r[0]) for r in bound} | {str(r[0]) for r in gateways}


def instance_networks(conn: Connection, instance_uuid: str) -> set[str]:
    return {str(r[0]) for r in conn.execute(select(ports.c.network_id).where(ports.c.device_id == instance_uuid))}


def instance_hosts(conn: Connection, instance_uuid: str) -> set[str]:
    """The hosts the instance's ports are bound to now (before a move binds them elsewhere)."""
    rows = conn.execute(select(ports.c.binding_host).where(ports.c.device_id == instance_uuid,
                                                           ports.c.binding_host.is_not(None)).distinct())
    return {str(r[0]) for r in rows}


def port_network(conn: Connection, port_id: str) -> set[str]:
    return {str(r[0]) for r in conn.execute(select(ports.c.network_id).where(ports.c.id == port_id))}


def rule_group(conn: Connection, rule_id: str) -> str | None:
    row = conn.execute(select(security_group_rules.c.security_group_id)
                       .where(security_group_rules.c.id == rule_id)).first()
    return None if row is None else str(row[0])


def hosts_of_group(conn: Connection, group_id: str | None) -> set[str]:
    """Hosts with a bound port in the group (the JSON list column is filtered here, not in SQL)."""
    if group_id is None:
        return set()
    rows = conn.execute(select(ports.c.binding_host, ports.c.security_groups).where(ports.c.binding_host.is_not(None)))
    return {str(r.binding_host) for r in rows if group_id in (r.security_groups or [])}
