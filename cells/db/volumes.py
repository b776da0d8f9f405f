"""Volume tables of the cell DB (volumes, attachments, volume hosts) and their
atomic state changes.

The tables live in their own MetaData and are created idempotently (only the
missing ones) by the conductor at start, like the network tables: only the
conductor writes them. Every state change is ONE conditional UPDATE
(`... WHERE id = :id AND status IN (...)`): of two concurrent requests exactly
one sees rowcount 1, whatever the number of conductor processes. A volume is
attached to at most one instance: `volume_attachments.volume_id` is unique.
Functions taking a `conn` are parts of the caller's unit of work.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    false,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Row

from cells import errors
from cells.db.engine import Database
from cells.db.fast import AnyRow, as_mapping
from cells.objects.instance import utcnow_iso
from cells.objects.records import AttachmentRecord, VolumeRecord

TIME = String(32)
metadata = MetaData()


class VolumeStatus:
    """Cinder's volume statuses (the subset Cellcloud drives)."""
    CREATING = "creating"
    AVAILABLE = "available"
    ATTACHING = "attaching"
    IN_USE = "in-use"
    DETACHING = "detaching"
    DELETING = "deleting"
    EXTENDING = "extending"
    UPLOADING = "uploading"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    ERROR_EXTENDING = "error_extending"


IN_PROGRESS = (VolumeStatus.CREATING, VolumeStatus.ATTACHING, VolumeStatus.DETACHING, VolumeStatus.DELETING,
               VolumeStatus.EXTENDING, VolumeStatus.UPLOADING)
DELETABLE = (VolumeStatus.AVAILABLE, VolumeStatus.ERROR, VolumeStatus.ERROR_DELETING)
EXPORTED = (VolumeStatus.ATTACHING, VolumeStatus.IN_USE, VolumeStatus.DETACHING)  # an export must exist
UPDATABLE_FIELDS = frozenset({"name", "description", "metadata", "bootable"})

volumes = Table(
    "volumes", metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(255), nullable=False),
    Column("user_id", String(255), nullable=True),
    Column("name", String(255), nullable=True),
    Column("description", Text, nullable=True),
    Column("size", Integer, nullable=False),  # GiB
    Column("status", String(32), nullable=False, index=True),
    Column("host", String(255), nullable=True, index=True),  # the volume host holding the data
    Column("backend", String(32), nullable=True),  # file | lvm (what the host made it with)
    Column("disk_format", String(16), nullable=True),  # raw | qcow2
    Column("availability_zone", String(255), nullable=False),
    Column("volume_type", String(255), nullable=True),
    Column("metadata", JSON, nullable=False),
    Column("bootable", Boolean, nullable=False, default=False),
    Column("error", Text, nullable=True),  # why the volume is in error (or why the last attach failed)
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("deleted_at", TIME, nullable=True),
    # v5 (cells/db/schema.py): the conductor driving the volume's flow while it is creating, attaching,
    # detaching or deleting; a live conductor adopts the flow when its owner leaves (flows/volume_recovery.py)
    Column("conductor_id", String(255), nullable=True),
    # c0002 (issue 18): what the volume was made from (Cinder's snapshot_id / source_volid)
    Column("snapshot_id", String(36), nullable=True),
    Column("source_volid", String(36), nullable=True),
    # c0004 (issue 18): the volume_backend_name its volume type asks for (None: any volume host)
    Column("volume_backend_name", String(255), nullable=True),
    # c0005 (issue 18): the image it was made from, as the creating project saw it (its record, with an AMI's
    # kernel and ramdisk): Cinder's volume_image_metadata, and what a boot from the volume boots
    Column("image", JSON, nullable=True),
    # c0010: Cinder's volume_image_metadata once a user changed it (os-set/unset_image_metadata), whole;
    # None: shown from `image`. Only shown: a boot or an upload reads `image`, the record the API checked
    Column("image_metadata", JSON, nullable=True),
    # c0013: the capabilities its volume type asks of a volume host (vendor_name, storage_protocol; Cinder's
    # CapabilitiesFilter); None: any
    Column("capabilities", JSON, nullable=True),
    # the usual tenant listing: WHERE project_id=? AND deleted=? ORDER BY created_at
    Index("ix_volumes_project_deleted_created", "project_id", "deleted", "created_at"),
)

