"""What the dashboard shows, gathered inside the API process: the cell tree with each cell's health
and its hosts' liveness, each compute host's capacity and claims, the newest servers with their
faults, and the boot rate and latency of the last hour.

Cells and hosts come from the same sources as os-availability-zone and os-hypervisors (the cell
router's directory views, one scatter to the cells' conductors bounded by `list_bound`); servers
come from this API's own /servers/detail with the caller's token, so the dashboard sees exactly
what that admin would, a page at a time (Nova's marker and limit, its name and status filters), so
every server is reachable; the boot rate is the accepted boots of every API worker, sampled (each
sibling's counter read from its own /metrics listener).
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from api.cell_router import CellRouter
from api.compute.availability_zones import host_states
from api.keys import CLUSTER, ROUTER
from api.scatter import Down, scatter
from cells import errors
from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.rpcapi.conductor import ConductorAPI

SERVERS_SHOWN = 50  # the default page; a page asks for 1..MAX_PAGE
MAX_PAGE = 200
HISTORY = 3600.0  # seconds of boot-rate samples kept
SAMPLE_EVERY = 10.0
SCRAPE_TIMEOUT = 2.0  # seconds a sibling worker's /metrics has to answer a sample
USAGE = ("vcpus", "vcpus_used", "memory_mb", "memory_mb_used", "local_gb", "local_gb_used", "running_vms")
ACCEPTED = ("cellcloud_api_requests_total", {"method": "POST", "route": "/compute/v2.1/servers", "status": "202"})
STATUSES = ("ACTIVE", "BUILD", "ERROR", "SHUTOFF", "PAUSED", "SUSPENDED", "RESCUE", "RESIZE", "VERIFY_RESIZE",
            "REBOOT", "HARD_REBOOT", "MIGRATING", "DELETED", "SOFT_DELETED", "SHELVED", "SHELVED_OFFLOADED",
            "UNKNOWN")
_UUID = re.compile(r"^[0-9a-fA-F-]{32,36}$")


def accepted_in(text: str) -> float:
    """The accepted-boot counter in one worker's Prometheus text (0 before its first boot)."""
    name, labels = ACCEPTED
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


class BootRate:
    """Accepted boots (POST /servers answered 202) of every API worker, sampled every SAMPLE_EVERY seconds.

    Each worker counts its own (cells/metrics.py, one registry per process), so a sample is this
    process's counter plus each sibling's, read from its /metrics listener (api.metrics: `urls`, by
    worker index). A sibling that does not answer is left out of that sample; a rate between two
    samples sums, per worker present in both, what its counter grew (a restarted worker's counter
    starts again from 0: its new count is its growth)."""

    def __init__(self, own: int = 0, urls: Sequence[str] = ()) -> None:
        self.own = own
        self.urls = list(urls)
        self.samples: collections.deque[tuple[float, dict[int, float]]] = collections.deque(
            maxlen=int(HISTORY / SAMPLE_EVERY) + 1)

    @property
    def workers(self) -> int:
        return max(1, len(self.urls))

    @staticmethod
    def own_count() -> float:
        name, labels = ACCEPTED
        return REGISTRY.get_sample_value(name, labels) or 0.0

    async def counts(self, session: aiohttp.ClientSession) -> dict[int, float]:
        """worker index -> its accepted boots, for every worker that answered."""
        async def scrape(index: int, url: str) -> tuple[int, float | None]:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as resp:
                    return index, accepted_in(await resp.text()) if resp.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return index, None
        found = {self.own: self.own_count()}
        others = [scrape(i, url) for i, url in enumerate(self.urls) if i != self.own]
        for index, value in await asyncio.gather(*others):
            if value is not None:
                found[index] = value
        return found

    def record(self, now: float, counts: dict[int, float]) -> None:
        if not self.samples or now - self.samples[-1][0] >= SAMPLE_EVERY:
            self.samples.append((now, dict(counts)))

    def per_minute(self) -> list[tuple[float, float]]:
        """(epoch seconds, boots per minute across the workers) between consecutive samples."""
        out = []
        for (t0, c0), (t1, c1) in itertools.pairwise(self.samples):
            grown = sum(c1[w] - c0[w] if c1[w] >= c0[w] else c1[w] for w in c1.keys() & c0.keys())
            out.append((t1, round(grown * 60.0 / max(t1 - t0, 1e-6), 2)))
        return out

    def summary(self) -> dict[str, Any]:
        """The latest sample: accepted boots so far and how many of the workers it counts."""
        latest = self.samples[-1][1] if self.samples else {}
        return {"accepted": sum(latest.values()), "reporting": len(latest), "workers": self.workers,
                "metrics": bool(self.urls)}


