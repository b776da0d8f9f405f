"""Boot from volume (issue 18): the boot's root volume, reserved with the instance rows and
exported to the host the scheduler chose before the compute spawns on it.

    build_instances  available -> attaching, an attachment at /dev/vda for the new instance
                     (same unit of work as the rows: a refused volume makes no server)
                     or, a root volume the boot makes from an image (BDM image -> volume, the
                     record's image names it under NEW_ROOT) and blank volumes beside it (BDM blank ->
                     volume, under EXTRA_VOLUMES): their rows inserted `creating` with their
                     attachments; before scheduling they are placed and made (make_volumes), creating
                     -> attaching; one that cannot be made fails the build (ERROR with the reason)
    send_to_host     volume.<host> export for the chosen compute, connection_info recorded; the
                     compute asks for it (volume_connection) and makes it the guest's vda
    spawned          attaching -> in-use (flows/compute_events.py, same unit of work as ACTIVE); the
                     blank volumes are then hot-plugged as any attach (attach_extras)
    build error      the attachment ends, the volume is available again (flows/boot.py set_error)
    delete           as any attached volume (cells/db/volumes.py release_instance_volumes); with
                     delete_on_termination the volume is deleted once the guest is gone, and a volume
                     the boot made is deleted when the build fails (release_boot_volumes marks it deleting in
                     the unit of work that ends the server; delete_released removes it from its host)

The reserved volume records no conductor of its own (conductor_id NULL): the boot owns it, so a
conductor death mid-boot is resumed or rolled back by the boot's recovery, never by the volume
flows' adoption (which would hot-plug into a guest still being built).
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Mapping
from functools import partial
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
from cells.objects.records import AttachmentRecord, VolumeRecord
from cells.rpcapi.volume import VolumeAPI

LOG = logging.getLogger(__name__)
ROOT_DEVICE = "/dev/vda"
NEW_ROOT = "new_root_volume"  # the boot record's image: the root volume the boot makes (its create fields)
EXTRA_VOLUMES = "extra_volumes"  # the boot record's image: blank volumes it makes beside its root disk
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
    """What a server on a root volume cannot do yet: rebuild (its root disk is the volume, not an image).
    A 409 before anything changes, rather than an action that fails half way. (Moves and an unshelve carry
    volumes: flows/move_volumes.py.)"""
    if root_volume_id(image) is not None:
        raise errors.Conflict(reason=f"Cannot '{action}' instance {uuid}: it was booted from a volume, and "
                                     f"{action} of such a server is not supported by this cloud yet.")


def refuse_move_with_volumes(conn: Connection, image: Any, uuid: str, action: str) -> None:
    """What takes no volume with it yet (shelve of a server booted from an image: an unshelve elsewhere makes
    its guest from the shelve image, without them): a server with volumes attached is a 409 before anything
    changes, rather than a guest that comes back without its disks (a volume-backed one is shelved as Nova does:
    flows/shelve.py)."""
    refuse_for_root_volume(image, uuid, action)
    attached = [a.volume_id for a in vdb.attachments_for_instances(conn, [uuid])[uuid]]
    if attached:
        raise errors.Conflict(reason=f"Cannot '{action}' instance {uuid}: it has volumes attached "
                                     f"({', '.join(attached)}); detach them first, {action} of a server with "
                                     "volumes is not supported by this cloud yet.")


def reserve(conn: Connection, ctx: RequestContext, volume_id: str, instance_uuid: str, project_id: str,
            device: str = ROOT_DEVICE) -> None:
    """The volume moves available -> attaching for the instance being built, in the caller's unit of
    work. Nova's 400s: not visible (or another project's), not available, not bootable (the root only)."""
    vol = vdb.get_row(conn, volume_id)
    if vol is None or vol.deleted or not vflows.visible(ctx, vol.project_id) or vol.project_id != project_id:
        raise errors.Invalid(reason=f"Block Device Mapping is Invalid: failed to get volume {volume_id}.")
    if device == ROOT_DEVICE and not vol.bootable:
        raise errors.Invalid(reason=f"Block Device Mapping is Invalid: Volume {volume_id} is not bootable.")
    if not vdb.transition(conn, volume_id, [S.AVAILABLE], {"status": S.ATTACHING, "error": None,
                                                           "conductor_id": None}):
        raise errors.Invalid(reason=f"Invalid volume: volume {volume_id} status must be 'available', "
                                    f"but it is {vol.status}.")
    now = utcnow_iso()
    vdb.insert_attachment(conn, {"id": str(uuidlib.uuid4()), "volume_id": volume_id, "instance_uuid": instance_uuid,
                                 "instance_host": None, "device": device, "status": "attaching",
                                 "connection_info": None, "created_at": now, "updated_at": now})


def _ours(conn: Connection, volume_id: str, instance_uuid: str) -> tuple[VolumeRecord, AttachmentRecord]:
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
    info = await VolumeAPI(env.service).export_volume(ctx, vdb.volume_host(volume), volume,
                                                      vflows.connector(env, host, volume))

    def recorded(conn: Connection) -> None:
        _ours(conn, volume_id, uuid)  # a delete meanwhile released it: nothing to record
        vdb.update_attachment(conn, volume_id, {"connection_info": info, "instance_host": host})
    await env.db.write(recorded)


def settle(conn: Connection, instance_uuid: str, image: Any) -> None:
    """The guest runs on its root volume: attaching -> in-use (in the caller's unit of work). A boot whose
    record names no root volume (`image`) reserved none: no attachment to read."""
    if root_volume_id(image) is None:
        return
    for att in vdb.attachments_for_instances(conn, [instance_uuid])[instance_uuid]:
        if att.status == "attaching" and att.device == ROOT_DEVICE:
            vdb.update_attachment(conn, att.volume_id, {"status": "attached"})
            vdb.transition(conn, att.volume_id, [S.ATTACHING], {"status": S.IN_USE})


# --- volumes the boot makes: its root from an image (BDM image -> volume), blank ones beside it ----------

def new_root(image: Any) -> Mapping[str, Any] | None:
    """The create fields of the root volume a boot record asks to be made, None for any other boot."""
    spec = image.get(NEW_ROOT) if isinstance(image, Mapping) else None
    return spec if isinstance(spec, Mapping) else None


def extra_volumes(image: Any) -> list[Mapping[str, Any]]:
    """The volumes a boot record asks for beside its root disk ({id, size, device, delete_on_termination}; blank,
    made from `snapshot_id`, or `existing` ones it attaches)."""
    extras = image.get(EXTRA_VOLUMES) if isinstance(image, Mapping) else None
    return [e for e in extras if isinstance(e, Mapping)] if isinstance(extras, list) else []


def made_volumes(image: Any) -> list[tuple[str, bool]]:
    """(volume id, delete_on_termination) of every volume the boot makes, its root first."""
    out = [(str(root_volume_id(image)), bool(image.get(DELETE_ON_TERMINATION)))] if new_root(image) else []
    return out + [(str(e["id"]), bool(e.get(DELETE_ON_TERMINATION))) for e in extra_volumes(image)
                  if not e.get("existing")]


def attached_volumes(image: Any) -> list[tuple[str, bool]]:
    """(volume id, delete_on_termination) of the existing volumes the boot attaches beside its root."""
    return [(str(e["id"]), bool(e.get(DELETE_ON_TERMINATION))) for e in extra_volumes(image) if e.get("existing")]


def boot_volume_ids(image: Any) -> list[str]:
    """The root volume (made or not) and the blank volumes of a boot record."""
    root = root_volume_id(image)
    return ([root] if root else []) + [str(e["id"]) for e in extra_volumes(image)]


def _insert_made(conn: Connection, fields: Mapping[str, Any], instance_uuid: str, device: str, now: str,
                 ctx: RequestContext | None = None) -> None:
    row = vflows.validate_create(fields, now)
    if vdb.get_row(conn, row["id"]) is not None:
        raise errors.Conflict(reason=f"volume {row['id']} already exists")
    if row["snapshot_id"]:  # Nova's 400s for the snapshot as the caller sees it; the copy at least its size
        if ctx is None:
            raise errors.Invalid(reason="a volume from a snapshot at boot needs the caller's context")
        try:
            vflows.check_source(conn, ctx, row)
        except (errors.SnapshotNotFound, errors.SnapshotInvalidState) as exc:
            raise errors.Invalid(reason=f"Block Device Mapping is Invalid: {exc.message}") from None
    vdb.insert_volume(conn, {**row, "conductor_id": None})
    vdb.insert_attachment(conn, {"id": str(uuidlib.uuid4()), "volume_id": row["id"], "instance_uuid": instance_uuid,
                                 "instance_host": None, "device": device, "status": "attaching",
                                 "connection_info": None, "created_at": now, "updated_at": now})


def insert_made_volumes(conn: Connection, image: Mapping[str, Any], instance_uuid: str, project_id: str,
                        ctx: RequestContext | None = None) -> None:
    """The rows of the volumes the boot makes (creating, owned by the boot: no conductor of their own) and
    their attachments to the new instance (the root at /dev/vda), and the reservation of the existing ones
    it attaches, in the unit of work inserting its row."""
    now = utcnow_iso()
    spec = new_root(image)
    if spec is not None:
        if not isinstance(spec.get("image"), Mapping) and spec.get("snapshot_id") is None:
            raise errors.Invalid(reason="a root volume made at boot is made from an image or a snapshot")
        _insert_made(conn, {**spec, "id": root_volume_id(image), "project_id": project_id}, instance_uuid,
                     ROOT_DEVICE, now, ctx)
    for extra in extra_volumes(image):
        device = str(extra.get("device") or "")
        if not device.startswith("/dev/vd") or device == ROOT_DEVICE:
            raise errors.Invalid(reason=f"a volume's device beside the root must be /dev/vdb.., not {device!r}")
        if extra.get("existing"):
            if ctx is None:
                raise errors.Invalid(reason="attaching a volume at boot needs the caller's context")
            reserve(conn, ctx, str(root_volume_id({"root_volume_id": extra.get("id")})), instance_uuid, project_id,
                    device)
            continue
        fields = {"id": extra.get("id"), "size": extra.get("size"), "project_id": project_id}
        if extra.get("snapshot_id") is not None:
            fields["snapshot_id"] = extra["snapshot_id"]
        _insert_made(conn, fields, instance_uuid, device, now, ctx)


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


async def make_volumes(env: FlowEnv, ctx: RequestContext, instance_uuid: str, image: Any) -> str | None:
    """Place and make the volumes a boot asked for (its root from its image, blank ones), each on a volume
    host; None once all are attaching for the instance, else why one could not be made (the caller fails
    the build, whose end deletes them: release_boot_volumes)."""
    for volume_id, _ in made_volumes(image):
        failure = await _make_one(env, ctx, instance_uuid, volume_id)
        if failure is not None:
            return failure
    return None


async def _make_one(env: FlowEnv, ctx: RequestContext, instance_uuid: str, volume_id: str) -> str | None:
    row = await env.db.read(lambda conn: vdb.get_row(conn, volume_id))
    if row is not None and row.status == S.ATTACHING:  # made already (a resumed build): export_to checks it is ours
        return None
    if row is None or row.status != S.CREATING:
        return f"volume {volume_id} is {'gone' if row is None else row.status}, not being made"
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
        LOG.warning("volume %s of %s: create on %s failed: %s", volume_id, instance_uuid, placed["host"], exc)
        return exc.message
    values = {"backend": made.get("backend"), "disk_format": made.get("disk_format")}
    if await env.db.write(lambda conn: _made(conn, env, volume_id, instance_uuid, values)):
        return None
    LOG.info("volume %s made after its server %s ended: deleting it", volume_id, instance_uuid)
    try:  # its server's end may have deleted it before this create finished: remove what the create made
        await VolumeAPI(env.service).delete_volume(ctx, placed["host"], vdb.volume_record(placed))
    except errors.CellcloudError as exc:
        LOG.warning("volume %s: delete on %s failed: %s", volume_id, placed["host"], exc)
    await delete_released(env, ctx, [volume_id])
    return f"volume {volume_id} was made after its server ended"


def _release_one(conn: Connection, env: FlowEnv, volume_id: str, statuses: list[str]) -> None:
    vol = vdb.get_row(conn, volume_id)
    if vol is None or vol.deleted or vdb.attachment_of(conn, volume_id) is not None:
        return  # gone, or attached to another server since: not ours to delete
    if vdb.transition(conn, volume_id, statuses, {"status": S.DELETING, "conductor_id": env.conductor_id}) \
            and vol.host is None:  # never placed: nothing on any host to remove
        vflows.mark_deleted(conn, volume_id)


def release_boot_volumes(conn: Connection, env: FlowEnv, row: Any, build_failed: bool) -> None:
    """The server ends (deleted, or its build failed) and its attachments were released: each of its boot's
    volumes is marked deleting for this conductor when its delete_on_termination asks for it, or when the
    build failed and the boot made it, or when the boot made it and it is still being made (nothing
    half-made stays); delete_released removes them after the commit. An existing volume stays, available."""
    image = row.image
    made = dict(made_volumes(image))
    root = root_volume_id(image)
    if root is not None and root not in made and bool(image.get(DELETE_ON_TERMINATION)):
        made_or_not = {**made, root: True}
    else:
        made_or_not = made
    made_or_not.update({v: True for v, delete in attached_volumes(image) if delete})
    for volume_id, delete in made_or_not.items():
        if delete or (build_failed and volume_id in made):
            _release_one(conn, env, volume_id, [S.AVAILABLE, S.CREATING, S.ERROR])
        elif volume_id in made:  # still being made for a server that ended: no one will ever use it
            _release_one(conn, env, volume_id, [S.CREATING])


async def delete_released(env: FlowEnv, ctx: RequestContext, volume_ids: list[str]) -> None:
    """Remove the volumes release_boot_volumes marked from their hosts. Run after the commit; a conductor
    that dies first leaves them deleting under its id, and its adopter deletes them."""
    for volume_id in volume_ids:
        row = await env.db.read(partial(vdb.get_row, volume_id=volume_id))
        if row is None or row.deleted or row.status != S.DELETING or row.conductor_id != env.conductor_id:
            continue
        await vflows.delete_on_host(env, ctx, vdb.volume_record(row))


async def delete_released_of(env: FlowEnv, ctx: RequestContext, instance_uuids: list[str]) -> None:
    """delete_released for the boot volumes of these servers (after a write that ended them)."""
    def read(conn: Connection) -> list[str]:
        rows = idb.get_rows(conn, instance_uuids)
        return [v for row in rows.values() for v in boot_volume_ids(row.image)]
    await delete_released(env, ctx, await env.db.read(read) if instance_uuids else [])


def _start_extra_attaches(conn: Connection, env: FlowEnv, instance_uuid: str,
                          host: str) -> list[tuple[VolumeRecord, AttachmentRecord]]:
    out = []
    for att in vdb.attachments_for_instances(conn, [instance_uuid])[instance_uuid]:
        if att.status != "attaching" or att.device == ROOT_DEVICE:
            continue
        if vdb.transition(conn, att.volume_id, [S.ATTACHING], {"conductor_id": env.conductor_id}):
            vdb.update_attachment(conn, att.volume_id, {"instance_host": host})
            vol = vdb.get_row(conn, att.volume_id)
            assert vol is not None  # the transition just found it
            att_record = vdb.attachment_record(att)
            att_record["instance_host"] = host
            out.append((vdb.volume_record(vol), att_record))
    return out


async def attach_extras(env: FlowEnv, ctx: RequestContext, record: Mapping[str, Any]) -> None:
    """The guest runs: the blank volumes made for it are plugged in as any attach is (flows/volumes.py
    attach_steps; from now on owned by this conductor, so an adopter drives them if it dies)."""
    if not extra_volumes(record.get("image")) or not record.get("host"):
        return
    uuid, host = str(record["uuid"]), str(record["host"])
    for volume, att in await env.db.write(lambda conn: _start_extra_attaches(conn, env, uuid, host)):
        env.spawn(vflows.attach_steps(env, ctx, volume, att))
