"""Security groups and rules in the cell DB (Neutron-shaped records).

Every project has a group named "default", made on first use as Neutron does:
egress to anywhere, ingress only from members of the same group (IPv4 and IPv6).
"""
from __future__ import annotations

import ipaddress
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import Row

from cells import errors
from cells.context import RequestContext
from cells.db.fast import AnyRow, Fast, as_mapping
from cells.network.schema import ports, security_group_rules, security_groups
from cells.objects.instance import utcnow_iso

DEFAULT_GROUP = "default"
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
ETHERTYPES = ("IPv4", "IPv6")


def _privileged(ctx: RequestContext) -> bool:
    return ctx.is_admin or "service" in ctx.roles or ctx.project is None


def rule_record(row: AnyRow | Mapping[str, Any]) -> dict[str, Any]:
    m = as_mapping(row)
    return {"id": m["id"], "security_group_id": m["security_group_id"], "direction": m["direction"],
            "ethertype": m["ethertype"], "protocol": m["protocol"], "port_range_min": m["port_range_min"],
            "port_range_max": m["port_range_max"], "remote_ip_prefix": m["remote_ip_prefix"],
            "remote_group_id": m["remote_group_id"], "remote_address_group_id": None,
            "tenant_id": m["project_id"], "project_id": m["project_id"], "description": m["description"],
            "created_at": m["created_at"], "updated_at": m["created_at"], "revision_number": 0, "tags": []}


def group_record(row: Row[Any], rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "description": row.description, "tenant_id": row.project_id,
            "project_id": row.project_id, "security_group_rules": rules, "stateful": True, "shared": False,
            "tags": [], "revision_number": 1, "created_at": row.created_at, "updated_at": row.updated_at}


