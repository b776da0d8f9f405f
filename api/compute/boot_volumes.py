"""Boot from a volume the boot makes (issue 18): BDM v2 source_type image, destination_type volume at
boot index 0 (`openstack server create --block-device source=image,id=IMG,destination=volume,
volume_size=N,...` and `--image IMG --boot-from-volume N`, which sends exactly this).

The API checks the mapping as Nova does before anything is made (400: no volume_size, an image the
project cannot use, an image bigger than volume_size or its min_disk above it; 403 when the project's
volume quotas cannot hold it) and reserves the volume in the volume quotas (api/quota.py reserve_volume,
counted as Cinder counts a create). What it hands the cell is the instance's `image`: the new volume's
id and create fields (NEW_ROOT), the boot properties of its image and delete_on_termination; the cell's
conductor inserts the volume with the server's row, makes it from the image before scheduling, boots
from it and deletes it when the build fails or (delete_on_termination) when the server is deleted
(cells/conductor/flows/boot_volume.py). The volume is made in the server's cell: a boot never spans cells.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from api import quota
from api.http import is_uuid, parse_bool
from api.image import images as image_db
from api.volume import cells as volume_cells
from cells import errors
from cells.conductor.flows.boot_volume import DELETE_ON_TERMINATION, EXTRA_VOLUMES, NEW_ROOT, made_volumes
from cells.conductor.flows.volumes import IMAGE_FORMATS, MAX_SIZE_GB
from cells.context import RequestContext
from cells.db.fast import AnyRow

if TYPE_CHECKING:
    from api.compute.service import ComputeContext

GIB = 1 << 30
MAX_BLANK_VOLUMES = 16  # blank volumes one boot may make (each is a volume of the project's quota too)
# the properties of a boot volume's source image its guest boots with (direct kernel boot, disk bus)
BOOT_PROPERTIES = ("kernel_id", "ramdisk_id", "os_command_line", "architecture", "hw_disk_bus", "hw_machine_type")
BAD_SEQUENCE = ("Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping "
                "combination is not valid.")


def for_instance(image: dict[str, Any], index: int) -> dict[str, Any]:
    """The `image` of the index-th server of one boot request: a root volume the boot makes is each server's
    own. The first keeps the id; the others' are derived from it (uuid5), so every retry of the request
    and the quota reservation name the same volumes."""
    if index == 0 or not isinstance(image.get(NEW_ROOT), Mapping):
        return dict(image)
    return {**image, "root_volume_id": str(uuidlib.uuid5(uuidlib.UUID(str(image["root_volume_id"])), str(index)))}


def image_root_bdm(bdms: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The boot-index-0 image -> volume mapping of a boot that makes its root volume, None otherwise."""
    for bdm in bdms:
        if str(bdm.get("boot_index")) == "0" and bdm.get("source_type") == "image" \
                and bdm.get("destination_type") == "volume":
            return bdm
    return None


def check_image_root(bdm: Mapping[str, Any], image_ref: str | None, count: int) -> tuple[str, int, bool]:
    """(image id, volume size in GiB, delete_on_termination) of an image -> volume root mapping, or
    Nova's 400 for it."""
    image_id = str(bdm.get("uuid") or bdm.get("image_id") or "").lower()
    if not is_uuid(image_id):
        raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get image {image_id}.")
    if image_ref and image_ref.rstrip("/").rsplit("/", 1)[-1].lower() != image_id:
        raise errors.Invalid(BAD_SEQUENCE)  # imageRef names a second root disk
    size = int(str(bdm.get("volume_size") or 0))  # the schema allows digits only
    if size < 1:
        raise errors.Invalid("Block Device Mapping is Invalid: Images with destination_type 'volume' need to "
                             "have a non-zero size specified")
    if size > MAX_SIZE_GB:
        raise errors.Invalid(f"Block Device Mapping is Invalid: volume_size {size} is over {MAX_SIZE_GB} GiB.")
    return image_id, size, bool(parse_bool(str(bdm.get("delete_on_termination", False))))


