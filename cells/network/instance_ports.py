"""Instance networking in the cell DB: ports and fixed IPs for a boot, their
binding to a host, their release on delete, and what a host's agent must build.

`allocate_for_instance` checks that the instance is still live in the same
transaction that makes its ports, so a delete racing a boot can never leave a
port behind; `release_instance` runs inside the conductor's unit of work that
marks the instance deleted, so addresses go back to the pool in that commit.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

from cells import errors
from cells.context import RequestContext
from cells.db import action_records
from cells.db.fast import Fast
from cells.db.schema import instance_actions, instances
from cells.network import ipam, policy, resources, secgroups
from cells.network import quota as netquota
from cells.network.schema import (
    ip_allocations,
    network_agents,
    networks,
    ports,
    security_group_rules,
    security_groups,
    subnets,
)
from cells.objects.instance import TaskState, utcnow_iso

DEVICE_OWNER = resources.INSTANCE_OWNER


def tap_name(port_id: str) -> str:
    return "tap" + port_id[:11]


def bridge_name(net_id: str) -> str:
    return "brq" + net_id[:11]


def vxlan_name(vni: int) -> str:
    return f"vxlan-{vni}"


def _instance_ports(conn: Connection, uuid: str) -> list[Row[Any]]:
    return list(conn.execute(select(ports).where(ports.c.device_id == uuid, ports.c.device_owner == DEVICE_OWNER)
                             .order_by(ports.c.created_at, ports.c.id)))


_ADDRESSES = Fast(
    select(ports.c.mac_address, ports.c.network_id, networks.c.name, ip_allocations.c.address)
    .join(networks, networks.c.id == ports.c.network_id)
    .join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
    .where(ports.c.device_id == bindparam("b_uuid"), ports.c.device_owner == DEVICE_OWNER)
    .order_by(ports.c.created_at, ports.c.id, ip_allocations.c.subnet_id, ip_allocations.c.address))


def addresses(conn: Connection, uuid: str) -> dict[str, list[dict[str, Any]]]:
    """Nova 2.1's server addresses: {network name: [{addr, version, OS-EXT-IPS:type, ...:mac_addr}]},
    in one query."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in _ADDRESSES.rows(conn, {"b_uuid": uuid}):
        out.setdefault(r.name or r.network_id, []).append({
            "addr": r.address, "version": ipaddress.ip_address(r.address).version, "OS-EXT-IPS:type": "fixed",
            "OS-EXT-IPS-MAC:mac_addr": r.mac_address})
    return out


def validate_requested(requested: Any) -> list[dict[str, str]]:
    """Nova's `networks` of a server create, already shaped by the API: [{"uuid"} | {"port"}] (+ fixed_ip)."""
    if requested is None:
        return []
    if not isinstance(requested, list):
        raise errors.Invalid(reason="requested networks must be a list")
    out = []
    for item in requested:
        if not isinstance(item, Mapping) or not (item.get("uuid") or item.get("port")):
            raise errors.Invalid(reason="each requested network needs a uuid or a port")
        out.append({k: str(v) for k, v in item.items() if k in ("uuid", "port", "fixed_ip") and v})
    return out


# a boot's own statements, built once (SQLAlchemy otherwise builds and keys each one on every call)
_INSTANCE_STATE = Fast(select(instances.c.deleted, instances.c.task_state)
                       .where(instances.c.uuid == bindparam("b_uuid")))
_HAS_PORT = Fast(select(ports.c.id).where(ports.c.device_id == bindparam("b_uuid"),
                                          ports.c.device_owner == DEVICE_OWNER).limit(1))
_SET_ADDRESSES = Fast(update(instances).where(instances.c.uuid == bindparam("b_uuid")))


