"""Per-project quotas, enforced at the API (as Nova and Cinder do).

Limits are the defaults below, overridden by the "default" quota class (os-quota-class-sets,
the `quota_classes` table), unless the `quotas` table overrides them for a project (-1: unlimited). Usage is counted, never cached: key pairs from the API
DB, volumes and gigabytes by the volume API (it passes its own counts to
`check`), and instances, cores and RAM from the instance mappings in the API DB
(each mapping carries the vcpus and ram it was admitted with; a server whose
delete was accepted no longer counts).

A boot's instance count is checked and its mappings written in ONE write unit of
the API DB (`admit_boot`, called by api/compute/mappings.py `add`): the writers of
the DB queue on its write lock, whatever the number of API worker processes, so of
two boots racing for a project's last instance exactly one is admitted. Nothing
waits on a per-project lock, so a project's boots still share group commits and
run their conductor calls in parallel. A resize counts the new flavor the same way
(`admit_resize`). The conductor's `project_usage` (what the cells hold) is still
what the quota views show.

Volumes live in the cells only: a create counts what the cells list plus the volumes
reserved by creates not listed yet, and reserves its own, in one write unit of the API DB
(`reserve_volume`), so two API workers creating a project's last volume cannot both win.
"""
from __future__ import annotations

import asyncio
import base64
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.db.schema import instance_mappings, key_pairs, queued_deletes, quota_classes, quotas, volume_reservations
from api.scatter import answered, scatter
from api.timeutil import utcnow
from cells import errors
from cells.context import RequestContext
from cells.db.fast import Fast
from cells.network import quota as netquota

if TYPE_CHECKING:
    from api.cell_router import Cell, CellRouter

# Nova's and Cinder's defaults
DEFAULTS: dict[str, int] = {
    "instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100, "metadata_items": 128,
    "injected_files": 5, "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
    "server_groups": 10, "server_group_members": 10,
    # nova-network leftovers that the 2.1 quota set still shows
    "fixed_ips": -1, "floating_ips": 10, "security_groups": 10, "security_group_rules": 20,
    # Cinder (no backups are made here: their limits are kept and shown, and bind nothing; groups bind groups;
    # per_volume_gigabytes caps one volume's size, -1: only the service's own cap)
    "volumes": 10, "gigabytes": 1000, "snapshots": 10, "backups": 10, "backup_gigabytes": 1000, "groups": 10,
    "per_volume_gigabytes": -1,
    # Neutron (singular names, as its quota API; enforced by the cell's network controller)
    **netquota.DEFAULTS,
}
COMPUTE_COUNTED = ("instances", "cores", "ram")
VOLUME_RESOURCES = ("volumes", "gigabytes", "snapshots", "backups", "backup_gigabytes", "groups", "per_volume_gigabytes")
VOLUME_PER_TYPE = ("volumes", "gigabytes", "snapshots")  # Cinder's per-type limits: gigabytes_<type>, ...


def per_type(resource: str) -> bool:
    """A per-volume-type limit (gigabytes_fast); unlimited unless set."""
    return any(resource.startswith(f"{r}_") and len(resource) > len(r) + 1 for r in VOLUME_PER_TYPE)


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


class VolumeSizeExceedsLimit(errors.QuotaExceeded):
    """Cinder's: a volume bigger than the per_volume_gigabytes quota (413)."""
    code, http_status = "volume_size_exceeds_limit", 413
    msg = "Requested volume size {size}G is larger than maximum allowed limit {limit}G."


def check_volume_size(limit: Mapping[str, int], size: int) -> None:
    cap = int(limit.get("per_volume_gigabytes", -1))
    if cap >= 0 and size > cap:
        raise VolumeSizeExceedsLimit(size=size, limit=cap)


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
_CLASS_LIMITS = Fast(select(quota_classes.c.resource, quota_classes.c.hard_limit)
                     .where(quota_classes.c.class_name == bindparam("b_class")))
DEFAULT_CLASS = "default"  # Nova's: the quota class whose limits are every project's defaults


def class_limits_of(conn: Connection, class_name: str = DEFAULT_CLASS) -> dict[str, int]:
    """The built-in defaults overridden by the quota class `class_name` (os-quota-class-sets): for the
    "default" class, the limits of a project without overrides of its own."""
    out = dict(DEFAULTS)
    out.update({r.resource: int(r.hard_limit) for r in _CLASS_LIMITS.rows(conn, {"b_class": class_name})
                if r.resource in DEFAULTS or per_type(r.resource)})
    return out


