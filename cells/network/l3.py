"""Neutron's L3 subset in the cell DB (issue 17): routers, their external gateway and subnet
interfaces, and floating IPs on `router:external` networks, as Neutron-shaped records.

Each function runs inside one unit of work the controller opens (validate -> check -> act), so
bad input leaves nothing half-made and two writers never interleave: of two associations of one
floating IP at once, the second sees the first and gets 409. A router's gateway and interfaces
and a floating IP's address are ports (device_id = the router or floating IP), so addresses stay
unique through ip_allocations' primary key. Scope: a project sees and uses only its own routers,
floating IPs, subnets and ports (another project's are 404, as Neutron answers).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from cells import errors
from cells.context import RequestContext
from cells.network import ipam, policy
from cells.network.resources import (
    L3_OWNERS,
    _bool,
    _project,
    _random_mac,
    _text,
    _unknown,
    create_network,
    create_subnet,
    match,
    network_row,
    new_id,
    new_port,
    port_row,
    privileged,
    subnet_row,
)
from cells.network.schema import floatingips, ip_allocations, networks, ports, routers, subnets
from cells.objects.instance import utcnow_iso

GATEWAY_OWNER, INTERFACE_OWNER, FLOATINGIP_OWNER = L3_OWNERS
CLOUD_OWNER = "cloud"  # the owner of an external network cluster.yaml asks for: the cloud's, no project's


def ensure_external_network(conn: Connection, name: str, cidr: str, rules: policy.SubnetPolicy) -> str:
    """cluster.yaml's external network, made once (at the controller's start) with its subnet; its id.
    One of that name that exists already is kept as it is: the operator may have changed it."""
    row = conn.execute(select(networks.c.id).where(networks.c.name == name,
                                                   networks.c.router_external.is_(True))).first()
    if row is not None:
        return str(row.id)
    ctx = RequestContext(project=None, roles=("service",))
    net = create_network(conn, ctx, {"name": name, "project_id": CLOUD_OWNER, "router:external": True})
    create_subnet(conn, ctx, {"network_id": net["id"], "cidr": cidr, "name": f"{name}-subnet",
                              "project_id": CLOUD_OWNER}, rules)
    return str(net["id"])


def _external_network(conn: Connection, ctx: RequestContext, net_id: Any) -> Row[Any]:
    if not isinstance(net_id, str):
        raise errors.Invalid(reason="network_id of an external network is required")
    row = network_row(conn, ctx, net_id)
    if not row.router_external:
        raise errors.Invalid(reason=f"Network {net_id} is not a valid external network")
    return row


def _port_ips(conn: Connection, port_id: str) -> list[Row[Any]]:
    return list(conn.execute(select(ip_allocations).where(ip_allocations.c.port_id == port_id)))


def _drop_port(conn: Connection, port_id: str) -> None:
    ipam.release_port(conn, port_id)
    conn.execute(delete(ports).where(ports.c.id == port_id))


# --- routers -----------------------------------------------------------------------------

def router_row(conn: Connection, ctx: RequestContext, router_id: str) -> Row[Any]:
    row = conn.execute(select(routers).where(routers.c.id == router_id)).first()
    if row is None or not (privileged(ctx) or row.project_id == ctx.project):
        raise errors.RouterNotFound(router_id=router_id)
    return row


def _gateway_info(conn: Connection, row: Row[Any]) -> dict[str, Any] | None:
    if row.gw_port_id is None:
        return None
    port = conn.execute(select(ports.c.network_id).where(ports.c.id == row.gw_port_id)).first()
    ips = [{"subnet_id": a.subnet_id, "ip_address": a.address} for a in _port_ips(conn, row.gw_port_id)]
    return {"network_id": port.network_id if port else None, "enable_snat": bool(row.enable_snat),
            "external_fixed_ips": ips}


def router_record(conn: Connection, row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "tenant_id": row.project_id, "project_id": row.project_id,
        "admin_state_up": bool(row.admin_state_up), "status": "ACTIVE",
        "external_gateway_info": _gateway_info(conn, row), "routes": [], "description": row.description,
        "distributed": False, "ha": False, "availability_zone_hints": [], "availability_zones": ["nova"],
        "flavor_id": None, "tags": [], "revision_number": 1, "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def list_routers(conn: Connection, ctx: RequestContext, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    query = select(routers).order_by(routers.c.created_at)
    if not privileged(ctx):
        query = query.where(routers.c.project_id == ctx.project)
    return [rec for rec in (router_record(conn, r) for r in conn.execute(query)) if match(rec, filters)]


def get_router(conn: Connection, ctx: RequestContext, router_id: str) -> dict[str, Any]:
    return router_record(conn, router_row(conn, ctx, router_id))


def _set_gateway(conn: Connection, ctx: RequestContext, row: Row[Any], info: Any) -> dict[str, Any]:
    """The columns that give the router `info` as its gateway (None: none), its port made or dropped."""
    if info is not None and not isinstance(info, dict):
        raise errors.Invalid(reason="external_gateway_info must be a map or null")
    if info:
        _unknown(info, {"network_id", "enable_snat", "external_fixed_ips"}, "external_gateway_info")
        if info.get("external_fixed_ips") and not privileged(ctx):
            raise errors.Forbidden("(rule:update_router and rule:update_router:external_gateway_info:"
                                   "external_fixed_ips) is disallowed by policy")
        if "enable_snat" in info and not privileged(ctx):
            raise errors.Forbidden("(rule:update_router and rule:update_router:external_gateway_info:"
                                   "enable_snat) is disallowed by policy")
    current = _gateway_info(conn, row)
    wanted = info.get("network_id") if info else None
    if current is not None and current["network_id"] == wanted:
        return {"enable_snat": _bool(info or {}, "enable_snat", bool(row.enable_snat))}
    if current is not None:
        if conn.execute(select(floatingips.c.id).where(floatingips.c.router_id == row.id).limit(1)).first():
            raise errors.RouterInUse(router_id=row.id, reason="has floating IPs using its external gateway")
        conn.execute(update(routers).where(routers.c.id == row.id).values(gw_port_id=None))
        _drop_port(conn, row.gw_port_id)
    if not info:
        return {"gw_port_id": None, "enable_snat": True}
    net = _external_network(conn, ctx, wanted)
    port_id = new_port(conn, net, "", [], info.get("external_fixed_ips") or None, device_id=row.id,
                       device_owner=GATEWAY_OWNER, status="ACTIVE")
    return {"gw_port_id": port_id, "enable_snat": _bool(info, "enable_snat", True)}


_ROUTER_FIELDS = {"name", "description", "admin_state_up", "external_gateway_info", "project_id", "tenant_id",
                  "distributed", "ha", "availability_zone_hints", "flavor_id"}


def _check_router_flags(ctx: RequestContext, body: Mapping[str, Any]) -> None:
    for key in ("distributed", "ha"):
        if body.get(key):
            raise errors.Invalid(reason=f"'{key}' routers are not supported by this cloud")
    if body.get("flavor_id"):
        raise errors.Invalid(reason="router flavors are not supported by this cloud")


def create_router(conn: Connection, ctx: RequestContext, body: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(body, _ROUTER_FIELDS, "router")
    _check_router_flags(ctx, body)
    now = utcnow_iso()
    values = {"id": new_id(), "project_id": _project(ctx, body), "name": _text(body, "name"),
              "description": _text(body, "description"), "admin_state_up": _bool(body, "admin_state_up", True),
              "gw_port_id": None, "enable_snat": True, "created_at": now, "updated_at": now}
    conn.execute(insert(routers), values)
    if body.get("external_gateway_info"):
        row = router_row(conn, ctx, str(values["id"]))
        conn.execute(update(routers).where(routers.c.id == row.id)
                     .values(**_set_gateway(conn, ctx, row, body["external_gateway_info"])))
    return get_router(conn, ctx, str(values["id"]))


def update_router(conn: Connection, ctx: RequestContext, router_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(body, {"name", "description", "admin_state_up", "external_gateway_info", "routes"}, "router")
    if body.get("routes"):
        raise errors.Invalid(reason="static routes are not supported by this cloud")
    row = router_row(conn, ctx, router_id)
    values: dict[str, Any] = {"updated_at": utcnow_iso()}
    for key in ("name", "description"):
        if key in body:
            values[key] = _text(body, key)
    if "admin_state_up" in body:
        values["admin_state_up"] = _bool(body, "admin_state_up", True)
    if "external_gateway_info" in body:
        values.update(_set_gateway(conn, ctx, row, body["external_gateway_info"]))
    conn.execute(update(routers).where(routers.c.id == router_id).values(**values))
    return get_router(conn, ctx, router_id)


def _interface_ports(conn: Connection, router_id: str) -> list[Row[Any]]:
    return list(conn.execute(select(ports).where(ports.c.device_id == router_id,
                                                 ports.c.device_owner == INTERFACE_OWNER)))


def delete_router(conn: Connection, ctx: RequestContext, router_id: str) -> None:
    row = router_row(conn, ctx, router_id)
    if _interface_ports(conn, router_id):
        raise errors.RouterInUse(router_id=router_id, reason="still has ports")
    if conn.execute(select(floatingips.c.id).where(floatingips.c.router_id == router_id).limit(1)).first():
        raise errors.RouterInUse(router_id=router_id, reason="has floating IPs associated through it")
    conn.execute(delete(routers).where(routers.c.id == router_id))
    if row.gw_port_id is not None:
        _drop_port(conn, row.gw_port_id)


def _interface_info(row: Row[Any], port_id: str, subnet: Row[Any]) -> dict[str, Any]:
    return {"id": row.id, "tenant_id": row.project_id, "project_id": row.project_id, "port_id": port_id,
            "subnet_id": subnet.id, "subnet_ids": [subnet.id], "network_id": subnet.network_id}


def _attachable_subnet(conn: Connection, ctx: RequestContext, router: Row[Any], subnet_id: str) -> Row[Any]:
    subnet = subnet_row(conn, ctx, subnet_id)
    if subnet.project_id != router.project_id and not privileged(ctx):
        raise errors.SubnetNotFound(subnet_id=subnet_id)  # another project's (even shared) subnet is not ours
    if subnet.gateway_ip is None:
        raise errors.Invalid(reason="Bad router request: Subnet for router interface must have a gateway IP.")
    if conn.execute(select(networks.c.router_external).where(networks.c.id == subnet.network_id)).scalar():
        raise errors.Invalid(reason=f"Subnet {subnet_id} is on an external network: set it as the gateway")
    taken = conn.execute(select(ports.c.device_id).join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
                         .where(ip_allocations.c.subnet_id == subnet.id,
                                ports.c.device_owner == INTERFACE_OWNER).limit(1)).first()
    if taken is not None:
        raise errors.Invalid(reason=f"Router {taken.device_id} already has a port on subnet {subnet.id}")
    return subnet


def add_interface(conn: Connection, ctx: RequestContext, router_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(body, {"subnet_id", "port_id"}, "router interface")
    if bool(body.get("subnet_id")) == bool(body.get("port_id")):
        raise errors.Invalid(reason="Either subnet_id or port_id must be specified (and not both)")
    router = router_row(conn, ctx, router_id)
    if body.get("port_id"):
        port = port_row(conn, ctx, str(body["port_id"]))
        if port.project_id != router.project_id and not privileged(ctx):
            raise errors.PortNotFound(port_id=port.id)
        if port.device_id or port.device_owner:
            raise errors.Conflict(reason=f"Port {port.id} is in use by {port.device_owner or port.device_id}")
        ips = _port_ips(conn, port.id)
        if len(ips) != 1:
            raise errors.Invalid(reason=f"Router port {port.id} must have exactly one fixed IP")
        subnet = _attachable_subnet(conn, ctx, router, ips[0].subnet_id)
        conn.execute(update(ports).where(ports.c.id == port.id)
                     .values(device_id=router.id, device_owner=INTERFACE_OWNER, status="ACTIVE"))
        return _interface_info(router, port.id, subnet)
    subnet = _attachable_subnet(conn, ctx, router, str(body["subnet_id"]))
    net = conn.execute(select(networks).where(networks.c.id == subnet.network_id)).first()
    assert net is not None
    port_id = new_id()
    now = utcnow_iso()
    # the subnet's gateway address: the network host held it alone so far, IPAM never hands it out
    values = {"id": port_id, "network_id": net.id, "project_id": subnet.project_id, "name": "",
              "device_id": router.id, "device_owner": INTERFACE_OWNER, "binding_host": None, "status": "ACTIVE",
              "admin_state_up": True, "security_groups": [], "auto_delete": False, "description": "",
              "created_at": now, "updated_at": now, "mac_address": ""}
    for _ in range(32):
        values["mac_address"] = _random_mac()
        if ipam.insert_unless_taken(conn, ports, values):
            break
    else:
        raise errors.Conflict(reason="could not find a free MAC address")
    try:
        with conn.begin_nested():
            conn.execute(insert(ip_allocations), {"subnet_id": subnet.id, "address": subnet.gateway_ip,
                                                  "port_id": port_id, "network_id": net.id})
    except IntegrityError:
        raise errors.Conflict(reason=f"gateway {subnet.gateway_ip} of subnet {subnet.id} is in use") from None
    return _interface_info(router, port_id, subnet)


def remove_interface(conn: Connection, ctx: RequestContext, router_id: str,
                     body: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(body, {"subnet_id", "port_id"}, "router interface")
    router = router_row(conn, ctx, router_id)
    found = None
    for port in _interface_ports(conn, router_id):
        ips = _port_ips(conn, port.id)
        if port.id == body.get("port_id") or any(a.subnet_id == body.get("subnet_id") for a in ips):
            found = (port, ips)
            break
    if found is None:
        what = f"port {body.get('port_id')}" if body.get("port_id") else f"subnet {body.get('subnet_id')}"
        raise errors.NotFound(f"Router {router_id} has no interface on {what}")
    port, ips = found
    subnet_ids = [a.subnet_id for a in ips]
    in_use = conn.execute(select(floatingips.c.id).join(ip_allocations, ip_allocations.c.port_id ==
                                                        floatingips.c.port_id)
                          .where(floatingips.c.router_id == router_id, ip_allocations.c.subnet_id.in_(subnet_ids))
                          .limit(1)).first()
    if in_use is not None:
        raise errors.RouterInUse(router_id=router_id,
                                 reason=f"cannot lose its interface: floating IP {in_use.id} needs it")
    subnet = conn.execute(select(subnets).where(subnets.c.id == subnet_ids[0])).first()
    assert subnet is not None
    _drop_port(conn, port.id)
    return _interface_info(router, port.id, subnet)


# --- floating IPs ---------------------------------------------------------------------------

def floatingip_row(conn: Connection, ctx: RequestContext, fip_id: str) -> Row[Any]:
    row = conn.execute(select(floatingips).where(floatingips.c.id == fip_id)).first()
    if row is None or not (privileged(ctx) or row.project_id == ctx.project):
        raise errors.FloatingIPNotFound(floatingip_id=fip_id)
    return row


def floatingip_record(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id, "tenant_id": row.project_id, "project_id": row.project_id,
        "floating_network_id": row.floating_network_id, "floating_ip_address": row.floating_ip_address,
        "fixed_ip_address": row.fixed_ip_address, "port_id": row.port_id, "router_id": row.router_id,
        "status": "ACTIVE" if row.port_id else "DOWN", "description": row.description, "port_details": None,
        "dns_domain": "", "dns_name": "", "qos_policy_id": None, "tags": [], "revision_number": row.revision_number,
        "created_at": row.created_at, "updated_at": row.updated_at,
    }


def list_floatingips(conn: Connection, ctx: RequestContext, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    query = select(floatingips).order_by(floatingips.c.created_at)
    if not privileged(ctx):
        query = query.where(floatingips.c.project_id == ctx.project)
    return [rec for rec in (floatingip_record(r) for r in conn.execute(query)) if match(rec, filters)]


def get_floatingip(conn: Connection, ctx: RequestContext, fip_id: str) -> dict[str, Any]:
    return floatingip_record(floatingip_row(conn, ctx, fip_id))


def _association(conn: Connection, ctx: RequestContext, fip: Mapping[str, Any], port_id: Any,
                 fixed: Any) -> dict[str, Any]:
    """The columns that associate the floating IP with `port_id` (None: disassociate)."""
    if port_id is None:
        return {"port_id": None, "fixed_ip_address": None, "router_id": None}
    if not isinstance(port_id, str):
        raise errors.Invalid(reason="port_id must be a port id or null")
    port = port_row(conn, ctx, port_id)
    if port.project_id != fip["project_id"] and not privileged(ctx):
        raise errors.PortNotFound(port_id=port_id)
    if port.device_owner.startswith("network:"):
        raise errors.Invalid(reason=f"Port {port_id} has owner {port.device_owner}: it cannot have a floating IP")
    ips = [a for a in _port_ips(conn, port_id) if ":" not in a.address]
    if fixed is not None:
        ips = [a for a in ips if a.address == fixed]
        if not ips:
            raise errors.Invalid(reason=f"Port {port_id} does not have fixed IP {fixed}")
    if not ips:
        raise errors.Invalid(reason=f"Port {port_id} has no IPv4 address to associate a floating IP with")
    if len(ips) > 1:
        raise errors.Invalid(reason=f"Port {port_id} has several IPv4 addresses: give fixed_ip_address")
    router = conn.execute(
        select(routers.c.id).join(ports, ports.c.id == routers.c.gw_port_id)
        .where(ports.c.network_id == fip["floating_network_id"],
               routers.c.id.in_(select(ports.c.device_id).join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
                                .where(ports.c.device_owner == INTERFACE_OWNER,
                                       ip_allocations.c.subnet_id == ips[0].subnet_id)))).first()
    if router is None:
        raise errors.NotFound(f"External network {fip['floating_network_id']} is not reachable from subnet "
                              f"{ips[0].subnet_id}. Therefore, cannot associate Port {port_id} with a Floating IP.")
    return {"port_id": port_id, "fixed_ip_address": ips[0].address, "router_id": router.id}


def _write_association(conn: Connection, fip_id: str, values: dict[str, Any]) -> None:
    try:
        with conn.begin_nested():
            conn.execute(update(floatingips).where(floatingips.c.id == fip_id).values(**values))
    except IntegrityError:
        raise errors.Conflict(reason=f"Port {values['port_id']} already has a floating IP on fixed IP "
                                     f"{values['fixed_ip_address']}") from None


def create_floatingip(conn: Connection, ctx: RequestContext, body: Mapping[str, Any]) -> dict[str, Any]:
    _unknown(body, {"floating_network_id", "port_id", "fixed_ip_address", "floating_ip_address", "subnet_id",
                    "description", "project_id", "tenant_id", "dns_domain", "dns_name"}, "floatingip")
    if (body.get("floating_ip_address") or body.get("subnet_id")) and not privileged(ctx):
        raise errors.Forbidden("(rule:create_floatingip and rule:create_floatingip:floating_ip_address) "
                               "is disallowed by policy")
    project = _project(ctx, body)
    net = _external_network(conn, ctx, body.get("floating_network_id"))
    fixed: list[dict[str, Any]] | None = None
    if body.get("floating_ip_address") or body.get("subnet_id"):
        fixed = [{**({"subnet_id": body["subnet_id"]} if body.get("subnet_id") else {}),
                  **({"ip_address": body["floating_ip_address"]} if body.get("floating_ip_address") else {})}]
    fip_id = new_id()
    port_id = new_port(conn, net, "", [], fixed, device_id=fip_id, device_owner=FLOATINGIP_OWNER, status="N/A")
    address = _port_ips(conn, port_id)[0].address
    now = utcnow_iso()
    values = {"id": fip_id, "project_id": project, "floating_network_id": net.id, "floating_port_id": port_id,
              "floating_ip_address": address, "port_id": None, "fixed_ip_address": None, "router_id": None,
              "description": _text(body, "description"), "created_at": now, "updated_at": now}
    conn.execute(insert(floatingips), values)
    if body.get("port_id") is not None:
        _write_association(conn, fip_id, _association(conn, ctx, values, body["port_id"],
                                                       body.get("fixed_ip_address")))
    return get_floatingip(conn, ctx, fip_id)


def update_floatingip(conn: Connection, ctx: RequestContext, fip_id: str, body: Mapping[str, Any],
                      if_match: int | None = None) -> dict[str, Any]:
    """Neutron's update: a new port_id moves an associated floating IP in one update (the old
    association ends in the same write); `if_match` (If-Match: revision_number=N) makes it
    conditional, so of two movers that saw one revision the second gets 412."""
    _unknown(body, {"port_id", "fixed_ip_address", "description"}, "floatingip")
    row = floatingip_row(conn, ctx, fip_id)
    if if_match is not None and if_match != row.revision_number:
        raise errors.RevisionNumberConstraintFailed(expected=if_match, current=row.revision_number)
    values: dict[str, Any] = {"updated_at": utcnow_iso(), "revision_number": row.revision_number + 1}
    if "description" in body:
        values["description"] = _text(body, "description")
    if "port_id" in body:
        values.update(_association(conn, ctx, dict(row._mapping), body["port_id"], body.get("fixed_ip_address")))
    _write_association(conn, fip_id, values)
    return get_floatingip(conn, ctx, fip_id)


def release_network_floating_ips(conn: Connection, ctx: RequestContext, net_id: str) -> bool:
    """Before an external network is deleted: its floating IPs go with it, as Neutron does (the
    caller's delete_network, in the same unit of work, still refuses one it may not delete or a
    router gateway on it). Whether the network is external."""
    if not network_row(conn, ctx, net_id).router_external:
        return False
    for fip in conn.execute(select(floatingips.c.id, floatingips.c.floating_port_id)
                            .where(floatingips.c.floating_network_id == net_id)).all():
        conn.execute(delete(floatingips).where(floatingips.c.id == fip.id))
        _drop_port(conn, fip.floating_port_id)
    return True


def delete_floatingip(conn: Connection, ctx: RequestContext, fip_id: str) -> None:
    row = floatingip_row(conn, ctx, fip_id)
    conn.execute(delete(floatingips).where(floatingips.c.id == fip_id))
    _drop_port(conn, row.floating_port_id)
