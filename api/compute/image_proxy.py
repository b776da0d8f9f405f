"""Nova's images proxy of the image service (api/image), up to 2.35 (from 2.36 a 404, as Nova):

    GET    /images[/detail][?name=&status=&server=&type=&minRam=&minDisk=&limit=&marker=]   what the caller sees
    GET    /images/{id}         DELETE /images/{id} (204; Glance's delete_image rule, the image service's delete)
    GET    /images/{id}/metadata              POST (merge) / PUT (replace) {"metadata": {...}}
    GET    /images/{id}/metadata/{key}        PUT {"meta": {key: value}}   DELETE (204)

Nova enforces no policy of its own here (the image service decides): reads see what Glance lets the caller
see; a metadata change needs Glance's modify_image on the image, and counts against the owner's
metadata_items quota (403 past it, as Nova's maxImageMeta). Nova's view: {id, name, minRam, minDisk,
metadata, created, updated, status (ACTIVE, SAVING, ...), progress, OS-EXT-IMG-SIZE:size, links[, server]}.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api import quota
from api.compute import microversions
from api.compute.views import links
from api.db.schema import images
from api.http import authorize, context, json_body, query_int
from api.image import images as image_db
from api.image import upload
from api.keys import ENGINE, public_url
from api.timeutil import utcnow
from cells import errors
from cells.db.fast import AnyRow

PROXY_REMOVED = (2, 36)
STATUS = {"active": ("ACTIVE", 100), "queued": ("SAVING", 25), "saving": ("SAVING", 50),
          "uploading": ("SAVING", 50), "importing": ("SAVING", 50), "deleted": ("DELETED", 0),
          "pending_delete": ("DELETED", 0), "killed": ("ERROR", 0), "deactivated": ("ERROR", 0)}
MAX_LIMIT = 1000


def _check_version(request: web.Request) -> None:
    if microversions.version_of(request) >= PROXY_REMOVED:
        raise web.HTTPNotFound()


def _date(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _links(base: str, image_id: str) -> list[dict[str, str]]:
    return [*links(base, "images", image_id), {"rel": "alternate", "type": "application/vnd.openstack.image",
                                               "href": f"{base}/image/images/{image_id}"}]


def image_view(base: str, row: AnyRow) -> dict[str, Any]:
    status, progress = STATUS.get(str(row.status), ("UNKNOWN", 0))
    metadata = {k: v for k, v in dict(row.properties or {}).items()}
    view: dict[str, Any] = {"id": row.id, "name": row.name, "minRam": int(row.min_ram or 0),
                            "minDisk": int(row.min_disk or 0), "metadata": metadata, "created": _date(row.created_at),
                            "updated": _date(row.updated_at), "status": status, "progress": progress,
                            "OS-EXT-IMG-SIZE:size": row.size, "links": _links(base, row.id)}
    if metadata.get("instance_uuid"):
        view["server"] = {"id": metadata["instance_uuid"], "links": links(base, "servers", metadata["instance_uuid"])}
    if metadata.get("auto_disk_config") is not None:
        view["OS-DCF:diskConfig"] = "AUTO" if str(metadata["auto_disk_config"]).lower() == "true" else "MANUAL"
    return view


async def _list(request: web.Request, detail: bool) -> web.Response:
    _check_version(request)
    ctx, q = context(request), request.query
    query = select(images).where(image_db.listed(ctx), images.c.status != "deleted")
    if q.get("name"):
        query = query.where(images.c.name == q["name"])
    if q.get("status"):
        wanted = [glance for glance, (nova, _) in STATUS.items() if nova == q["status"].upper()]
        query = query.where(images.c.status.in_(wanted))
    if q.get("server"):  # a server's id or its URL: the snapshots of that server
        query = query.where(images.c.properties["instance_uuid"].as_string() == q["server"].rstrip("/").split("/")[-1])
    if q.get("type"):  # snapshot | backup (the image_type property Nova's createImage/createBackup set)
        query = query.where(images.c.properties["image_type"].as_string() == q["type"])
    for key, column in (("minRam", images.c.min_ram), ("minDisk", images.c.min_disk)):
        floor = query_int(q, key, message=f"Invalid {key} filter [{q.get(key)}]")
        if floor is not None:
            query = query.where(column >= floor)
    limit = min(query_int(q, "limit", MAX_LIMIT) or 0, MAX_LIMIT)
    query = query.order_by(images.c.created_at.desc(), images.c.id.desc())
    async with request.config_dict[ENGINE].connect() as conn:
        if q.get("marker"):
            marker: Any = await image_db.get(conn, ctx, q["marker"])  # a row either way: its columns are read
            query = query.where(image_db.after_marker([("created_at", "desc"), ("id", "desc")], marker))
        rows = (await conn.execute(query.limit(limit))).all()
    base = public_url(request)
    return web.json_response({"images": [image_view(base, r) if detail else
                                         {"id": r.id, "name": r.name, "links": _links(base, r.id)} for r in rows]})


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def show(request: web.Request) -> web.Response:
    _check_version(request)
    async with request.config_dict[ENGINE].connect() as conn:
        row = await image_db.get(conn, context(request), request.match_info["image_id"])
    return web.json_response({"image": image_view(public_url(request), row)})


async def delete(request: web.Request) -> web.Response:
    _check_version(request)
    return await upload.delete_image(request)  # Glance's rules, protection and data clean-up


# --- metadata (the image's properties) ---------------------------------------------------------


def _checked(metadata: Any) -> dict[str, str]:
    if not isinstance(metadata, dict):
        raise errors.Invalid("Malformed request body: metadata must be an object")
    out = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255 or key in image_db.CORE:
            raise errors.Invalid(f"Invalid metadata key {key!r}")
        if not isinstance(value, str) or len(value) > 255:
            raise errors.Invalid(f"Invalid metadata value for {key}: a string of at most 255 characters")
        out[key] = value
    return out


async def _change(request: web.Request, change: Any) -> dict[str, str]:
    """Apply change(properties) -> properties under the API DB's write lock, after Glance's modify_image and
    the owner's metadata_items quota (403); the properties after."""
    ctx = context(request)
    engine = request.config_dict[ENGINE]
    async with engine.begin() as conn:
        row = await image_db.get(conn, ctx, request.match_info["image_id"])
        authorize(request, "modify_image", {"owner": row.owner, "visibility": row.visibility})
        new = change(dict(row.properties or {}))
        limit = (await quota.limits_in(conn, str(row.owner or ctx.project)))["metadata_items"]
        if 0 <= limit < len(new):
            raise errors.QuotaExceeded(f"Quota exceeded for metadata_items: Maximum number of metadata items "
                                       f"exceeds {limit}")
        await conn.execute(update(images).where(images.c.id == row.id).values(properties=new, updated_at=utcnow()))
    return dict(new)


