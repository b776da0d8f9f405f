"""Compute nodes and resource claims, atomically, in the cell DB.

A claim is one conditional UPDATE of the host's usage (`... WHERE host = :h AND
<it still fits>`) plus the INSERT of the claim row, in the same transaction:
there is no separate "check" that another scheduler process could race. A
release is the reverse, also in one transaction. Functions taking a `conn` are
parts of the caller's unit of work; `load_hosts` runs its own.
Statements are built once (bind parameters), as they are on the hot path.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cells.db import groups
from cells.db.engine import Database
from cells.db.fast import Fast
from cells.db.groups import GroupClaim
from cells.db.schema import claims, compute_nodes
from cells.objects.instance import utcnow_iso

# Nova's initial allocation ratios (since Stein)
DEFAULT_RATIOS = {"cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0, "disk_allocation_ratio": 1.0}
_NODE_KEYS = ("vcpus", "memory_mb", "local_gb", *DEFAULT_RATIOS)


@dataclass(frozen=True)
class Resources:
    vcpus: int
    memory_mb: int
    local_gb: int

    @classmethod
    def from_flavor(cls, flavor: Mapping[str, Any]) -> Resources:
        """Disk as placement counts it: root + ephemeral + swap (MB, rounded up to GB)."""
        swap_gb = math.ceil(int(flavor.get("swap") or 0) / 1024)
        return cls(vcpus=int(flavor.get("vcpus") or 0), memory_mb=int(flavor.get("ram") or 0),
                   local_gb=int(flavor.get("disk") or 0) + int(flavor.get("ephemeral") or 0) + swap_gb)


@dataclass(frozen=True)
class HostState:
    """A compute node's capacity and usage as last read from the DB."""
    host: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int = 0
    memory_mb_used: int = 0
    local_gb_used: int = 0
    cpu_allocation_ratio: float = DEFAULT_RATIOS["cpu_allocation_ratio"]
    ram_allocation_ratio: float = DEFAULT_RATIOS["ram_allocation_ratio"]
    disk_allocation_ratio: float = DEFAULT_RATIOS["disk_allocation_ratio"]
    stats: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio - self.vcpus_used

    @property
    def free_ram_mb(self) -> float:
        return self.memory_mb * self.ram_allocation_ratio - self.memory_mb_used

    @property
    def free_disk_gb(self) -> float:
        return self.local_gb * self.disk_allocation_ratio - self.local_gb_used

    def consume(self, res: Resources) -> HostState:
        """The same host after `res` is claimed (the scheduler's in-memory view)."""
        return HostState(self.host, self.vcpus, self.memory_mb, self.local_gb, self.vcpus_used + res.vcpus,
                         self.memory_mb_used + res.memory_mb, self.local_gb_used + res.local_gb,
                         self.cpu_allocation_ratio, self.ram_allocation_ratio, self.disk_allocation_ratio,
                         self.stats)


_cn, _cl = compute_nodes.c, claims.c
_SELECT_NODES = Fast(select(compute_nodes))
# what placement and the capacity summary read: HostState's fields in order, no stats JSON or timestamps
_SELECT_CAPACITY = Fast(select(*(compute_nodes.c[k] for k in HostState.__dataclass_fields__ if k != "stats")))
_SELECT_NODE = Fast(select(compute_nodes).where(_cn.host == bindparam("b_host")))
_CLAIM_NODE = Fast(
    update(compute_nodes)
    .where(_cn.host == bindparam("b_host"),
           _cn.vcpus_used + bindparam("b_vcpus") <= _cn.vcpus * _cn.cpu_allocation_ratio,
           _cn.memory_mb_used + bindparam("b_ram") <= _cn.memory_mb * _cn.ram_allocation_ratio,
           _cn.local_gb_used + bindparam("b_disk") <= _cn.local_gb * _cn.disk_allocation_ratio)
    .values(vcpus_used=_cn.vcpus_used + bindparam("b_vcpus"), memory_mb_used=_cn.memory_mb_used + bindparam("b_ram"),
            local_gb_used=_cn.local_gb_used + bindparam("b_disk")))