@dataclass(frozen=True)
class ServerPage:
    """Which servers the dashboard lists: Nova's own paging (marker, limit) and filters (name, status)."""
    limit: int = SERVERS_SHOWN
    marker: str | None = None
    name: str | None = None
    status: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ServerPage:
        """Checked here so a bad value is the dashboard's 400, not a silent empty list."""
        try:
            limit = int(query.get("limit") or SERVERS_SHOWN)
        except ValueError:
            raise errors.Invalid("limit must be a number") from None
        if not 1 <= limit <= MAX_PAGE:
            raise errors.Invalid(f"limit must be 1 to {MAX_PAGE}")
        marker = query.get("marker") or None
        if marker is not None and not _UUID.match(marker):
            raise errors.Invalid("marker must be a server id")
        name = query.get("name") or None
        if name is not None and len(name) > 255:
            raise errors.Invalid("name must be at most 255 characters")
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise errors.Invalid(f"status must be one of {', '.join(STATUSES)}")
        return cls(limit, marker, name, status)

    @property
    def is_default(self) -> bool:
        return self == ServerPage()

    def params(self) -> dict[str, str]:
        # Nova's name filter is a regular expression: the page's text is matched literally
        params = {"all_tenants": "1", "limit": str(self.limit)}
        params.update({k: v for k, v in (("marker", self.marker), ("status", self.status),
                                         ("name", re.escape(self.name) if self.name else None)) if v})
        return params


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


async def servers(request: web.Request, session: aiohttp.ClientSession, token: str,
                  page: ServerPage = ServerPage()) -> list[dict[str, Any]]:
    """One page of the servers of every project, newest first, as this API lists them to the caller (its
    own /servers/detail, with Nova's marker, limit, name and status)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return []
    host, port = sockname[0], sockname[1]
    host = f"[{host}]" if ":" in host else host
    async with session.get(f"http://{host}:{port}/compute/v2.1/servers/detail",
                           params=page.params(),
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
                 rate: BootRate, page: ServerPage = ServerPage()) -> dict[str, Any]:
    cluster, router = request.config_dict[CLUSTER], request.config_dict[ROUTER]
    now = time.time()
    listed = await servers(request, session, token, page)
    # faults and latency are the newest servers', whichever page the table shows
    newest = listed if page.is_default else await servers(request, session, token)
    faults = sorted((dict(s["fault"], server=s["id"], name=s["name"]) for s in newest if s["fault"]),
                    key=lambda f: str(f.get("created") or ""), reverse=True)
    return {"time": now, "cluster": cluster.name, "sites": list(cluster.sites),
            "cells": cell_tree(cluster, router), "hosts": await host_usage(router, ctx),
            "servers": listed, "page": {"limit": page.limit, "marker": page.marker,
                                        # a full page may have more after it: its last server is the next marker
                                        "next": listed[-1]["id"] if len(listed) == page.limit else None},
            "faults": faults[:20], "boot_rate": rate.per_minute(), "boots": rate.summary(),
            "boot_latency": [(s["created"], s["boot_seconds"]) for s in newest if s["boot_seconds"] is not None]}