def new_root_image(conn: Connection, ctx: RequestContext, bdm: Mapping[str, Any], image_ref: str | None,
                   count: int, flavor: AnyRow) -> dict[str, Any]:
    """What the boot records as its `image` (in the caller's unit of the API DB): the root volume to make
    from the image as the project sees it, checked against the volume size and the flavor's RAM."""
    image_id, size, delete = check_image_root(bdm, image_ref, count)
    try:
        row = image_db.get_of(conn, ctx, image_id)
        record = image_db.boot_snapshot_of(conn, ctx, row)  # an AMI's kernel and ramdisk as ctx sees them
    except errors.ImageNotFound:
        raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get image {image_id}.") from None
    if row.status != "active":
        raise errors.Invalid(f"Image {row.id} is not active.")
    if row.disk_format not in IMAGE_FORMATS:
        raise errors.Invalid(f"Block Device Mapping is Invalid: image {row.id} is a {row.disk_format} image; a "
                             f"volume is made from a {', '.join(IMAGE_FORMATS)} image.")
    if row.min_ram and row.min_ram > flavor.ram:
        raise errors.Invalid("Flavor's memory is too small for requested image.")
    biggest = max(int(row.size or 0), int(row.virtual_size or 0), int(row.min_disk or 0) * GIB)
    if biggest > size * GIB:  # Nova's VolumeSmallerThanMinDisk
        raise errors.Invalid(f"Volume is smaller than the minimum size specified in image metadata. Volume size "
                             f"is {size * GIB} bytes, minimum size is {biggest} bytes.")
    props = {k: v for k, v in (record.get("properties") or {}).items() if k in BOOT_PROPERTIES}
    image: dict[str, Any] = {"root_volume_id": str(uuidlib.uuid4()), "properties": props,
                             NEW_ROOT: {"size": size, "image": record, "availability_zone": "nova"},
                             DELETE_ON_TERMINATION: delete}
    image.update({k: record[k] for k in ("kernel", "ramdisk") if isinstance(record.get(k), dict)})
    return image


EXTRA_SOURCES = ("blank", "snapshot", "volume")  # what a non-root volume mapping at boot may start from
MULTI_ATTACH = "Cannot attach one or more volumes to multiple instances"  # Nova's 400


