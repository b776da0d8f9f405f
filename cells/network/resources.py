"""Networks, subnets and ports in the cell DB, as Neutron-shaped records.

Every function runs inside one write (or read) transaction the controller
opens: validate -> check -> act happens in a single unit of work, so bad
input leaves nothing half-made. Scope: a project sees its own resources and
shared networks; admins and services see everything.
"""
from __future__ import annotations

import ipaddress
import secrets
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from cells import errors
from cells.context import RequestContext
from cells.db.fast import AnyRow, Fast, as_mapping
from cells.db.schema import instances
from cells.network import ipam, policy, secgroups
from cells.network.schema import floatingips, ip_allocations, networks, ports, subnets
from cells.objects.instance import utcnow_iso
from cells.objects.records import FixedIp, PortRecord

VNI_MIN, VNI_MAX = 1000, (1 << 24) - 1
DEFAULT_MTU = 1450  # 1500 minus the VXLAN overhead
DEFAULT_NETWORK_NAME = "private"
DEFAULT_CIDR_POOL = "10.0.0.0/8"
DEFAULT_PREFIX = 24
MAC_PREFIX = "fa:16:3e"  # OpenStack's
INSTANCE_OWNER = "compute:nova"
# ports the L3 code makes (cells/network/l3.py): a router's gateway and interfaces, a floating IP's address
L3_OWNERS = ("network:router_gateway", "network:router_interface", "network:floatingip")
# the port holding the address a gateway-less subnet's DHCP server answers from on the network's gateway
# host (Neutron's DHCP port): the cloud's (no project's, no quota), made and dropped with its subnet
DHCP_OWNER = "network:dhcp"
# ports only the network's own code makes, moves and drops (409 through the port API)
SERVICE_OWNERS = (*L3_OWNERS, DHCP_OWNER)
DEFAULT_SUBNET_POLICY = policy.SubnetPolicy()
LIST_CONTROL = frozenset({"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"})


def new_id() -> str:
    return str(uuidlib.uuid4())


privileged = policy.privileged


def _project(ctx: RequestContext, body: Mapping[str, Any]) -> str:
    """The owner of a new resource: the caller's project; an admin may name another."""
    wanted = body.get("project_id") or body.get("tenant_id")
    if wanted and wanted != ctx.project:
        if not privileged(ctx):
            raise errors.Forbidden("Only an admin may create resources for another project.")
        return str(wanted)
    if ctx.project is None and not wanted:
        raise errors.Invalid(reason="project_id is required")
    return str(wanted or ctx.project)


