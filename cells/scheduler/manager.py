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
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.config import ClusterConfig, ServiceSpec
from cells.context import RequestContext
from cells.db import claims
from cells.db import hosts as hdb
from cells.db.claims import HostState, Resources
from cells.db.engine import Database
from cells.db.groups import SOFT_AFFINITY, SOFT_ANTI_AFFINITY, GroupClaim, allows
from cells.db.schema import ensure_schema
from cells.metrics import SCHEDULER_NO_VALID_HOST, SCHEDULER_PLACEMENTS
from cells.rpcapi.compute import topic as compute_topic
from cells.scheduler import groups as sgroups
from cells.scheduler.filters import Alive, filter_hosts, hinted_instances
from cells.scheduler.weights import best_first, spread_key
from cells.service_process import Service

LOG = logging.getLogger(__name__)
NOT_ENOUGH_HOSTS = "There are not enough hosts available."
COMPUTE_PREFIX = compute_topic("")  # compute.<host>
HEALTHY = "ok"  # a compute's heartbeat meta "health" (node/compute/manager.py)
NEW_HOST_WAIT = 5.0  # seconds a request that fits nowhere waits for hosts coming (back) up


async def select_for(db: Database, alive: Alive, request_spec: Mapping[str, Any], instance_uuids: list[str],
                     exclude_hosts: list[str]) -> list[dict[str, Any]]:
    """Place and claim every instance, or none (NoValidHost rolls back what this call claimed).

    The whole placement (read the hosts, filter, weigh, claim) is one write unit of
    work: it reads the usage the previous placement left, so concurrent requests
    spread instead of piling onto the same "best" host, and the placements a burst
    queues share one transaction (cells/db/group_commit.py). Correctness never
    depends on that: each claim is a conditional UPDATE, and another scheduler's
    claim since the read makes it fail and the next candidate is tried.
    """
    flavor = request_spec.get("flavor")
    if not isinstance(flavor, Mapping):
        raise errors.Invalid(reason="request_spec has no flavor")
    if not instance_uuids or len(set(instance_uuids)) != len(instance_uuids):
        raise errors.Invalid(reason="instance_uuids must be a non-empty list of distinct ids")
    req = Resources.from_flavor(flavor)
    hints = request_spec.get("scheduler_hints")
    same, different = hinted_instances(hints, "same_host"), hinted_instances(hints, "different_host")
    group = sgroups.from_spec(request_spec)
    allowed, banned = _host_list(request_spec, "only_hosts"), _host_list(request_spec, "excluded_hosts") or []

    def place(conn: Connection) -> list[dict[str, Any]]:
        only, exclude = None, [*exclude_hosts, *banned]
        if same or different:
            only = _hosts_of(conn, same) if same else None
            exclude += _hosts_of(conn, different)
        if allowed is not None:  # the API's aggregates: an availability zone's hosts, flavor extra specs
            only = set(allowed) if only is None else only & set(allowed)
        grouping = None
        if group is not None or "instance_uuid" in request_spec:
            resolved, peers = sgroups.resolve(conn, request_spec, group, instance_uuids)
            grouping = Grouping(resolved, peers) if resolved else None
        exclude += hdb.unusable(conn)  # fenced (declared dead, not reconciled yet) or marked down
        if only is None and grouping is None:  # a plain boot: the best hosts come sorted from the DB
            return [_place_best(conn, req, uuid, alive, exclude) for uuid in instance_uuids]
        hosts = {h.host: h for h in claims.capacities(conn)}
        return [_place_one(conn, hosts, req, uuid, alive, exclude, only, grouping)
                for uuid in instance_uuids]
    try:
        # concurrent on PostgreSQL: every decision is a conditional UPDATE or made under the group's row lock
        placed = await db.write(place, concurrent=True)
    except errors.NoValidHost:
        SCHEDULER_NO_VALID_HOST.inc()
        raise
    SCHEDULER_PLACEMENTS.inc(len(placed))
    return placed


def _host_list(request_spec: Mapping[str, Any], key: str) -> list[str] | None:
    """A list of host names the API put in the request spec (aggregates: api/compute/aggregates.py)."""
    value = request_spec.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise errors.Invalid(reason=f"request_spec {key} must be a list of host names")
    return value


def _hosts_of(conn: Connection, instance_uuids: list[str]) -> set[str]:
    """The hosts the named instances hold claims on (unknown ids name no host, as in Nova)."""
    return {c["host"] for u in instance_uuids if (c := claims.claim_of(conn, u)) is not None}


@dataclass
class Grouping:
    """The request's server group and the hosts its members hold, with how many (this request's as
    they are placed)."""
    group: GroupClaim
    peers: Counter[str]

    def allows(self, host: HostState) -> bool:
        return allows(self.group.policy, self.peers.elements(), host.host, self.group.max_per_host)

    def rank(self, host: HostState) -> tuple[int, tuple[float, float, str]]:
        """Best first: a soft policy's preference, then the spreading weights among hosts it ranks alike."""
        return self.preference(host), spread_key(host)

    def preference(self, host: HostState) -> int:
        """A soft policy's order among allowed hosts (lower first; Nova's affinity weighers): soft-affinity
        the hosts with the most members, soft-anti-affinity those with the fewest."""
        if self.group.policy == SOFT_AFFINITY:
            return -self.peers[host.host]
        if self.group.policy == SOFT_ANTI_AFFINITY:
            return self.peers[host.host]
        return 0


