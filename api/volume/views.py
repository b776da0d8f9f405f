"""Cinder v3.0 views of volumes, built from volume records (cells/db/volumes.py `volume_record`).

Exactly the keys of the negotiated microversion (3.13 group_id, 3.21 provider_id for admins, 3.48
shared_targets and service_uuid: api/volume/microversions.py). The admin-only os-vol-host-attr / os-vol-mig-status-attr keys
appear for admins. An attachment shows once it is made (attached or detaching), as
Cinder lists only attachments whose attach_status is attached.
"""
from __future__ import annotations

from typing import Any

from api.timeutil import iso_naive_micro
from cells.db.volumes import image_metadata_of

DEFAULT_TYPE = "__DEFAULT__"
SHOWN_ATTACHMENTS = ("attached", "detaching")


def links(base: str, project_id: str, volume_id: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"{base}/volume/v3/{project_id}/volumes/{volume_id}"},
            {"rel": "bookmark", "href": f"{base}/volume/{project_id}/volumes/{volume_id}"}]


def attachments(record: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for att in record.get("attachments") or []:
        if att.get("status") not in SHOWN_ATTACHMENTS:
            continue
        out.append({"id": record["id"], "attachment_id": att["id"], "volume_id": record["id"],
                    "server_id": att["instance_uuid"], "host_name": None, "device": att.get("device"),
                    "attached_at": iso_naive_micro(att.get("created_at"))})
    return out


def host_attribute(record: dict[str, Any]) -> str | None:
    """Cinder's host@backend#pool (api/volume/backends.py names a volume host's one pool so); None unplaced,
    the bare host for a volume placed before its backend was recorded at placement."""
    host, backend = record.get("host"), record.get("backend")
    return f"{host}@{backend}#{backend}" if host and backend else host


def volume_brief(base: str, project_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "name": record.get("name"), "links": links(base, project_id, record["id"])}


def volume_detail(base: str, project_id: str, record: dict[str, Any], is_admin: bool,
                  extended: bool = True, version: tuple[int, int] = (3, 0)) -> dict[str, Any]:
    """Cinder's detail view; `extended`: with what Cinder's extensions add to show and list only (a create
    and an update answer without them): os-vol-tenant-attr:tenant_id, volume_image_metadata and, for
    admins, the host and migration attributes."""
    view: dict[str, Any] = {
        "id": record["id"],
        "name": record.get("name"),
        "description": record.get("description"),
        "status": record["status"],
        "size": int(record["size"]),
        "availability_zone": record.get("availability_zone") or "nova",
        "created_at": iso_naive_micro(record.get("created_at")),
        "updated_at": iso_naive_micro(record.get("updated_at")),
        "volume_type": record.get("volume_type") or DEFAULT_TYPE,
        "snapshot_id": record.get("snapshot_id"),
        "source_volid": record.get("source_volid"),
        "metadata": dict(record.get("metadata") or {}),
        "links": links(base, project_id, record["id"]),
        "user_id": record.get("user_id"),
        "bootable": "true" if record.get("bootable") else "false",
        "encrypted": False,
        "replication_status": None,
        "consistencygroup_id": None,
        "multiattach": False,
        "migration_status": None,
        "attachments": attachments(record),
    }
    image_metadata = image_metadata_of(record.get("image"), record.get("image_metadata"))
    if image_metadata is not None and extended:  # Cinder shows it for a volume made from an image or given one
        view["volume_image_metadata"] = image_metadata
    if extended:
        view["os-vol-tenant-attr:tenant_id"] = record["project_id"]
    if is_admin and extended:
        view["os-vol-host-attr:host"] = host_attribute(record)
        view["os-vol-mig-status-attr:migstat"] = None
        view["os-vol-mig-status-attr:name_id"] = None
    if version >= (3, 13):
        view["group_id"] = record.get("group_id")  # api/volume/groups.py (volumes.py with_groups)
    if version >= (3, 21) and is_admin:
        view["provider_id"] = None
    if version >= (3, 48):
        view["shared_targets"] = False  # every attachment gets a target of its own (api/volume: tgt, nbd, local)
        view["service_uuid"] = None
    return view
