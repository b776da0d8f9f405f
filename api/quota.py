"""Per-project quotas, enforced at the API (as Nova and Cinder do).

Limits are the defaults below unless the `quotas` table overrides them for a
project (-1: unlimited). Usage is counted where it lives, never cached:
instances, cores and RAM from the cells (conductor `project_usage`), key pairs
from the API DB, volumes and gigabytes by the volume API (it passes its own
counts to `check`).

A check and the write it guards run under the project's lock (`project_lock`),
so two concurrent requests of one project cannot both take the last unit
(this API is one process; Nova re-counts after the write instead).
"""
from __future__ import annotations

import asyncio
import base64
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.db.schema import key_pairs, quotas
from api.timeutil import utcnow
from cells import errors
from cells.context import RequestContext
from cells.db.fast import Fast

# Nova's and Cinder's defaults
DEFAULTS: dict[str, int] = {
    "instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100, "metadata_items": 128,
    "injected_files": 5, "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
    "server_groups": 10, "server_group_members": 10,
    # nova-network leftovers that the 2.1 quota set still shows
    "fixed_ips": -1, "floating_ips": 10, "security_groups": 10, "security_group_rules": 20,
    # Cinder
    "volumes": 10, "gigabytes": 1000, "snapshots": 10,
}
COMPUTE_COUNTED = ("instances", "cores", "ram")


class TooManyInstances(errors.QuotaExceeded):
    code = "too_many_instances"
    msg = "Quota exceeded for {overs}: Requested {req}, but already used {used} of {allowed} {overs}"


class KeypairLimitExceeded(errors.QuotaExceeded):
    code, msg = "keypair_limit_exceeded", "Quota exceeded, too many key pairs."


class MetadataLimitExceeded(errors.QuotaExceeded):
    code = "metadata_limit_exceeded"
    msg = "Quota exceeded for metadata_items: Maximum number of metadata items exceeds {allowed}"


class PersonalityLimitExceeded(errors.QuotaExceeded):
    code, msg = "personality_limit_exceeded", "Personality file limit exceeded"


class PersonalityPathLimitExceeded(errors.QuotaExceeded):
    code, msg = "personality_path_limit_exceeded", "Personality file path exceeds maximum {allowed}"


class PersonalityContentLimitExceeded(errors.QuotaExceeded):
    code, msg = "personality_content_limit_exceeded", "Personality file content exceeds maximum {allowed}"


class VolumeOverLimit(errors.QuotaExceeded):
    """Cinder answers an exceeded volume quota with 413 (its OverLimit)."""
    code, http_status = "volume_over_limit", 413
    msg = "Requested {what} exceeds the allowed {resource} quota: requested {req}, used {used}, limit {allowed}"


_LOCKS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def project_lock(project_id: str) -> asyncio.Lock:
    """The lock a quota check and its write hold together."""
    lock = _LOCKS.get(project_id)
    if lock is None:
        lock = asyncio.Lock()
        _LOCKS[project_id] = lock
    return lock


async def limits(engine: AsyncEngine, project_id: str) -> dict[str, int]:
    """Every resource's limit for the project: the defaults, overridden by the quotas table."""
    async with engine.connect() as conn:
        return await limits_in(conn, project_id)


async def limits_in(conn: AsyncConnection, project_id: str) -> dict[str, int]:
    """limits() on a connection the caller holds (one connection for several lookups)."""
    return await conn.run_sync(limits_of, project_id)


_LIMITS = Fast(select(quotas.c.resource, quotas.c.hard_limit).where(quotas.c.project_id == bindparam("b_project")))


def limits_of(conn: Connection, project_id: str) -> dict[str, int]:
    """limits() in a unit of work (api/db/engine.py make_database)."""
    rows = _LIMITS.rows(conn, {"b_project": project_id})
    out = dict(DEFAULTS)
    out.update({r.resource: int(r.hard_limit) for r in rows if r.resource in DEFAULTS})
    return out