# c0002 (issue 18): point-in-time copies of a volume, kept on the volume's host (cells/db/volume_snapshots.py)
volume_snapshots = Table(
    "volume_snapshots", metadata,
    Column("id", String(36), primary_key=True),
    Column("volume_id", String(36), nullable=False, index=True),
    Column("project_id", String(255), nullable=False),
    Column("user_id", String(255), nullable=True),
    Column("name", String(255), nullable=True),
    Column("description", Text, nullable=True),
    Column("size", Integer, nullable=False),  # GiB: the volume's size when it was taken
    Column("status", String(32), nullable=False, index=True),  # creating | available | deleting | error...
    Column("host", String(255), nullable=True),  # the volume host holding the copy (the volume's)
    Column("metadata", JSON, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("deleted_at", TIME, nullable=True),
    Column("conductor_id", String(255), nullable=True),  # the owner of a creating/deleting flow
    # c0009: the progress os-update_snapshot_status last reported ("80%"); None: shown from the status
    Column("progress", String(8), nullable=True),
    Index("ix_volume_snapshots_project_deleted_created", "project_id", "deleted", "created_at"),
)

volume_attachments = Table(
    "volume_attachments", metadata,
    Column("id", String(36), primary_key=True),
    Column("volume_id", String(36), nullable=False, unique=True),  # at most one instance at a time
    Column("instance_uuid", String(36), nullable=False, index=True),
    Column("instance_host", String(255), nullable=True),  # the compute host of the instance
    Column("device", String(64), nullable=True),  # /dev/vdb (a hint: guests name disks in discovery order)
    Column("status", String(32), nullable=False),  # attaching | attached | detaching
    Column("connection_info", JSON, nullable=True),  # what the volume host's export answered
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

volume_nodes = Table(
    "volume_nodes", metadata,
    Column("host", String(255), primary_key=True),
    Column("capacity_gb", Integer, nullable=False),
    Column("allocated_gb", Integer, nullable=False, default=0),
    Column("backend", String(32), nullable=False),
    Column("targets", JSON, nullable=False),  # export targets the host offers, preferred first
    # c0004 (issue 18): the name a volume type's volume_backend_name matches (cluster.yaml backend_name)
    Column("backend_name", String(255), nullable=True),
    Column("updated_at", TIME, nullable=False),
    # c0012: Cinder's os-services state of the host's cinder-volume, set by admins: a disabled or frozen
    # host takes no new volume (placement skips it); what it holds stays served
    Column("disabled", Boolean, nullable=False, default=False, server_default=false()),
    Column("disabled_reason", String(255), nullable=True),
    Column("frozen", Boolean, nullable=False, default=False, server_default=false()),
)

# c0013: Cinder's user messages (/messages, 3.3): what failed for a project, kept until expires_at
# (cells/conductor/flows/messages.py)
messages = Table(
    "messages", metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(255), nullable=False),
    Column("request_id", String(255), nullable=False),
    Column("resource_type", String(32), nullable=False),
    Column("resource_uuid", String(36), nullable=True),
    Column("event_id", String(64), nullable=False),
    Column("message_level", String(16), nullable=False),
    Column("user_message", Text, nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False, index=True),
    Index("ix_messages_project_created", "project_id", "created_at"),
)

# what a volume host offers a volume type's capability specs (and the API's get_pools shows)
VENDOR = "Cellcloud"
DRIVER_VERSION = "1.0"
PROTOCOLS = {"tgt": "iSCSI", "lio": "iSCSI", "nbd": "NBD", "local": "local"}  # export target -> protocol
CAPABILITY_SPECS = ("vendor_name", "storage_protocol")  # the ones placement matches (others: not kept)


def storage_protocols(targets: Sequence[str]) -> list[str]:
    return [PROTOCOLS.get(t, str(t)) for t in targets] or ["local"]


def offers(node: Any, wanted: Mapping[str, str] | None) -> bool:
    """Whether a volume host has the capabilities a volume type asks for: its vendor, and a protocol one
    of its export targets speaks (case-insensitive, as Cinder canonicalizes iSCSI)."""
    for key, value in (wanted or {}).items():
        if key == "vendor_name" and value != VENDOR:
            return False
        if key == "storage_protocol" and value.lower() not in [p.lower() for p in storage_protocols(node.targets)]:
            return False
    return True


WIRE_FIELDS = tuple(c.name for c in volumes.columns if c.name not in ("deleted_at", "conductor_id"))
ATTACHMENT_FIELDS = tuple(c.name for c in volume_attachments.columns)


def _create(conn: Connection) -> None:
    metadata.create_all(conn)  # checkfirst: only the missing tables


async def ensure_volume_schema(db: Database) -> None:
    await db.write(_create)


# --- records ------------------------------------------------------------------------

# the image record's fields a volume's volume_image_metadata shows (with the image's properties)
SHOWN_IMAGE_FIELDS = ("id", "name", "checksum", "container_format", "disk_format", "min_disk", "min_ram", "size")


def image_metadata_of(image: Mapping[str, Any] | None, changed: Mapping[str, Any] | None = None) -> dict[str, str] | None:
    """Cinder's volume_image_metadata: what a user set (`changed`, the image_metadata column), else the image's
    record as strings, its id as image_id, its name as image_name, its properties beside; None: no image."""
    if changed is not None:
        return {str(k): str(v) for k, v in changed.items()}
    if not image:
        return None
    out = {("image_id" if k == "id" else "image_name" if k == "name" else k): str(image.get(k))
           for k in SHOWN_IMAGE_FIELDS if image.get(k) is not None}
    out.update({str(k): str(v) for k, v in (image.get("properties") or {}).items()})
    return out

def attachment_record(row: AnyRow | Mapping[str, Any]) -> AttachmentRecord:
    """An AttachmentRecord (cells/objects/records.py; tests/unit/test_records.py holds them equal)."""
    m = as_mapping(row)
    return cast(AttachmentRecord, {f: m[f] for f in ATTACHMENT_FIELDS})


def volume_host(volume: VolumeRecord) -> str:
    """The volume host holding a placed volume's data: a host step runs only past placement."""
    if volume["host"] is None:
        raise errors.VolumeInvalidState(reason=f"volume {volume['id']} is on no volume host yet")
    return volume["host"]


def instance_host(att: AttachmentRecord) -> str:
    """The compute host of an attachment's server: an attach is reserved only for a server with a host."""
    if att["instance_host"] is None:
        raise errors.VolumeInvalidState(reason=f"attachment {att['id']} names no compute host")
    return att["instance_host"]


def volume_record(row: AnyRow | Mapping[str, Any], attachments: Sequence[Row[Any] | Mapping[str, Any]] = (),
                  cell: str | None = None) -> VolumeRecord:
    """A VolumeRecord (cells/objects/records.py; tests/unit/test_records.py holds them equal)."""
    m = as_mapping(row)
    rec: dict[str, Any] = {f: m[f] for f in WIRE_FIELDS}
    rec["deleted"] = bool(rec["deleted"])
    rec["bootable"] = bool(rec["bootable"])
    rec["attachments"] = [attachment_record(a) for a in attachments]
    rec["cell"] = cell
    return cast(VolumeRecord, rec)


# --- queries ------------------------------------------------------------------------

_v, _a, _n, _sn = volumes.c, volume_attachments.c, volume_nodes.c, volume_snapshots.c
_SELECT_ONE = select(volumes).where(_v.id == bindparam("b_id"))
_UPDATE_ONE = update(volumes).where(_v.id == bindparam("b_id"))


def get_row(conn: Connection, volume_id: str) -> Row[Any] | None:
    return conn.execute(_SELECT_ONE, {"b_id": volume_id}).first()


def attachments_of(conn: Connection, volume_ids: Iterable[str]) -> dict[str, list[Row[Any]]]:
    ids = list(volume_ids)
    out: dict[str, list[Row[Any]]] = {i: [] for i in ids}
    if ids:
        for r in conn.execute(select(volume_attachments).where(_a.volume_id.in_(ids))):
            out[r.volume_id].append(r)
    return out


def attachments_for_instances(conn: Connection, instance_uuids: Iterable[str]) -> dict[str, list[Row[Any]]]:
    uuids = list(instance_uuids)
    out: dict[str, list[Row[Any]]] = {u: [] for u in uuids}
    if uuids:
        for r in conn.execute(_ATTACHMENTS_OF, {"b_uuids": uuids}):
            out[r.instance_uuid].append(r)
    return out


_ATTACHMENTS_OF = (select(volume_attachments).where(_a.instance_uuid.in_(bindparam("b_uuids", expanding=True)))
                   .order_by(_a.created_at))  # built once: every server view asks


def owners_in_progress(conn: Connection, table: Table, in_progress: Sequence[str]) -> set[str]:
    """The conductors driving a flow of `table` (volumes or volume_snapshots) now."""
    c = table.c
    rows = conn.execute(select(c.conductor_id).distinct().where(
        c.conductor_id.is_not(None), c.deleted == false(), c.status.in_(in_progress))).scalars().all()
    return {str(r) for r in rows}


def take_over(conn: Connection, table: Table, owners: Sequence[str], in_progress: Sequence[str],
              conductor_id: str) -> list[Row[Any]]:
    """The rows of `table` in a flow of one of `owners`, now `conductor_id`'s: one conditional UPDATE
    each (owner and status as read), so of two conductors adopting at once exactly one wins a row."""
    c, won = table.c, []
    for row in conn.execute(select(table).where(c.conductor_id.in_(list(owners)), c.deleted == false(),
                                                c.status.in_(in_progress))).all():
        if conn.execute(update(table).where(c.id == row.id, c.conductor_id == row.conductor_id,
                                            c.status == row.status)
                        .values(conductor_id=conductor_id)).rowcount == 1:
            won.append(row)
    return won


def attachment_of(conn: Connection, volume_id: str) -> Row[Any] | None:
    return conn.execute(select(volume_attachments).where(_a.volume_id == volume_id)).first()


def insert_volume(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(volumes), dict(row))


def update_volume(conn: Connection, volume_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(_UPDATE_ONE, {**values, "updated_at": utcnow_iso(), "b_id": volume_id})


def transition(conn: Connection, volume_id: str, from_statuses: Sequence[str], values: Mapping[str, Any]) -> bool:
    """The one atomic state change: set `values` only if the live volume is in one of
    `from_statuses` now. True when this caller won."""
    stmt = (update(volumes)
            .where(_v.id == volume_id, _v.deleted == false(), _v.status.in_(list(from_statuses)))
            .values(**values, updated_at=utcnow_iso()))
    return conn.execute(stmt).rowcount == 1


def list_rows(conn: Connection, project_id: str | None, name: str | None = None, status: str | None = None,
              host: str | None = None, limit: int | None = None) -> list[Row[Any]]:
    conds = [_v.deleted == false()]
    if project_id is not None:
        conds.append(_v.project_id == project_id)
    if name is not None:
        conds.append(_v.name == name)
    if status is not None:
        conds.append(_v.status == status)
    if host is not None:
        conds.append(_v.host == host)
    stmt = select(volumes).where(and_(*conds)).order_by(_v.created_at.desc(), _v.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt))


def copying_from(conn: Connection, source_column: str, source_id: str) -> bool:
    """A volume is being made from this snapshot (`snapshot_id`) or volume (`source_volid`) now."""
    column = {"snapshot_id": _v.snapshot_id, "source_volid": _v.source_volid}[source_column]
    return conn.execute(select(_v.id).where(column == source_id, _v.deleted == false(),
                                            _v.status == VolumeStatus.CREATING).limit(1)).first() is not None


def insert_attachment(conn: Connection, row: Mapping[str, Any]) -> None:
    conn.execute(insert(volume_attachments), dict(row))


def update_attachment(conn: Connection, volume_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(update(volume_attachments).where(_a.volume_id == volume_id)
                 .values(**values, updated_at=utcnow_iso()))


def delete_attachment(conn: Connection, volume_id: str) -> None:
    conn.execute(delete(volume_attachments).where(_a.volume_id == volume_id))


def release_instance_volumes(conn: Connection, instance_uuid: str) -> list[str]:
    """The instance is gone (deleted): its attachments end and its volumes are available again, in the
    caller's unit of work. Their exports are left to the volume hosts, which remove exports no
    attachment needs (node/volume/manager.py `remove_stale_exports`). Returns the released volume ids."""
    ids = [r.volume_id for r in conn.execute(select(_a.volume_id).where(_a.instance_uuid == instance_uuid))]
    for volume_id in ids:
        delete_attachment(conn, volume_id)
        transition(conn, volume_id, EXPORTED, {"status": VolumeStatus.AVAILABLE, "error": None})
    return ids


# --- volume hosts and their capacity --------------------------------------------------

def upsert_node(conn: Connection, host: str, capacity_gb: int, backend: str, targets: Sequence[str],
                backend_name: str | None = None) -> None:
    """A volume host's report; allocation is recomputed from its live volumes and snapshots (self-healing)."""
    used = sum(int(r.size) for r in conn.execute(select(_v.size).where(_v.host == host, _v.deleted == false())))
    used += sum(int(r.size) for r in conn.execute(select(_sn.size).where(_sn.host == host, _sn.deleted == false())))
    values = {"capacity_gb": int(capacity_gb), "allocated_gb": used, "backend": backend,
              "targets": list(targets), "updated_at": utcnow_iso(), "backend_name": backend_name or backend}
    if conn.execute(update(volume_nodes).where(_n.host == host).values(**values)).rowcount == 0:
        conn.execute(insert(volume_nodes).values(host=host, **values))


def nodes(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(volume_nodes)))


def node(conn: Connection, host: str) -> Row[Any] | None:
    return conn.execute(select(volume_nodes).where(_n.host == host)).first()


def try_allocate(conn: Connection, host: str, size_gb: int) -> bool:
    """Take `size_gb` on `host` if it still has room: one conditional UPDATE, no check-then-act race."""
    stmt = (update(volume_nodes)
            .where(_n.host == host, _n.allocated_gb + size_gb <= _n.capacity_gb)
            .values(allocated_gb=_n.allocated_gb + size_gb))
    return conn.execute(stmt).rowcount == 1


def release(conn: Connection, host: str, size_gb: int) -> None:
    conn.execute(update(volume_nodes).where(_n.host == host).values(allocated_gb=_n.allocated_gb - size_gb))
