"""The cell's state as gauges on its conductor's /metrics: each compute host's capacity and claimed
use and its liveness, each volume host's capacity and allocation, and the servers by vm_state.

Refreshed by the capacity report loop (cells/conductor/capacity.py) at most every REFRESH seconds,
from reads it makes anyway plus one grouped count, never at scrape time (a scrape must not touch the
DB). Every conductor of a cell publishes the same numbers: a dashboard takes the max per cell.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection, false, func, select

from cells import metrics
from cells.conductor.env import FlowEnv
from cells.db import volumes as vdb
from cells.db.claims import HostState
from cells.db.schema import instances
from cells.rpc.liveness import ALIVE, DEAD, FENCED, SUSPECT

REFRESH = 5.0
RESOURCES = ("vcpus", "memory_mb", "local_gb")
HOST_STATES = (ALIVE, SUSPECT, DEAD, FENCED)


def _servers_by_state(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(instances.c.vm_state, func.count()).where(instances.c.deleted == false())
                        .group_by(instances.c.vm_state))
    return {str(state): int(n) for state, n in rows}


def _volume_nodes(conn: Connection) -> list[tuple[str, str, int, int]]:
    return [(r.host, r.backend, int(r.capacity_gb), int(r.allocated_gb)) for r in vdb.nodes(conn)]


class StateMetrics:
    def __init__(self) -> None:
        self._next = 0.0

    async def refresh(self, env: FlowEnv, nodes: Sequence[HostState]) -> None:
        """Publish the gauges from `nodes` (the compute nodes just read) and two reads of ours, when due."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + REFRESH
        servers = await env.db.read(_servers_by_state)
        volume_nodes = await env.db.read(_volume_nodes)
        # all of it set at once, on the loop: a scrape sees one refresh or the other, never half of one
        metrics.set_states(metrics.HOST_CAPACITY, {
            (n.host, r): float(getattr(n, r)) for n in nodes for r in RESOURCES})
        metrics.set_states(metrics.HOST_USED, {
            (n.host, r): float(getattr(n, r + "_used")) for n in nodes for r in RESOURCES})
        states: dict[tuple[str, ...], float] = {}
        for n in nodes:
            key = (env.host_state(n.host),)
            states[key] = states.get(key, 0) + 1
        metrics.set_states(metrics.COMPUTE_HOSTS, states, tuple((s,) for s in HOST_STATES))
        metrics.set_states(metrics.SERVERS, {(state,): float(n) for state, n in servers.items()})
        metrics.set_states(metrics.VOLUME_CAPACITY_GB, {(h, b): float(c) for h, b, c, _ in volume_nodes})
        metrics.set_states(metrics.VOLUME_ALLOCATED_GB, {(h, b): float(a) for h, b, _, a in volume_nodes})
