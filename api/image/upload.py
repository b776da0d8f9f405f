"""/image/v2: create an image record, upload its bits, delete it (Glance v2 subset).

    POST   /v2/images              201, status queued
    PUT    /v2/images/{id}/file    204; queued -> saving -> active (back to queued if the upload fails
                                   or is refused: bounds in api/image/bounds.py, the data's format in
                                   cells/imageformat.py; an upload that dies: api/image/leases.py)
    DELETE /v2/images/{id}         204; the blob goes when no other image shares it

Bits go to the content-addressed store (api/image/store.py), hashed on the way:
`checksum` (md5), `os_hash_algo`/`os_hash_value` (sha512), `size`. The switch to
`saving` is one conditional UPDATE, so two concurrent uploads cannot both win. The data is
inspected as it streams; data that is not what its disk_format says, or that QEMU must not open,
is refused (400) before the store places it.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, func, insert, select, update

from api.db.schema import images
from api.http import authorize, context, is_uuid, json_body
from api.image import images as db
from api.image.bounds import Bounds, ImageTooLarge, UploadGuard, check_total, used_by
from api.image.leases import UploadLease, partial_prefix
from api.image.schemas import _FORMATS_CONTAINER, _FORMATS_DISK
from api.image.store import Blob, ImageStore
from api.keys import CLUSTER, ENGINE, STORE
from api.timeutil import utcnow
from cells import errors, imageformat
from cells.context import RequestContext
from cells.imageformat import StreamInspector

CHUNK = 1 << 20
READ_ONLY = ("status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size", "created_at",
             "updated_at", "self", "file", "schema", "direct_url", "locations")
VISIBILITIES = ("public", "private", "shared", "community")
MAX_PROPERTIES = 128
# Glance's own namespace (os_glance_import_task, os_glance_failed_import, ...): what clients read of an
# import's progress, so a tenant may neither set nor remove one
RESERVED_PREFIX = "os_glance"


class ImageForbidden(errors.Forbidden):
    code, msg = "image_forbidden", "{reason}"


def _string(value: Any, what: str, max_len: int = 255, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise errors.Invalid(f"Invalid value for {what}: expected a string of at most {max_len} characters.")
    return value


def _non_negative(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.Invalid(f"Invalid value for {what}: expected a non-negative integer, got {value!r}.")
    return value


def validate_create(ctx: RequestContext, body: Any) -> dict[str, Any]:
    """The row values of a new image from Glance's create body; 400/403 as Glance."""
    if not isinstance(body, dict):
        raise errors.Invalid("The image create body must be a JSON object.")
    for key in READ_ONLY:
        if key in body:
            raise ImageForbidden(reason=f"Attribute '{key}' is read-only.")
    image_id = body.get("id") or str(uuid.uuid4())
    if not isinstance(image_id, str) or not is_uuid(image_id):
        raise errors.Invalid(f"Invalid image id {image_id!r}: it must be a lowercase UUID.")
    visibility = body.get("visibility", "shared")
    if visibility not in VISIBILITIES:
        raise errors.Invalid(f"Invalid visibility value: {visibility}")
    disk_format = body.get("disk_format")
    if disk_format not in _FORMATS_DISK:
        raise errors.Invalid(f"Invalid disk format '{disk_format}' for image.")
    container_format = body.get("container_format")
    if container_format not in _FORMATS_CONTAINER:
        raise errors.Invalid(f"Invalid container format '{container_format}' for image.")
    owner = body.get("owner", ctx.project)
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and len(t) <= 255 for t in tags):
        raise errors.Invalid("Invalid tags: expected a list of strings.")
    core = set(db.CORE) | {"id"}
    extra = {k: v for k, v in body.items() if k not in core}
    if len(extra) > MAX_PROPERTIES:
        raise errors.Invalid(f"Maximum number of image properties ({MAX_PROPERTIES}) exceeded.")
    for key, value in extra.items():
        if key.startswith(RESERVED_PREFIX):
            raise ImageForbidden(reason=f"Attribute '{key}' is reserved.")
        if not isinstance(value, str):
            raise errors.Invalid(f"Invalid value for property {key!r}: additional properties must be strings.")
    for flag in ("protected", "os_hidden"):
        if flag in body and not isinstance(body[flag], bool):
            raise errors.Invalid(f"Invalid value for {flag}: expected a boolean.")
    now = utcnow()
    return {"id": image_id.lower(), "name": _string(body.get("name"), "name"), "status": "queued",
            "visibility": visibility, "owner": _string(owner, "owner"), "checksum": None, "os_hash_algo": None,
            "os_hash_value": None, "size": None, "virtual_size": None, "disk_format": disk_format,
            "container_format": container_format, "min_disk": _non_negative(body.get("min_disk", 0), "min_disk"),
            "min_ram": _non_negative(body.get("min_ram", 0), "min_ram"),
            "protected": bool(body.get("protected", False)), "os_hidden": bool(body.get("os_hidden", False)),
            "properties": extra, "tags": list(dict.fromkeys(tags)), "content_address": None,
            "created_at": now, "updated_at": now}


