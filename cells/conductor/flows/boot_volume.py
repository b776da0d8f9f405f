"""Boot from volume (issue 18): the boot's root volume, reserved with the instance rows and
exported to the host the scheduler chose before the compute spawns on it.

    build_instances  available -> attaching, an attachment at /dev/vda for the new instance
                     (same unit of work as the rows: a refused volume makes no server)
    send_to_host     volume.<host> export for the chosen compute, connection_info recorded; the
                     compute asks for it (volume_connection) and makes it the guest's vda
    spawned          attaching -> in-use (flows/compute_events.py, same unit of work as ACTIVE)
    build error      the attachment ends, the volume is available again (flows/boot.py set_error)
    delete           as any attached volume (cells/db/volumes.py release_instance_volumes)

The reserved volume records no conductor of its own (conductor_id NULL): the boot owns it, so a
conductor death mid-boot is resumed or rolled back by the boot's recovery, never by the volume
flows' adoption (which would hot-plug into a guest still being built).
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows import volumes as vflows
from cells.context import RequestContext
from cells.db import volumes as vdb
from cells.db.volumes import VolumeStatus as S
from cells.objects.instance import utcnow_iso
from cells.rpcapi.volume import VolumeAPI

ROOT_DEVICE = "/dev/vda"


def root_volume_id(image: Any) -> str | None:
    """The root volume a boot record names (its `image` carries no image id then)."""
    if not isinstance(image, Mapping) or image.get("root_volume_id") is None:
        return None
    try:
        return str(uuidlib.UUID(str(image["root_volume_id"])))
    except ValueError:
        raise errors.Invalid(reason=f"root_volume_id {image['root_volume_id']!r} is not a UUID") from None


def refuse_for_root_volume(image: Any, uuid: str, action: str) -> None:
    """What a server on a root volume cannot do yet: move (resize, migrate, evacuate: its compute opens
    the volume only while the boot's attachment is made, a move would need the export moved with it)
    and rebuild (its root disk is the volume, not an image). A 409 before anything changes, rather than
    an action that fails half way."""
    if root_volume_id(image) is not None:
        raise errors.Conflict(reason=f"Cannot '{action}' instance {uuid}: it was booted from a volume, and "
                                     f"{action} of such a server is not supported by this cloud yet.")


def reserve(conn: Connection, ctx: RequestContext, volume_id: str, instance_uuid: str, project_id: str) -> None:
    """The volume moves available -> attaching for the instance being built, in the caller's unit of
    work. Nova's 400s: not visible (or another project's), not available, not bootable."""
    vol = vdb.get_row(conn, volume_id)
    if vol is None or vol.deleted or not vflows.visible(ctx, vol.project_id) or vol.project_id != project_id:
        raise errors.Invalid(reason=f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
    if not vol.bootable:
        raise errors.Invalid(reason=f"Block Device Mapping is Invalid: Volume {volume_id} is not bootable.")
    if not vdb.transition(conn, volume_id, [S.AVAILABLE], {"status": S.ATTACHING, "error": None,
                                                           "conductor_id": None}):
        raise errors.Invalid(reason=f"Invalid volume: volume {volume_id} status must be 'available', "
                                    f"but it is {vol.status}.")
    now = utcnow_iso()
    vdb.insert_attachment(conn, {"id": str(uuidlib.uuid4()), "volume_id": volume_id, "instance_uuid": instance_uuid,
                                 "instance_host": None, "device": ROOT_DEVICE, "status": "attaching",
                                 "connection_info": None, "created_at": now, "updated_at": now})


def _ours(conn: Connection, volume_id: str, instance_uuid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    att = vdb.attachment_of(conn, volume_id)
    vol = vdb.get_row(conn, volume_id)
    if att is None or vol is None or att.instance_uuid != instance_uuid or vol.status != S.ATTACHING:
        raise errors.VolumeInvalidState(reason=f"volume {volume_id} is no longer reserved for server {instance_uuid}")
    return vdb.volume_record(vol), vdb.attachment_record(att)


async def export_to(env: FlowEnv, ctx: RequestContext, record: Mapping[str, Any], host: str) -> None:
    """Export the boot's root volume for `host` and record how it opens it (a reschedule exports
    again for its new host: exports are idempotent, a stale one is removed by its volume host)."""
    uuid = str(record["uuid"])
    volume_id = root_volume_id(record.get("image"))
    if volume_id is None:
        return
    volume, _ = await env.db.read(lambda conn: _ours(conn, volume_id, uuid))
    info = await VolumeAPI(env.service).export_volume(ctx, volume["host"], volume,
                                                      vflows.connector(env, host, volume))

    def recorded(conn: Connection) -> None:
        _ours(conn, volume_id, uuid)  # a delete meanwhile released it: nothing to record
        vdb.update_attachment(conn, volume_id, {"connection_info": info, "instance_host": host})
    await env.db.write(recorded)


def settle(conn: Connection, instance_uuid: str) -> None:
    """The guest runs on its root volume: attaching -> in-use (in the caller's unit of work)."""
    for att in vdb.attachments_for_instances(conn, [instance_uuid])[instance_uuid]:
        if att.status == "attaching" and att.device == ROOT_DEVICE:
            vdb.update_attachment(conn, att.volume_id, {"status": "attached"})
            vdb.transition(conn, att.volume_id, [S.ATTACHING], {"status": S.IN_USE})