def extra_mappings(bdms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mappings of volumes a boot makes or attaches beside its root disk, in order: blank, snapshot or
    volume -> volume (a volume or a snapshot at boot index 0 is the root: server_create.root_bdm,
    snapshot_root_bdm)."""
    return [b for b in bdms if b.get("destination_type") == "volume" and b.get("source_type") in EXTRA_SOURCES
            and not (b.get("source_type") in ("volume", "snapshot") and str(b.get("boot_index")) == "0")]


def snapshot_root_bdm(bdms: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The boot-index-0 snapshot -> volume mapping of a boot whose root volume is made from a volume snapshot
    (`server create --snapshot S`, or `--block-device source_type=snapshot,...,boot_index=0`), None otherwise."""
    for bdm in bdms:
        if str(bdm.get("boot_index")) == "0" and bdm.get("source_type") == "snapshot" \
                and bdm.get("destination_type") == "volume":
            return bdm
    return None


async def snapshot_root_image(cc: ComputeContext, ctx: RequestContext, bdm: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(what the boot records as its `image`, the cell holding the snapshot) for a root volume made from a
    snapshot: checked as Nova checks it (get_bdm_image_metadata: the snapshot as the caller sees it, available,
    its volume bootable; the new volume at least the snapshot's size), booting with the properties of the image
    the snapshot's volume was made from. The volume is made beside the snapshot (a copy-on-write overlay on its
    host), so the server is built in the snapshot's cell."""
    sid = str(bdm.get("uuid") or bdm.get("snapshot_id") or "").lower()
    if not is_uuid(sid):
        raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get snapshot {sid}.")
    try:
        _, snap = await volume_cells.find_snapshot(cc.router, ctx, sid)
        _, parent = await volume_cells.find(cc.router, ctx, str(snap.get("volume_id")))
    except (errors.SnapshotNotFound, errors.VolumeNotFound):
        raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get snapshot {sid}.") from None
    if snap.get("status") != "available":
        raise errors.Invalid(f"Invalid snapshot: snapshot {sid} status must be 'available', but it is "
                             f"{snap.get('status')}.")
    if not parent.get("bootable"):
        raise errors.Invalid(f"Block Device Mapping is Invalid: Volume {parent.get('id')} is not bootable.")
    least = int(snap.get("size") or 0)
    size = int(str(bdm.get("volume_size") or 0)) or least  # the schema allows digits only
    if size < least:
        raise errors.Invalid(f"Block Device Mapping is Invalid: volume_size {size} is smaller than snapshot {sid} "
                             f"({least} GiB).")
    if size > MAX_SIZE_GB:
        raise errors.Invalid(f"Block Device Mapping is Invalid: volume_size {size} is over {MAX_SIZE_GB} GiB.")
    made_from: dict[str, Any] = parent.get("image") or {}
    props = {k: v for k, v in (made_from.get("properties") or {}).items() if k in BOOT_PROPERTIES}
    image: dict[str, Any] = {"root_volume_id": str(uuidlib.uuid4()), "properties": props,
                             NEW_ROOT: {"size": size, "snapshot_id": sid, "availability_zone": "nova"},
                             DELETE_ON_TERMINATION: bool(parse_bool(str(bdm.get("delete_on_termination", False))))}
    image.update({k: made_from[k] for k in ("kernel", "ramdisk") if isinstance(made_from.get(k), dict)})
    return image, str(snap.get("cell") or "")


async def snapshot_sizes(cc: ComputeContext, ctx: RequestContext, bdms: list[dict[str, Any]]) -> dict[str, int]:
    """snapshot id -> GiB of each snapshot a mapping makes a volume from, as the caller sees it (Nova asks
    Cinder the same); Nova's 400 for one it cannot get or that is not available."""
    out: dict[str, int] = {}
    for bdm in extra_mappings(bdms):
        if bdm.get("source_type") != "snapshot":
            continue
        sid = str(bdm.get("uuid") or bdm.get("snapshot_id") or "").lower()
        if not is_uuid(sid):
            raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get snapshot {sid}.")
        try:
            _, snap = await volume_cells.find_snapshot(cc.router, ctx, sid)
        except errors.SnapshotNotFound:
            raise errors.Invalid(f"Block Device Mapping is Invalid: failed to get snapshot {sid}.") from None
        if snap.get("status") != "available":
            raise errors.Invalid(f"Invalid snapshot: snapshot {sid} status must be 'available', but it is "
                                 f"{snap.get('status')}.")
        out[sid] = int(snap.get("size") or 0)
    return out


def extra_volumes(bdms: list[dict[str, Any]], count: int, snapshots: Mapping[str, int]) -> list[dict[str, Any]]:
    """The volumes a boot makes (blank; from a snapshot, at least its size) or attaches (an existing volume)
    beside its root disk, as the boot record's EXTRA_VOLUMES ({id, size, device, delete_on_termination,
    and snapshot_id or existing}; devices /dev/vdb... in the mappings' order, a device_name being a hint
    only, as in Nova), or Nova's 400 for them. `snapshots`: snapshot_sizes."""
    extras = extra_mappings(bdms)
    if not extras:
        return []
    if any(str(b.get("boot_index")) == "0" for b in extras):
        raise errors.Invalid(BAD_SEQUENCE)  # an empty disk boots nothing
    if count > 1:
        if any(b.get("source_type") == "volume" for b in extras):
            raise errors.Invalid(MULTI_ATTACH)
        raise errors.Invalid("Block Device Mapping is Invalid: volumes beside the root disk are made for one "
                             "server at a time (min_count and max_count 1).")
    if len(extras) > MAX_BLANK_VOLUMES:
        raise errors.Invalid(f"Block Device Mapping is Invalid: at most {MAX_BLANK_VOLUMES} volumes beside the "
                             "root disk.")
    out: list[dict[str, Any]] = []
    for letter, bdm in zip("bcdefghijklmnopq", extras, strict=False):
        entry = {"device": f"/dev/vd{letter}",
                 DELETE_ON_TERMINATION: bool(parse_bool(str(bdm.get("delete_on_termination", False))))}
        source = bdm.get("source_type")
        size = int(str(bdm.get("volume_size") or 0))  # the schema allows digits only
        if source == "volume":
            vid = str(bdm.get("uuid") or bdm.get("volume_id") or "").lower()
            if not is_uuid(vid):
                raise errors.Invalid("Block Device Mapping is Invalid: a volume mapping needs the volume's uuid.")
            if any(e.get("id") == vid for e in out):
                raise errors.Invalid(f"Block Device Mapping is Invalid: volume {vid} is mapped twice.")
            out.append({**entry, "id": vid, "existing": True})
            continue
        if source == "snapshot":
            sid = str(bdm.get("uuid") or bdm.get("snapshot_id") or "").lower()
            least = snapshots[sid]
            size = size or least
            if size < least:
                raise errors.Invalid(f"Block Device Mapping is Invalid: volume_size {size} is smaller than "
                                     f"snapshot {sid} ({least} GiB).")
            if size > MAX_SIZE_GB:
                raise errors.Invalid(f"Block Device Mapping is Invalid: volume_size {size} is over {MAX_SIZE_GB} "
                                     "GiB.")
            out.append({**entry, "id": str(uuidlib.uuid4()), "size": size, "snapshot_id": sid})
            continue
        if not 1 <= size <= MAX_SIZE_GB:
            raise errors.Invalid("Block Device Mapping is Invalid: Blank volumes (source: 'blank', dest: 'volume') "
                                 f"need to have non-zero size (at most {MAX_SIZE_GB} GiB)")
        out.append({**entry, "id": str(uuidlib.uuid4()), "size": size})
    return out


def with_blank_volumes(image: dict[str, Any], extras: list[dict[str, Any]]) -> dict[str, Any]:
    return {**image, EXTRA_VOLUMES: extras} if extras else image


def _sizes(image: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(id, GiB) of each volume the boot makes (an existing volume it attaches is counted already)."""
    spec = image.get(NEW_ROOT)
    extras = {str(e["id"]): int(e["size"]) for e in image.get(EXTRA_VOLUMES) or [] if not e.get("existing")}
    root_size = int(spec["size"]) if isinstance(spec, Mapping) else 0
    return [(v, extras.get(v, root_size)) for v, _ in made_volumes(image)]


async def reserve(cc: ComputeContext, ctx: RequestContext, image: dict[str, Any], count: int = 1) -> list[str]:
    """The volumes the boot makes for its `count` servers counted in the project's volume quotas (volumes,
    gigabytes), each reserved in a write unit of the API DB as a volume create is; their ids (for
    `release`). Over quota: none is reserved and the boot is Nova's 403 for the quota it exceeds."""
    sizes = [s for i in range(count) for s in _sizes(for_instance(image, i))]
    if not sizes:
        return []
    project = str(ctx.project)
    listed, listed_ids, since = await volume_cells.project_usage(cc.router, ctx, project)

    def reserve_all(conn: Connection) -> None:  # one unit: over quota reserves none of them
        for volume_id, size in sizes:  # each counts the ones reserved before it
            quota.reserve_volume(conn, project, volume_id, size, listed, listed_ids, listed_since=since)
    try:
        await cc.db.write(reserve_all)
    except quota.VolumeOverLimit as exc:
        kw = exc.kwargs
        raise errors.QuotaExceeded(f"Volume resource quota exceeded: {exc.message}", resource=kw.get("resource"),
                                   requested=kw.get("requested"), limit=kw.get("limit")) from None
    return [volume_id for volume_id, _ in sizes]


async def release(cc: ComputeContext, volume_ids: list[str]) -> None:
    """The reservations end once the boot was taken (its cell lists the volumes from then on) or refused."""
    def release_all(conn: Connection) -> None:
        for volume_id in volume_ids:
            quota.release_volume(conn, volume_id)
    if volume_ids:
        await cc.db.write(release_all)