def limits_of(conn: Connection, project_id: str) -> dict[str, int]:
    """limits() in a unit of work (api/db/engine.py make_database)."""
    rows = _LIMITS.rows(conn, {"b_project": project_id})
    out = class_limits_of(conn)
    out.update({r.resource: int(r.hard_limit) for r in rows if r.resource in DEFAULTS or per_type(r.resource)})
    return out


def checked_class_name(name: str) -> str:
    """A quota class's name as both Nova and Cinder take it from the URL: 1 to 255 characters."""
    if not 1 <= len(name) <= 255:
        raise errors.Invalid("Quota class name must be 1 to 255 characters long.")
    return name


async def class_limits(engine: AsyncEngine, class_name: str = DEFAULT_CLASS) -> dict[str, int]:
    async with engine.connect() as conn:
        return await conn.run_sync(class_limits_of, class_name)


async def set_class_limits(engine: AsyncEngine, class_name: str, values: Mapping[str, int]) -> None:
    await _set_rows(engine, quota_classes, "class_name", class_name, values)


async def set_limits(engine: AsyncEngine, project_id: str, values: Mapping[str, int]) -> None:
    await _set_rows(engine, quotas, "project_id", project_id, values)


async def _set_rows(engine: AsyncEngine, table: Any, key: str, owner: str, values: Mapping[str, int]) -> None:
    """One row per resource of `owner` (a project's limits, or a quota class's), in one transaction."""
    now = utcnow()
    async with engine.begin() as conn:  # delete + insert: portable upsert in one transaction
        for resource, limit in values.items():
            await conn.execute(delete(table).where(and_(table.c[key] == owner, table.c.resource == resource)))
            await conn.execute(insert(table).values({key: owner, "resource": resource, "hard_limit": int(limit),
                                                     "updated_at": now}))


async def reset_limits(engine: AsyncEngine, project_id: str, volume_only: bool = False) -> None:
    """The project's own limits go (back to the default class's); `volume_only`: Cinder's, per-type ones too."""
    async with engine.begin() as conn:
        rows = (await conn.execute(select(quotas.c.resource).where(quotas.c.project_id == project_id))).scalars()
        gone = [r for r in rows if not volume_only or r in VOLUME_RESOURCES or per_type(r)]
        if gone:
            await conn.execute(delete(quotas).where(quotas.c.project_id == project_id, quotas.c.resource.in_(gone)))


async def keypair_count(engine: AsyncEngine, user_id: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(key_pairs)
                                       .where(key_pairs.c.user_id == user_id))).scalar_one())


async def compute_usage(router: CellRouter, ctx: RequestContext, project_id: str) -> dict[str, int]:
    """instances, cores and ram in use by the project, summed over every cell, each within the
    router's bound. A cell that cannot answer makes the count unknowable: refuse rather than over-admit."""
    async def usage(cell: Cell, bounded: RequestContext) -> dict[str, Any]:
        return await cell.conductor.project_usage(bounded, project_id)
    results = await scatter(list(router.cells.values()), ctx, router.bound, usage)
    total = dict.fromkeys(COMPUTE_COUNTED, 0)
    for _, result in answered(results, "a usage count", strict=True):
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


def check_volumes(limit: Mapping[str, int], used: Mapping[str, int], volumes: int, gigabytes: int,
                  count: str = "volumes", volume_type: str | None = None) -> None:
    """For the volume API: 413 as Cinder when a new volume (`count` "snapshots": snapshot) exceeds its count
    or gigabytes, overall or (`volume_type`) the type's own limits where they are set."""
    what = count[:-1]
    checks = [("gigabytes", gigabytes, f"{what} of {gigabytes}G"), (count, volumes, what)]
    if volume_type:
        checks += [(f"gigabytes_{volume_type}", gigabytes, f"{what} of {gigabytes}G"),
                   (f"{count}_{volume_type}", volumes, what)]
    limit = {**{r: -1 for r, _, _ in checks}, **limit}  # a per-type limit not set: unlimited
    for resource, delta, text in checks:
        if resource in over(limit, used, {resource: delta}):
            raise VolumeOverLimit(what=text, resource=resource, req=delta, used=used.get(resource, 0),
                                  allowed=limit[resource], requested=delta, limit=limit[resource])


# --- instance quotas counted in the API DB (see the module doc) -------------------------