async def set_limits(engine: AsyncEngine, project_id: str, values: Mapping[str, int]) -> None:
    now = utcnow()
    async with engine.begin() as conn:  # delete + insert: portable upsert in one transaction
        for resource, limit in values.items():
            await conn.execute(delete(quotas).where(and_(quotas.c.project_id == project_id,
                                                         quotas.c.resource == resource)))
            await conn.execute(insert(quotas).values(project_id=project_id, resource=resource,
                                                     hard_limit=int(limit), updated_at=now))


async def reset_limits(engine: AsyncEngine, project_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(quotas).where(quotas.c.project_id == project_id))


async def keypair_count(engine: AsyncEngine, user_id: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(key_pairs)
                                       .where(key_pairs.c.user_id == user_id))).scalar_one())


async def compute_usage(router: Any, ctx: RequestContext, project_id: str) -> dict[str, int]:
    """instances, cores and ram in use by the project, summed over every cell that answers.
    A cell that cannot answer makes the count unknowable: refuse rather than over-admit."""
    cells = list(router.cells.values())
    results = await asyncio.gather(*(c.conductor.project_usage(ctx.with_timeout(5.0), project_id) for c in cells),
                                   return_exceptions=True)
    total = dict.fromkeys(COMPUTE_COUNTED, 0)
    for cell, result in zip(cells, results):
        if isinstance(result, BaseException):
            if isinstance(result, (errors.CellcloudError, asyncio.TimeoutError)):
                raise errors.RpcError(reason=f"cannot count usage in cell {cell.path}: {result}") from result
            raise result
        for key in COMPUTE_COUNTED:
            total[key] += int(result.get(key, 0))
    return total


def over(limit: Mapping[str, int], used: Mapping[str, int], deltas: Mapping[str, int]) -> list[str]:
    """The resources that `deltas` would take past their limit (sorted)."""
    return sorted(r for r, d in deltas.items()
                  if d > 0 and limit.get(r, -1) >= 0 and used.get(r, 0) + d > limit[r])


def check_instances(limit: Mapping[str, int], used: Mapping[str, int], deltas: Mapping[str, int]) -> None:
    """Nova's TooManyInstances for a boot of deltas {instances, cores, ram}."""
    overs = over(limit, used, deltas)
    if overs:
        first = overs[0]
        raise TooManyInstances(overs=", ".join(overs), req=deltas[first], used=used.get(first, 0),
                               allowed=limit[first], resource=first, requested=deltas[first], limit=limit[first])


def check_metadata(limit: Mapping[str, int], items: int) -> None:
    allowed = limit.get("metadata_items", -1)
    if allowed >= 0 and items > allowed:
        raise MetadataLimitExceeded(allowed=allowed, resource="metadata_items", requested=items, limit=allowed)


def check_injected_files(limit: Mapping[str, int], files: Sequence[Mapping[str, Any]]) -> None:
    """Nova 2.1's personality checks (403): how many files, each path's bytes, each file's decoded bytes.
    `files` passed the schema (path a string, contents base64)."""
    checks = (("injected_files", len(files), PersonalityLimitExceeded),
              ("injected_file_path_bytes", max((len(str(f.get("path", "")).encode()) for f in files), default=0),
               PersonalityPathLimitExceeded),
              ("injected_file_content_bytes", max((len(base64.b64decode(str(f.get("contents", ""))))
                                                   for f in files), default=0), PersonalityContentLimitExceeded))
    for resource, used, error in checks:
        allowed = limit.get(resource, -1)
        if allowed >= 0 and used > allowed:
            raise error(allowed=allowed, resource=resource, requested=used, limit=allowed)


def check_volumes(limit: Mapping[str, int], used: Mapping[str, int], volumes: int, gigabytes: int) -> None:
    """For the volume API: 413 as Cinder when a new volume exceeds volumes or gigabytes."""
    for resource, delta, what in (("gigabytes", gigabytes, f"volume of {gigabytes}G"), ("volumes", volumes,
                                                                                        "volume")):
        if resource in over(limit, used, {resource: delta}):
            raise VolumeOverLimit(what=what, resource=resource, req=delta, used=used.get(resource, 0),
                                  allowed=limit[resource], requested=delta, limit=limit[resource])