def _rules_by_group(conn: Connection, group_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {g: [] for g in group_ids}
    rows = conn.execute(select(security_group_rules)
                        .where(security_group_rules.c.security_group_id.in_(group_ids))
                        .order_by(security_group_rules.c.created_at, security_group_rules.c.id))
    for r in rows:
        out[r.security_group_id].append(rule_record(r))
    return out


_DEFAULT_GROUP = Fast(select(security_groups.c.id).where(  # built once: every boot asks
    security_groups.c.project_id == bindparam("b_project"), security_groups.c.name == DEFAULT_GROUP))


def ensure_default_group(conn: Connection, project: str) -> str:
    row = _DEFAULT_GROUP.first(conn, {"b_project": project})
    if row is not None:
        return str(row.id)
    now = utcnow_iso()
    gid = str(uuidlib.uuid4())
    conn.execute(insert(security_groups), {"id": gid, "project_id": project, "name": DEFAULT_GROUP,
                                           "description": "Default security group", "created_at": now,
                                           "updated_at": now})
    for ethertype in ETHERTYPES:
        _insert_rule(conn, gid, project, "ingress", ethertype, remote_group_id=gid)
        _insert_rule(conn, gid, project, "egress", ethertype)
    return gid


def _insert_rule(conn: Connection, gid: str, project: str, direction: str, ethertype: str,
                 protocol: str | None = None, port_min: int | None = None, port_max: int | None = None,
                 prefix: str | None = None, remote_group_id: str | None = None, description: str = "") -> str:
    rid = str(uuidlib.uuid4())
    conn.execute(insert(security_group_rules), {
        "id": rid, "security_group_id": gid, "project_id": project, "direction": direction, "ethertype": ethertype,
        "protocol": protocol, "port_range_min": port_min, "port_range_max": port_max, "remote_ip_prefix": prefix,
        "remote_group_id": remote_group_id, "description": description, "created_at": utcnow_iso()})
    return rid


def resolve_groups(conn: Connection, project: str, wanted: Any, allow_empty: bool = False) -> list[str]:
    """Group ids for a port of `project`: given as ids or names (names as Nova's server create
    sends them); None means the project's default group."""
    if wanted is None:
        return [ensure_default_group(conn, project)]
    if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
        raise errors.Invalid(reason="security_groups must be a list of ids or names")
    if not wanted and not allow_empty:
        return []
    out: list[str] = []
    for ref in wanted:
        if ref == DEFAULT_GROUP:
            gid = ensure_default_group(conn, project)
        else:
            rows = list(conn.execute(select(security_groups.c.id).where(
                security_groups.c.project_id == project,
                (security_groups.c.id == ref) | (security_groups.c.name == ref))))
            if not rows:
                raise errors.SecurityGroupNotFound(id=ref)
            if len(rows) > 1:
                raise errors.Conflict(reason=f"Multiple security groups named {ref!r}: use the id")
            gid = str(rows[0].id)
        if gid not in out:
            out.append(gid)
    return out


def group_row(conn: Connection, ctx: RequestContext, gid: str) -> Row[Any]:
    row = conn.execute(select(security_groups).where(security_groups.c.id == gid)).first()
    if row is None or not (_privileged(ctx) or row.project_id == ctx.project):
        raise errors.SecurityGroupNotFound(id=gid)
    return row


def list_groups(conn: Connection, ctx: RequestContext) -> list[dict[str, Any]]:
    if ctx.project is not None:
        ensure_default_group(conn, ctx.project)
    rows = [r for r in conn.execute(select(security_groups).order_by(security_groups.c.created_at))
            if _privileged(ctx) or r.project_id == ctx.project]
    rules = _rules_by_group(conn, [r.id for r in rows])
    return [group_record(r, rules[r.id]) for r in rows]


def get_group(conn: Connection, ctx: RequestContext, gid: str) -> dict[str, Any]:
    row = group_row(conn, ctx, gid)
    return group_record(row, _rules_by_group(conn, [gid])[gid])


def create_group(conn: Connection, ctx: RequestContext, body: Mapping[str, Any]) -> dict[str, Any]:
    extra = set(body) - {"name", "description", "project_id", "tenant_id", "stateful"}
    if extra:
        raise errors.Invalid(reason=f"Unrecognized attribute(s) '{', '.join(sorted(extra))}'")
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise errors.Invalid(reason="a security group needs a name of at most 255 characters")
    project = str(body.get("project_id") or body.get("tenant_id") or ctx.project or "")
    if not project or (project != ctx.project and not _privileged(ctx)):
        raise errors.Invalid(reason="project_id must be the caller's project")
    if name == DEFAULT_GROUP:
        raise errors.Conflict(reason="Default security group already exists.")
    ensure_default_group(conn, project)
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > 255:
        raise errors.Invalid(reason="description must be a string of at most 255 characters")
    now = utcnow_iso()
    gid = str(uuidlib.uuid4())
    conn.execute(insert(security_groups), {"id": gid, "project_id": project, "name": name,
                                           "description": description, "created_at": now, "updated_at": now})
    for ethertype in ETHERTYPES:  # a new group allows all egress, like Neutron's
        _insert_rule(conn, gid, project, "egress", ethertype)
    return get_group(conn, ctx, gid)


def groups_naming(conn: Connection, gid: str) -> set[str]:
    """The other groups with a rule whose remote group is `gid`."""
    return {str(r[0]) for r in conn.execute(select(security_group_rules.c.security_group_id).where(
        security_group_rules.c.remote_group_id == gid, security_group_rules.c.security_group_id != gid))}


def delete_group(conn: Connection, ctx: RequestContext, gid: str) -> None:
    row = group_row(conn, ctx, gid)
    if row.name == DEFAULT_GROUP and not _privileged(ctx):
        raise errors.Conflict(reason="Insufficient rights for removing default security group.")
    for port in conn.execute(select(ports.c.id, ports.c.security_groups)):
        if gid in (port.security_groups or []):
            raise errors.Conflict(reason=f"Security Group {gid} in use.")
    # its rules, and other groups' rules naming it as their remote group (Neutron's ON DELETE CASCADE)
    conn.execute(delete(security_group_rules).where(or_(security_group_rules.c.security_group_id == gid,
                                                        security_group_rules.c.remote_group_id == gid)))
    conn.execute(delete(security_groups).where(security_groups.c.id == gid))


def update_group(conn: Connection, ctx: RequestContext, gid: str, body: Mapping[str, Any]) -> dict[str, Any]:
    row = group_row(conn, ctx, gid)
    values: dict[str, Any] = {}
    for key in ("name", "description"):
        if key in body:
            if not isinstance(body[key], str) or len(body[key]) > 255:
                raise errors.Invalid(reason=f"{key} must be a string of at most 255 characters")
            values[key] = body[key]
    if values.get("name") and row.name == DEFAULT_GROUP and values["name"] != DEFAULT_GROUP:
        raise errors.Conflict(reason="The default security group cannot be renamed.")
    if values.get("name") == DEFAULT_GROUP and row.name != DEFAULT_GROUP:  # a project has one default group
        raise errors.Conflict(reason="Default security group already exists: another group cannot be named default.")
    if values:
        conn.execute(update(security_groups).where(security_groups.c.id == gid)
                     .values(**values, updated_at=utcnow_iso()))
    return get_group(conn, ctx, gid)


# --- rules ---------------------------------------------------------------------------

def _port(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.Invalid(reason=f"{what} must be an integer 0-65535, not {value!r}")
    if not 0 <= value <= 65535:  # the protocol's own check says which bound (Neutron's wording)
        raise errors.Invalid(reason=f"Invalid value for port {value}: {what} must be 0-65535")
    return value


def create_rule(conn: Connection, ctx: RequestContext, body: Mapping[str, Any]) -> dict[str, Any]:
    extra = set(body) - {"security_group_id", "direction", "ethertype", "protocol", "port_range_min",
                         "port_range_max", "remote_ip_prefix", "remote_group_id", "description", "project_id",
                         "tenant_id", "remote_address_group_id"}
    if extra:
        raise errors.Invalid(reason=f"Unrecognized attribute(s) '{', '.join(sorted(extra))}'")
    group = group_row(conn, ctx, str(body.get("security_group_id")))
    direction = body.get("direction")
    if direction not in ("ingress", "egress"):
        raise errors.Invalid(reason=f"direction must be ingress or egress, not {direction!r}")
    ethertype = body.get("ethertype") or "IPv4"
    if ethertype not in ETHERTYPES:
        raise errors.Invalid(reason=f"ethertype must be IPv4 or IPv6, not {ethertype!r}")
    protocol = body.get("protocol")
    if protocol is not None:
        protocol = str(protocol).lower()
        if protocol in ("any", "0"):
            protocol = None
        elif protocol in ("6", "17", "1"):
            protocol = {"6": "tcp", "17": "udp", "1": "icmp"}[protocol]
        elif protocol not in PROTOCOLS:
            raise errors.Invalid(reason=f"protocol must be tcp, udp, icmp or any, not {body.get('protocol')!r}")
    pmin, pmax = _port(body.get("port_range_min"), "port_range_min"), _port(body.get("port_range_max"),
                                                                             "port_range_max")
    if protocol in ("tcp", "udp"):  # Neutron's messages, which clients match on
        if (pmin is None) != (pmax is None) or (pmin is not None and pmax is not None and pmin > pmax):
            raise errors.Invalid(reason="port_range_min must be <= port_range_max, both given or neither")
    elif protocol == "icmp":
        for value, what in ((pmin, "type"), (pmax, "code")):
            if value is not None and not 0 <= value <= 255:
                raise errors.Invalid(reason=f"Invalid value for ICMP {what} {value}: it must be 0-255")
        if pmin is None and pmax is not None:
            raise errors.Invalid(reason=f"ICMP type (port-range-min) is missing for ICMP code {pmax}")
    elif pmin is not None or pmax is not None:
        raise errors.Invalid(reason="port ranges need protocol tcp or udp")
    prefix = body.get("remote_ip_prefix")
    remote_group = body.get("remote_group_id")
    if prefix is not None and remote_group is not None:
        raise errors.Invalid(reason="Only remote_ip_prefix or remote_group_id may be provided.")
    if prefix is not None:
        try:
            net = ipaddress.ip_network(str(prefix), strict=False)
        except ValueError:
            raise errors.Invalid(reason=f"remote_ip_prefix {prefix!r} is not a CIDR") from None
        if f"IPv{net.version}" != ethertype:
            raise errors.Invalid(reason=f"remote_ip_prefix {prefix} does not match ethertype {ethertype}")
        # kept as given, with its mask added (Neutron: 10.2.3.124/24 stays so, 10.0.0.5 is 10.0.0.5/32);
        # the rule matches the network it names (node/network/linux.py renders that)
        prefix = str(ipaddress.ip_interface(str(prefix)))
    if remote_group is not None:
        group_row(conn, ctx, str(remote_group))
    for r in conn.execute(select(security_group_rules).where(security_group_rules.c.security_group_id == group.id)):
        if (r.direction, r.ethertype, r.protocol, r.port_range_min, r.port_range_max, _network(r.remote_ip_prefix),
                r.remote_group_id) == (direction, ethertype, protocol, pmin, pmax, _network(prefix), remote_group):
            raise errors.Conflict(reason=f"Security group rule already exists. Rule id is {r.id}.")
    description = body.get("description") or ""
    rid = _insert_rule(conn, group.id, group.project_id, direction, ethertype, protocol, pmin, pmax, prefix,
                       remote_group, str(description)[:255])
    row = conn.execute(select(security_group_rules).where(security_group_rules.c.id == rid)).one()
    return rule_record(row)


def _network(prefix: str | None) -> str | None:
    """The network a stored prefix matches (two spellings of one network are the same rule)."""
    return None if prefix is None else str(ipaddress.ip_network(prefix, strict=False))


def rule_row(conn: Connection, ctx: RequestContext, rid: str) -> Row[Any]:
    row = conn.execute(select(security_group_rules).where(security_group_rules.c.id == rid)).first()
    if row is None or not (_privileged(ctx) or row.project_id == ctx.project):
        raise errors.SecurityGroupRuleNotFound(id=rid)
    return row


def list_rules(conn: Connection, ctx: RequestContext) -> list[dict[str, Any]]:
    rows = conn.execute(select(security_group_rules).order_by(security_group_rules.c.created_at))
    return [rule_record(r) for r in rows if _privileged(ctx) or r.project_id == ctx.project]


def delete_rule(conn: Connection, ctx: RequestContext, rid: str) -> None:
    rule_row(conn, ctx, rid)
    conn.execute(delete(security_group_rules).where(security_group_rules.c.id == rid))
