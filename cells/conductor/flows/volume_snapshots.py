"""Volume snapshot flows (issue 18): create, delete, show, list, update (validate -> lock -> check -> act).

A snapshot is a point-in-time copy of a volume kept on the volume's host (the file backend copies
the volume's file: a reflink where the filesystem has one, else a sparse copy that costs only the
data written). The "lock" and "check" are one conditional UPDATE, as for volumes:

    create  volume available (or in-use with force) -> snapshot creating, its size taken on the
            volume host -> volume.<host> create_snapshot -> available | error (space freed, partial
            copy removed by the worker)
    delete  available|error|error_deleting -> deleting -> volume.<host> delete_snapshot -> row deleted
            | error_deleting

A snapshot in creating or deleting records its owner (conductor_id); when the owner leaves, a live
conductor adopts it and runs the host step again (idempotent) from the DB's state (`adopt`).
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx
from cells.conductor.flows.volumes import _get_visible, _text, clean_updates, validate_metadata, visible
from cells.context import RequestContext, admin_context
from cells.db import volume_snapshots as sdb
from cells.db import volumes as vdb
from cells.db.volume_snapshots import SnapshotStatus as SS
from cells.db.volumes import VolumeStatus as S
from cells.objects.instance import utcnow_iso
from cells.rpcapi.volume import VolumeAPI

LOG = logging.getLogger(__name__)
SNAPSHOTTABLE = (S.AVAILABLE,)
SNAPSHOTTABLE_FORCED = (S.AVAILABLE, S.IN_USE)  # Cinder's force: a crash-consistent copy of an in-use volume
NO_ROOM = "volume host {host} has no room for a {size} GiB snapshot"


def record(env: FlowEnv, row: Any) -> dict[str, Any]:
    return sdb.snapshot_record(row, env.cell)


def _get(conn: Connection, ctx: RequestContext, snapshot_id: str) -> Any:
    row = sdb.get_row(conn, snapshot_id)
    if row is None or row.deleted or not visible(ctx, row.project_id):
        raise errors.SnapshotNotFound(snapshot_id=snapshot_id)
    return row


def validate_create(snapshot: Any, now: str) -> dict[str, Any]:
    if not isinstance(snapshot, Mapping):
        raise errors.Invalid(reason="snapshot must be a map")
    try:
        sid = str(uuidlib.UUID(str(snapshot.get("id"))))
        vid = str(uuidlib.UUID(str(snapshot.get("volume_id"))))
    except ValueError:
        raise errors.Invalid(reason="snapshot id and volume_id must be UUIDs") from None
    project = _text(snapshot.get("project_id"), "project_id")
    if not project:
        raise errors.Invalid(reason="project_id is required")
    return {"id": sid, "volume_id": vid, "project_id": project, "user_id": _text(snapshot.get("user_id"), "user_id"),
            "name": _text(snapshot.get("name"), "name"),
            "description": _text(snapshot.get("description"), "description", 65535),
            "metadata": validate_metadata(snapshot.get("metadata")), "status": SS.CREATING, "error": None,
            "progress": None, "created_at": now, "updated_at": now, "deleted": False, "deleted_at": None}


# --- create -----------------------------------------------------------------------------

def _begin_create(conn: Connection, env: FlowEnv, ctx: RequestContext, row: dict[str, Any],
                  force: bool) -> tuple[dict[str, Any], bool]:
    old = sdb.get_row(conn, row["id"])
    if old is not None:  # a retried request gets what the first one made
        if old.project_id != row["project_id"]:
            raise errors.Conflict(reason=f"snapshot {row['id']} already exists")
        return record(env, old), False
    vol = _get_visible(conn, ctx, row["volume_id"])
    if vol.project_id != row["project_id"]:
        raise errors.VolumeNotFound(volume_id=row["volume_id"])
    allowed = SNAPSHOTTABLE_FORCED if force else SNAPSHOTTABLE
    if vol.status not in allowed or vol.host is None:
        hint = "" if force or vol.status != S.IN_USE else " (or in-use with force)"
        raise errors.VolumeInvalidState(reason=f"Volume {vol.id} status must be available{hint}, but current "
                                               f"status is: {vol.status}.")
    full = {**row, "size": int(vol.size), "host": vol.host, "conductor_id": env.conductor_id}
    if not vdb.try_allocate(conn, vol.host, int(vol.size)):  # nothing made: an error snapshot takes no space
        full.update(status=SS.ERROR, error=NO_ROOM.format(host=vol.host, size=vol.size), conductor_id=None,
                    host=None)
    sdb.insert_snapshot(conn, full)
    return sdb.snapshot_record(full, env.cell), full["status"] == SS.CREATING


async def snapshot_create(env: FlowEnv, ctx: RequestContext, snapshot: Any, force: bool = False) -> dict[str, Any]:
    row = validate_create(snapshot, utcnow_iso())
    rec, new = await env.db.write(lambda conn: _begin_create(conn, env, ctx, row, bool(force)))
    if new:
        env.spawn(create_on_host(env, background_ctx(ctx), rec))
    return rec


async def create_on_host(env: FlowEnv, ctx: RequestContext, rec: Mapping[str, Any]) -> None:
    sid, host = rec["id"], rec["host"]
    try:
        await VolumeAPI(env.service).create_snapshot(ctx, host, dict(rec))
    except errors.CellcloudError as exc:
        LOG.warning("snapshot %s: create on %s failed: %s", sid, host, exc)
        reason = exc.message

        def failed(conn: Connection) -> None:
            # the worker removed its partial copy: the snapshot holds no space on any host now
            if sdb.transition(conn, sid, [SS.CREATING], {"status": SS.ERROR, "error": reason, "host": None}):
                vdb.release(conn, host, int(rec["size"]))
        await env.db.write(failed)
        return
    await env.db.write(lambda conn: sdb.transition(conn, sid, [SS.CREATING], {"status": SS.AVAILABLE}))
    LOG.info("snapshot %s of volume %s available", sid, rec["volume_id"])


# --- reads, update ------------------------------------------------------------------------

async def snapshot_get(env: FlowEnv, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
    return await env.db.read(lambda conn: record(env, _get(conn, ctx, snapshot_id)))


def _list(conn: Connection, env: FlowEnv, ctx: RequestContext, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    unknown = set(filters) - {"project_id", "name", "status", "volume_id"}
    if unknown:
        raise errors.Invalid(reason=f"unknown snapshot filter(s) {sorted(unknown)}")
    project = filters.get("project_id")
    if not (ctx.is_admin or "service" in ctx.roles):
        project = ctx.project
    rows = sdb.list_rows(conn, project, filters.get("name"), filters.get("status"), filters.get("volume_id"))
    return [record(env, r) for r in rows]


async def snapshot_list(env: FlowEnv, ctx: RequestContext, filters: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return await env.db.read(lambda conn: _list(conn, env, ctx, filters or {}))


def _update(conn: Connection, env: FlowEnv, ctx: RequestContext, snapshot_id: str,
            values: Mapping[str, Any]) -> dict[str, Any]:
    clean = clean_updates(values, sdb.UPDATABLE_FIELDS)
    _get(conn, ctx, snapshot_id)
    if clean:
        sdb.update_snapshot(conn, snapshot_id, clean)
    return record(env, sdb.get_row(conn, snapshot_id))


async def snapshot_update(env: FlowEnv, ctx: RequestContext, snapshot_id: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise errors.Invalid(reason="values must be a map")
    return await env.db.write(lambda conn: _update(conn, env, ctx, snapshot_id, values))


# --- delete --------------------------------------------------------------------------------

def _begin_delete(conn: Connection, env: FlowEnv, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
    row = _get(conn, ctx, snapshot_id)
    if vdb.copying_from(conn, "snapshot_id", snapshot_id):
        raise errors.SnapshotInvalidState(reason=f"a volume is being created from snapshot {snapshot_id}")
    if not sdb.transition(conn, snapshot_id, sdb.DELETABLE,
                          {"status": SS.DELETING, "conductor_id": env.conductor_id}):
        raise errors.SnapshotInvalidState(reason=f"Snapshot status must be available or error and must not be "
                                                 f"part of a group, but it is {row.status}.")
    return record(env, sdb.get_row(conn, snapshot_id))


async def snapshot_delete(env: FlowEnv, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
    rec = await env.db.write(lambda conn: _begin_delete(conn, env, ctx, snapshot_id))
    env.spawn(delete_on_host(env, background_ctx(ctx), rec))
    return rec


async def delete_on_host(env: FlowEnv, ctx: RequestContext, rec: Mapping[str, Any]) -> None:
    """Remove the copy on its host, then the row; a failure leaves it error_deleting."""
    sid = rec["id"]
    if rec.get("host"):
        try:
            await VolumeAPI(env.service).delete_snapshot(ctx, rec["host"], dict(rec))
        except errors.SnapshotIsBusy as exc:  # Cinder: back to available, the reason kept
            LOG.warning("snapshot %s: not deleted: %s", sid, exc.message)
            busy = exc.message
            await env.db.write(lambda conn: sdb.transition(conn, sid, [SS.DELETING],
                                                           {"status": SS.AVAILABLE, "error": busy,
                                                            "conductor_id": None}))
            return
        except errors.CellcloudError as exc:
            LOG.warning("snapshot %s: delete on %s failed: %s", sid, rec["host"], exc)
            reason = exc.message
            await env.db.write(lambda conn: sdb.transition(conn, sid, [SS.DELETING],
                                                           {"status": SS.ERROR_DELETING, "error": reason}))
            return
    await env.db.write(lambda conn: sdb.remove(conn, sid))


# --- adoption of flows whose conductor left ---------------------------------------------------

def _adopt(conn: Connection, env: FlowEnv, owners: list[str]) -> list[dict[str, Any]]:
    return [record(env, row)
            for row in vdb.take_over(conn, vdb.volume_snapshots, owners, sdb.IN_PROGRESS, env.conductor_id)]


async def adopt(env: FlowEnv, owners: Iterable[str]) -> int:
    """Adopt the snapshot flows of `owners` and run their host step again; how many were taken."""
    owners = list(owners)
    if not owners:
        return 0
    taken = await env.db.write(lambda conn: _adopt(conn, env, owners))
    for rec in taken:
        LOG.warning("snapshot %s: adopting its %s flow from %s", rec["id"], rec["status"], owners)
        if rec["status"] == SS.CREATING:
            env.spawn(create_on_host(env, admin_context(), rec))
        else:
            env.spawn(delete_on_host(env, admin_context(), rec))
    return len(taken)