SQL_CANDIDATES = 16  # best hosts read for a plain placement, beyond the excluded ones


def _place_best(conn: Connection, req: Resources, uuid: str, alive: Alive, exclude: list[str]) -> dict[str, Any]:
    """A plain placement from the few best fitting hosts, sorted by the DB (each server of a request reads
    them again: the transaction sees its own claims, so a multi-create still spreads). When none of
    them is live and claimable (many suspect hosts, lost races) the whole cell is read (_place_one)."""
    excluded = set(exclude)
    for cand in claims.best_fitting(conn, req, len(excluded) + SQL_CANDIDATES):
        if cand.host not in excluded and alive(cand.host) and claims.try_claim(conn, cand.host, uuid, req):
            return {"instance_uuid": uuid, "host": cand.host}
    return _place_one(conn, {h.host: h for h in claims.capacities(conn)}, req, uuid, alive, exclude, None, None)


def _place_one(conn: Connection, hosts: dict[str, HostState], req: Resources, uuid: str, alive: Alive,
               exclude: list[str], only: set[str] | None,
               grouping: Grouping | None) -> dict[str, Any]:
    for _ in range(2):  # a second pass re-reads usage when every candidate lost a race
        fitting = [h for h in filter_hosts(hosts.values(), req, alive, exclude, only)
                   if grouping is None or grouping.allows(h)]
        if not fitting:
            break
        # a soft policy ranks first, the spreading weights order hosts it ranks alike
        for cand in best_first(fitting, spread_key if grouping is None else grouping.rank):
            # the group's policy is checked again by the claim, under the group's lock: a peer placed
            # by another scheduler since `grouping` was read makes the claim fail, not break the policy
            if claims.try_claim(conn, cand.host, uuid, req, grouping.group if grouping else None):
                hosts[cand.host] = cand.consume(req)  # spread the next instance of this request
                if grouping is not None:
                    grouping.peers[cand.host] += 1
                return {"instance_uuid": uuid, "host": cand.host}
            LOG.debug("claim for %s on %s lost a race, trying the next host", uuid, cand.host)
        hosts.clear()
        hosts.update({h.host: h for h in claims.capacities(conn)})
    raise errors.NoValidHost(reason=NOT_ENOUGH_HOSTS)  # the unit rolls back: this request claims nothing


class SchedulerManager:
    def __init__(self, cluster: ClusterConfig, spec: ServiceSpec) -> None:
        if spec.cell is None:
            raise ValueError(f"scheduler {spec.id} belongs to no cell")
        self.cluster = cluster
        self.spec = spec
        self.db_url = cluster.cell(spec.cell).db
        self._db: Database | None = None
        self._service: Service | None = None
        self._live: tuple[int, frozenset[str]] = (-1, frozenset())

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

    def live_hosts(self) -> frozenset[str]:
        """Hosts with a live compute member that reports itself healthy (meta "health": its
        libvirt calls are not stuck): a snapshot (placement runs in the DB thread), made again
        when the directory's table changes. A host that missed beats (suspect) is not in it."""
        if self._service is None:
            return frozenset()
        view = self._service.view
        if self._live[0] != view.version:
            self._live = (view.version, frozenset(t[len(COMPUTE_PREFIX):] for m in view.by_id.values()
                                                  if m.meta.get("health", HEALTHY) == HEALTHY
                                                  for t in m.topics if t.startswith(COMPUTE_PREFIX)))
        return self._live[1]

    # --- RPC (cells/rpcapi/scheduler.py SURFACE) ----------------------------

    async def select_destinations(self, ctx: RequestContext, request_spec: dict[str, Any],
                                  instance_uuids: list[str], exclude_hosts: list[str],
                                  alternates: int = 0) -> list[dict[str, Any]]:
        # `alternates`: sent by conductors of release 3 and older; a reschedule asks again instead
        loop = asyncio.get_running_loop()
        give_up = loop.time() + NEW_HOST_WAIT
        while True:
            try:
                placed = await select_for(self.db, self.live_hosts().__contains__, request_spec,
                                          list(instance_uuids), list(exclude_hosts or ()))
                LOG.info("placed %s", ", ".join(f"{p['instance_uuid']} on {p['host']}" for p in placed))
                return placed
            except errors.NoValidHost:
                # a compute that is (re)starting is briefly absent from the directory, or live
                # before its first resource report lands: give it a moment rather than failing
                # a boot made right after start-up or during a worker restart
                if loop.time() >= give_up or not await self._hosts_in_flux(exclude_hosts):
                    LOG.info("no valid host for %s", ", ".join(instance_uuids))
                    raise
                await asyncio.sleep(0.1)

    async def _hosts_in_flux(self, exclude: list[str]) -> set[str]:
        """Known hosts not live now, and live hosts not reported yet."""
        if self._service is None:
            return set()
        live = self.live_hosts()
        known = {h.host for h in await claims.load_capacities(self.db)}
        return set(live ^ known) - set(exclude or ())