_m, _q = instance_mappings.c, queued_deletes.c
_USAGE = Fast(select(func.count(), func.coalesce(func.sum(_m.vcpus), 0), func.coalesce(func.sum(_m.ram), 0))
              .where(_m.project_id == bindparam("b_project"),
                     ~exists().where(_q.instance_uuid == _m.instance_uuid)))


def usage_of(conn: Connection, project_id: str) -> dict[str, int]:
    """instances, cores and ram the project's servers count (mappings not queued for delete)."""
    row = _USAGE.first(conn, {"b_project": project_id})
    count, cores, ram = (0, 0, 0) if row is None else [int(v) for v in row]
    return {"instances": count, "cores": cores, "ram": ram}


def per_server(flavor: Mapping[str, Any]) -> dict[str, int]:
    return {"instances": 1, "cores": int(flavor.get("vcpus") or 0), "ram": int(flavor.get("ram") or 0)}


def counted(limit: Mapping[str, int]) -> bool:
    """Whether any instance quota of the project is limited (else a boot counts nothing)."""
    return any(limit.get(r, -1) >= 0 for r in COMPUTE_COUNTED)


@dataclass(frozen=True)
class Admission:
    """A boot's quota terms: the project's limits, what one server takes, the fewest it may boot."""
    limits: Mapping[str, int]
    per_server: Mapping[str, int]
    min_count: int = 1


def admit_boot(conn: Connection, project_id: str, admission: Admission, count: int) -> int:
    """How many of `count` servers fit (as Nova: all if they fit, else as many as fit if at least
    min_count), counted in the caller's write unit; TooManyInstances (403) when not even min_count."""
    if not counted(admission.limits):
        return count
    used = usage_of(conn, project_id)
    per = admission.per_server
    while count > admission.min_count and over(admission.limits, used, {r: n * count for r, n in per.items()}):
        count -= 1
    check_instances(admission.limits, used, {r: n * count for r, n in per.items()})
    return count


_COUNTED_AS = Fast(select(_m.vcpus, _m.ram).where(_m.instance_uuid == bindparam("b_uuid")))


def admit_resize(conn: Connection, project_id: str, instance_uuid: str, flavor: Mapping[str, Any]) -> tuple[int, int]:
    """A resize to `flavor`: its cores and ram delta checked against the project's limits and the
    server counted with the new flavor, in the caller's write unit. Returns what it counted before
    (for `count_as` to put back if the resize is refused)."""
    row = _COUNTED_AS.first(conn, {"b_uuid": instance_uuid})
    if row is None:
        raise errors.InstanceNotFound(instance_id=instance_uuid)
    old = (int(row.vcpus), int(row.ram))
    new = per_server(flavor)
    limit = limits_of(conn, project_id)
    if counted(limit):
        deltas = {"cores": new["cores"] - old[0], "ram": new["ram"] - old[1]}
        check_instances(limit, usage_of(conn, project_id), deltas)
    count_as(conn, instance_uuid, new["cores"], new["ram"])
    return old


def count_as(conn: Connection, instance_uuid: str, vcpus: int, ram: int) -> None:
    conn.execute(update(instance_mappings).where(_m.instance_uuid == instance_uuid).values(vcpus=vcpus, ram=ram))


# --- volume quotas across API workers ---------------------------------------------------

RESERVATION_TTL = 60.0  # seconds a volume reservation counts (a create's cell lists the volume long before)
_r = volume_reservations.c


def _pending(conn: Connection, project_id: str, listed_ids: set[str], listed_since: datetime | None) -> dict[str, int]:
    """What creates reserved and the cells do not list yet (expired reservations dropped first), overall
    and per volume type (volumes_<type>, ...). A reservation whose volume exists (made_at: volume_made(), or
    set here when the listing shows it) and that a listing begun after that (`listed_since`, taken before it)
    does not show is of a deleted volume: it goes instead of counting on. A listing begun earlier may predate
    the volume's row, so it still counts there."""
    conn.execute(delete(volume_reservations).where(_r.created_at < utcnow() - timedelta(seconds=RESERVATION_TTL)))
    out = {"volumes": 0, "snapshots": 0, "gigabytes": 0}
    rows = conn.execute(select(_r.volume_id, _r.gigabytes, _r.resource, _r.volume_type, _r.made_at)
                        .where(_r.project_id == project_id))
    seen, gone = [], []
    for r in rows:
        if r.volume_id in listed_ids:
            if r.made_at is None:
                seen.append(r.volume_id)
            continue
        if r.made_at is not None and listed_since is not None and r.made_at < listed_since:
            gone.append(r.volume_id)
            continue
        count = "snapshots" if r.resource == "snapshot" else "volumes"
        for suffix in ("", f"_{r.volume_type}") if r.volume_type else ("",):
            out[count + suffix] = out.get(count + suffix, 0) + 1
            out["gigabytes" + suffix] = out.get("gigabytes" + suffix, 0) + int(r.gigabytes)
    if seen:
        conn.execute(update(volume_reservations).where(_r.volume_id.in_(seen)).values(made_at=utcnow()))
    if gone:
        conn.execute(delete(volume_reservations).where(_r.volume_id.in_(gone)))
    return out


