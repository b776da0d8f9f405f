"""Boot from volume (issue 18): the boot's root volume, reserved with the instance rows and
exported to the host the scheduler chose before the compute spawns on it.

    build_instances  available -> attaching, an attachment at /dev/vda for the new instance
                     (same unit of work as the rows: a refused volume makes no server)
                     or, a root volume the boot makes from an image (BDM image -> volume, the
                     record's image names it under NEW_ROOT): its row inserted `creating` with that
                     attachment; before scheduling it is placed and made (make_root), creating ->
                     attaching; a volume that cannot be made fails the build (ERROR with the reason)
    send_to_host     volume.<host> export for the chosen compute, connection_info recorded; the
                     compute asks for it (volume_connection) and makes it the guest's vda
    spawned          attaching -> in-use (flows/compute_events.py, same unit of work as ACTIVE)
    build error      the attachment ends, the volume is available again (flows/boot.py set_error)
    delete           as any attached volume (cells/db/volumes.py release_instance_volumes); with
                     delete_on_termination the volume is deleted once the guest is gone, and a volume
                     the boot made is deleted when the build fails (release_root marks it deleting in
                     the unit of work that ends the server; delete_released removes it from its host)

The reserved volume records no conductor of its own (conductor_id NULL): the boot owns it, so a
conductor death mid-boot is resumed or rolled back by the boot's recovery, never by the volume
flows' adoption (which would hot-plug into a guest still being built).
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows import volumes as vflows
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db import volumes as vdb
from cells.db.volumes import VolumeStatus as S
from cells.objects.instance import utcnow_iso
from cells.rpcapi.volume import VolumeAPI

LOG = logging.getLogger(__name__)
ROOT_DEVICE = "/dev/vda"
NEW_ROOT = "new_root_volume"  # the boot record's image: the root volume the boot makes (its create fields)
DELETE_ON_TERMINATION = "delete_on_termination"  # the boot record's image: delete the root volume with the server


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


# --- a root volume the boot makes (BDM source image, destination volume) ---------------------------

def new_root(image: Any) -> Mapping[str, Any] | None:
    """The create fields of the root volume a boot record asks to be made, None for any other boot."""
    spec = image.get(NEW_ROOT) if isinstance(image, Mapping) else None
    return spec if isinstance(spec, Mapping) else None


def insert_new_root(conn: Connection, image: Mapping[str, Any], instance_uuid: str, project_id: str) -> None:
    """The volume row (creating, owned by the boot: no conductor of its own) and its attachment to the
    new instance at /dev/vda, in the unit of work that inserts the instance row."""
    volume_id, spec = root_volume_id(image), new_root(image)
    assert volume_id is not None and spec is not None
    now = utcnow_iso()
    row = vflows.validate_create({**spec, "id": volume_id, "project_id": project_id}, now)
    if row["image"] is None:
        raise errors.Invalid(reason="a root volume made at boot is made from an image")
    if vdb.get_row(conn, volume_id) is not None:
        raise errors.Conflict(reason=f"volume {volume_id} already exists")
    vdb.insert_volume(conn, {**row, "conductor_id": None})
    vdb.insert_attachment(conn, {"id": str(uuidlib.uuid4()), "volume_id": volume_id, "instance_uuid": instance_uuid,
                                 "instance_host": None, "device": ROOT_DEVICE, "status": "attaching",
                                 "connection_info": None, "created_at": now, "updated_at": now})


def _made(conn: Connection, env: FlowEnv, volume_id: str, instance_uuid: str, values: Mapping[str, Any]) -> bool:
    """creating -> attaching when the volume is still its server's; else (the server was deleted or failed
    meanwhile) it is marked deleting for this conductor. True: the boot goes on."""
    att = vdb.attachment_of(conn, volume_id)
    if att is not None and att.instance_uuid == instance_uuid \
            and vdb.transition(conn, volume_id, [S.CREATING], {**values, "status": S.ATTACHING}):
        return True
    vdb.transition(conn, volume_id, [S.CREATING, S.AVAILABLE, S.ERROR],
                   {"status": S.DELETING, "conductor_id": env.conductor_id})
    return False


async def make_root(env: FlowEnv, ctx: RequestContext, instance_uuid: str, image: Any) -> str | None:
    """Place and make the root volume a boot asked for (its image converted into it on its volume host);
    None once it is attaching for the instance, else why it could not be made (the caller fails the
    build, whose end deletes the volume: release_root)."""
    volume_id = root_volume_id(image)
    if volume_id is None or new_root(image) is None:
        return None
    row = await env.db.read(lambda conn: vdb.get_row(conn, volume_id))
    if row is not None and row.status == S.ATTACHING:  # made already (a resumed build): export_to checks it is ours
        return None
    if row is None or row.status != S.CREATING:
        return f"root volume {volume_id} is {'gone' if row is None else row.status}, not being made"
    placed: Mapping[str, Any] | None = dict(row._mapping)
    if row.host is None:
        placed = await env.db.write(lambda conn: vflows.place(conn, volume_id, int(row.size),
                                                              vflows.live_volume_hosts(env)))
    if placed is None:  # place() put it in error with the reason
        failed = await env.db.read(lambda conn: vdb.get_row(conn, volume_id))
        return str(getattr(failed, "error", None) or "no volume host could take it")
    try:
        made = await VolumeAPI(env.service).create_volume(ctx, placed["host"], vdb.volume_record(placed))
    except errors.CellcloudError as exc:
        LOG.warning("root volume %s of %s: create on %s failed: %s", volume_id, instance_uuid, placed["host"], exc)
        return exc.message
    values = {"backend": made.get("backend"), "disk_format": made.get("disk_format")}
    if await env.db.write(lambda conn: _made(conn, env, volume_id, instance_uuid, values)):
        return None
    LOG.info("root volume %s made after its server %s ended: deleting it", volume_id, instance_uuid)
    try:  # its server's end may have deleted it before this create finished: remove what the create made
        await VolumeAPI(env.service).delete_volume(ctx, placed["host"], vdb.volume_record(placed))
    except errors.CellcloudError as exc:
        LOG.warning("root volume %s: delete on %s failed: %s", volume_id, placed["host"], exc)
    await delete_released(env, ctx, volume_id)
    return f"root volume {volume_id} was made after its server ended"


def release_root(conn: Connection, env: FlowEnv, row: Any, build_failed: bool) -> str | None:
    """The server ends (deleted, or its build failed) and its attachments were released: its root volume
    is marked deleting for this conductor when delete_on_termination asks for it, or when the build failed
    and the boot made the volume (nothing half-made stays). The id to give delete_released after the
    commit, else None (an existing volume stays, available)."""
    image = row.image
    volume_id = root_volume_id(image)
    if volume_id is None:
        return None
    made = new_root(image) is not None
    if bool(image.get(DELETE_ON_TERMINATION)) or (made and build_failed):
        statuses = [S.AVAILABLE, S.CREATING, S.ERROR]
    elif made:  # a volume still being made for a server that ended: no one will ever use it
        statuses = [S.CREATING]
    else:
        return None
    vol = vdb.get_row(conn, volume_id)
    if vol is None or vol.deleted or vdb.attachment_of(conn, volume_id) is not None:
        return None  # gone, or attached to another server since: not ours to delete
    if not vdb.transition(conn, volume_id, statuses, {"status": S.DELETING, "conductor_id": env.conductor_id}):
        return None
    if vol.host is None:  # never placed: nothing on any host to remove
        vflows.mark_deleted(conn, volume_id)
        return None
    return volume_id


async def delete_released(env: FlowEnv, ctx: RequestContext, volume_id: str | None) -> None:
    """Remove a root volume release_root marked (from its host, when it was placed on one). Run after the
    commit; a conductor that dies first leaves it deleting under its id, and its adopter deletes it."""
    if volume_id is None:
        return
    row = await env.db.read(lambda conn: vdb.get_row(conn, volume_id))
    if row is None or row.deleted or row.status != S.DELETING or row.conductor_id != env.conductor_id:
        return
    await vflows.delete_on_host(env, ctx, vdb.volume_record(row))


async def delete_released_of(env: FlowEnv, ctx: RequestContext, instance_uuids: list[str]) -> None:
    """delete_released for the root volumes of these servers (after a write that ended them)."""
    def read(conn: Connection) -> list[str]:
        rows = idb.get_rows(conn, instance_uuids)
        return [v for row in rows.values() if (v := root_volume_id(row.image)) is not None]
    for volume_id in await env.db.read(read) if instance_uuids else []:
        await delete_released(env, ctx, volume_id)
