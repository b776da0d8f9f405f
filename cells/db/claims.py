"""Compute nodes and resource claims, atomically, in the cell DB.

A claim is one conditional UPDATE of the host's usage (`... WHERE host = :h AND
<it still fits>`) plus the INSERT of the claim row, in the same transaction:
there is no separate "check" that another scheduler process could race. A
release is the reverse, also in one transaction. Functions taking a
`conn` run inside the caller's transaction; those taking a `db` open their own.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cells.db.engine import Database
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


def _host_state(row: Any) -> HostState:
    m = row._mapping
    return HostState(**{k: m[k] for k in HostState.__dataclass_fields__})


async def load_hosts(db: Database) -> list[HostState]:
    async with db.read() as conn:
        rows = await conn.execute(select(compute_nodes))
        return [_host_state(r) for r in rows]


async def get_host(conn: AsyncConnection, host: str) -> HostState | None:
    row = (await conn.execute(select(compute_nodes).where(compute_nodes.c.host == host))).first()
    return None if row is None else _host_state(row)


class _NoFit(Exception):
    """Raised inside a claim transaction to roll it back."""


async def try_claim(conn: AsyncConnection, host: str, instance_uuid: str, res: Resources) -> bool:
    """Claim `res` on `host` for the instance inside the caller's transaction.

    Any earlier claim of the same instance is released first, so a retried or
    rescheduled request never holds two. Returns False (and changes nothing
    the caller must undo, see `claim`) when the host has no room.
    """
    await release_claim(conn, instance_uuid)
    cn = compute_nodes.c
    fits = ((cn.vcpus_used + res.vcpus <= cn.vcpus * cn.cpu_allocation_ratio)
            & (cn.memory_mb_used + res.memory_mb <= cn.memory_mb * cn.ram_allocation_ratio)
            & (cn.local_gb_used + res.local_gb <= cn.local_gb * cn.disk_allocation_ratio))
    result = await conn.execute(
        update(compute_nodes).where((cn.host == host) & fits)
        .values(vcpus_used=cn.vcpus_used + res.vcpus, memory_mb_used=cn.memory_mb_used + res.memory_mb,
                local_gb_used=cn.local_gb_used + res.local_gb))
    if result.rowcount != 1:
        return False
    await conn.execute(insert(claims).values(instance_uuid=instance_uuid, host=host, vcpus=res.vcpus,
                                             memory_mb=res.memory_mb, local_gb=res.local_gb,
                                             created_at=utcnow_iso()))
    return True


async def claim(db: Database, host: str, instance_uuid: str, res: Resources) -> bool:
    """`try_claim` in its own transaction; a failed claim leaves the DB untouched."""
    try:
        async with db.write() as conn:
            if not await try_claim(conn, host, instance_uuid, res):
                raise _NoFit  # roll back the release of a previous claim too
            return True
    except _NoFit:
        return False


async def release_claim(conn: AsyncConnection, instance_uuid: str) -> str | None:
    """Give the instance's claimed resources back; returns the host, None if it held none."""
    # DELETE .. RETURNING: of two concurrent releases only one gets the row back,
    # so usage is never given back twice
    c = claims.c
    row = (await conn.execute(delete(claims).where(c.instance_uuid == instance_uuid)
                              .returning(c.host, c.vcpus, c.memory_mb, c.local_gb))).first()
    if row is None:
        return None
    cn = compute_nodes.c
    await conn.execute(update(compute_nodes).where(cn.host == row.host)
                       .values(vcpus_used=cn.vcpus_used - row.vcpus, memory_mb_used=cn.memory_mb_used - row.memory_mb,
                               local_gb_used=cn.local_gb_used - row.local_gb))
    return str(row.host)


async def release(db: Database, instance_uuid: str) -> str | None:
    async with db.write() as conn:
        return await release_claim(conn, instance_uuid)


async def claim_of(conn: AsyncConnection, instance_uuid: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(claims).where(claims.c.instance_uuid == instance_uuid))).first()
    return None if row is None else dict(row._mapping)


async def upsert_node(conn: AsyncConnection, host: str, resources: Mapping[str, Any]) -> None:
    """Insert or update a node's capacity; usage is recomputed from its claims (self-healing)."""
    values: dict[str, Any] = {k: resources[k] for k in _NODE_KEYS if resources.get(k) is not None}
    for k in ("vcpus", "memory_mb", "local_gb"):
        if k in values:
            values[k] = int(values[k])
    stats = {k: v for k, v in resources.items() if k not in _NODE_KEYS and not k.endswith("_used")}
    used = (await conn.execute(
        select(func.coalesce(func.sum(claims.c.vcpus), 0), func.coalesce(func.sum(claims.c.memory_mb), 0),
               func.coalesce(func.sum(claims.c.local_gb), 0)).where(claims.c.host == host))).one()
    now = utcnow_iso()
    values.update(vcpus_used=int(used[0]), memory_mb_used=int(used[1]), local_gb_used=int(used[2]),
                  stats=stats, updated_at=now)
    result = await conn.execute(update(compute_nodes).where(compute_nodes.c.host == host).values(**values))
    if result.rowcount == 1:
        return
    row = {"vcpus": 0, "memory_mb": 0, "local_gb": 0, **DEFAULT_RATIOS, **values, "host": host, "created_at": now}
    try:
        async with conn.begin_nested():  # another conductor may insert the same host at once (PostgreSQL)
            await conn.execute(insert(compute_nodes).values(**row))
    except IntegrityError:
        await conn.execute(update(compute_nodes).where(compute_nodes.c.host == host).values(**values))
