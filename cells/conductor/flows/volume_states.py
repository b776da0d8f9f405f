"""Cinder's state actions on volumes and snapshots: the admin actions (os-reset_status, os-force_delete,
os-force_detach), the legacy attach bookkeeping a compute service calls (os-reserve, os-unreserve,
os-attach, os-detach, os-begin_detaching, os-roll_detaching), os-update_readonly_flag, os-retype, a transfer's steps
(available -> awaiting-transfer -> available in the receiving project, or back), and the changes of the
metadata routes (a merge, a replace or one key's delete in one write unit: two concurrent merges both land).

As in Cinder these change records only: os-attach records that a server uses the volume (Nova calls it
after it plugged the disk), it plugs nothing; os-detach ends the record (the volume hosts then remove
any export no attachment needs: node/volume/manager.py remove_stale_exports). Each is one write unit
whose check and change are the conditional UPDATE of cells/db (of two concurrent requests one wins);
a reset status has no owner (conductor_id None), so no conductor adopts it as a flow in progress.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, update

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx
from cells.conductor.flows import volume_snapshots, volumes
from cells.conductor.flows.volumes import _get_visible, record, validate_metadata
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db import volume_snapshots as sdb
from cells.db import volumes as vdb
from cells.db.volume_snapshots import SnapshotStatus as SS
from cells.db.volumes import VolumeStatus as S
from cells.objects.instance import utcnow_iso
from cells.objects.records import VolumeRecord

# Cinder's os-reset_status accepts these (cinder/objects/fields.py VolumeStatus, SnapshotStatus)
RESETTABLE = ("available", "error", "creating", "deleting", "in-use", "attaching", "detaching",
              "error_deleting", "maintenance", "reserved", "downloading", "uploading", "retyping", "extending",
              "error_extending", "error_restoring", "error_managing")
SNAPSHOT_RESETTABLE = (SS.CREATING, SS.AVAILABLE, SS.DELETING, SS.ERROR, SS.ERROR_DELETING)
ATTACH_STATUSES = ("attached", "detached")
ATTACH_MODES = ("rw", "ro")
READONLY_KEY = "readonly"  # Cinder shows this admin metadata key among the volume's metadata
VOLUME_ACTIONS = ("reset_status", "force_delete", "force_detach", "reserve", "unreserve", "attach", "detach",
                  "begin_detaching", "roll_detaching", "update_readonly_flag", "retype", "update_metadata",
                  "transfer_begin", "transfer_cancel", "transfer_accept")
AWAITING_TRANSFER = "awaiting-transfer"
SNAPSHOT_ACTIONS = ("reset_status", "force_delete", "update_metadata", "update_status")
# os-update_snapshot_status (what a compute reports of an assisted snapshot): from -> the statuses allowed
SNAPSHOT_STATUS_MOVES = {SS.CREATING: (SS.CREATING, SS.AVAILABLE, SS.ERROR),
                         SS.DELETING: (SS.DELETING, SS.ERROR_DELETING)}


def _invalid(volume_id: str, action: str, wanted: str, status: str) -> errors.VolumeInvalidState:
    return errors.VolumeInvalidState(reason=f"volume {volume_id}: {action} needs status {wanted}, but it is "
                                            f"{status}")


def _admin(ctx: RequestContext, action: str) -> None:
    if not (ctx.is_admin or "service" in ctx.roles):  # the API enforced Cinder's rule; a peer that skipped it
        raise errors.Forbidden(reason=f"{action} is an admin action")


def _move(conn: Connection, row: Any, action: str, from_statuses: tuple[str, ...], to: str) -> None:
    if not vdb.transition(conn, row.id, list(from_statuses), {"status": to, "conductor_id": None}):
        raise _invalid(row.id, action, " or ".join(from_statuses), row.status)


# --- volume actions (each one write unit) -------------------------------------------------------

def _reset_status(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    _admin(ctx, "os-reset_status")
    status, attach_status = args.get("status"), args.get("attach_status")
    if status is None and attach_status is None:
        raise errors.Invalid(reason="os-reset_status needs status or attach_status")
    if status is not None and status not in RESETTABLE:
        raise errors.Invalid(reason=f"Invalid status {status!r}: one of {', '.join(RESETTABLE)}")
    if attach_status is not None and attach_status not in ATTACH_STATUSES:
        raise errors.Invalid(reason=f"Invalid attach_status {attach_status!r}: attached or detached")
    if attach_status == "detached":
        vdb.delete_attachment(conn, row.id)
    if status is not None:
        vdb.update_volume(conn, row.id, {"status": status, "conductor_id": None})


def _force_detach(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    _admin(ctx, "os-force_detach")
    att = vdb.attachment_of(conn, row.id)
    wanted = args.get("attachment_id")
    if att is None or (wanted is not None and wanted != att.id):
        raise errors.VolumeAttachmentNotFound(reason=f"volume {row.id} has no attachment {wanted or ''}".strip())
    vdb.delete_attachment(conn, row.id)
    vdb.update_volume(conn, row.id, {"status": S.AVAILABLE, "conductor_id": None})


def _reserve(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    _move(conn, row, "os-reserve", (S.AVAILABLE,), S.ATTACHING)


def _unreserve(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    if vdb.attachment_of(conn, row.id) is not None:  # an attach in progress owns it: os-detach ends that
        raise _invalid(row.id, "os-unreserve", "attaching without an attachment", row.status)
    _move(conn, row, "os-unreserve", (S.ATTACHING,), S.AVAILABLE)


def _attach(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    instance_uuid, mountpoint, mode = args.get("instance_uuid"), args.get("mountpoint"), args.get("mode", "rw")
    try:
        instance_uuid = str(uuidlib.UUID(str(instance_uuid)))
    except ValueError:
        raise errors.Invalid(reason="os-attach needs the instance_uuid of a server (attaching to a host_name "
                                    "is not supported)") from None
    if not isinstance(mountpoint, str) or not mountpoint.startswith("/dev/") or len(mountpoint) > 64:
        raise errors.Invalid(reason="os-attach needs a mountpoint, a device path such as /dev/vdb")
    if mode not in ATTACH_MODES:
        raise errors.Invalid(reason=f"Invalid attach mode {mode!r}: rw or ro")
    if vdb.attachment_of(conn, row.id) is not None:
        raise _invalid(row.id, "os-attach", "available or attaching, not attached", row.status)
    _move(conn, row, "os-attach", (S.AVAILABLE, S.ATTACHING), S.IN_USE)
    inst = idb.get_row(conn, instance_uuid)  # the server of another cell is recorded without its host
    now = utcnow_iso()
    vdb.insert_attachment(conn, {"id": str(uuidlib.uuid4()), "volume_id": row.id, "instance_uuid": instance_uuid,
                                 "instance_host": None if inst is None else inst.host, "device": mountpoint,
                                 "status": "attached", "connection_info": None, "created_at": now,
                                 "updated_at": now})


def _detach(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    att, wanted = vdb.attachment_of(conn, row.id), args.get("attachment_id")
    if att is None:
        return  # already detached: Cinder answers 202 and does nothing
    if wanted is not None and wanted != att.id:
        raise errors.VolumeAttachmentNotFound(reason=f"volume {row.id} has no attachment {wanted}")
    _move(conn, row, "os-detach", (S.IN_USE, S.DETACHING), S.AVAILABLE)
    vdb.delete_attachment(conn, row.id)


def _begin_detaching(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    _move(conn, row, "os-begin_detaching", (S.IN_USE,), S.DETACHING)


def _roll_detaching(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    if row.status == S.DETACHING:  # Cinder: a no-op in any other status
        _move(conn, row, "os-roll_detaching", (S.DETACHING,), S.IN_USE)


def _update_readonly_flag(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    readonly = args.get("readonly")
    if not isinstance(readonly, bool):
        raise errors.Invalid(reason=f"Invalid value for readonly: {readonly!r} (true or false)")
    if row.status in (S.CREATING, S.DELETING) or row.status.startswith("error"):
        raise _invalid(row.id, "os-update_readonly_flag", "available or in-use", row.status)
    vdb.update_volume(conn, row.id, {"metadata": {**(row.metadata or {}), READONLY_KEY: str(readonly)}})


def _retype(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    """The API resolved the type; a type whose backend the volume's host lacks would need a move (refused)."""
    new_type, backend = args.get("volume_type"), args.get("volume_backend_name")
    if new_type is not None and not isinstance(new_type, str):
        raise errors.Invalid(reason="os-retype needs the name of a volume type")
    if row.status not in (S.AVAILABLE, S.IN_USE):
        raise _invalid(row.id, "os-retype", "available or in-use", row.status)
    if (row.volume_type or None) == new_type:
        raise errors.Invalid(reason=f"Invalid volume_type: volume {row.id} is already of type {new_type or 'the default'}")
    node = vdb.node(conn, row.host) if row.host else None
    if backend and (node is None or (node.backend_name or node.backend) != backend):
        raise errors.Invalid(reason=f"Retype needs a migration: volume {row.id}'s host has no backend {backend!r}, "
                                    "and this cloud does not migrate volumes (migration_policy on-demand is refused "
                                    "too)")
    if not vdb.transition(conn, row.id, [row.status], {"volume_type": new_type, "volume_backend_name": backend}):
        raise _invalid(row.id, "os-retype", row.status, "changed meanwhile")