# the fitting hosts best first, as the spreading weigher orders them (cells/scheduler/weights.py spread_key),
# sorted in SQL: a placement converts `b_limit` rows, not the whole cell
_FITS = (_cn.vcpus_used + bindparam("b_vcpus") <= _cn.vcpus * _cn.cpu_allocation_ratio,
         _cn.memory_mb_used + bindparam("b_ram") <= _cn.memory_mb * _cn.ram_allocation_ratio,
         _cn.local_gb_used + bindparam("b_disk") <= _cn.local_gb * _cn.disk_allocation_ratio)
_SELECT_BEST = Fast(
    select(*(compute_nodes.c[k] for k in HostState.__dataclass_fields__ if k != "stats")).where(*_FITS)
    .order_by((_cn.memory_mb * _cn.ram_allocation_ratio - _cn.memory_mb_used).desc(),
              (_cn.vcpus * _cn.cpu_allocation_ratio - _cn.vcpus_used).desc(), _cn.host)
    .limit(bindparam("b_limit")))
_INSERT_CLAIM = Fast(insert(claims))
# DELETE .. RETURNING: of two concurrent releases only one gets the row back,
# so usage is never given back twice
_DELETE_CLAIM = Fast(delete(claims).where(_cl.instance_uuid == bindparam("b_uuid"))
                 .returning(_cl.host, _cl.vcpus, _cl.memory_mb, _cl.local_gb))
_GIVE_BACK = Fast(update(compute_nodes).where(_cn.host == bindparam("b_host"))
              .values(vcpus_used=_cn.vcpus_used - bindparam("b_vcpus"),
                      memory_mb_used=_cn.memory_mb_used - bindparam("b_ram"),
                      local_gb_used=_cn.local_gb_used - bindparam("b_disk")))
_SELECT_CLAIM = Fast(select(claims).where(_cl.instance_uuid == bindparam("b_uuid")))
_USED_ON_HOST = select(func.coalesce(func.sum(_cl.vcpus), 0), func.coalesce(func.sum(_cl.memory_mb), 0),
                       func.coalesce(func.sum(_cl.local_gb), 0)).where(_cl.host == bindparam("b_host"))
_UPDATE_NODE = update(compute_nodes).where(_cn.host == bindparam("b_host"))
_USED_BY_HOSTS = select(_cl.host, func.coalesce(func.sum(_cl.vcpus), 0), func.coalesce(func.sum(_cl.memory_mb), 0),
                        func.coalesce(func.sum(_cl.local_gb), 0)) \
    .where(_cl.host.in_(bindparam("b_hosts", expanding=True))).group_by(_cl.host)
_KNOWN_NODES = select(_cn.host).where(_cn.host.in_(bindparam("b_hosts", expanding=True)))


def _host_state(row: Any) -> HostState:
    m = row._mapping
    return HostState(**{k: m[k] for k in HostState.__dataclass_fields__})


def all_hosts(conn: Connection) -> list[HostState]:
    return [_host_state(r) for r in _SELECT_NODES.rows(conn)]


def capacities(conn: Connection) -> list[HostState]:
    """Every node's capacity and usage without its stats: built by position, not through a mapping per row
    (a placement reads every node: at 1,000 hosts the mappings and the stats' JSON were most of its time)."""
    return [HostState(*r) for r in _SELECT_CAPACITY.rows(conn)]


def best_fitting(conn: Connection, res: Resources, limit: int) -> list[HostState]:
    """At most `limit` hosts `res` fits on, best first (most free RAM, then vCPUs, then name)."""
    return [HostState(*r) for r in _SELECT_BEST.rows(conn, {"b_vcpus": res.vcpus, "b_ram": res.memory_mb,
                                                           "b_disk": res.local_gb, "b_limit": limit})]


async def load_hosts(db: Database) -> list[HostState]:
    return await db.read(all_hosts)


async def load_capacities(db: Database) -> list[HostState]:
    return await db.read(capacities)


def get_host(conn: Connection, host: str) -> HostState | None:
    row = _SELECT_NODE.first(conn, {"b_host": host})
    return None if row is None else _host_state(row)


