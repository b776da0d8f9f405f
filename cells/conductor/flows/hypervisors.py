"""The cell's compute nodes as an admin sees them (Nova's os-hypervisors): each host's capacity, what its
claims use, how many live servers it runs, and its liveness (cells/rpc/liveness.py)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, false, func, select

from cells import errors
from cells.conductor.env import FlowEnv
from cells.context import RequestContext
from cells.db import claims
from cells.db.schema import instances


def _read(conn: Connection) -> tuple[list[claims.HostState], dict[str, int]]:
    rows = conn.execute(select(instances.c.host, func.count()).where(
        instances.c.deleted == false(), instances.c.host.is_not(None)).group_by(instances.c.host)).all()
    return claims.all_hosts(conn), {str(r[0]): int(r[1]) for r in rows}


async def hypervisor_list(env: FlowEnv, ctx: RequestContext) -> list[dict[str, Any]]:
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden("Policy doesn't allow os_compute_api:os-hypervisors:list-detail to be performed.")
    hosts, running = await env.db.read(_read)
    return [{"host": h.host, "vcpus": h.vcpus, "memory_mb": h.memory_mb, "local_gb": h.local_gb,
             "vcpus_used": h.vcpus_used, "memory_mb_used": h.memory_mb_used, "local_gb_used": h.local_gb_used,
             "running_vms": running.get(h.host, 0), "state": env.host_state(h.host),
             "hypervisor_type": str(h.stats.get("hypervisor_type") or "QEMU"),
             "hypervisor_version": int(h.stats.get("hypervisor_version") or 0)}
            for h in sorted(hosts, key=lambda h: h.host)]
