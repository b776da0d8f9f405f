"""What an admin sees of the cell's hosts and moves: the compute nodes (Nova's os-hypervisors: each host's
capacity, what its claims use, how many live servers it runs, its liveness: cells/rpc/liveness.py) and the
migrations (os-migrations: every resize, cold migration and evacuation, with its status)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, false, func, or_, select

from cells import errors
from cells.conductor.env import FlowEnv
from cells.context import RequestContext
from cells.db import claims, migration_records
from cells.db import hosts as hdb
from cells.db.schema import instances, migrations


def _read(conn: Connection) -> tuple[list[claims.HostState], dict[str, int], dict[str, dict[str, object]]]:
    rows = conn.execute(select(instances.c.host, func.count()).where(
        instances.c.deleted == false(), instances.c.host.is_not(None)).group_by(instances.c.host)).all()
    return claims.all_hosts(conn), {str(r[0]): int(r[1]) for r in rows}, hdb.service_marks(conn)


async def hypervisor_list(env: FlowEnv, ctx: RequestContext) -> list[dict[str, Any]]:
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden("Policy doesn't allow os_compute_api:os-hypervisors:list-detail to be performed.")
    hosts, running, marks = await env.db.read(_read)
    return [{"host": h.host, "vcpus": h.vcpus, "memory_mb": h.memory_mb, "local_gb": h.local_gb,
             "vcpus_used": h.vcpus_used, "memory_mb_used": h.memory_mb_used, "local_gb_used": h.local_gb_used,
             "running_vms": running.get(h.host, 0), "state": env.host_state(h.host),
             "hypervisor_type": str(h.stats.get("hypervisor_type") or "QEMU"),
             "hypervisor_version": int(h.stats.get("hypervisor_version") or 0),
             "disabled": bool(marks.get(h.host, {}).get("disabled")),  # its compute service's (os-services)
             "disabled_reason": marks.get(h.host, {}).get("disabled_reason"),
             "booted_at": h.stats.get("booted_at")}  # when the host booted, as it reported (None: not said)
            for h in sorted(hosts, key=lambda h: h.host)]


MIGRATION_FILTERS = ("instance_uuid", "status", "migration_type", "source_host", "dest_host")


def _migrations(conn: Connection, filters: dict[str, str], host: str | None) -> list[dict[str, Any]]:
    m = migrations.c
    query = select(migrations).order_by(m.created_at.desc(), m.uuid.desc())
    for key, value in filters.items():
        query = query.where(m[key] == value)
    if host is not None:
        query = query.where(or_(m.source_host == host, m.dest_host == host))
    return [migration_records.record(r) for r in conn.execute(query)]


async def migration_list(env: FlowEnv, ctx: RequestContext, filters: Any = None) -> list[dict[str, Any]]:
    """Admin: the cell's moves (Nova's os-migrations), newest first; filters by MIGRATION_FILTERS or host
    (either end)."""
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden("Policy doesn't allow os_compute_api:os-migrations:index to be performed.")
    given = dict(filters or {}) if isinstance(filters, dict) or filters is None else None
    if given is None or set(given) - {*MIGRATION_FILTERS, "host"} \
            or not all(isinstance(v, str) for v in given.values()):
        raise errors.Invalid(reason=f"filters must map {', '.join((*MIGRATION_FILTERS, 'host'))} to strings")
    host = given.pop("host", None)
    return await env.db.read(lambda conn: _migrations(conn, given, host))