def try_claim(conn: Connection, host: str, instance_uuid: str, res: Resources,
              group: GroupClaim | None = None) -> bool:
    """Claim `res` on `host` for the instance inside the caller's transaction.

    Any earlier claim of the same instance is released first, so a retried or
    rescheduled request never holds two. Returns False when the host has no
    room, or its server group's policy forbids the host; a caller that places
    the instance nowhere raises, so its unit of work rolls that release back
    (cells/scheduler/manager.py). The group is locked first, so a PostgreSQL
    transaction never holds a host row while it waits for the group.
    """
    if group is not None and not groups.admits(conn, group, host, instance_uuid):
        return False
    release_claim(conn, instance_uuid)
    claimed = _CLAIM_NODE.run(conn, {"b_host": host, "b_vcpus": res.vcpus, "b_ram": res.memory_mb,
                                     "b_disk": res.local_gb})
    if claimed != 1:
        return False
    _INSERT_CLAIM.run(conn, {"instance_uuid": instance_uuid, "host": host, "vcpus": res.vcpus,
                             "memory_mb": res.memory_mb, "local_gb": res.local_gb, "created_at": utcnow_iso(),
                             "group_uuid": group.uuid if group else None})
    return True


def release_claim(conn: Connection, instance_uuid: str) -> str | None:
    """Give the instance's claimed resources back; returns the host, None if it held none."""
    row = _DELETE_CLAIM.first(conn, {"b_uuid": instance_uuid})
    if row is None:
        return None
    _GIVE_BACK.run(conn, {"b_host": row.host, "b_vcpus": row.vcpus, "b_ram": row.memory_mb,
                          "b_disk": row.local_gb})
    return str(row.host)


def claim_of(conn: Connection, instance_uuid: str) -> dict[str, Any] | None:
    row = _SELECT_CLAIM.first(conn, {"b_uuid": instance_uuid})
    return None if row is None else dict(row._mapping)


def upsert_node(conn: Connection, host: str, resources: Mapping[str, Any]) -> None:
    """Insert or update a node's capacity; usage is recomputed from its claims (self-healing)."""
    used = conn.execute(_USED_ON_HOST, {"b_host": host}).one()
    now = utcnow_iso()
    values = _node_values(resources, used, now)
    if conn.execute(_UPDATE_NODE, {"b_host": host, **values}).rowcount != 1:
        _insert_node(conn, host, values, now)


def upsert_nodes(conn: Connection, reports: Mapping[str, Mapping[str, Any]]) -> None:
    """Several hosts' reports in one unit of work, each host's row from its own report as upsert_node
    writes it: their usage is read in one grouped query and the rows of one shape updated in one
    executemany, instead of three statements per host (a start-up storm of reports, issue 21)."""
    hosts = list(reports)
    used = {r[0]: r[1:] for r in conn.execute(_USED_BY_HOSTS, {"b_hosts": hosts})}
    known = set(conn.execute(_KNOWN_NODES, {"b_hosts": hosts}).scalars())
    now = utcnow_iso()
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for host, resources in reports.items():
        values = _node_values(resources, used.get(host, (0, 0, 0)), now)
        if host in known:
            shapes.setdefault(tuple(sorted(values)), []).append({"b_host": host, **values})
        else:
            _insert_node(conn, host, values, now)
    for rows in shapes.values():
        conn.execute(_UPDATE_NODE, rows)


def _node_values(resources: Mapping[str, Any], used: Any, now: str) -> dict[str, Any]:
    values: dict[str, Any] = {k: resources[k] for k in _NODE_KEYS if resources.get(k) is not None}
    for k in ("vcpus", "memory_mb", "local_gb"):
        if k in values:
            values[k] = int(values[k])
    stats = {k: v for k, v in resources.items() if k not in _NODE_KEYS and not k.endswith("_used")}
    values.update(vcpus_used=int(used[0]), memory_mb_used=int(used[1]), local_gb_used=int(used[2]),
                  stats=stats, updated_at=now)
    return values


def _insert_node(conn: Connection, host: str, values: dict[str, Any], now: str) -> None:
    row = {"vcpus": 0, "memory_mb": 0, "local_gb": 0, **DEFAULT_RATIOS, **values, "host": host, "created_at": now}
    try:
        with conn.begin_nested():  # another conductor may insert the same host at once (PostgreSQL)
            conn.execute(insert(compute_nodes), row)
    except IntegrityError:
        conn.execute(_UPDATE_NODE, {"b_host": host, **values})