def allocate_for_instance(conn: Connection, uuid: str, project: str, requested: Any, group_names: Any,
                          cidr_pool: str = resources.DEFAULT_CIDR_POOL,
                          rules: policy.SubnetPolicy = resources.DEFAULT_SUBNET_POLICY,
                          port_limit: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Ports and fixed IPs for instance `uuid` (idempotent: a retry gets the same ports),
    and the instance row's addresses filled, in one unit of work. The ports it makes count
    against `port_limit` (the project's port quota): past it, OverQuota and nothing is made."""
    wanted = validate_requested(requested)
    inst = _INSTANCE_STATE.first(conn, {"b_uuid": uuid})
    if inst is None or inst.deleted or inst.task_state == TaskState.DELETING:
        raise errors.InstanceNotFound(instance_id=uuid)
    if not _HAS_PORT.first(conn, {"b_uuid": uuid}):
        ctx = RequestContext(project=project, roles=("service",))
        groups = secgroups.resolve_groups(conn, project, list(group_names) if group_names else None)
        default = None
        if not wanted:
            default = resources.ensure_default_network(conn, project, cidr_pool, rules)
            wanted = [{"uuid": default.id}]
        for item in wanted:
            if "port" in item:
                _take_port(conn, project, item["port"], uuid)
                continue
            # the project's default network is its own: no need to read it again
            net = default if default is not None else resources.network_row(conn, ctx, item["uuid"])
            if net.project_id != project and not net.shared:
                raise errors.NetworkNotFound(net_id=item["uuid"])
            fixed = [{"ip_address": item["fixed_ip"]}] if item.get("fixed_ip") else None
            resources.new_port(conn, net, project, groups, fixed, device_id=uuid, device_owner=DEVICE_OWNER,
                               auto_delete=True)
            netquota.check_after_insert(conn, "port", project, port_limit)
    result = addresses(conn, uuid)
    _SET_ADDRESSES.run(conn, {"b_uuid": uuid, "addresses": result})
    return result


def _take_port(conn: Connection, project: str, port_id: str, uuid: str) -> None:
    row = conn.execute(select(ports).where(ports.c.id == port_id)).first()
    if row is None or row.project_id != project:
        raise errors.PortNotFound(port_id=port_id)
    if row.device_id and row.device_id != uuid:
        raise errors.Conflict(reason=f"Port {port_id} is still in use.")
    conn.execute(update(ports).where(ports.c.id == port_id).values(
        device_id=uuid, device_owner=DEVICE_OWNER, auto_delete=False, updated_at=utcnow_iso()))


def release_instance(conn: Connection, uuid: str) -> int:
    """Ports the boot made are deleted (their addresses freed); ports the user gave are
    unbound and kept, as Nova does. Returns how many ports were touched."""
    rows = _instance_ports(conn, uuid)
    for p in rows:
        _let_go(conn, p)
    return len(rows)


def _let_go(conn: Connection, port: Row[Any]) -> None:
    """A port leaves its instance: deleted (floating IPs and addresses freed) when made for it, else unbound."""
    if port.auto_delete:
        resources.disassociate_floating_ips(conn, port.id)
        ipam.release_port(conn, port.id)
        conn.execute(delete(ports).where(ports.c.id == port.id))
    else:
        conn.execute(update(ports).where(ports.c.id == port.id).values(
            device_id="", device_owner="", binding_host=None, status="DOWN", updated_at=utcnow_iso()))


def _bind(conn: Connection, port: Row[Any], host: str, now: str) -> None:
    """The port is bound to `host` (ACTIVE); its network, when it has no gateway host yet, gets this one."""
    conn.execute(update(ports).where(ports.c.id == port.id).values(binding_host=host, status="ACTIVE", updated_at=now))
    conn.execute(update(networks).where(networks.c.id == port.network_id, networks.c.gateway_host.is_(None))
                 .values(gateway_host=host, updated_at=now))


def bind_instance(conn: Connection, uuid: str, host: str) -> list[dict[str, Any]]:
    """Bind the instance's ports to `host` (ACTIVE); a network without a gateway host gets this one.
    Returns the VIFs the compute plugs: [{port_id, mac, tap, bridge, network_id, ...}]."""
    rows = _instance_ports(conn, uuid)
    now = utcnow_iso()
    for p in rows:
        _bind(conn, p, host, now)
    return [_vif(conn, p) for p in _instance_ports(conn, uuid)]


def _vif(conn: Connection, p: Row[Any]) -> dict[str, Any]:
    net = conn.execute(select(networks).where(networks.c.id == p.network_id)).one()
    ips = ipam.port_ips(conn, [p.id])[p.id]
    subnet = conn.execute(select(subnets).where(subnets.c.id == ips[0]["subnet_id"])).one() if ips else None
    prefix = ipaddress.ip_network(subnet.cidr).prefixlen if subnet is not None else None
    return {"port_id": p.id, "mac": p.mac_address, "tap": tap_name(p.id), "bridge": bridge_name(net.id),
            "network_id": net.id, "network_name": net.name, "vni": net.segmentation_id, "mtu": net.mtu,
            "ip": ips[0]["ip_address"] if ips else None, "prefixlen": prefix,
            "gateway": subnet.gateway_ip if subnet is not None else None}


def report_agent(conn: Connection, host: str, tunnel_ip: str, vlan_supported: bool) -> None:
    ipaddress.ip_address(tunnel_ip)
    values = {"host": host, "tunnel_ip": tunnel_ip, "vlan_supported": vlan_supported, "updated_at": utcnow_iso()}
    if conn.dialect.name in ("sqlite", "postgresql"):
        stmt = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(network_agents).values(values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["host"], set_=values))
        return
    if conn.execute(update(network_agents).where(network_agents.c.host == host).values(values)).rowcount == 0:
        conn.execute(network_agents.insert().values(values))


def host_config(conn: Connection, host: str) -> dict[str, Any]:
    """Everything the agent of `host` must build: the networks it takes part in (bridge, VXLAN
    peers, and on the gateway host the gateway address and DHCP entries), its ports (taps), and
    the security-group rules of those ports with the member addresses of remote groups."""
    local = list(conn.execute(select(ports).where(ports.c.binding_host == host)))
    net_ids = {p.network_id for p in local} | {
        r.id for r in conn.execute(select(networks.c.id).where(networks.c.gateway_host == host))}
    tunnels = {r.host: r.tunnel_ip for r in conn.execute(select(network_agents))}
    nets = []
    for net in conn.execute(select(networks).where(networks.c.id.in_(sorted(net_ids)))):
        net_ports = list(conn.execute(select(ports).where(ports.c.network_id == net.id)))
        hosts = {p.binding_host for p in net_ports if p.binding_host} | ({net.gateway_host} - {None})
        subnet = conn.execute(select(subnets).where(subnets.c.network_id == net.id)
                              .order_by(subnets.c.created_at)).first()
        entry: dict[str, Any] = {
            "id": net.id, "name": net.name, "vni": net.segmentation_id, "mtu": net.mtu,
            "bridge": bridge_name(net.id), "vxlan": vxlan_name(net.segmentation_id),
            "peers": sorted({tunnels[h] for h in hosts if h != host and h in tunnels}),
            "gateway_host": net.gateway_host == host, "cidr": subnet.cidr if subnet else None,
            "gateway_ip": subnet.gateway_ip if subnet else None, "host_ip": None, "dhcp_hosts": [],
            "host_routes": list(subnet.host_routes or []) if subnet else [],
        }
        dhcp_ports = {p.id for p in net_ports if p.device_owner == resources.DHCP_OWNER}
        if subnet is not None:
            # the gateway host's address on the subnet (every host's guests accept it): the gateway, or
            # on a gateway-less subnet its DHCP port's
            held = ipam.port_ips(conn, sorted(dhcp_ports))
            entry["host_ip"] = subnet.gateway_ip or next(
                (ip["ip_address"] for p in sorted(dhcp_ports) for ip in held[p] if ip["subnet_id"] == subnet.id), None)
        if net.gateway_host == host and subnet is not None:
            ips = ipam.port_ips(conn, [p.id for p in net_ports])
            if subnet.enable_dhcp:
                entry["dhcp_hosts"] = sorted((p.mac_address, ip["ip_address"]) for p in net_ports
                                             if p.id not in dhcp_ports for ip in ips[p.id]
                                             if ip["subnet_id"] == subnet.id)
        nets.append(entry)
    local_ips = ipam.port_ips(conn, [p.id for p in local])
    group_ids = sorted({g for p in local for g in (p.security_groups or [])})
    return {"host": host, "networks": nets,
            "ports": [{"id": p.id, "tap": tap_name(p.id), "mac": p.mac_address, "network_id": p.network_id,
                       "bridge": bridge_name(p.network_id), "device_id": p.device_id,
                       "ips": [i["ip_address"] for i in local_ips[p.id]],
                       "security_groups": list(p.security_groups or [])} for p in local],
            "security_groups": _group_rules(conn, group_ids)}


def _group_rules(conn: Connection, group_ids: list[str]) -> dict[str, Any]:
    """group id -> {"rules": [...], } plus the member IPs of every group a rule names as remote."""
    if not group_ids:
        return {"rules": {}, "members": {}}
    rules: dict[str, list[dict[str, Any]]] = {g: [] for g in group_ids}
    remote: set[str] = set()
    for r in conn.execute(select(security_group_rules)
                          .where(security_group_rules.c.security_group_id.in_(group_ids))):
        rules[r.security_group_id].append(secgroups.rule_record(r))
        if r.remote_group_id:
            remote.add(r.remote_group_id)
    members: dict[str, list[str]] = {g: [] for g in remote}
    if remote:
        for p in conn.execute(select(ports.c.id, ports.c.security_groups)):
            hit = [g for g in (p.security_groups or []) if g in members]
            if hit:
                addrs = [str(a[0]) for a in conn.execute(select(ip_allocations.c.address)
                                                         .where(ip_allocations.c.port_id == p.id))]
                for g in hit:
                    members[g].extend(addrs)
    return {"rules": rules, "members": {g: sorted(v) for g, v in members.items()}}


# --- Nova's addSecurityGroup / removeSecurityGroup ---------------------------------------

ADD_GROUP, REMOVE_GROUP = "addSecurityGroup", "removeSecurityGroup"  # instance action names, as Nova's


def _server_ports(conn: Connection, ctx: RequestContext, uuid: str, group: str) -> tuple[str, list[Row[Any]]]:
    """(the group's id, the live instance's ports); Nova's 404s when either is missing."""
    inst = conn.execute(select(instances.c.project_id, instances.c.deleted).where(instances.c.uuid == uuid)).first()
    if inst is None or inst.deleted or not (resources.privileged(ctx) or ctx.project == inst.project_id):
        raise errors.InstanceNotFound(instance_id=uuid)
    try:
        gid = secgroups.resolve_groups(conn, str(inst.project_id), [group])[0]
    except errors.SecurityGroupNotFound:
        raise errors.SecurityGroupNotFound(f"Security group {group} is not found for project {inst.project_id}",
                                           id=group) from None
    rows = _instance_ports(conn, uuid)
    if not rows:
        raise errors.SecurityGroupNotFound(f"instance_id {uuid} could not be found as device id on any ports",
                                           id=group)
    return gid, rows


def _record(conn: Connection, ctx: RequestContext, uuid: str, action: str, project: str) -> None:
    """The action and its one event, done: the change is made in this same unit of work."""
    action_records.start_action(conn, ctx, uuid, action, project)
    action_records.finish_event(conn, uuid, action, f"network_{action}", action_records.SUCCESS)
    action_records.finish_action(conn, uuid, action)


def _retried(conn: Connection, ctx: RequestContext, uuid: str, action: str) -> bool:
    """This request already did it (an RPC resent after a lost reply carries the same request id)."""
    return conn.execute(select(instance_actions.c.uuid).where(
        instance_actions.c.instance_uuid == uuid, instance_actions.c.request_id == ctx.request_id,
        instance_actions.c.action == action).limit(1)).first() is not None


def add_security_group(conn: Connection, ctx: RequestContext, uuid: str, group: str) -> None:
    """The group (a name or id of the server's project) joins every port of the server.
    400 when every port has it already; 404 for an unknown group or a server without ports."""
    gid, rows = _server_ports(conn, ctx, uuid, group)
    missing = [p for p in rows if gid not in (p.security_groups or [])]
    if not missing:
        if _retried(conn, ctx, uuid, ADD_GROUP):
            return
        raise errors.Invalid(f"Security group {group} is already associated with the instance {uuid}",
                             reason="already associated")
    now = utcnow_iso()
    for p in missing:
        conn.execute(update(ports).where(ports.c.id == p.id).values(
            security_groups=[*(p.security_groups or []), gid], updated_at=now))
    _record(conn, ctx, uuid, ADD_GROUP, rows[0].project_id)


def remove_security_group(conn: Connection, ctx: RequestContext, uuid: str, group: str) -> None:
    """The group leaves every port of the server that has it; 404 when none has (Nova's)."""
    gid, rows = _server_ports(conn, ctx, uuid, group)
    having = [p for p in rows if gid in (p.security_groups or [])]
    if not having:
        if _retried(conn, ctx, uuid, REMOVE_GROUP):
            return
        raise errors.SecurityGroupNotFound(f"Security group {group} not associated with the instance {uuid}",
                                           id=group)
    now = utcnow_iso()
    for p in having:
        conn.execute(update(ports).where(ports.c.id == p.id).values(
            security_groups=[g for g in p.security_groups if g != gid], updated_at=now))
    _record(conn, ctx, uuid, REMOVE_GROUP, rows[0].project_id)


# server views ask on every show and every poll: the statements are built once (privileged callers see
# every project's, others their own)
_VIEW_PORTS = (select(ports.c.device_id, ports.c.security_groups)
               .where(ports.c.device_id.in_(bindparam("b_uuids", expanding=True)), ports.c.device_owner == DEVICE_OWNER)
               .order_by(ports.c.created_at, ports.c.id))
_VIEW_GROUPS = select(security_groups.c.id, security_groups.c.name).where(
    security_groups.c.id.in_(bindparam("b_ids", expanding=True)))
_VIEW_PORTS_OF = _VIEW_PORTS.where(ports.c.project_id == bindparam("b_project"))
_VIEW_GROUPS_OF = _VIEW_GROUPS.where(security_groups.c.project_id == bindparam("b_project"))


def group_names(conn: Connection, ctx: RequestContext, uuids: list[str]) -> dict[str, list[str]]:
    """{instance: the names of its ports' security groups, each once, first port first} for the
    instances with ports the caller may see: what server views show, in two queries."""
    every = resources.privileged(ctx)
    rows = list(conn.execute(_VIEW_PORTS if every else _VIEW_PORTS_OF, {"b_uuids": list(uuids), "b_project": ctx.project}))
    ids = {g for r in rows for g in r.security_groups or []}
    name_of = {g.id: g.name or g.id for g in conn.execute(
        _VIEW_GROUPS if every else _VIEW_GROUPS_OF, {"b_ids": sorted(ids), "b_project": ctx.project})} if ids else {}
    out: dict[str, list[str]] = {}
    for r in rows:
        names = out.setdefault(r.device_id, [])
        names.extend(n for n in (name_of.get(g) for g in r.security_groups or []) if n and n not in names)
    return out


def instance_groups(conn: Connection, uuid: str) -> list[dict[str, Any]]:
    """The security groups of an instance's ports (Nova's server security_groups)."""
    ids: list[str] = []
    for p in _instance_ports(conn, uuid):
        ids.extend(g for g in (p.security_groups or []) if g not in ids)
    ctx = RequestContext(roles=("service",))
    return [secgroups.get_group(conn, ctx, g) for g in ids]


def attach_port(conn: Connection, uuid: str, project: str, host: str, port_id: str | None, net_id: str | None,
                port_limit: int | None = None) -> dict[str, Any]:
    """os-interface attach: the project's free port `port_id` (kept when detached, as Nova) or a new port on
    `net_id` (deleted when detached) joins live instance `uuid`, bound to its `host`; the instance's
    addresses follow. The new port's VIF, for the compute to plug."""
    inst = _INSTANCE_STATE.first(conn, {"b_uuid": uuid})
    if inst is None or inst.deleted or inst.task_state == TaskState.DELETING:
        raise errors.InstanceNotFound(instance_id=uuid)
    if (port_id is None) == (net_id is None):
        raise errors.Invalid(reason="give one of port_id and net_id")
    if port_id is not None:
        found = conn.execute(select(ports.c.project_id, ports.c.device_id).where(ports.c.id == port_id)).first()
        if found is None or found.project_id != project:  # another project's port is not there for it
            raise errors.PortNotFound(port_id=port_id)
        if found.device_id:  # another server's, or this one's already (Neutron's PortInUse either way)
            raise errors.Conflict(reason=f"Port {port_id} is still in use.")
        _take_port(conn, project, port_id, uuid)
        new_id = port_id
    else:
        ctx = RequestContext(project=project, roles=("service",))
        net = resources.network_row(conn, ctx, str(net_id))
        if net.project_id != project and not net.shared:
            raise errors.NetworkNotFound(net_id=net_id)
        groups = secgroups.resolve_groups(conn, project, None)
        new_id = resources.new_port(conn, net, project, groups, None, device_id=uuid, device_owner=DEVICE_OWNER,
                                    auto_delete=True)
        netquota.check_after_insert(conn, "port", project, port_limit)
    row = conn.execute(select(ports).where(ports.c.id == new_id)).one()
    _bind(conn, row, host, utcnow_iso())
    _SET_ADDRESSES.run(conn, {"b_uuid": uuid, "addresses": addresses(conn, uuid)})
    return _vif(conn, row)


def detach_port(conn: Connection, uuid: str, port_id: str) -> str:
    """os-interface detach: the port leaves instance `uuid` (deleted if it was made for it, else unbound and
    kept); the instance's addresses follow. Its network id; PortNotFound when it is not the instance's."""
    row = conn.execute(select(ports).where(ports.c.id == port_id, ports.c.device_id == uuid,
                                           ports.c.device_owner == DEVICE_OWNER)).first()
    if row is None:
        raise errors.PortNotFound(port_id=port_id)
    _let_go(conn, row)
    _SET_ADDRESSES.run(conn, {"b_uuid": uuid, "addresses": addresses(conn, uuid)})
    return str(row.network_id)
