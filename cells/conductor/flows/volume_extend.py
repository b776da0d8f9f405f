"""Extend a volume (issue 18; Cinder's os-extend), validate -> lock -> check -> act:

    available  -> extending (the new size recorded and taken on its host) -> volume.<host> extend_volume
               -> available
    in-use     only where the export serves the grown file as it is and the hypervisor can tell the guest:
               the `local` target (the compute opens the volume's file itself) -> extending ->
               volume.<host> extend_volume -> compute.<host> extend_volume (libvirt blockResize: the guest
               sees the new size) -> in-use. Through tgt (an iSCSI LUN keeps the size it was exported with)
               or nbd (qemu-storage-daemon serves the size it opened) it is a 400 saying so.
    a failure: back to where it was, the old size, the reason in `error` (adopted by another conductor,
               which does not know the old size: error_extending)

Only grows (400 otherwise, as Cinder). The owner is recorded (conductor_id); an adopting conductor runs
the steps again (both are idempotent: a file already grown, a disk already that size).
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx
from cells.conductor.flows import messages
from cells.conductor.flows.volumes import _get_visible, record, validate_size
from cells.context import RequestContext
from cells.db import volumes as vdb
from cells.db.volumes import VolumeStatus as S
from cells.objects.records import AttachmentRecord, VolumeRecord
from cells.rpcapi.volume import ComputeVolumeAPI, VolumeAPI

LOG = logging.getLogger(__name__)
LIVE_RESIZABLE = ("local",)  # exports that serve a grown file at its new size
IN_USE_EXTEND = ("Volume {volume_id} is in-use through the {target} export, which keeps the size it was exported "
                 "with: growing it needs the guest detached first (only volumes attached through the local "
                 "target grow while in use).")


def _begin(conn: Connection, env: FlowEnv, ctx: RequestContext, volume_id: str,
           new_size: int) -> tuple[VolumeRecord, int, AttachmentRecord | None]:
    row = _get_visible(conn, ctx, volume_id)
    old = int(row.size)
    if new_size <= old:
        raise errors.Invalid(reason=f"New size for extend must be greater than current size. (current: {old}, "
                                    f"extended: {new_size}).")
    att = vdb.attachment_of(conn, volume_id) if row.status == S.IN_USE else None
    if att is not None:
        target = str(((att.connection_info or {}).get("driver_volume_type")) or "unknown")
        if target not in LIVE_RESIZABLE:
            raise errors.VolumeInvalidState(reason=IN_USE_EXTEND.format(volume_id=volume_id, target=target))
    elif row.status != S.AVAILABLE or row.host is None:
        raise errors.VolumeInvalidState(reason=f"Volume status must be 'available' or 'in-use' to extend, but it "
                                               f"is {row.status}.")
    if not vdb.try_allocate(conn, row.host, new_size - old):
        raise errors.Invalid(reason=f"volume host {row.host} has no room to grow volume {volume_id} by "
                                    f"{new_size - old} GiB")
    # the new size is recorded at once, so the host's allocation (recomputed from sizes) and an adopting
    # conductor both know it; a failed extend puts the old one back
    vdb.transition(conn, volume_id, [row.status], {"status": S.EXTENDING, "size": new_size,
                                                  "conductor_id": env.conductor_id, "error": None})
    return record(env, conn, vdb.get_row(conn, volume_id)), old, None if att is None else vdb.attachment_record(att)


async def volume_extend(env: FlowEnv, ctx: RequestContext, volume_id: str, new_size: Any) -> VolumeRecord:
    size = validate_size(new_size)
    rec, old, att = await env.db.write(lambda conn: _begin(conn, env, ctx, volume_id, size))
    env.spawn(extend_on_host(env, background_ctx(ctx), rec, old, att))
    return rec


async def extend_on_host(env: FlowEnv, ctx: RequestContext, rec: VolumeRecord, old_size: int | None,
                         att: AttachmentRecord | None) -> None:
    """Grow the storage to rec["size"], then (attached) the guest's disk; `old_size` None: adopted."""
    vid, done = rec["id"], S.AVAILABLE if att is None else S.IN_USE
    try:
        await VolumeAPI(env.service).extend_volume(ctx, vdb.volume_host(rec), rec, int(rec["size"]))
        if att is not None:
            await ComputeVolumeAPI(env.service).extend_volume(ctx, vdb.instance_host(att), att["instance_uuid"], vid,
                                                              int(rec["size"]))
    except errors.CellcloudError as exc:
        LOG.warning("volume %s: extend failed: %s", vid, exc)
        reason = f"extend failed: {exc.message}"

        def back(conn: Connection) -> None:
            if old_size is None:
                if vdb.transition(conn, vid, [S.EXTENDING], {"status": S.ERROR_EXTENDING, "error": reason}):
                    messages.record(conn, rec["project_id"], ctx.request_id, vid, "extend")
            elif vdb.transition(conn, vid, [S.EXTENDING], {"status": done, "size": old_size, "error": reason}):
                vdb.release(conn, vdb.volume_host(rec), int(rec["size"]) - old_size)
                messages.record(conn, rec["project_id"], ctx.request_id, vid, "extend")
        await env.db.write(back)
        return
    await env.db.write(lambda conn: vdb.transition(conn, vid, [S.EXTENDING], {"status": done}))
    LOG.info("volume %s extended to %s GiB", vid, rec["size"])
