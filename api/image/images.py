"""Image records in the API DB: visibility rules, lookups, list queries, views."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import image_members, images
from api.http import is_uuid
from api.timeutil import iso_seconds
from cells import errors
from cells.context import RequestContext
from cells.db.fast import AnyRow, Fast

STORE_ID = "file"  # the one store (Glance's name for a filesystem store): /v2/info/stores, api/image/imports.py
IMPORT_METHODS = ("glance-direct",)  # what /v2/info/import offers and an image create's headers announce
# the core keys of the Glance v2 image schema; anything else in `properties` is shown flat beside them
CORE = ("id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
        "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk", "disk_format",
        "container_format", "created_at", "updated_at", "tags")


def _member_of(project: Any, accepted_only: bool = False) -> Any:
    """Shared images `project` is a member of (api/image/members.py)."""
    query = select(image_members.c.image_id).where(image_members.c.member_id == project)
    if accepted_only:
        query = query.where(image_members.c.status == "accepted")
    return and_(images.c.visibility == "shared", images.c.id.in_(query))


def visible(ctx: RequestContext) -> Any:
    """Who sees what, as Glance: public and community to all, private/shared to the owner, shared to its
    members whatever their membership's status; admins all."""
    if ctx.allows("context_is_admin", {}):  # Glance's rules see every image for this rule
        return images.c.id.is_not(None)
    return or_(images.c.visibility.in_(("public", "community")), images.c.owner == ctx.project,
               _member_of(ctx.project))


def listed(ctx: RequestContext, member_status: str = "accepted") -> Any:
    """What a default list shows: community images only when asked for, shared ones whose membership the
    caller accepted (Glance's member_status=accepted default; `all` for any)."""
    if ctx.allows("context_is_admin", {}):  # Glance's rules see every image for this rule
        return images.c.id.is_not(None)
    members = _member_of(ctx.project, accepted_only=member_status == "accepted")
    return or_(images.c.visibility == "public", images.c.owner == ctx.project, members)


async def get(conn: AsyncConnection, ctx: RequestContext, image_id: str) -> AnyRow:
    """The image if the caller may see it; ImageNotFound otherwise (names are not ids: 404)."""
    return await conn.run_sync(get_of, ctx, image_id)


# every boot reads its image: the two forms of the lookup (admin; anyone else) are built once
_GET_ANY_SELECT = select(images).where(images.c.id == bindparam("b_id"), images.c.status != "deleted")
_GET_ANY = Fast(_GET_ANY_SELECT)
_GET_VISIBLE = Fast(_GET_ANY_SELECT.where(or_(  # visible(ctx): non-admin
    images.c.visibility.in_(("public", "community")), images.c.owner == bindparam("b_project"),
    and_(images.c.visibility == "shared", images.c.id.in_(
        select(image_members.c.image_id).where(image_members.c.member_id == bindparam("b_project")))))))


def get_of(conn: Connection, ctx: RequestContext, image_id: str) -> AnyRow:
    """get() in a unit of work (api/db/engine.py make_database)."""
    if not is_uuid(image_id):
        raise errors.ImageNotFound(image_id=image_id)
    sees_all = ctx.allows("context_is_admin", {}) or ctx.is_image_reader_only  # a compute fetches the image of any project's boot
    row = (_GET_ANY if sees_all else _GET_VISIBLE).first(conn, {"b_id": image_id.lower(), "b_project": ctx.project})
    if row is None:
        raise errors.ImageNotFound(image_id=image_id)
    return row


def view(row: AnyRow) -> dict[str, Any]:
    """Glance v2's image document; `stores` (2.8) once the data is the image's (a staged image's is not yet)."""
    doc: dict[str, Any] = {k: v for k, v in dict(row.properties or {}).items() if k not in CORE}
    for key in CORE:
        doc[key] = getattr(row, key)
    doc["tags"] = list(row.tags or [])
    doc["created_at"] = iso_seconds(row.created_at)
    doc["updated_at"] = iso_seconds(row.updated_at)
    doc["self"] = f"/v2/images/{row.id}"
    doc["file"] = f"/v2/images/{row.id}/file"
    doc["schema"] = "/v2/schemas/image"
    if row.content_address and row.status in ("active", "deactivated"):
        doc["stores"] = STORE_ID
    return doc