def reserve_volume(conn: Connection, project_id: str, volume_id: str, gigabytes: int, listed: Mapping[str, int],
                   listed_ids: set[str], resource: str = "volume", volume_type: str | None = None,
                   listed_since: datetime | None = None) -> None:
    """Check a new volume (or, `resource` "snapshot", a snapshot) of `volume_type` against the project's
    volumes (snapshots) and gigabytes quotas, overall and the type's own, and reserve it, in the caller's
    write unit of the API DB (API workers queue on its write lock). `listed`: what the cells list for the
    project (read just before; gigabytes of volumes and snapshots together, as Cinder counts them, and per
    type: gigabytes_<type>, ...), `listed_ids` the volumes and snapshots they listed, `listed_since` when that
    listing began (cells.project_usage); those reserved by creates the cells do not list yet count too, each
    once. 413 VolumeOverLimit when over."""
    pending = _pending(conn, project_id, listed_ids, listed_since)
    used = {k: listed.get(k, 0) + pending.get(k, 0) for k in {*listed, *pending}}
    count = "snapshots" if resource == "snapshot" else "volumes"
    limit = limits_of(conn, project_id)
    if count == "volumes":
        check_volume_size(limit, gigabytes)
    check_volumes(limit, used, 1, gigabytes, count, volume_type)
    conn.execute(insert(volume_reservations).values(volume_id=volume_id, project_id=project_id,
                                                    gigabytes=gigabytes, created_at=utcnow(), resource=resource,
                                                    volume_type=volume_type))


def check_volume_growth(conn: Connection, project_id: str, gigabytes: int, listed: Mapping[str, int],
                        listed_ids: set[str], volume_type: str | None = None, new_size: int | None = None,
                        listed_since: datetime | None = None) -> None:
    """An extend growing a volume by `gigabytes` (to `new_size`), against the project's gigabytes quotas
    (overall and the type's) and per_volume_gigabytes, counted as reserve_volume counts; 413 when over."""
    pending = _pending(conn, project_id, listed_ids, listed_since)
    used = {k: listed.get(k, 0) + pending.get(k, 0) for k in {*listed, *pending}}
    limit = limits_of(conn, project_id)
    if new_size is not None:
        check_volume_size(limit, new_size)
    check_volumes(limit, used, 0, gigabytes, "volumes", volume_type)


def check_type_move(conn: Connection, project_id: str, volume_type: str, gigabytes: int,
                    listed: Mapping[str, int], listed_ids: set[str], listed_since: datetime | None = None) -> None:
    """A retype bringing one volume of `gigabytes` into `volume_type`: against that type's own volumes and
    gigabytes quotas only (the overall ones do not change), counted as reserve_volume counts; 413 when over."""
    pending = _pending(conn, project_id, listed_ids, listed_since)
    used = {k: listed.get(k, 0) + pending.get(k, 0) for k in {*listed, *pending}}
    unchanged = {"volumes": -1, "gigabytes": -1}  # the overall counts stay as they are
    check_volumes({**limits_of(conn, project_id), **unchanged}, used, 1, gigabytes, "volumes", volume_type)


def volume_made(conn: Connection, volume_id: str) -> None:
    """The volume's (or snapshot's) create returned: its cell has its row from now on (see _pending)."""
    conn.execute(update(volume_reservations).where(_r.volume_id == volume_id, _r.made_at.is_(None))
                 .values(made_at=utcnow()))


def release_volume(conn: Connection, volume_id: str) -> None:
    """The create was refused: its reservation goes."""
    conn.execute(delete(volume_reservations).where(_r.volume_id == volume_id))
