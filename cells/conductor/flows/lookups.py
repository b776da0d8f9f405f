"""Read-only conductor queries for the API's quotas, instance actions and the
metadata service: each is one read unit of work on the cell DB."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, false, select

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows import delete
from cells.context import RequestContext
from cells.db import action_records
from cells.db import instances as idb
from cells.db.schema import instances
from cells.network.schema import ip_allocations, ports
from cells.objects.records import InstanceRecord


def _usage(conn: Connection, project_id: str) -> dict[str, int]:
    """Nova counts every instance not deleted (ERROR ones too) and its flavor's vcpus and RAM."""
    rows = conn.execute(select(instances.c.flavor).where(instances.c.project_id == project_id,
                                                         instances.c.deleted == false()))
    used = {"instances": 0, "cores": 0, "ram": 0}
    for (flavor,) in rows:
        used["instances"] += 1
        used["cores"] += int((flavor or {}).get("vcpus") or 0)
        used["ram"] += int((flavor or {}).get("ram") or 0)
    return used


async def project_usage(env: FlowEnv, ctx: RequestContext, project_id: str) -> dict[str, int]:
    if not isinstance(project_id, str) or not project_id:
        raise errors.Invalid(reason="project_id must be a non-empty string")
    if not (ctx.is_admin or "service" in ctx.roles) and ctx.project != project_id:
        raise errors.Forbidden()
    return await env.db.read(lambda conn: _usage(conn, project_id))


def _actions(conn: Connection, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
    row = idb.get_row(conn, uuid)
    if row is None or not delete.visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    return action_records.actions_of(conn, uuid)


async def instance_actions(env: FlowEnv, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
    """Every action of the instance (deleted instances too, as Nova), oldest first, each with its events."""
    return await env.db.read(lambda conn: _actions(conn, ctx, uuid))


def _by_address(conn: Connection, address: str) -> Any:
    """The one live, scheduled instance holding `address` as a fixed IP, None when none or several
    do (a scan of the cell's live instances). The metadata service does not use this: an address
    alone is no identity there (by_port_address)."""
    candidates = conn.execute(select(instances).where(instances.c.deleted == false(),
                                                      instances.c.host.is_not(None)))
    found = [row for row in candidates
             if any(ip.get("addr") == address and ip.get("OS-EXT-IPS:type", "fixed") == "fixed"
                    for ips in (row.addresses or {}).values() for ip in ips)]
    return found[0] if len(found) == 1 else None


async def instance_by_address(env: FlowEnv, ctx: RequestContext, address: str) -> InstanceRecord:
    """The live instance with this fixed IP (operators' and tests' lookup; admin/service only)."""
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden()
    if not isinstance(address, str) or not address:
        raise errors.Invalid(reason="address must be a non-empty string")
    row = await env.db.read(lambda conn: _by_address(conn, address))
    if row is None:
        raise errors.InstanceNotFound(instance_id=address)
    return env.record(row)


def by_port_address(conn: Connection, network_id: str, address: str) -> Any:
    """The live instance whose compute port on `network_id` holds `address`, through the port table;
    None when no port, more than one, or a stale one answers (a port whose server is gone, of another
    project, or not bound to a host): the metadata service then gives nothing."""
    rows = conn.execute(select(ports.c.device_id, ports.c.device_owner, ports.c.project_id, ports.c.binding_host)
                        .join(ip_allocations, ip_allocations.c.port_id == ports.c.id)
                        .where(ip_allocations.c.network_id == network_id, ip_allocations.c.address == address,
                               ports.c.network_id == network_id)).all()
    if len(rows) != 1:
        return None
    port = rows[0]
    if not str(port.device_owner).startswith("compute:") or not port.device_id or not port.binding_host:
        return None
    row = conn.execute(select(instances).where(instances.c.uuid == port.device_id)).first()
    if row is None or row.deleted or row.host is None or row.project_id != port.project_id:
        return None
    return row


async def instance_for_metadata(env: FlowEnv, ctx: RequestContext, network_id: str, address: str) -> InstanceRecord:
    """For the metadata service: the guest that sent a request from `address` on `network_id` (the
    network whose bridge it arrived on). An IP alone is not an identity: networks may reuse one."""
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden()
    if not isinstance(network_id, str) or not network_id or not isinstance(address, str) or not address:
        raise errors.Invalid(reason="network_id and address must be non-empty strings")
    row = await env.db.read(lambda conn: by_port_address(conn, network_id, address))
    if row is None:
        raise errors.InstanceNotFound(instance_id=address)
    return env.record(row)
