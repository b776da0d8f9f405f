"""The cell scheduler service (topic `scheduler`).

select_destinations filters and weighs the cell's compute nodes, then claims
the resources on the best host in one DB transaction (see cells/db/claims.py).
Several scheduler processes may share one cell DB: a claim that loses a race
simply fails its conditional UPDATE and the next candidate is tried. A member
of a server group is placed by its group's policy, checked again inside the
claim's transaction under the group's lock (cells/db/groups.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cells import errors
from cells.config import ClusterConfig, ServiceSpec
from cells.context import RequestContext
from cells.db import claims
from cells.db.claims import HostState, Resources
from cells.db.engine import Database
from cells.db.groups import GroupClaim, allows
from cells.db.schema import ensure_schema
from cells.rpcapi.compute import topic as compute_topic
from cells.scheduler import groups as sgroups
from cells.scheduler.filters import Alive, filter_hosts, hinted_instances
from cells.scheduler.weights import weigh
from cells.service import Service

LOG = logging.getLogger(__name__)
NOT_ENOUGH_HOSTS = "There are not enough hosts available."
NEW_HOST_WAIT = 5.0  # seconds a request that fits nowhere waits for hosts coming (back) up


async def select_for(db: Database, alive: Alive, request_spec: Mapping[str, Any], instance_uuids: list[str],
                     exclude_hosts: list[str], alternates: int = 2,
                     lock: asyncio.Lock | None = None) -> list[dict[str, Any]]:
    """Place and claim every instance, or none (NoValidHost releases what this call claimed).

    `lock` serializes placements of one process, so each reads the usage the
    previous one left and concurrent requests spread instead of piling onto the
    same "best" host. Correctness never depends on it: claims are atomic in the DB.
    """
    flavor = request_spec.get("flavor")
    if not isinstance(flavor, Mapping):
        raise errors.Invalid(reason="request_spec has no flavor")
    if not instance_uuids or len(set(instance_uuids)) != len(instance_uuids):
        raise errors.Invalid(reason="instance_uuids must be a non-empty list of distinct ids")
    req = Resources.from_flavor(flavor)
    hints = request_spec.get("scheduler_hints")
    same, different = hinted_instances(hints, "same_host"), hinted_instances(hints, "different_host")
    only: set[str] | None = None
    if same or different:
        same_hosts, avoid = await db.read(lambda conn: (_hosts_of(conn, same), _hosts_of(conn, different)))
        only = same_hosts if same else None
        exclude_hosts = [*exclude_hosts, *avoid]
    group = sgroups.from_spec(request_spec)
    async with lock or contextlib.nullcontext():
        if group is None and "instance_uuid" not in request_spec:
            return await _place_all(db, alive, req, instance_uuids, exclude_hosts, alternates, only,
                                    await claims.load_hosts(db))
        # the group's members and the hosts in one read, under the lock: the last placement counts
        group, peers, hosts = await db.read(lambda conn: (
            *sgroups.resolve(conn, request_spec, group, instance_uuids), claims.all_hosts(conn)))
        return await _place_all(db, alive, req, instance_uuids, exclude_hosts, alternates, only, hosts,
                                Grouping(group, peers) if group else None)


def _hosts_of(conn: Any, instance_uuids: list[str]) -> set[str]:
    """The hosts the named instances hold claims on (unknown ids name no host, as in Nova)."""
    return {c["host"] for u in instance_uuids if (c := claims.claim_of(conn, u)) is not None}


@dataclass
class Grouping:
    """The request's server group and the hosts its members hold (this request's as they are placed)."""
    group: GroupClaim
    peers: set[str]

    def allows(self, host: HostState) -> bool:
        return allows(self.group.policy, self.peers, host.host)


async def _place_all(db: Database, alive: Alive, req: Resources, instance_uuids: list[str],
                     exclude_hosts: list[str], alternates: int, only: set[str] | None, loaded: list[HostState],
                     grouping: Grouping | None = None) -> list[dict[str, Any]]:
    hosts = {h.host: h for h in loaded}
    placed: list[dict[str, Any]] = []
    try:
        for uuid in instance_uuids:
            host, alts = await _place_one(db, hosts, req, uuid, alive, exclude_hosts, alternates, only, grouping)
            placed.append({"instance_uuid": uuid, "host": host, "alternates": alts})
    except errors.NoValidHost:
        for done in placed:
            await claims.release(db, done["instance_uuid"])
        raise
    return placed


async def _place_one(db: Database, hosts: dict[str, HostState], req: Resources, uuid: str, alive: Alive,
                     exclude: list[str], alternates: int, only: set[str] | None,
                     grouping: Grouping | None) -> tuple[str, list[str]]:
    for _ in range(2):  # a second pass re-reads usage when every candidate lost a race
        candidates = weigh(h for h in filter_hosts(hosts.values(), req, alive, exclude, only)
                           if grouping is None or grouping.allows(h))
        if not candidates:
            break
        for cand in candidates:
            # the group's policy is checked again in the claim's transaction: a peer placed by
            # another scheduler since `grouping` was read makes the claim fail, not break the policy
            if await claims.claim(db, cand.host, uuid, req, grouping.group if grouping else None):
                hosts[cand.host] = cand.consume(req)  # spread the next instance of this request
                if grouping is not None:
                    grouping.peers.add(cand.host)
                return cand.host, [c.host for c in candidates if c.host != cand.host][:max(alternates, 0)]
            LOG.debug("claim for %s on %s lost a race, trying the next host", uuid, cand.host)
        hosts.clear()
        hosts.update({h.host: h for h in await claims.load_hosts(db)})
    raise errors.NoValidHost(reason=NOT_ENOUGH_HOSTS)


class SchedulerManager:
    def __init__(self, cluster: ClusterConfig, spec: ServiceSpec) -> None:
        if spec.cell is None:
            raise ValueError(f"scheduler {spec.id} belongs to no cell")
        self.cluster = cluster
        self.spec = spec
        self.db_url = cluster.cell(spec.cell).db
        self._db: Database | None = None
        self._service: Service | None = None
        self._placing = asyncio.Lock()

    @property
    def db(self) -> Database:
        if self._db is None:
            raise errors.CellcloudError("scheduler is not started")
        return self._db

    async def start(self, service: Service) -> None:
        self._service = service
        self._db = Database(self.db_url)
        await ensure_schema(self._db)

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()

    def host_alive(self, host: str) -> bool:
        return self._service is not None and bool(self._service.view.members(compute_topic(host)))

    # --- RPC (cells/rpcapi/scheduler.py SURFACE) ----------------------------

    async def select_destinations(self, ctx: RequestContext, request_spec: dict[str, Any],
                                  instance_uuids: list[str], exclude_hosts: list[str],
                                  alternates: int = 2) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + NEW_HOST_WAIT
        while True:
            try:
                return await select_for(self.db, self.host_alive, request_spec, list(instance_uuids),
                                        list(exclude_hosts or ()), alternates, self._placing)
            except errors.NoValidHost:
                # a compute that is (re)starting is briefly absent from the directory, or live
                # before its first resource report lands: give it a moment rather than failing
                # a boot made right after start-up or during a worker restart
                if loop.time() >= give_up or not await self._hosts_in_flux(exclude_hosts):
                    raise
                await asyncio.sleep(0.1)

    async def _hosts_in_flux(self, exclude: list[str]) -> set[str]:
        """Known hosts not live now, and live hosts not reported yet."""
        if self._service is None:
            return set()
        live = {t[len("compute."):] for m in self._service.view.by_id.values() for t in m.topics
                if t.startswith("compute.")}
        known = {h.host for h in await claims.load_hosts(self.db)}
        return (live ^ known) - set(exclude or ())