def _may_change(request: web.Request, rule: str, row: Any) -> None:
    """Only the owner (or an admin) changes an image; others who can see it get 403, as Glance."""
    authorize(request, rule, {"owner": row.owner, "visibility": row.visibility})


async def create_image(request: web.Request) -> web.Response:
    ctx = context(request)
    values = validate_create(ctx, await json_body(request))
    # Glance's rules: add_image for the owner named (another project's: admins only), and
    # publicize_image / communitize_image for those visibilities
    authorize(request, "add_image", {"owner": values["owner"], "visibility": values["visibility"]})
    if values["visibility"] in ("public", "community"):
        authorize(request, "publicize_image" if values["visibility"] == "public" else "communitize_image",
                  {"owner": values["owner"], "visibility": values["visibility"]})
    async with request.config_dict[ENGINE].begin() as conn:
        exists = (await conn.execute(select(images.c.id).where(images.c.id == values["id"]))).first()
        if exists is not None:
            raise errors.Conflict(f"Image with identifier {values['id']} already exists!")
        await conn.execute(insert(images).values(**values))
        row = (await conn.execute(select(images).where(images.c.id == values["id"]))).one()
    # Glance announces how the new image's data may come (clients choose import or upload from these)
    return web.json_response(db.view(row), status=201,
                             headers={"Location": f"{request.url.origin()}/image/v2/images/{row.id}",
                                      "OpenStack-image-import-methods": ",".join(db.IMPORT_METHODS),
                                      "OpenStack-image-store-ids": db.STORE_ID})


async def _chunks(data: AsyncIterator[bytes], guard: UploadGuard, inspector: StreamInspector) -> AsyncIterator[bytes]:
    """The image data, counted against the upload's bounds and inspected as it passes."""
    async for chunk in data:
        await guard.passed(len(chunk))
        inspector.feed(chunk)
        yield chunk


def _verifier(disk_format: str, inspector: StreamInspector) -> Callable[[Blob], None]:
    """What the store runs before it places the bytes: refused data never lands."""
    def verify(blob: Blob) -> None:
        if blob.size == 0:
            raise errors.Invalid("The uploaded image data is empty.")
        imageformat.check(disk_format, inspector.result())
    return verify


async def upload(request: web.Request) -> web.Response:
    ctx = context(request)
    engine, store = request.config_dict[ENGINE], request.config_dict[STORE]
    bounds = Bounds.of(request.config_dict[CLUSTER].api)
    image_id = request.match_info["image_id"]
    async with engine.connect() as conn:
        row = await db.get(conn, ctx, image_id)
    _may_change(request, "upload_image", row)
    if not row.disk_format or not row.container_format:
        raise errors.Invalid("Properties disk_format, container_format must be set prior to saving data.")
    await save_data(engine, store, bounds, row, request.content.iter_chunked(CHUNK), request.content_length)
    return web.Response(status=204)


