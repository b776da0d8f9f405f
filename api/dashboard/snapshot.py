"""What the dashboard shows, gathered inside the API process: the cell tree with each cell's health
and its hosts' liveness, each compute host's capacity and claims, the newest servers with their
faults, and the boot rate and latency of the last hour.

Cells and hosts come from the same sources as os-availability-zone and os-hypervisors (the cell
router's directory views, one scatter to the cells' conductors bounded by `list_bound`); servers
come from this API's own /servers/detail with the caller's token, so the dashboard sees exactly
what that admin would; the boot rate is this process's own count of accepted boots, sampled.
"""
from __future__ import annotations

import collections
import itertools
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY

from api.cell_router import CellRouter
from api.compute.availability_zones import host_states
from api.keys import CLUSTER, ROUTER
from api.scatter import Down, scatter
from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.rpcapi.conductor import ConductorAPI

SERVERS_SHOWN = 50
HISTORY = 3600.0  # seconds of boot-rate samples kept
SAMPLE_EVERY = 10.0
USAGE = ("vcpus", "vcpus_used", "memory_mb", "memory_mb_used", "local_gb", "local_gb_used", "running_vms")


class BootRate:
    """Accepted boots (this process's POST /servers answered 202) sampled every SAMPLE_EVERY seconds."""

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=int(HISTORY / SAMPLE_EVERY) + 1)

    @staticmethod
    def accepted() -> float:
        return REGISTRY.get_sample_value("cellcloud_api_requests_total", {
            "method": "POST", "route": "/compute/v2.1/servers", "status": "202"}) or 0.0

    def sample(self, now: float) -> None:
        if not self.samples or now - self.samples[-1][0] >= SAMPLE_EVERY:
            self.samples.append((now, self.accepted()))

    def per_minute(self) -> list[tuple[float, float]]:
        """(epoch seconds, boots per minute) between consecutive samples."""
        out = []
        for (t0, n0), (t1, n1) in itertools.pairwise(self.samples):
            out.append((t1, round((n1 - n0) * 60.0 / max(t1 - t0, 1e-6), 2)))
        return out


def cell_tree(cluster: ClusterConfig, router: CellRouter) -> list[dict[str, Any]]:
    """Every cell in file order with its site, parent, health and its hosts' liveness: `up` while its router
    answers heartbeats; a host's state as its cell's conductors publish it (unknown for a nested cell)."""
    cells = []
    for cell in cluster.cells:
        try:
            up = router.cell(cell.path).reachable()
        except Exception:  # noqa: BLE001 - a cell this process cannot route to is not up
            up = False
        states = host_states(router, cell) if up else None
        hosts = sorted(s.host for s in cluster.services if s.kind == "compute" and s.cell == cell.path)
        cells.append({"name": cell.name, "path": cell.path, "site": cell.site, "parent": cell.parent,
                      "health": "up" if up else "down",
                      "hosts": [{"name": h, "state": (states or {}).get(h, "unknown")} for h in hosts]})
    return cells


async def host_usage(router: CellRouter, ctx: RequestContext) -> list[dict[str, Any]]:
    """Each compute host's capacity and claims from its cell's conductor (a cell that did not answer within
    list_bound leaves its hosts out, as os-hypervisors does)."""
    async def one(cell: Any, bounded: RequestContext) -> list[dict[str, Any]]:
        return await ConductorAPI(cell).hypervisor_list(bounded)
    found = await scatter(list(router.cells.values()), ctx, router.bound, one)
    return [{"host": str(node["host"]), "cell": cell.path, "state": str(node.get("state") or "unknown"),
             **{k: int(node.get(k) or 0) for k in USAGE}}
            for cell, nodes in found if not isinstance(nodes, Down) for node in nodes]


def _seconds(stamp: Any) -> float | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    # Nova's launched_at is naive UTC (no offset); created carries its Z
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


async def servers(request: web.Request, session: aiohttp.ClientSession, token: str) -> list[dict[str, Any]]:
    """The newest servers of every project, as this API lists them to the caller (its own /servers/detail)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return []
    host, port = sockname[0], sockname[1]
    host = f"[{host}]" if ":" in host else host
    async with session.get(f"http://{host}:{port}/compute/v2.1/servers/detail",
                           params={"all_tenants": "1", "limit": str(SERVERS_SHOWN)},
                           headers={"X-Auth-Token": token, "X-OpenStack-Nova-API-Version": "2.73"}) as resp:
        if resp.status != 200:
            return []
        body = await resp.json()
    out = []
    for s in body.get("servers", []):
        created, launched = _seconds(s.get("created")), _seconds(s.get("OS-SRV-USG:launched_at"))
        fault = s.get("fault") or None
        out.append({"id": s.get("id"), "name": s.get("name"), "status": s.get("status"),
                    "project": s.get("tenant_id"), "host": s.get("OS-EXT-SRV-ATTR:host"),
                    "created": s.get("created"),
                    "boot_seconds": round(launched - created, 3) if created and launched else None,
                    "fault": {"message": fault.get("message"), "code": fault.get("code"),
                              "created": fault.get("created")} if isinstance(fault, dict) else None})
    return out


async def gather(request: web.Request, ctx: RequestContext, session: aiohttp.ClientSession, token: str,
                 rate: BootRate) -> dict[str, Any]:
    cluster, router = request.config_dict[CLUSTER], request.config_dict[ROUTER]
    now = time.time()
    listed = await servers(request, session, token)
    faults = sorted((dict(s["fault"], server=s["id"], name=s["name"]) for s in listed if s["fault"]),
                    key=lambda f: str(f.get("created") or ""), reverse=True)
    return {"time": now, "cluster": cluster.name, "sites": list(cluster.sites),
            "cells": cell_tree(cluster, router), "hosts": await host_usage(router, ctx),
            "servers": listed, "faults": faults[:20], "boot_rate": rate.per_minute(),
            "boot_latency": [(s["created"], s["boot_seconds"]) for s in listed if s["boot_seconds"] is not None]}
