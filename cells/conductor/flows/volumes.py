"""Volume flows: create, delete, attach, detach (validate -> lock -> check -> act).

The "lock" and the "check" are one conditional UPDATE in the cell DB
(cells/db/volumes.py `transition`): of two concurrent attaches of one volume
exactly one moves it available -> attaching; the other gets a 400, as Cinder's
InvalidVolume. What follows runs in the conductor's background and always ends
in a stable state:

    create  creating -> (place on a volume host with room; a copy of a snapshot or of another volume on
            its source's host) -> volume.<host> create -> available | error
    delete  available|error -> deleting -> volume.<host> delete -> row deleted | error_deleting
            (refused while it has snapshots; with cascade its snapshots are deleted first)
    extend  flows/volume_extend.py
    attach  available -> attaching -> volume.<host> export -> compute.<host> hot-plug -> in-use
            any failure: unexport, attachment removed, back to available with the reason in `error`;
            a compute that went away (killed, suspect) is not a failure: the hot-plug is sent again
            once it is back, and fails only once its host is dead (env.through_host_restart)
    detach  in-use -> detaching -> compute.<host> unplug -> volume.<host> unexport -> available
            unplug failure: back to in-use with the reason (a compute that went away: as for attach)

Each of the in-progress statuses records its owner (volumes.conductor_id, set in the
same UPDATE that enters the status); when the owner leaves, a live conductor adopts the
flow and drives it again from where the DB says it is (flows/volume_recovery.py). Every
step on a volume or compute host is idempotent, so a repeated step is harmless.
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx, through_host_restart
from cells.conductor.flows import messages
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db import volume_snapshots as sdb
from cells.db import volumes as vdb
from cells.db.migration_records import holds_copy
from cells.db.volumes import VolumeStatus as S
from cells.lifecycle import check_unlocked
from cells.objects.instance import VmState, utcnow_iso
from cells.objects.records import AttachmentRecord, VolumeRecord
from cells.rpc.principal import host_worker
from cells.rpcapi.volume import ComputeVolumeAPI, VolumeAPI

LOG = logging.getLogger(__name__)
MAX_SIZE_GB = 16 * 1024  # an absurd size is refused before anything is made
ATTACHABLE_VM_STATES = (VmState.ACTIVE, VmState.STOPPED)
NO_HOST = "No valid backend was found. No volume host with {size} GiB free is up."
NO_SOURCE_ROOM = "No valid backend was found. The source's volume host {host} is not up or has no {size} GiB free."
VOLUME_PREFIX = "volume."
TARGET_KEY = "cellcloud:target"  # volume metadata: the export target its attaches ask for
TARGETS = ("local", "tgt", "nbd", "lio")


def visible(ctx: RequestContext, project_id: str) -> bool:
    return ctx.is_admin or "service" in ctx.roles or ctx.project is None or project_id == ctx.project


def record(env: FlowEnv, conn: Connection, row: Any) -> VolumeRecord:
    return vdb.volume_record(row, vdb.attachments_of(conn, [row.id])[row.id], env.cell)


def _get_visible(conn: Connection, ctx: RequestContext, volume_id: str) -> Any:
    row = vdb.get_row(conn, volume_id)
    if row is None or row.deleted or not visible(ctx, row.project_id):
        raise errors.VolumeNotFound(volume_id=volume_id)
    return row


# --- validate (pure) -----------------------------------------------------------------

def validate_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise errors.Invalid(reason=f"size must be an integer number of GiB, not {size!r}")
    if size < 1 or size > MAX_SIZE_GB:
        raise errors.Invalid(reason=f"size must be between 1 and {MAX_SIZE_GB} GiB, not {size}")
    return size


def _text(value: Any, what: str, limit: int = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.Invalid(reason=f"{what} must be a string of at most {limit} characters")
    return value


def validate_metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in value.items()):
        raise errors.Invalid(reason="metadata must be a map of strings to strings")
    return dict(value)


def clean_updates(values: Mapping[str, Any], updatable: frozenset[str]) -> dict[str, Any]:
    """The checked name, description and metadata of a volume's or snapshot's update (Cinder's PUT)."""
    bad = set(values) - updatable
    if bad:
        raise errors.Invalid(reason=f"cannot update {sorted(bad)}; updatable: {sorted(updatable)}")
    clean: dict[str, Any] = {}
    if "name" in values:
        clean["name"] = _text(values["name"], "name")
    if "description" in values:
        clean["description"] = _text(values["description"], "description", 65535)
    if "metadata" in values:
        clean["metadata"] = validate_metadata(values["metadata"])
    return clean


def _uuid(value: Any, what: str) -> str:
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise errors.Invalid(reason=f"{what} {value!r} is not a UUID") from None


IMAGE_FORMATS = ("raw", "qcow2", "ami")  # what a volume can be made from (kernels and ramdisks are not disks)


def validate_image(image: Any) -> dict[str, Any] | None:
    """The image record a volume is made from (the API resolved it as the project sees it); the volume
    host verifies the bytes it downloads against its hashes."""
    if image is None:
        return None
    if not isinstance(image, Mapping) or not isinstance(image.get("os_hash_value"), str):
        raise errors.Invalid(reason="image must be an image record with its os_hash_value")
    _uuid(image.get("id"), "image id")
    if image.get("disk_format") not in IMAGE_FORMATS:
        raise errors.Invalid(reason=f"a volume is made from a {', '.join(IMAGE_FORMATS)} image, not "
                                    f"{image.get('disk_format')!r}")
    return dict(image)


def validate_create(volume: Any, now: str) -> dict[str, Any]:
    if not isinstance(volume, Mapping):
        raise errors.Invalid(reason="volume must be a map")
    vid = _uuid(volume.get("id"), "volume id")
    sources = {k: _uuid(volume[k], k) for k in ("snapshot_id", "source_volid") if volume.get(k) is not None}
    image = validate_image(volume.get("image"))
    if len(sources) + (image is not None) > 1:
        raise errors.Invalid(reason="a volume is made from one source: snapshot_id, source_volid or image")
    project = _text(volume.get("project_id"), "project_id")
    if not project:
        raise errors.Invalid(reason="project_id is required")
    return {"id": vid, "project_id": project, "user_id": _text(volume.get("user_id"), "user_id"),
            "name": _text(volume.get("name"), "name"),
            "description": _text(volume.get("description"), "description", 65535),
            "size": validate_size(volume.get("size")), "status": S.CREATING, "host": None, "backend": None,
            "disk_format": None, "availability_zone": _text(volume.get("availability_zone"), "availability_zone")
            or "nova", "volume_type": _text(volume.get("volume_type"), "volume_type"),
            "metadata": validate_metadata(volume.get("metadata")), "bootable": image is not None, "error": None,
            "created_at": now, "updated_at": now, "deleted": False, "deleted_at": None,
            "snapshot_id": sources.get("snapshot_id"), "source_volid": sources.get("source_volid"),
            "volume_backend_name": _text(volume.get("volume_backend_name"), "volume_backend_name"), "image": image,
            "image_metadata": None, "capabilities": _capabilities(volume.get("capabilities"))}


def _capabilities(value: Any) -> dict[str, str] | None:
    """What a volume type asks of a volume host (vdb.CAPABILITY_SPECS), as the API resolved the type."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or any(k not in vdb.CAPABILITY_SPECS or not isinstance(v, str) or len(v) > 255
                                             for k, v in value.items()):
        raise errors.Invalid(reason=f"capabilities must map {', '.join(vdb.CAPABILITY_SPECS)} to strings")
    return dict(value) or None


def next_device(used: list[str]) -> str:
    """Nova-like device name hint: the first free /dev/vdX after the root disk."""
    taken = {d.rsplit("/", 1)[-1] for d in used if d}
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"vd{letter}" not in taken:
            return f"/dev/vd{letter}"
    raise errors.Invalid(reason="no free device name left on this server")


# --- create ----------------------------------------------------------------------------

def check_source(conn: Connection, ctx: RequestContext, row: dict[str, Any]) -> None:
    """A copy's source: the project's own, in a state whose bytes are whole, no bigger than the copy.
    The new volume inherits its bootable flag."""
    if row["snapshot_id"]:
        snap = sdb.get_row(conn, row["snapshot_id"])
        if snap is None or snap.deleted or not visible(ctx, snap.project_id) or snap.project_id != row["project_id"]:
            raise errors.SnapshotNotFound(snapshot_id=row["snapshot_id"])
        if snap.status != sdb.SnapshotStatus.AVAILABLE:
            raise errors.SnapshotInvalidState(reason=f"Originating snapshot status must be one of 'available' "
                                                     f"values, but it is {snap.status}.")
        size, what, parent = int(snap.size), "snapshot", vdb.get_row(conn, snap.volume_id)
    else:
        parent = vdb.get_row(conn, row["source_volid"])
        if parent is None or parent.deleted or not visible(ctx, parent.project_id) \
                or parent.project_id != row["project_id"]:
            raise errors.VolumeNotFound(volume_id=row["source_volid"])
        if parent.status not in (S.AVAILABLE, S.IN_USE) or parent.host is None:
            raise errors.VolumeInvalidState(reason=f"Source volume status must be available or in-use, but it is "
                                                   f"{parent.status}.")
        size, what = int(parent.size), "source volume"
    if row["size"] < size:
        raise errors.Invalid(reason=f"Volume size '{row['size']}'GB cannot be smaller than the {what} size "
                                    f"{size}GB.")
    row["bootable"] = bool(parent is not None and parent.bootable)


def _insert(conn: Connection, env: FlowEnv, ctx: RequestContext, row: dict[str, Any]) -> tuple[VolumeRecord, bool]:
    old = vdb.get_row(conn, row["id"])
    if old is not None:  # a retried request gets what the first one made
        if old.project_id != row["project_id"]:
            raise errors.Conflict(reason=f"volume {row['id']} already exists")
        return record(env, conn, old), False
    if row["snapshot_id"] or row["source_volid"]:
        check_source(conn, ctx, row)
    vdb.insert_volume(conn, row)
    return vdb.volume_record(row, (), env.cell), True


async def volume_create(env: FlowEnv, ctx: RequestContext, volume: Any) -> VolumeRecord:
    row = {**validate_create(volume, utcnow_iso()), "conductor_id": env.conductor_id}
    rec, new = await env.db.write(lambda conn: _insert(conn, env, ctx, row))
    if new:
        env.spawn(place_and_create(env, background_ctx(ctx), row["id"], row["size"]))
    return rec


def live_volume_hosts(env: FlowEnv) -> set[str]:
    return {t[len(VOLUME_PREFIX):] for m in env.service.view.by_id.values() for t in m.topics
            if t.startswith(VOLUME_PREFIX)}


def source_host(conn: Connection, volume: Any) -> str | None:
    """The host holding a copy's source (a copy is made beside it), None for an empty volume."""
    if volume.snapshot_id:
        snap = sdb.get_row(conn, volume.snapshot_id)
        return None if snap is None else snap.host
    if volume.source_volid:
        parent = vdb.get_row(conn, volume.source_volid)
        return None if parent is None else parent.host
    return None


def place(conn: Connection, volume_id: str, size: int, live: set[str],
          request_id: str | None = None) -> dict[str, Any] | None:
    vol = vdb.get_row(conn, volume_id)
    if vol is None:
        return None
    only = source_host(conn, vol) if (vol.snapshot_id or vol.source_volid) else None
    wanted = vol.volume_backend_name  # its type's volume_backend_name: only hosts of that backend
    candidates = sorted((n for n in vdb.nodes(conn) if n.host in live and (only is None or n.host == only)
                         and not (n.disabled or n.frozen)  # an admin took it out of service (os-services)
                         and vdb.offers(n, vol.capabilities)
                         and (wanted is None or (n.backend_name or n.backend) == wanted)),
                        key=lambda n: n.capacity_gb - n.allocated_gb, reverse=True)
    for node in candidates:  # most free space first; each try is an atomic conditional UPDATE
        if vdb.try_allocate(conn, node.host, size):
            # its backend now, not only once made: the API names the volume's pool host@backend#backend
            vdb.update_volume(conn, volume_id, {"host": node.host, "backend": node.backend})
            return dict(vdb.get_row(conn, volume_id)._mapping)  # type: ignore[union-attr]
    reason = NO_HOST.format(size=size) if only is None else NO_SOURCE_ROOM.format(host=only, size=size)
    if wanted is not None:
        reason += f" (the volume type asks for volume_backend_name {wanted!r})"
    if vol.capabilities:
        reason += f" (the volume type asks for {', '.join(f'{k}={v}' for k, v in sorted(vol.capabilities.items()))})"
    if vdb.transition(conn, volume_id, [S.CREATING], {"status": S.ERROR, "error": reason}):
        messages.record(conn, vol.project_id, request_id, volume_id, "create", "no_backend")
    return None


async def place_and_create(env: FlowEnv, ctx: RequestContext, volume_id: str, size: int) -> None:
    row = await env.db.write(lambda conn: place(conn, volume_id, size, live_volume_hosts(env), ctx.request_id))
    if row is None:
        LOG.warning("volume %s: no volume host could take it", volume_id)
        return
    await create_on_host(env, ctx, row)


async def create_on_host(env: FlowEnv, ctx: RequestContext, row: Mapping[str, Any]) -> None:
    """The placed volume made on its host (a repeat finds the file made), then available or error."""
    volume_id = row["id"]
    try:
        made = await VolumeAPI(env.service).create_volume(ctx, row["host"], vdb.volume_record(row))
        values = {"status": S.AVAILABLE, "backend": made.get("backend"), "disk_format": made.get("disk_format")}
    except errors.CellcloudError as exc:  # its host keeps the space until the volume is deleted (which cleans up)
        LOG.warning("volume %s: create on %s failed: %s", volume_id, row["host"], exc)
        values = {"status": S.ERROR, "error": exc.message}
    await env.db.write(lambda conn: vdb.transition(conn, volume_id, [S.CREATING], values))


# --- reads, update ----------------------------------------------------------------------

async def volume_get(env: FlowEnv, ctx: RequestContext, volume_id: str) -> VolumeRecord:
    return await env.db.read(lambda conn: record(env, conn, _get_visible(conn, ctx, volume_id)))


def _list(conn: Connection, env: FlowEnv, ctx: RequestContext, filters: Mapping[str, Any],
          limit: int | None) -> list[VolumeRecord]:
    unknown = set(filters) - {"project_id", "name", "status", "host"}
    if unknown:
        raise errors.Invalid(reason=f"unknown volume filter(s) {sorted(unknown)}")
    project = filters.get("project_id")
    if not (ctx.is_admin or "service" in ctx.roles):
        project = ctx.project  # a tenant sees its own project only, whatever it asked
    rows = vdb.list_rows(conn, project, filters.get("name"), filters.get("status"), filters.get("host"), limit)
    atts = vdb.attachments_of(conn, [r.id for r in rows])
    return [vdb.volume_record(r, atts[r.id], env.cell) for r in rows]


async def volume_list(env: FlowEnv, ctx: RequestContext, filters: Mapping[str, Any] | None,
                      limit: int | None) -> list[VolumeRecord]:
    return await env.db.read(lambda conn: _list(conn, env, ctx, filters or {}, limit))


IMAGE_METADATA_MAX = 128  # keys a volume's image metadata may hold (a row's JSON stays bounded)


def _image_metadata_changes(value: Any) -> dict[str, str | None]:
    """os-set/unset_image_metadata's change: key -> a new value, or None to remove the key."""
    if not isinstance(value, Mapping) or not value or len(value) > IMAGE_METADATA_MAX:
        raise errors.Invalid(reason=f"image_metadata must be a map of 1 to {IMAGE_METADATA_MAX} changes")
    for k, v in value.items():
        if not isinstance(k, str) or not 1 <= len(k) <= 255 or not (v is None or isinstance(v, str) and len(v) <= 255):
            raise errors.Invalid(reason="image metadata keys are 1 to 255 characters, values strings of at most 255")
    return dict(value)


def _changed_image_metadata(row: Any, changes: Mapping[str, str | None]) -> dict[str, str]:
    """The volume's image metadata after the changes, in the write that keeps it (two at once: both apply)."""
    current = vdb.image_metadata_of(row.image, row.image_metadata) or {}
    for key, value in changes.items():
        if value is not None:
            current[key] = value
        elif key in current:
            del current[key]
        else:
            raise errors.MetadataItemNotFound(what="Volume image metadata of", id=row.id, key=key)
    if len(current) > IMAGE_METADATA_MAX:
        raise errors.Invalid(reason=f"a volume's image metadata holds at most {IMAGE_METADATA_MAX} keys")
    return current


def _update(conn: Connection, env: FlowEnv, ctx: RequestContext, volume_id: str,
            values: Mapping[str, Any]) -> VolumeRecord:
    """name, description, metadata, bootable; image_metadata: a change (key -> value, None: removed)."""
    changes = _image_metadata_changes(values["image_metadata"]) if "image_metadata" in values else None
    clean = clean_updates({k: v for k, v in values.items() if k != "image_metadata"}, vdb.UPDATABLE_FIELDS)
    if "bootable" in values:
        if not isinstance(values["bootable"], bool):
            raise errors.Invalid(reason="bootable must be true or false")
        clean["bootable"] = values["bootable"]
    row = _get_visible(conn, ctx, volume_id)
    if changes is not None:
        clean["image_metadata"] = _changed_image_metadata(row, changes)
    if clean:
        vdb.update_volume(conn, volume_id, clean)
        row = vdb.get_row(conn, volume_id)
    return record(env, conn, row)


async def volume_update(env: FlowEnv, ctx: RequestContext, volume_id: str, values: Any) -> VolumeRecord:
    if not isinstance(values, Mapping):
        raise errors.Invalid(reason="values must be a map")
    return await env.db.write(lambda conn: _update(conn, env, ctx, volume_id, values))


# --- delete -------------------------------------------------------------------------------

def mark_deleted(conn: Connection, volume_id: str) -> None:
    row = vdb.get_row(conn, volume_id)
    if row is None or row.deleted:
        return
    now = utcnow_iso()
    vdb.update_volume(conn, volume_id, {"status": "deleted", "deleted": True, "deleted_at": now})
    if row.host is not None:
        vdb.release(conn, row.host, int(row.size))


def _request_delete(conn: Connection, env: FlowEnv, ctx: RequestContext, volume_id: str,
                    cascade: bool) -> tuple[VolumeRecord, bool]:
    row = _get_visible(conn, ctx, volume_id)
    snaps = sdb.of_volume(conn, volume_id)
    if snaps and not cascade:
        raise errors.VolumeInvalidState(reason=f"Volume {volume_id} still has {len(snaps)} dependent snapshots.")
    busy = [s.id for s in snaps if s.status not in sdb.DELETABLE or vdb.copying_from(conn, "snapshot_id", s.id)]
    if busy:
        raise errors.VolumeInvalidState(reason=f"Volume {volume_id} has snapshots being created, deleted or "
                                               f"copied: {', '.join(busy)}.")
    if vdb.copying_from(conn, "source_volid", volume_id):
        raise errors.VolumeInvalidState(reason=f"A volume is being created from volume {volume_id}.")
    if vdb.attachment_of(conn, volume_id) is not None or not vdb.transition(
            conn, volume_id, vdb.DELETABLE, {"status": S.DELETING, "conductor_id": env.conductor_id}):
        raise errors.VolumeInvalidState(reason=(
            f"Volume status must be available or error and must not be attached, but it is {row.status}."))
    for snap in snaps:  # cascade: the volume's delete removes them first (flows/volume_snapshots.py adopts them too)
        sdb.transition(conn, snap.id, sdb.DELETABLE,
                       {"status": sdb.SnapshotStatus.DELETING, "conductor_id": env.conductor_id})
    if row.host is None:  # never placed: nothing to remove on any host
        for snap in snaps:
            sdb.remove(conn, snap.id)
        mark_deleted(conn, volume_id)
        return record(env, conn, vdb.get_row(conn, volume_id)), False
    return record(env, conn, vdb.get_row(conn, volume_id)), True


async def volume_delete(env: FlowEnv, ctx: RequestContext, volume_id: str, cascade: bool = False) -> VolumeRecord:
    rec, remote = await env.db.write(lambda conn: _request_delete(conn, env, ctx, volume_id, bool(cascade)))
    if remote:
        env.spawn(delete_on_host(env, background_ctx(ctx), rec))
    return rec


def _deleting_snapshots(conn: Connection, volume_id: str) -> list[dict[str, Any]]:
    return [sdb.snapshot_record(s) for s in sdb.of_volume(conn, volume_id) if s.status == sdb.SnapshotStatus.DELETING]


async def delete_on_host(env: FlowEnv, ctx: RequestContext, rec: VolumeRecord) -> None:
    api = VolumeAPI(env.service)
    try:
        for snap in await env.db.read(lambda conn: _deleting_snapshots(conn, rec["id"])):
            if snap["host"]:
                await api.delete_snapshot(ctx, snap["host"], snap)
            await env.db.write(partial(sdb.remove, snapshot_id=snap["id"]))
        await api.delete_volume(ctx, vdb.volume_host(rec), rec)
    except errors.CellcloudError as exc:
        LOG.warning("volume %s: delete on %s failed: %s", rec["id"], rec["host"], exc)
        reason = exc.message

        def failed(conn: Connection) -> None:
            for snap in sdb.of_volume(conn, rec["id"]):
                sdb.transition(conn, snap.id, [sdb.SnapshotStatus.DELETING],
                               {"status": sdb.SnapshotStatus.ERROR_DELETING, "error": reason})
            vdb.transition(conn, rec["id"], [S.DELETING], {"status": S.ERROR_DELETING, "error": reason})
        await env.db.write(failed)
        return
    await env.db.write(lambda conn: mark_deleted(conn, rec["id"]))


# --- attach ---------------------------------------------------------------------------------

def _instance(conn: Connection, ctx: RequestContext, instance_uuid: str) -> Any:
    inst = idb.get_row(conn, instance_uuid)
    if inst is None or inst.deleted or not visible(ctx, inst.project_id):
        raise errors.InstanceNotFound(instance_id=instance_uuid)
    return inst


def _reserve(conn: Connection, env: FlowEnv, ctx: RequestContext, volume_id: str, instance_uuid: str,
             device: str | None) -> tuple[AttachmentRecord, VolumeRecord]:
    inst = _instance(conn, ctx, instance_uuid)
    check_unlocked(inst.locked_by, ctx.is_admin, instance_uuid)
    vol = _get_visible(conn, ctx, volume_id)
    if inst.vm_state not in ATTACHABLE_VM_STATES or inst.task_state is not None or not inst.host:
        raise errors.InstanceInvalidState(action="attach_volume", instance_id=instance_uuid, attr="vm_state",
                                          state=inst.vm_state if inst.task_state is None else inst.task_state)
    if vol.project_id != inst.project_id and not ctx.is_admin:
        raise errors.VolumeNotFound(volume_id=volume_id)
    used = [a.device for a in vdb.attachments_for_instances(conn, [instance_uuid])[instance_uuid]]
    dev = device if device and device.rsplit("/", 1)[-1] not in {u.rsplit("/", 1)[-1] for u in used if u} \
        else next_device(used)
    # the one atomic step: of concurrent attaches only one moves the volume out of available
    if not vdb.transition(conn, volume_id, [S.AVAILABLE],
                          {"status": S.ATTACHING, "error": None, "conductor_id": env.conductor_id}):
        raise errors.VolumeInvalidState(reason=f"volume {volume_id} status must be available to attach, "
                                               f"but it is {vol.status}")
    now = utcnow_iso()
    att: AttachmentRecord = {
        "id": str(uuidlib.uuid4()), "volume_id": volume_id, "instance_uuid": instance_uuid,
        "instance_host": inst.host, "device": dev, "status": "attaching", "connection_info": None,
        "created_at": now, "updated_at": now}
    vdb.insert_attachment(conn, att)
    return att, vdb.volume_record(vol)


async def volume_attach(env: FlowEnv, ctx: RequestContext, volume_id: str, instance_uuid: str,
                        device: str | None = None) -> AttachmentRecord:
    att, volume = await env.db.write(lambda conn: _reserve(conn, env, ctx, volume_id, instance_uuid, device))
    env.spawn(attach_steps(env, background_ctx(ctx), volume, att))
    return att


def connector(env: FlowEnv, host: str, volume: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Who will open the export: the compute host (name, address), and the target the volume asks for."""
    address = next((h.address for h in env.service.cluster.hosts if h.name == host), None)
    out: dict[str, Any] = {"host": host, "ip": address}
    target = ((volume or {}).get("metadata") or {}).get(TARGET_KEY)
    if target:
        out["target"] = str(target)
    return out


def _still_ours(conn: Connection, volume_id: str, attachment_id: str) -> bool:
    """The attachment this flow made is still the volume's (its server was not deleted meanwhile)."""
    current = vdb.attachment_of(conn, volume_id)
    return current is not None and current.id == attachment_id


async def attach_steps(env: FlowEnv, ctx: RequestContext, volume: VolumeRecord, att: AttachmentRecord) -> None:
    vid, host = volume["id"], vdb.instance_host(att)
    info: dict[str, Any] | None = None
    try:
        info = await VolumeAPI(env.service).export_volume(ctx, vdb.volume_host(volume), volume, connector(env, host, volume))
        # recorded before the hot-plug: a volume worker restarting now re-establishes this export
        await env.db.write(lambda conn: vdb.update_attachment(conn, vid, {"connection_info": info}))
        done = await through_host_restart(env, host, f"attach of volume {vid}", lambda: ComputeVolumeAPI(
            env.service).attach_volume(ctx, host, att["instance_uuid"], vid, info, att["device"]))
    except errors.CellcloudError as exc:
        LOG.warning("attach of volume %s to %s failed: %s", vid, att["instance_uuid"], exc)
        await _roll_back_attach(env, ctx, volume, info, exc.message, att["id"])
        return
    device = str(done.get("device") or att["device"])

    def finish(conn: Connection) -> None:
        if _still_ours(conn, vid, att["id"]):  # else the server was deleted meanwhile: its delete released it
            vdb.update_attachment(conn, vid, {"status": "attached", "device": device})
            vdb.transition(conn, vid, [S.ATTACHING], {"status": S.IN_USE})
    await env.db.write(finish)
    LOG.info("volume %s in use by %s as %s", vid, att["instance_uuid"], device)


async def _roll_back_attach(env: FlowEnv, ctx: RequestContext, volume: VolumeRecord,
                            info: dict[str, Any] | None, reason: str, attachment_id: str) -> None:
    vid = volume["id"]
    status = S.AVAILABLE
    try:
        await VolumeAPI(env.service).unexport_volume(ctx, vdb.volume_host(volume), volume, info)
    except errors.CellcloudError as exc:  # the export may still be up: say so rather than claim available
        LOG.error("volume %s: unexport after a failed attach failed: %s", vid, exc)
        status, reason = S.ERROR, f"{reason}; unexport failed: {exc.message}"

    def roll_back(conn: Connection) -> None:
        if _still_ours(conn, vid, attachment_id):
            vdb.delete_attachment(conn, vid)
            if vdb.transition(conn, vid, [S.ATTACHING], {"status": status, "error": f"attach failed: {reason}"}):
                messages.record(conn, volume["project_id"], ctx.request_id, vid, "attach")
    await env.db.write(roll_back)


# --- detach ----------------------------------------------------------------------------------

def _begin_detach(conn: Connection, env: FlowEnv, ctx: RequestContext, volume_id: str,
                  instance_uuid: str) -> tuple[AttachmentRecord, VolumeRecord]:
    inst = _instance(conn, ctx, instance_uuid)
    check_unlocked(inst.locked_by, ctx.is_admin, instance_uuid)
    if inst.vm_state == VmState.RESCUED:  # the rescue guest does not hold the volumes: Nova's 409
        raise errors.InstanceInvalidState(action="detach_volume", instance_id=instance_uuid, attr="vm_state",
                                          state=inst.vm_state)
    att = vdb.attachment_of(conn, volume_id)
    if att is None or att.instance_uuid != instance_uuid:
        raise errors.VolumeNotFound(f"Volume {volume_id} is not attached to server {instance_uuid}.",
                                    volume_id=volume_id)
    vol = _get_visible(conn, ctx, volume_id)
    if not vdb.transition(conn, volume_id, [S.IN_USE], {"status": S.DETACHING, "conductor_id": env.conductor_id}):
        raise errors.VolumeInvalidState(reason=f"volume {volume_id} status must be in-use to detach, "
                                               f"but it is {vol.status}")
    vdb.update_attachment(conn, volume_id, {"status": "detaching"})
    return vdb.attachment_record(att), vdb.volume_record(vol)


async def volume_detach(env: FlowEnv, ctx: RequestContext, volume_id: str, instance_uuid: str) -> AttachmentRecord:
    att, volume = await env.db.write(lambda conn: _begin_detach(conn, env, ctx, volume_id, instance_uuid))
    env.spawn(detach_steps(env, background_ctx(ctx), volume, att))
    return att


async def detach_steps(env: FlowEnv, ctx: RequestContext, volume: VolumeRecord, att: AttachmentRecord) -> None:
    vid = volume["id"]
    try:
        host = vdb.instance_host(att)
        await through_host_restart(env, host, f"detach of volume {vid}", lambda: ComputeVolumeAPI(
            env.service).detach_volume(ctx, host, att["instance_uuid"], vid))
    except errors.CellcloudError as exc:
        LOG.warning("detach of volume %s from %s failed: %s", vid, att["instance_uuid"], exc)
        reason = exc.message

        def back(conn: Connection) -> None:
            vdb.update_attachment(conn, vid, {"status": "attached"})
            vdb.transition(conn, vid, [S.DETACHING], {"status": S.IN_USE, "error": f"detach failed: {reason}"})
        await env.db.write(back)
        return
    try:
        await VolumeAPI(env.service).unexport_volume(ctx, vdb.volume_host(volume), volume, att.get("connection_info"))
    except errors.CellcloudError as exc:  # the guest let go; a stale export is removed on the next export/restart
        LOG.warning("volume %s: unexport after detach failed: %s", vid, exc)

    def finish(conn: Connection) -> None:
        vdb.delete_attachment(conn, vid)
        vdb.transition(conn, vid, [S.DETACHING], {"status": S.AVAILABLE})
    await env.db.write(finish)
    LOG.info("volume %s detached from %s", vid, att["instance_uuid"])


# --- for the API's server views, and for volume workers ----------------------------------------

async def volume_connection(env: FlowEnv, ctx: RequestContext, volume_id: Any, instance_uuid: Any) -> dict[str, Any]:
    """How the compute of `instance_uuid` opens the volume it is plugging: the connection_info its
    export answered, only for the attachment being made to that instance (or, attached, carried by a
    move to the host it names: flows/move_volumes.py), and (from a compute) only to the host holding the
    instance. A compute never takes a path or target from its caller."""
    if not isinstance(volume_id, str) or not isinstance(instance_uuid, str):
        raise errors.Invalid(reason="volume_id and instance_uuid must be strings")
    worker = host_worker(ctx)

    def read(conn: Connection) -> dict[str, Any]:
        att = vdb.attachment_of(conn, volume_id)
        # no principal: a plaintext (dev mode) cell, whose callers are not known; the method admits computes only
        carried = att is not None and att.status == "attached" and (worker is None or att.instance_host == worker.host)
        if att is None or att.instance_uuid != instance_uuid or not (att.status == "attaching" or carried) \
                or not isinstance(att.connection_info, dict):
            raise errors.VolumeNotFound(volume_id=volume_id)
        if worker is not None and not holds_copy(conn, instance_uuid, worker.host):
            raise errors.RpcForbidden(principal=worker.name, method="volume_connection",
                                      reason=f"instance {instance_uuid} is not on host {worker.host}")
        return dict(att.connection_info)
    return await env.db.read(read)


async def attachments_for(env: FlowEnv, ctx: RequestContext, instance_uuids: list[str]) -> dict[str, list[AttachmentRecord]]:
    def read(conn: Connection) -> dict[str, list[AttachmentRecord]]:
        rows = vdb.attachments_for_instances(conn, instance_uuids)
        return {u: [vdb.attachment_record(a) for a in atts] for u, atts in rows.items()}
    return await env.db.read(read)


async def node_update(env: FlowEnv, ctx: RequestContext, host: str, stats: Mapping[str, Any]) -> None:
    await env.db.write(lambda conn: vdb.upsert_node(conn, host, int(stats.get("capacity_gb") or 0),
                                                    str(stats.get("backend") or "file"),
                                                    list(stats.get("targets") or []),
                                                    _text(stats.get("backend_name"), "backend_name")))


async def volumes_on_host(env: FlowEnv, ctx: RequestContext, host: str) -> list[VolumeRecord]:
    def read(conn: Connection) -> list[VolumeRecord]:
        rows = vdb.list_rows(conn, None, host=host)
        atts = vdb.attachments_of(conn, [r.id for r in rows])
        return [vdb.volume_record(r, atts[r.id], env.cell) for r in rows]
    return await env.db.read(read)