async def save_data(engine: Any, store: ImageStore, bounds: Bounds, row: Any, data: AsyncIterator[bytes],
                    length: int | None, staged: bool = False) -> None:
    """A queued image's data (`length` bytes when known), as an upload and a server's snapshot
    (api/compute/server_snapshots.py) save it: under the image's lease, bounded, inspected, then active;
    `staged` (Glance's stage call, api/image/imports.py): uploading while it streams and after, until an
    import makes it active."""
    during, after = ("uploading", "uploading") if staged else ("saving", "active")
    lease = UploadLease(store.root, row.id)
    if not await asyncio.to_thread(lease.acquire):
        raise errors.Conflict(f"Image status transition from {row.status} to {during} is not allowed")
    try:
        await _owned_upload(engine, store, bounds, row, data, length, during, after)
    finally:
        await asyncio.shield(asyncio.to_thread(lease.release))


async def _owned_upload(engine: Any, store: ImageStore, bounds: Bounds, row: Any, data: AsyncIterator[bytes],
                        length: int | None, during: str, after: str) -> None:
    """The upload once it holds the image's lease: claim, stream + inspect, activate (or back to queued)."""
    async with engine.begin() as conn:  # check, then claim the upload in one conditional UPDATE
        claimed = await conn.execute(update(images).where(and_(images.c.id == row.id, images.c.status == "queued"))
                                     .values(status=during, updated_at=utcnow()))
        if claimed.rowcount != 1:
            raise errors.Conflict(f"Image status transition from {row.status} to {during} is not allowed")
        used = await conn.run_sync(used_by, row.owner, row.id)
    inspector = StreamInspector()
    try:
        guard = UploadGuard(bounds, str(store.root), used, length)
        await guard.start()
        blob = await store.put_stream(_chunks(data, guard, inspector), _verifier(row.disk_format, inspector),
                                      tmp_prefix=partial_prefix(row.id))
    except BaseException:
        async with engine.begin() as conn:  # a refused or failed upload leaves the image as it was: queued, no data
            await conn.execute(update(images).where(images.c.id == row.id).values(status="queued",
                                                                                   updated_at=utcnow()))
        raise
    found = inspector.result()
    try:
        async with engine.begin() as conn:
            check_total(bounds, await conn.run_sync(used_by, row.owner, row.id), blob.size)  # racing uploads
            done = await conn.execute(update(images).where(and_(images.c.id == row.id, images.c.status == during))
                                      .values(status=after, checksum=blob.md5, os_hash_algo="sha512",
                                              os_hash_value=blob.sha512, size=blob.size,
                                              virtual_size=found.virtual_size, content_address=blob.address,
                                              updated_at=utcnow()))
    except ImageTooLarge:
        async with engine.begin() as conn:
            await conn.execute(update(images).where(images.c.id == row.id).values(status="queued",
                                                                                   updated_at=utcnow()))
        await drop_blob_if_unused(engine, store, blob.address)
        raise
    if done.rowcount != 1:  # deleted while we were saving: the bits must not outlive it
        await drop_blob_if_unused(engine, store, blob.address)
        raise errors.Conflict(f"Image {row.id} was deleted during the upload.")


async def delete_image(request: web.Request) -> web.Response:
    ctx = context(request)
    engine = request.config_dict[ENGINE]
    async with engine.begin() as conn:
        row = await db.get(conn, ctx, request.match_info["image_id"])
        _may_change(request, "delete_image", row)
        if row.protected:
            raise ImageForbidden(reason=f"Image {row.id} is protected and cannot be deleted.")
        await conn.execute(delete(images).where(images.c.id == row.id))
    if row.content_address:
        await drop_blob_if_unused(engine, request.config_dict[STORE], row.content_address)
    return web.Response(status=204)


async def delete_with_data(engine: Any, store: ImageStore, image_id: str) -> None:
    """The image's row, then its data unless another image shares it."""
    async with engine.begin() as conn:
        row = (await conn.execute(select(images.c.content_address).where(images.c.id == image_id))).first()
        await conn.execute(delete(images).where(images.c.id == image_id))
    if row is not None and row.content_address:
        await drop_blob_if_unused(engine, store, row.content_address)


async def drop_blob_if_unused(engine: Any, store: ImageStore, address: str) -> None:
    async with engine.connect() as conn:
        users = (await conn.execute(select(func.count()).select_from(images)
                                    .where(images.c.content_address == address))).scalar()
    if not users:
        await store.delete(address)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2/images", create_image)
    app.router.add_put("/v2/images/{image_id}/file", upload)
    app.router.add_delete("/v2/images/{image_id}", delete_image)