async def _properties(conn: AsyncConnection, request: web.Request) -> dict[str, Any]:
    return dict((await image_db.get(conn, context(request), request.match_info["image_id"])).properties or {})


async def metadata_index(request: web.Request) -> web.Response:
    _check_version(request)
    async with request.config_dict[ENGINE].connect() as conn:
        return web.json_response({"metadata": await _properties(conn, request)})


async def _metadata_body(request: web.Request) -> dict[str, str]:
    body = await json_body(request)
    if not isinstance(body, dict) or "metadata" not in body:
        raise errors.Invalid("Malformed request body: metadata is required")
    return _checked(body["metadata"])


async def metadata_merge(request: web.Request) -> web.Response:
    _check_version(request)
    values = await _metadata_body(request)
    return web.json_response({"metadata": await _change(request, lambda old: {**old, **values})})


async def metadata_replace(request: web.Request) -> web.Response:
    _check_version(request)
    values = await _metadata_body(request)
    return web.json_response({"metadata": await _change(request, lambda old: dict(values))})


async def metadata_show(request: web.Request) -> web.Response:
    _check_version(request)
    key = request.match_info["key"]
    async with request.config_dict[ENGINE].connect() as conn:
        found = await _properties(conn, request)
    if key not in found:
        raise errors.NotFound("Metadata item was not found")
    return web.json_response({"meta": {key: found[key]}})


async def metadata_set(request: web.Request) -> web.Response:
    _check_version(request)
    key = request.match_info["key"]
    body = await json_body(request)
    meta = body.get("meta") if isinstance(body, dict) else None
    if not isinstance(meta, dict) or len(meta) != 1:
        raise errors.Invalid("Request body must have exactly one meta item")
    if key not in meta:
        raise errors.Invalid("Request body and URI mismatch")
    values = _checked(meta)
    await _change(request, lambda old: {**old, **values})
    return web.json_response({"meta": values})


async def metadata_delete(request: web.Request) -> web.Response:
    _check_version(request)
    key = request.match_info["key"]

    def without(old: dict[str, str]) -> dict[str, str]:
        if key not in old:
            raise errors.NotFound("Metadata item was not found")
        return {k: v for k, v in old.items() if k != key}
    await _change(request, without)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/images", index)
    app.router.add_get("/v2.1/images/detail", detail)
    app.router.add_get("/v2.1/images/{image_id}", show)
    app.router.add_delete("/v2.1/images/{image_id}", delete)
    app.router.add_get("/v2.1/images/{image_id}/metadata", metadata_index)
    app.router.add_post("/v2.1/images/{image_id}/metadata", metadata_merge)
    app.router.add_put("/v2.1/images/{image_id}/metadata", metadata_replace)
    app.router.add_get("/v2.1/images/{image_id}/metadata/{key}", metadata_show)
    app.router.add_put("/v2.1/images/{image_id}/metadata/{key}", metadata_set)
    app.router.add_delete("/v2.1/images/{image_id}/metadata/{key}", metadata_delete)