def merged_metadata(current: Mapping[str, str] | None, args: Mapping[str, Any], what: str, ident: str) -> dict[str, str]:
    """Cinder's metadata routes as one change: {"set": {...}} merged in (or, "replace": true, instead of
    what is there), or {"delete": key} (404 when the key is not there)."""
    meta = dict(current or {})
    if "delete" in args:
        key = args["delete"]
        if not isinstance(key, str) or key not in meta:
            raise errors.MetadataItemNotFound(what=what, id=ident, key=key)
        del meta[key]
        return meta
    given = validate_metadata(args.get("set"))
    return given if args.get("replace") else {**meta, **given}


def _update_metadata(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    vdb.update_volume(conn, row.id, {"metadata": merged_metadata(row.metadata, args, "Volume", row.id)})


def _transfer_begin(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    """available -> awaiting-transfer; its snapshots go with it (unless no_snapshots) and must be available."""
    if not args.get("no_snapshots"):
        busy = [s.id for s in sdb.of_volume(conn, row.id) if s.status != SS.AVAILABLE]
        if busy:
            raise errors.VolumeInvalidState(reason=f"volume {row.id} has snapshots that are not available: "
                                                   f"{', '.join(busy)}")
    _move(conn, row, "a transfer", (S.AVAILABLE,), AWAITING_TRANSFER)


def _transfer_cancel(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    if row.status == AWAITING_TRANSFER:  # a reset status may have taken it out already: nothing to undo
        _move(conn, row, "a transfer's cancel", (AWAITING_TRANSFER,), S.AVAILABLE)


def _transfer_accept(conn: Connection, ctx: RequestContext, row: Any, args: Mapping[str, Any]) -> None:
    """The API checked the auth key and the receiving project's quotas: the volume (and, unless no_snapshots,
    its snapshots) now belong to it, available."""
    _admin(ctx, "a transfer's accept")  # the API asks with its service context once the key matched
    project, user = args.get("project_id"), args.get("user_id")
    if not isinstance(project, str) or not project or not isinstance(user, str) or not user:
        raise errors.Invalid(reason="a transfer's accept needs the receiving project_id and user_id")
    if not vdb.transition(conn, row.id, [AWAITING_TRANSFER], {"status": S.AVAILABLE, "conductor_id": None,
                                                             "project_id": project, "user_id": user}):
        raise _invalid(row.id, "a transfer's accept", AWAITING_TRANSFER, row.status)
    if not args.get("no_snapshots"):
        for snap in sdb.of_volume(conn, row.id):
            sdb.update_snapshot(conn, snap.id, {"project_id": project, "user_id": user})


_VOLUME: dict[str, Callable[[Connection, RequestContext, Any, Mapping[str, Any]], None]] = {
    "reset_status": _reset_status, "force_detach": _force_detach, "reserve": _reserve, "unreserve": _unreserve,
    "attach": _attach, "detach": _detach, "begin_detaching": _begin_detaching, "roll_detaching": _roll_detaching,
    "update_readonly_flag": _update_readonly_flag, "retype": _retype, "update_metadata": _update_metadata,
    "transfer_begin": _transfer_begin, "transfer_cancel": _transfer_cancel, "transfer_accept": _transfer_accept,
}


def _force_delete(conn: Connection, env: FlowEnv, ctx: RequestContext, row: Any) -> bool:
    """Whatever its status, unless attached or with snapshots (as Cinder's force); True: remove on its host."""
    _admin(ctx, "os-force_delete")
    if vdb.attachment_of(conn, row.id) is not None:
        raise errors.VolumeInvalidState(reason=f"Volume {row.id} is attached: detach it first.")
    if sdb.of_volume(conn, row.id):
        raise errors.VolumeInvalidState(reason=f"Volume {row.id} still has dependent snapshots.")
    if vdb.copying_from(conn, "source_volid", row.id):
        raise errors.VolumeInvalidState(reason=f"A volume is being created from volume {row.id}.")
    if not vdb.transition(conn, row.id, [row.status], {"status": S.DELETING, "conductor_id": env.conductor_id}):
        raise _invalid(row.id, "os-force_delete", row.status, "changed meanwhile")
    if row.host is None:
        volumes.mark_deleted(conn, row.id)
        return False
    return True


async def volume_action(env: FlowEnv, ctx: RequestContext, volume_id: str, action: str,
                        args: Mapping[str, Any] | None = None) -> VolumeRecord:
    """Run one state action (VOLUME_ACTIONS) on the volume; its record after it."""
    if action not in VOLUME_ACTIONS:
        raise errors.Invalid(reason=f"Unknown volume action {action!r}")
    given = dict(args or {})

    def act(conn: Connection) -> tuple[VolumeRecord, bool]:
        row = _get_visible(conn, ctx, volume_id)
        remote = False
        if action == "force_delete":
            remote = _force_delete(conn, env, ctx, row)
        else:
            _VOLUME[action](conn, ctx, row, given)
        return record(env, conn, vdb.get_row(conn, volume_id)), remote
    rec, remote = await env.db.write(act)
    if remote:
        env.spawn(volumes.delete_on_host(env, background_ctx(ctx), rec))
    return rec


# --- snapshot actions ----------------------------------------------------------------------------

async def snapshot_action(env: FlowEnv, ctx: RequestContext, snapshot_id: str, action: str,
                          args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """os-reset_status {"status"} or os-force_delete (any status: the copy is removed on its host)."""
    if action not in SNAPSHOT_ACTIONS:
        raise errors.Invalid(reason=f"Unknown snapshot action {action!r}")
    if action == "update_metadata":
        return await _snapshot_metadata(env, ctx, snapshot_id, dict(args or {}))
    if action == "update_status":
        return await _snapshot_status(env, ctx, snapshot_id, dict(args or {}))
    _admin(ctx, f"snapshot os-{action}")
    status = (args or {}).get("status")
    if action == "reset_status" and status not in SNAPSHOT_RESETTABLE:
        raise errors.Invalid(reason=f"Invalid status {status!r}: one of {', '.join(SNAPSHOT_RESETTABLE)}")

    def act(conn: Connection) -> dict[str, Any]:
        row = volume_snapshots._get(conn, ctx, snapshot_id)
        if action == "reset_status":
            sdb.update_snapshot(conn, snapshot_id, {"status": status, "conductor_id": None, "progress": None})
        else:
            if vdb.copying_from(conn, "snapshot_id", snapshot_id):
                raise errors.SnapshotInvalidState(reason=f"a volume is being created from snapshot {snapshot_id}")
            if not sdb.transition(conn, snapshot_id, [row.status],
                                  {"status": SS.DELETING, "conductor_id": env.conductor_id}):
                raise errors.SnapshotInvalidState(reason=f"snapshot {snapshot_id} changed meanwhile")
        return volume_snapshots.record(env, sdb.get_row(conn, snapshot_id))
    rec = await env.db.write(act)
    if action == "force_delete":
        env.spawn(volume_snapshots.delete_on_host(env, background_ctx(ctx), rec))
    return rec


async def _snapshot_metadata(env: FlowEnv, ctx: RequestContext, snapshot_id: str,
                             args: Mapping[str, Any]) -> dict[str, Any]:
    def act(conn: Connection) -> dict[str, Any]:
        row = volume_snapshots._get(conn, ctx, snapshot_id)
        sdb.update_snapshot(conn, snapshot_id, {"metadata": merged_metadata(row.metadata, args, "Snapshot", row.id)})
        return volume_snapshots.record(env, sdb.get_row(conn, snapshot_id))
    return await env.db.write(act)


# --- the cell's volume hosts (Cinder's services, pools, hosts and capabilities read them) ------

def _hosts(conn: Connection) -> list[tuple[Any, int, int, int, int]]:
    """(node, volumes, their GiB, snapshots, their GiB) of each volume host."""
    out = []
    for node in vdb.nodes(conn):
        vols = vdb.list_rows(conn, None, host=node.host)
        snaps = sdb.on_host(conn, node.host)
        out.append((node, len(vols), sum(int(v.size) for v in vols), len(snaps), sum(int(s.size) for s in snaps)))
    return out


SERVICE_FIELDS: dict[str, Any] = {"disabled": bool, "frozen": bool, "disabled_reason": (str, type(None))}


async def volume_host_set(env: FlowEnv, ctx: RequestContext, host: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Admin: a volume host's os-services state (disabled, disabled_reason, frozen); a 404 for a host this
    cell has no volume worker on."""
    _admin(ctx, "changing a volume service")
    if not isinstance(host, str) or not isinstance(values, Mapping) or not values \
            or any(k not in SERVICE_FIELDS or not isinstance(v, SERVICE_FIELDS[k]) for k, v in values.items()) \
            or len(values.get("disabled_reason") or "") > 255:
        raise errors.Invalid(reason="a volume service change is disabled, frozen (booleans) and disabled_reason "
                                    "(at most 255 characters)")

    def act(conn: Connection) -> dict[str, Any]:
        if vdb.node(conn, host) is None:
            raise errors.NotFound(f"Host {host} could not be found.")
        conn.execute(update(vdb.volume_nodes).where(vdb.volume_nodes.c.host == host).values(**values))
        node = vdb.node(conn, host)
        assert node is not None
        return {"host": host, "disabled": bool(node.disabled), "frozen": bool(node.frozen),
                "disabled_reason": node.disabled_reason}
    return await env.db.write(act)


async def volume_host_list(env: FlowEnv, ctx: RequestContext) -> list[dict[str, Any]]:
    """Admin: each volume host of the cell with its capacity, what it holds and whether it is up now
    (its worker in the directory)."""
    _admin(ctx, "the volume host list")
    live = volumes.live_volume_hosts(env)
    return [{"host": n.host, "backend": n.backend, "backend_name": n.backend_name or n.backend,
             "capacity_gb": int(n.capacity_gb), "allocated_gb": int(n.allocated_gb), "targets": list(n.targets),
             "updated_at": n.updated_at, "up": n.host in live, "cell": env.cell, "volume_count": nv,
             "disabled": bool(n.disabled), "disabled_reason": n.disabled_reason, "frozen": bool(n.frozen),
             "volume_gb": gv, "snapshot_count": ns, "snapshot_gb": gs}
            for n, nv, gv, ns, gs in sorted(await env.db.read(_hosts), key=lambda t: str(t[0].host))]


async def _snapshot_status(env: FlowEnv, ctx: RequestContext, snapshot_id: str,
                           args: Mapping[str, Any]) -> dict[str, Any]:
    """creating -> creating|available|error, deleting -> deleting|error_deleting, with a progress "N%"."""
    status, progress = args.get("status"), args.get("progress")
    if progress is not None and not (isinstance(progress, str) and progress.endswith("%")
                                     and progress[:-1].isdigit() and 0 <= int(progress[:-1]) <= 100):
        raise errors.Invalid(reason=f"Invalid progress {progress!r}: a percentage such as 80%")

    def act(conn: Connection) -> dict[str, Any]:
        row = volume_snapshots._get(conn, ctx, snapshot_id)
        allowed = SNAPSHOT_STATUS_MOVES.get(row.status, ())
        if status not in allowed:
            raise errors.SnapshotInvalidState(reason=f"Snapshot status {row.status} cannot be updated to {status}")
        values: dict[str, Any] = {"status": status, "progress": progress}
        if status != row.status:
            values["conductor_id"] = None
        if not sdb.transition(conn, snapshot_id, [row.status], values):
            raise errors.SnapshotInvalidState(reason=f"snapshot {snapshot_id} changed meanwhile")
        return volume_snapshots.record(env, sdb.get_row(conn, snapshot_id))
    return await env.db.write(act)
