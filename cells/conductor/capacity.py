"""The cell's capacity summary, reported upward on the conductor's heartbeat.

Every heartbeat interval the conductor reads its compute nodes and attaches a
summary to its directory heartbeat (DirectoryView.set_meta). The cell's
router passes it up to the parent cell (cells/router_service.py) and the API
picks a cell for a boot from it (api/cell_choice.py). `admit` is the cell's
own, current, answer to "is there room for this boot here at all": a cell
asked with `request_spec["admission"]` refuses at once with NoValidHost when
no live host could take even one instance, so the API tries the next cell.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.state_metrics import StateMetrics
from cells.db import claims
from cells.db.claims import HostState, Resources

LOG = logging.getLogger(__name__)


def summarize(nodes: Sequence[HostState], alive: set[str]) -> dict[str, Any]:
    """Totals over live hosts, plus the most any single live host could still take
    (a flavor fits the cell only if it fits one host)."""
    live = [n for n in nodes if n.host in alive]
    return {
        "hosts": len(nodes), "hosts_alive": len(live),
        # what the live hosts offer (allocation ratios applied) and what is claimed on them: cellctl status
        "vcpus_total": int(sum(n.vcpus * n.cpu_allocation_ratio for n in live)),
        "vcpus_used": sum(n.vcpus_used for n in live),
        "memory_mb_total": int(sum(n.memory_mb * n.ram_allocation_ratio for n in live)),
        "memory_mb_used": sum(n.memory_mb_used for n in live),
        "local_gb_total": int(sum(n.local_gb * n.disk_allocation_ratio for n in live)),
        "local_gb_used": sum(n.local_gb_used for n in live),
        "vcpus_free": int(sum(max(0.0, n.free_vcpus) for n in live)),
        "memory_mb_free": int(sum(max(0.0, n.free_ram_mb) for n in live)),
        "local_gb_free": int(sum(max(0.0, n.free_disk_gb) for n in live)),
        "max_vcpus_free": int(max((n.free_vcpus for n in live), default=0)),
        "max_memory_mb_free": int(max((n.free_ram_mb for n in live), default=0)),
        "max_local_gb_free": int(max((n.free_disk_gb for n in live), default=0)),
    }


def fits(summary: Mapping[str, Any], res: Resources) -> bool:
    return (int(summary.get("max_vcpus_free", 0)) >= res.vcpus
            and int(summary.get("max_memory_mb_free", 0)) >= res.memory_mb
            and int(summary.get("max_local_gb_free", 0)) >= res.local_gb)


async def current(env: FlowEnv, gauges: StateMetrics | None = None) -> dict[str, Any]:
    nodes = await claims.load_capacities(env.db)  # every heartbeat, and a boot that asks admission
    if gauges is not None:
        await gauges.refresh(env, nodes)
    return summarize(nodes, {n.host for n in nodes if env.host_alive(n.host)})


async def admit(env: FlowEnv, flavor: Mapping[str, Any]) -> None:
    """Refuse a boot at once (before any row is written) when no live host of this cell has room."""
    summary = await current(env)
    if not fits(summary, Resources.from_flavor(flavor)):
        raise errors.NoValidHost(reason=f"Cell {env.cell} has no host with room for flavor "
                                        f"{flavor.get('name') or flavor.get('id')} "
                                        f"({summary['hosts_alive']} of {summary['hosts']} hosts alive).")


async def report(env: FlowEnv, interval: float) -> None:
    """Attach the summary to every heartbeat of this conductor (runs in its TaskGroup), and keep the
    cell's state gauges (cells/conductor/state_metrics.py) fresh."""
    gauges = StateMetrics()
    while True:
        try:
            env.service.view.set_meta(capacity=await current(env, gauges))
        except errors.CellcloudError as exc:
            LOG.warning("capacity summary failed: %s", exc)
        except Exception:  # a report must never take the conductor down
            LOG.exception("capacity summary failed")
        await asyncio.sleep(interval)