def snapshot(row: AnyRow) -> dict[str, Any]:
    """The image as an instance record carries it (cells/objects/instance.py)."""
    return {"id": row.id, "name": row.name, "checksum": row.checksum, "os_hash_algo": row.os_hash_algo,
            "os_hash_value": row.os_hash_value, "size": row.size, "disk_format": row.disk_format,
            "container_format": row.container_format, "min_disk": row.min_disk, "min_ram": row.min_ram,
            "properties": dict(row.properties or {})}


# an AMI's companions (Nova's kernel_id / ramdisk_id properties) and the disk_format each must have
COMPANIONS = (("kernel_id", "kernel", "aki"), ("ramdisk_id", "ramdisk", "ari"))


def boot_snapshot_of(conn: Connection, ctx: RequestContext, row: AnyRow) -> dict[str, Any]:
    """snapshot(row) for a boot or rebuild, with the kernel and ramdisk its properties name
    resolved as the requester sees them (`kernel`, `ramdisk`: their records, which the compute
    fetches and verifies). An id the requester may not see is ImageNotFound, as one that does
    not exist: a project never boots, nor learns of, another project's private image."""
    doc = snapshot(row)
    props = dict(row.properties or {})
    for prop, key, disk_format in COMPANIONS:
        ref = props.get(prop)
        if not ref:
            continue
        companion = get_of(conn, ctx, str(ref))
        if companion.status != "active":
            raise errors.Invalid(f"Image {companion.id} is not active.")
        if companion.disk_format != disk_format:
            raise errors.Invalid(f"Image {companion.id} named by {prop} is not an {disk_format} image.")
        doc[key] = {k: v for k, v in snapshot(companion).items() if k != "properties"}
    return doc


SORT_KEYS = {"name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at",
             "visibility", "owner", "min_disk", "min_ram"}


def parse_sort(query: Any) -> list[tuple[str, str]]:
    """Glance's two sort syntaxes: sort=name:asc,size:desc or sort_key=..&sort_dir=.."""
    pairs: list[tuple[str, str]] = []
    if "sort" in query:
        for part in query["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            pairs.append((key.strip(), (direction or "desc").strip()))
    else:
        keys = query.getall("sort_key", []) or ["created_at"]
        dirs = query.getall("sort_dir", [])
        for i, key in enumerate(keys):
            pairs.append((key, dirs[i] if i < len(dirs) else (dirs[-1] if dirs else "desc")))
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise errors.Invalid(f"Invalid sort key: {key}. It should be one of the following: "
                                 f"{', '.join(sorted(SORT_KEYS))}.")
        if direction not in ("asc", "desc"):
            raise errors.Invalid(f"Invalid sort direction: {direction}")
    if "id" not in [k for k, _ in pairs]:
        pairs.append(("id", pairs[-1][1]))  # a total order, so markers page exactly
    return pairs


def after_marker(pairs: list[tuple[str, str]], marker: Row[Any]) -> Any:
    """Rows strictly after `marker` in the order `pairs` (keyset pagination)."""
    clauses = []
    for i, (key, direction) in enumerate(pairs):
        col, value = images.c[key], getattr(marker, key)
        equal = [images.c[k] == getattr(marker, k) for k, _ in pairs[:i]]
        step = col > value if direction == "asc" else col < value
        if value is None:  # NULLs sort first in SQLite ascending
            step = col.is_not(None) if direction == "asc" else images.c.id.is_(None)
        clauses.append(and_(*equal, step))
    return or_(*clauses)


def ordered(query: Select[Any], pairs: list[tuple[str, str]]) -> Select[Any]:
    return query.order_by(*(images.c[k].asc() if d == "asc" else images.c[k].desc() for k, d in pairs))