def _text(body: Mapping[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str) or len(value) > 255:
        raise errors.Invalid(reason=f"'{key}' must be a string of at most 255 characters")
    return value


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise errors.Invalid(reason=f"'{key}' must be true or false, not {value!r}")
    return value


def _unknown(body: Mapping[str, Any], allowed: set[str], what: str) -> None:
    extra = set(body) - allowed
    if extra:
        raise errors.Invalid(reason=f"Unrecognized attribute(s) '{', '.join(sorted(extra))}' for {what}")


def match(record: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Neutron's list filters: exact match, several values = any of them."""
    for key, wanted in filters.items():
        if key in LIST_CONTROL:
            continue
        if key not in record:
            raise errors.Invalid(reason=f"'{key}' is not a valid filter")
        values = wanted if isinstance(wanted, list) else [wanted]
        have = record[key]
        if key == "fixed_ips":  # Neutron's fixed_ips=ip_address=A / fixed_ips=subnet_id=S (several: any)
            if not any(_fixed_ip_matches(have, str(v)) for v in values):
                return False
            continue
        texts = {str(v).lower() if isinstance(have, bool) else str(v) for v in values}
        if isinstance(have, list):
            if not any(str(h) in texts for h in have):
                return False
        elif (str(have).lower() if isinstance(have, bool) else str(have)) not in texts:
            return False
    return True


def _fixed_ip_matches(fixed_ips: Any, wanted: str) -> bool:
    field, sep, value = wanted.partition("=")
    if not sep or field not in ("ip_address", "subnet_id"):
        raise errors.Invalid(reason=f"fixed_ips filter {wanted!r}: give ip_address=ADDRESS or subnet_id=ID")
    return any(isinstance(f, Mapping) and str(f.get(field)) == value for f in fixed_ips or [])


# --- networks ------------------------------------------------------------------

def _visible_net(ctx: RequestContext, row: Row[Any]) -> bool:
    return privileged(ctx) or row.project_id == ctx.project or bool(row.shared) or bool(row.router_external)


_NETWORK = select(networks).where(networks.c.id == bindparam("b_id"))  # built once: every boot reads one
_DEFAULT_NETWORK = Fast(select(networks).where(networks.c.project_id == bindparam("b_project"),
                                               networks.c.is_default.is_(True)))


def network_row(conn: Connection, ctx: RequestContext, net_id: str) -> Row[Any]:
    row = conn.execute(_NETWORK, {"b_id": net_id}).first()
    if row is None or not _visible_net(ctx, row):
        raise errors.NetworkNotFound(net_id=net_id)
    return row


def network_record(row: Row[Any], subnet_ids: Sequence[str]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "tenant_id": row.project_id, "project_id": row.project_id,
        "admin_state_up": bool(row.admin_state_up), "status": "ACTIVE", "subnets": list(subnet_ids),
        "shared": bool(row.shared), "mtu": row.mtu, "provider:network_type": row.network_type,
        "provider:segmentation_id": row.segmentation_id, "provider:physical_network": None,
        "router:external": bool(row.router_external), "is_default": bool(row.is_default), "port_security_enabled": True,
        "availability_zone_hints": [], "availability_zones": ["nova"], "description": row.description,
        "tags": [], "revision_number": 1, "created_at": row.created_at, "updated_at": row.updated_at,
        "ipv4_address_scope": None, "ipv6_address_scope": None,
    }


def _subnet_ids(conn: Connection, net_ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n: [] for n in net_ids}
    rows = conn.execute(select(subnets.c.id, subnets.c.network_id).where(subnets.c.network_id.in_(list(net_ids)))
                        .order_by(subnets.c.created_at))
    for r in rows:
        out[r.network_id].append(r.id)
    return out


def list_networks(conn: Connection, ctx: RequestContext, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [r for r in conn.execute(select(networks).order_by(networks.c.created_at)) if _visible_net(ctx, r)]
    sub = _subnet_ids(conn, [r.id for r in rows])
    return [rec for rec in (network_record(r, sub[r.id]) for r in rows) if match(rec, filters)]


def get_network(conn: Connection, ctx: RequestContext, net_id: str) -> dict[str, Any]:
    row = network_row(conn, ctx, net_id)
    return network_record(row, _subnet_ids(conn, [row.id])[row.id])


_VNI_TAKEN = networks.alias("taken")
_VNI_TOP = Fast(select(func.max(networks.c.segmentation_id)))
_VNI_MIN_TAKEN = Fast(select(networks.c.id).where(networks.c.segmentation_id == VNI_MIN).limit(1))
# the first taken VNI whose successor is free, walking the unique index upwards (stops at the first gap)
_VNI_GAP = Fast(select(networks.c.segmentation_id + 1).where(
    networks.c.segmentation_id >= VNI_MIN, networks.c.segmentation_id < VNI_MAX,
    ~select(_VNI_TAKEN.c.id).where(_VNI_TAKEN.c.segmentation_id == networks.c.segmentation_id + 1).exists())
    .order_by(networks.c.segmentation_id).limit(1))


def next_vni(conn: Connection) -> int:
    """A free segmentation id: the one above the highest taken, and once the top of the range is
    taken, the lowest gap a deleted network left. A freed VNI is not handed out again at once: a
    host may still hold the deleted network's VXLAN device until it syncs."""
    top = _VNI_TOP.scalar(conn, {})
    if top is None or int(top) < VNI_MIN:
        return VNI_MIN
    if int(top) < VNI_MAX:
        return int(top) + 1
    if _VNI_MIN_TAKEN.first(conn, {}) is None:
        return VNI_MIN
    gap = _VNI_GAP.scalar(conn, {})
    if gap is None:
        raise errors.Conflict(reason="no free VXLAN segmentation id left")
    return int(gap)


def create_network(conn: Connection, ctx: RequestContext, body: Mapping[str, Any],
                   is_default: bool = False) -> dict[str, Any]:
    _unknown(body, {"name", "admin_state_up", "shared", "project_id", "tenant_id", "description", "mtu",
                    "port_security_enabled", "provider:network_type", "provider:segmentation_id",
                    "availability_zone_hints", "router:external", "is_default", "provider:physical_network"},
             "network")
    policy.check_network_fields(ctx, body)
    project = _project(ctx, body)
    shared = _bool(body, "shared", False)
    if body.get("provider:physical_network") is not None:
        raise errors.Invalid(reason="physical networks are not supported by this cloud (VXLAN only)")
    external = _bool(body, "router:external", False)  # admin only (policy above): floating IPs come from it
    net_type = body.get("provider:network_type") or "vxlan"
    if net_type != "vxlan":
        raise errors.Invalid(reason=f"network type {net_type!r} is not supported here (supported: vxlan)")
    mtu = body.get("mtu", DEFAULT_MTU)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= DEFAULT_MTU:
        raise errors.Invalid(reason=f"mtu must be an integer between 68 and {DEFAULT_MTU}")
    vni = body.get("provider:segmentation_id")
    if vni is not None and (isinstance(vni, bool) or not isinstance(vni, int) or not VNI_MIN <= vni <= VNI_MAX):
        raise errors.Invalid(reason=f"provider:segmentation_id must be an integer {VNI_MIN}-{VNI_MAX}")
    now = utcnow_iso()
    values = {"id": new_id(), "name": _text(body, "name"), "project_id": project, "shared": shared,
              "admin_state_up": _bool(body, "admin_state_up", True), "network_type": "vxlan",
              "segmentation_id": vni if vni is not None else next_vni(conn), "mtu": mtu,
              "is_default": is_default, "gateway_host": None, "router_external": external, "description": _text(body, "description"),
              "created_at": now, "updated_at": now}
    try:
        with conn.begin_nested():
            conn.execute(insert(networks), values)
    except IntegrityError:
        raise errors.Conflict(reason=f"segmentation id {values['segmentation_id']} is already in use") from None
    return get_network(conn, ctx, str(values["id"]))


def delete_network(conn: Connection, ctx: RequestContext, net_id: str) -> None:
    row = network_row(conn, ctx, net_id)
    if not privileged(ctx) and row.project_id != ctx.project:
        raise errors.NetworkNotFound(net_id=net_id)
    used = conn.execute(select(func.count()).select_from(ports).where(ports.c.network_id == net_id,
                                                                      ports.c.device_owner != DHCP_OWNER)).scalar()
    if used:
        raise errors.NetworkInUse(net_id=net_id)
    _drop_dhcp_ports(conn, ports.c.network_id == net_id)
    ipam.forget_subnets(conn, [str(r[0]) for r in conn.execute(select(subnets.c.id)
                                                                .where(subnets.c.network_id == net_id))])
    conn.execute(delete(subnets).where(subnets.c.network_id == net_id))
    conn.execute(delete(networks).where(networks.c.id == net_id))


# --- subnets ---------------------------------------------------------------------

def subnet_record(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "network_id": row.network_id, "tenant_id": row.project_id,
        "project_id": row.project_id, "ip_version": row.ip_version, "cidr": row.cidr,
        "gateway_ip": row.gateway_ip, "allocation_pools": list(row.allocation_pools),
        "enable_dhcp": bool(row.enable_dhcp), "dns_nameservers": list(row.dns_nameservers),
        "host_routes": list(row.host_routes or []),
        "ipv6_ra_mode": None, "ipv6_address_mode": None, "subnetpool_id": None, "description": row.description,
        "service_types": [], "tags": [], "revision_number": 1, "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _visible_subnet(conn: Connection, ctx: RequestContext, row: Row[Any]) -> bool:
    """Another project's subnet is seen only on a shared network: an external network's subnets stay
    hidden (every project sees the network, not its subnets), as Neutron without `subnet-external-network`."""
    if privileged(ctx) or row.project_id == ctx.project:
        return True
    return bool(conn.execute(select(networks.c.shared).where(networks.c.id == row.network_id)).scalar())


def subnet_row(conn: Connection, ctx: RequestContext, subnet_id: str) -> Row[Any]:
    row = conn.execute(select(subnets).where(subnets.c.id == subnet_id)).first()
    if row is None or not _visible_subnet(conn, ctx, row):
        raise errors.SubnetNotFound(subnet_id=subnet_id)
    return row


def list_subnets(conn: Connection, ctx: RequestContext, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = conn.execute(select(subnets).order_by(subnets.c.created_at))
    return [rec for rec in (subnet_record(r) for r in rows if _visible_subnet(conn, ctx, r)) if match(rec, filters)]


def get_subnet(conn: Connection, ctx: RequestContext, subnet_id: str) -> dict[str, Any]:
    return subnet_record(subnet_row(conn, ctx, subnet_id))


def create_subnet(conn: Connection, ctx: RequestContext, body: Mapping[str, Any],
                  rules: policy.SubnetPolicy = DEFAULT_SUBNET_POLICY) -> dict[str, Any]:
    _unknown(body, {"name", "network_id", "cidr", "ip_version", "gateway_ip", "allocation_pools", "enable_dhcp",
                    "dns_nameservers", "project_id", "tenant_id", "description", "host_routes", "subnetpool_id",
                    "ipv6_ra_mode", "ipv6_address_mode", "prefixlen", "use_default_subnetpool",
                    "service_types"}, "subnet")
    if body.get("subnetpool_id") or body.get("use_default_subnetpool"):
        raise errors.Invalid(reason="subnet pools are not supported by this cloud: give a cidr")
    net_id = body.get("network_id")
    if not isinstance(net_id, str):
        raise errors.Invalid(reason="network_id is required")
    net = network_row(conn, ctx, net_id)
    if not privileged(ctx) and net.project_id != ctx.project:
        raise errors.Forbidden(f"Network {net_id} belongs to another project.")
    cidr = ipam.parse_cidr(body.get("cidr"))
    version = body.get("ip_version", cidr.version)
    if version != cidr.version:
        raise errors.Invalid(reason=f"cidr {cidr} is not an IPv{version} network")
    rules.check(cidr)
    if cidr.version != 4:
        raise errors.Invalid(reason="only IPv4 subnets are supported by this cloud")
    existing = [str(r[0]) for r in conn.execute(select(subnets.c.cidr))]
    clash = ipam.overlapping(cidr, existing)
    if clash is not None:
        raise errors.Invalid(reason=f"Requested subnet with cidr: {cidr} for network: {net_id} overlaps with "
                                    f"another subnet ({clash}) of this cell")
    gw_raw = body.get("gateway_ip", "auto")
    gateway = None if gw_raw is None else (cidr.network_address + 1 if gw_raw == "auto"
                                           else ipam.parse_address(gw_raw, cidr, "gateway_ip"))
    pools = ipam.validate_pools(body.get("allocation_pools"), cidr, gateway)
    host_routes = ipam.validate_host_routes(body.get("host_routes"), cidr)
    dns = body.get("dns_nameservers") or []
    if not isinstance(dns, list) or not all(isinstance(d, str) for d in dns):
        raise errors.Invalid(reason="dns_nameservers must be a list of addresses")
    for d in dns:
        try:
            ipaddress.ip_address(d)
        except ValueError:
            raise errors.Invalid(reason=f"dns nameserver {d!r} is not an IP address") from None
    now = utcnow_iso()
    values = {"id": new_id(), "network_id": net_id, "project_id": net.project_id, "name": _text(body, "name"),
              "ip_version": 4, "cidr": str(cidr), "gateway_ip": None if gateway is None else str(gateway),
              "allocation_pools": pools,
              "enable_dhcp": _bool(body, "enable_dhcp", True), "dns_nameservers": list(dns), "host_routes": host_routes,
              "description": _text(body, "description"), "created_at": now, "updated_at": now}
    conn.execute(insert(subnets), values)
    if gateway is None:  # the gateway host answers DHCP from an address of the pools, as Neutron's DHCP port
        new_port(conn, net, "", [], [{"subnet_id": values["id"]}], device_id=f"dhcp-{net_id}",
                 device_owner=DHCP_OWNER, status="ACTIVE")
    return get_subnet(conn, ctx, values["id"])


def _drop_dhcp_ports(conn: Connection, where: Any) -> None:
    for (port_id,) in conn.execute(select(ports.c.id).where(where, ports.c.device_owner == DHCP_OWNER)).all():
        ipam.release_port(conn, port_id)
        conn.execute(delete(ports).where(ports.c.id == port_id))


def delete_subnet(conn: Connection, ctx: RequestContext, subnet_id: str) -> None:
    row = subnet_row(conn, ctx, subnet_id)
    if not privileged(ctx) and row.project_id != ctx.project:
        raise errors.SubnetNotFound(subnet_id=subnet_id)
    dhcp = select(ports.c.id).where(ports.c.device_owner == DHCP_OWNER)
    used = conn.execute(select(func.count()).select_from(ip_allocations)
                        .where(ip_allocations.c.subnet_id == subnet_id, ip_allocations.c.port_id.not_in(dhcp))).scalar()
    if used:
        raise errors.Conflict(reason=f"Unable to complete operation on subnet {subnet_id}: "
                                     "one or more ports have an IP allocation from this subnet.")
    _drop_dhcp_ports(conn, ports.c.id.in_(select(ip_allocations.c.port_id)
                                          .where(ip_allocations.c.subnet_id == subnet_id)))
    ipam.forget_subnets(conn, [subnet_id])
    conn.execute(delete(subnets).where(subnets.c.id == subnet_id))


# --- ports -------------------------------------------------------------------------

def port_record(row: AnyRow | Mapping[str, Any], fixed_ips: list[FixedIp]) -> PortRecord:
    m = as_mapping(row)
    return {
        "id": m["id"], "name": m["name"], "network_id": m["network_id"], "tenant_id": m["project_id"],
        "project_id": m["project_id"], "mac_address": m["mac_address"], "fixed_ips": fixed_ips,
        "device_id": m["device_id"], "device_owner": m["device_owner"], "status": m["status"],
        "admin_state_up": bool(m["admin_state_up"]), "security_groups": list(m["security_groups"]),
        "binding:host_id": m["binding_host"] or "", "binding:vif_type": "tap" if m["binding_host"] else "unbound",
        "binding:vnic_type": "normal", "binding:vif_details": {}, "binding:profile": {},
        "allowed_address_pairs": [], "extra_dhcp_opts": [], "port_security_enabled": True,
        "description": m["description"], "tags": [], "revision_number": 1, "created_at": m["created_at"],
        "updated_at": m["updated_at"],
    }


def _visible_port(ctx: RequestContext, row: Row[Any]) -> bool:
    return privileged(ctx) or row.project_id == ctx.project


def port_row(conn: Connection, ctx: RequestContext, port_id: str) -> Row[Any]:
    row = conn.execute(select(ports).where(ports.c.id == port_id)).first()
    if row is None or not _visible_port(ctx, row):
        raise errors.PortNotFound(port_id=port_id)
    return row


def records_of(conn: Connection, rows: Sequence[Row[Any]]) -> list[PortRecord]:
    ips = ipam.port_ips(conn, [r.id for r in rows])
    return [port_record(r, ips[r.id]) for r in rows]


# filters whose record key shows a port column as it is: narrowed in SQL (indexed), match() still decides
_PORT_COLUMN_FILTERS = {"id": ports.c.id, "network_id": ports.c.network_id, "project_id": ports.c.project_id,
                        "tenant_id": ports.c.project_id, "device_id": ports.c.device_id,
                        "device_owner": ports.c.device_owner}


def list_ports(conn: Connection, ctx: RequestContext, filters: Mapping[str, Any]) -> list[PortRecord]:
    query = select(ports).order_by(ports.c.created_at)
    for key, column in _PORT_COLUMN_FILTERS.items():  # a server view asks for its ports: not a table scan
        if key in filters:
            wanted = filters[key] if isinstance(filters[key], list) else [filters[key]]
            query = query.where(column.in_([str(v) for v in wanted]))
    if not privileged(ctx):
        query = query.where(ports.c.project_id == ctx.project)
    rows = [r for r in conn.execute(query) if _visible_port(ctx, r)]
    return [rec for rec in records_of(conn, rows) if match(rec, filters)]


def get_port(conn: Connection, ctx: RequestContext, port_id: str) -> PortRecord:
    return records_of(conn, [port_row(conn, ctx, port_id)])[0]


def _random_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def new_port(conn: Connection, net: AnyRow, project: str, group_ids: list[str], fixed_ips: Any = None,
             mac: str | None = None, without_address: bool = False, **fields: Any) -> str:
    """Insert a port on `net` (a row) with its fixed IPs, in the caller's unit of work; its id.
    `without_address`: on a network without a subnet the port has none (Neutron's port API); else
    such a network is refused. `fields`: the other port columns (name, device_id, device_owner, ...)."""
    subnet_rows = ipam.network_subnets(conn, net.id)
    if not subnet_rows and not (without_address and not fixed_ips):
        raise errors.Invalid(reason=f"Network {net.id} has no subnet to allocate an address from.")
    if mac is not None:
        mac = policy.normalize_mac(mac)
    now = utcnow_iso()
    values = {"id": new_id(), "network_id": net.id, "project_id": project, "name": "", "device_id": "",
              "device_owner": "", "binding_host": None, "status": "DOWN", "admin_state_up": True,
              "security_groups": group_ids, "auto_delete": False, "description": "", "created_at": now,
              "updated_at": now, **fields}
    for _ in range(1 if mac else 32):  # a generated MAC that is taken is drawn again
        values["mac_address"] = (mac or _random_mac()).lower()
        if ipam.insert_unless_taken(conn, ports, values):
            break
    else:
        raise errors.Conflict(reason=f"MAC address {mac} is already in use" if mac
                              else "could not find a free MAC address")
    if subnet_rows:
        _allocate_fixed_ips(conn, net.id, subnet_rows, values["id"], fixed_ips)
    return str(values["id"])


def create_port(conn: Connection, ctx: RequestContext, body: Mapping[str, Any]) -> PortRecord:
    _unknown(body, {"name", "network_id", "fixed_ips", "mac_address", "device_id", "device_owner",
                    "security_groups", "admin_state_up", "project_id", "tenant_id", "description",
                    "binding:host_id", "port_security_enabled", "binding:vnic_type", "binding:profile"}, "port")
    net_id = body.get("network_id")
    if not isinstance(net_id, str):
        raise errors.Invalid(reason="network_id is required")
    net = network_row(conn, ctx, net_id)  # another project's network is as good as absent: 404, as Neutron
    policy.check_port_fields(ctx, body, "create_port")
    policy.check_unsupported_binding(body)
    project = _project(ctx, body)
    if net.project_id != project and not net.shared and not privileged(ctx):
        raise errors.Invalid(reason=f"Network {net_id} belongs to another project.")
    if body.get("fixed_ips") is not None and net.project_id != project and not privileged(ctx):
        raise errors.Forbidden("(rule:create_port and rule:create_port:fixed_ips) is disallowed by policy")
    mac = policy.normalize_mac(body["mac_address"]) if body.get("mac_address") is not None else None
    device_id, device_owner = _text(body, "device_id"), _text(body, "device_owner")
    _check_device(conn, project, device_id, device_owner)
    group_ids = secgroups.resolve_groups(conn, project, body.get("security_groups"))
    port_id = new_port(conn, net, project, group_ids, body.get("fixed_ips"), mac, without_address=True,
                       name=_text(body, "name"), device_id=device_id, device_owner=device_owner,
                       admin_state_up=_bool(body, "admin_state_up", True), description=_text(body, "description"),
                       binding_host=_text(body, "binding:host_id") or None)
    return get_port(conn, ctx, port_id)


_INSTANCE_PROJECT = Fast(select(instances.c.project_id, instances.c.deleted)
                         .where(instances.c.uuid == bindparam("b_uuid")))


def _check_device(conn: Connection, project: str, device_id: str, device_owner: str) -> None:
    """A port joins a server only of its own project, and a compute-owned port names a live server
    of this cell (the boot flow's _take_port holds the same rule)."""
    if not device_id and not device_owner.startswith("compute:"):
        return
    row = _INSTANCE_PROJECT.first(conn, {"b_uuid": device_id}) if device_id else None
    if row is None:
        if device_owner.startswith("compute:"):
            raise errors.Invalid(reason=f"device_id {device_id!r} is not a server of this cloud: a port "
                                        "owned by compute:* must name its server")
        return  # another kind of device (Neutron's device_id is free text)
    if row.deleted or row.project_id != project:
        raise errors.Conflict(reason=f"Port cannot join server {device_id}: it belongs to another project "
                                     "or is deleted.")


def _allocate_fixed_ips(conn: Connection, net_id: str, subnet_rows: list[AnyRow], port_id: str,
                        fixed_ips: Any) -> None:
    by_id = {s.id: s for s in subnet_rows}
    if fixed_ips is None:
        ipam.allocate(conn, subnet_rows[0], port_id)
        return
    if not isinstance(fixed_ips, list) or not fixed_ips:
        raise errors.Invalid(reason="fixed_ips must be a non-empty list")
    for item in fixed_ips:
        if not isinstance(item, dict) or not set(item) <= {"subnet_id", "ip_address"}:
            raise errors.Invalid(reason="each fixed_ips entry is {subnet_id, ip_address}")
        subnet = by_id.get(str(item.get("subnet_id"))) if item.get("subnet_id") else None
        if item.get("subnet_id") and subnet is None:
            raise errors.Invalid(reason=f"subnet {item['subnet_id']} is not on network {net_id}")
        if subnet is None:
            wanted = item.get("ip_address")
            subnet = next((s for s in subnet_rows if wanted and
                           ipaddress.ip_address(str(wanted)) in ipaddress.ip_network(s.cidr)), None)
            if subnet is None:
                raise errors.Invalid(reason=f"IP address {wanted!r} is not in a subnet of network {net_id}")
        ipam.allocate(conn, subnet, port_id, item.get("ip_address"))


def _replace_fixed_ips(conn: Connection, ctx: RequestContext, row: Row[Any], fixed_ips: Any) -> None:
    """A port's addresses become `fixed_ips` (Neutron's update): an entry naming an address (or only a
    subnet) the port holds keeps it, the others are allocated, the port's other addresses released.
    A router or floating-IP port takes only an update that keeps its addresses (Neutron answers it
    200): the data path places each subnet's gateway address on the router, so a change is 409."""
    net = network_row(conn, ctx, row.network_id)
    if not privileged(ctx) and net.project_id != ctx.project:
        raise errors.Forbidden("(rule:update_port and rule:update_port:fixed_ips) is disallowed by policy")
    if not isinstance(fixed_ips, list) or not all(isinstance(i, dict) and i and set(i) <= {"subnet_id", "ip_address"}
                                                  for i in fixed_ips):
        raise errors.Invalid(reason="fixed_ips must be a list of {subnet_id, ip_address}")
    current = list(ipam.port_ips(conn, [row.id])[row.id])
    kept: list[FixedIp] = []
    new: list[dict[str, Any]] = []
    for item in fixed_ips:
        held = next((c for c in current if c not in kept
                     and item.get("ip_address") in (None, c["ip_address"])
                     and item.get("subnet_id") in (None, c["subnet_id"])), None)
        if held is None:
            new.append(item)
        else:
            kept.append(held)
    dropped = [c["ip_address"] for c in current if c not in kept]
    if row.device_owner in SERVICE_OWNERS and (new or dropped):
        raise errors.Conflict(reason=f"Port {row.id} is a {row.device_owner} port: its address is the router's "
                                     "and cannot be changed through the port API")
    if dropped and conn.execute(select(floatingips.c.id).where(
            floatingips.c.port_id == row.id, floatingips.c.fixed_ip_address.in_(dropped))).first() is not None:
        raise errors.Conflict(reason=f"Port {row.id}: a floating IP is associated with an address being removed")
    if dropped:
        conn.execute(delete(ip_allocations).where(ip_allocations.c.port_id == row.id,
                                                  ip_allocations.c.address.in_(dropped)))
    if new:
        _allocate_fixed_ips(conn, row.network_id, ipam.network_subnets(conn, row.network_id), row.id, new)


def update_port(conn: Connection, ctx: RequestContext, port_id: str, body: Mapping[str, Any]) -> PortRecord:
    _unknown(body, {"name", "description", "security_groups", "admin_state_up", "device_id", "device_owner",
                    "binding:host_id", "binding:profile", "fixed_ips"}, "port")
    row = port_row(conn, ctx, port_id)
    policy.check_port_fields(ctx, body, "update_port", records_of(conn, [row])[0])
    policy.check_unsupported_binding(body)
    values: dict[str, Any] = {"updated_at": utcnow_iso()}
    for key in ("name", "description", "device_id", "device_owner"):
        if key in body:
            values[key] = _text(body, key)
    if "device_id" in values or "device_owner" in values:
        _check_device(conn, row.project_id, values.get("device_id", row.device_id),
                      values.get("device_owner", row.device_owner))
    if "admin_state_up" in body:
        values["admin_state_up"] = _bool(body, "admin_state_up", True)
    if "security_groups" in body:
        values["security_groups"] = secgroups.resolve_groups(conn, row.project_id, body["security_groups"] or [],
                                                             allow_empty=True)
    if "binding:host_id" in body:
        values["binding_host"] = _text(body, "binding:host_id") or None
    if "fixed_ips" in body:
        _replace_fixed_ips(conn, ctx, row, body["fixed_ips"])
    conn.execute(update(ports).where(ports.c.id == port_id).values(**values))
    return get_port(conn, ctx, port_id)


def delete_port(conn: Connection, ctx: RequestContext, port_id: str) -> None:
    row = port_row(conn, ctx, port_id)
    if row.device_owner in SERVICE_OWNERS:
        raise errors.Conflict(reason=f"Port {port_id} cannot be deleted directly via the port API: "
                                     f"has device owner {row.device_owner}.")
    disassociate_floating_ips(conn, port_id)  # Neutron lets the owner delete a port in use: the server loses that NIC
    ipam.release_port(conn, port_id)
    conn.execute(delete(ports).where(ports.c.id == port_id))


def disassociate_floating_ips(conn: Connection, port_id: str) -> None:
    """A port going away takes its floating IPs' associations with it (Neutron's behaviour)."""
    conn.execute(update(floatingips).where(floatingips.c.port_id == port_id)
                 .values(port_id=None, fixed_ip_address=None, router_id=None, updated_at=utcnow_iso(),
                         revision_number=floatingips.c.revision_number + 1))


# --- per-project defaults ---------------------------------------------------------------

def _free_cidr(conn: Connection, pool: str, prefix: int, rules: policy.SubnetPolicy) -> str:
    taken = [ipaddress.ip_network(str(r[0])) for r in conn.execute(select(subnets.c.cidr))]
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefix):
        if rules.allows(candidate) and not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise errors.Conflict(reason=f"no free /{prefix} left in {pool} for a default network")


def ensure_default_network(conn: Connection, project: str, pool: str = DEFAULT_CIDR_POOL,
                           rules: policy.SubnetPolicy = DEFAULT_SUBNET_POLICY) -> AnyRow:
    """The project's own network and subnet, made on first use (the per-project network of nova-network)."""
    row = _DEFAULT_NETWORK.first(conn, {"b_project": project})
    if row is not None:
        return row
    ctx = RequestContext(project=project, roles=("service",))
    net = create_network(conn, ctx, {"name": DEFAULT_NETWORK_NAME, "project_id": project}, is_default=True)
    create_subnet(conn, ctx, {"network_id": net["id"], "name": f"{DEFAULT_NETWORK_NAME}-subnet",
                              "cidr": _free_cidr(conn, pool, DEFAULT_PREFIX, rules), "project_id": project}, rules)
    secgroups.ensure_default_group(conn, project)
    result = conn.execute(select(networks).where(networks.c.id == net["id"])).first()
    assert result is not None
    return result
