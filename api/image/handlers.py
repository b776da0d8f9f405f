"""/image: Glance v2 versions, image list/show, image download, schemas.

Create, upload and delete: api/image/upload.py.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import and_, select

from api.db.schema import images
from api.errors import error_middleware, image_body
from api.http import allowed, authorize, context, query_int
from api.image import images as db
from api.image import imports, members, patch, upload
from api.image.schemas import image_schema, images_schema, member_schema, members_schema
from api.keys import ENGINE, STORE, public_url
from api.middleware import token_auth
from cells import errors

DEFAULT_LIMIT = 25  # Glance's limit_param_default
MAX_LIMIT = 1000
VISIBILITIES = ("public", "private", "shared", "community", "all")
# the list's own parameters and the image attributes Glance filters on: a query key outside these names an
# extra property (Glance v2 flattens properties, so ?image_type=backup matches that property exactly)
NOT_PROPERTIES = frozenset({"limit", "marker", "sort", "sort_key", "sort_dir", "member_status", "visibility",
                            "os_hidden", "id", "name", "status", "owner", "disk_format", "container_format",
                            "tag", "size_min", "size_max", "created_at", "updated_at", "protected", "checksum",
                            "os_hash_value", "os_hash_algo", "virtual_size", "min_disk", "min_ram"})


# the Glance v2 minor versions whose features this API serves: 2.0 images, 2.1 members and PATCH,
# 2.3 deactivate/reactivate, 2.6 interoperable import (glance-direct) and /v2/info/import, 2.7 os_hidden,
# 2.8 stores (/v2/info/stores, one store). Not 2.2 (the tasks API), 2.4 (metadefs), 2.9 (copy-image),
# 2.10+ (cache, locations), though an image's own tasks (2.12's GET /v2/images/{id}/tasks) are served.
SERVED = ((8, "CURRENT"), (7, "SUPPORTED"), (6, "SUPPORTED"), (3, "SUPPORTED"), (1, "SUPPORTED"), (0, "SUPPORTED"))


async def versions(request: web.Request) -> web.Response:
    base = public_url(request)
    values = [{"id": f"v2.{minor}", "status": status, "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
              for minor, status in SERVED]
    # Glance answers an unversioned URL with 300 Multiple Choices; the version list itself with 200
    status = 200 if request.path.rstrip("/").endswith("/versions") else 300
    return web.json_response({"versions": values}, status=status)


async def list_images(request: web.Request) -> web.Response:
    ctx, q = context(request), request.query
    pairs = db.parse_sort(q)
    limit = min(query_int(q, "limit", DEFAULT_LIMIT) or 0, MAX_LIMIT)
    visibility = q.get("visibility")
    if visibility is not None and visibility not in VISIBILITIES:
        raise errors.Invalid(f"Invalid visibility value: {visibility}")
    member_status = q.get("member_status", "accepted")
    if member_status not in ("accepted", "pending", "rejected", "all"):
        raise errors.Invalid(f"Invalid status value: {member_status}")
    where = [db.visible(ctx) if visibility else db.listed(ctx, member_status), images.c.status != "deleted"]
    if visibility and visibility != "all":
        where.append(images.c.visibility == visibility)
    for key in ("id", "name", "status", "owner", "disk_format", "container_format"):
        if key in q:
            where.append(_match(key, q[key]))
    for key, value in q.items():
        if key not in NOT_PROPERTIES:  # Glance: any other key filters on an extra property of that name
            where.append(images.c.properties[key].as_string() == value)
    hidden = q.get("os_hidden", "false").lower() == "true"
    where.append(images.c.os_hidden.is_(hidden))
    async with request.config_dict[ENGINE].connect() as conn:
        if "marker" in q:
            marker = (await conn.execute(select(images).where(and_(images.c.id == q["marker"],
                                                                   db.visible(ctx))))).first()
            if marker is None:
                raise errors.MarkerNotFound(marker=q["marker"])
            where.append(db.after_marker(pairs, marker))
        rows = (await conn.execute(db.ordered(select(images).where(and_(*where)), pairs).limit(limit))).all()
    body: dict[str, Any] = {"images": [db.view(r) for r in rows], "first": _first(q), "schema": "/v2/schemas/images"}
    if rows and len(rows) == limit:
        params = [(k, v) for k, v in q.items() if k != "marker"] + [("marker", rows[-1].id)]
        body["next"] = "/v2/images?" + urlencode(params)
    return web.json_response(body)


def _match(key: str, value: str) -> Any:
    """Glance's filter syntax: an exact value, or "in:a,b" (values may be double-quoted)."""
    if key != "owner" and value.startswith("in:"):
        values = [v.strip().strip('"') for v in value[3:].split(",")]
        return images.c[key].in_(values)
    return images.c[key] == value


def _first(query: Any) -> str:
    params = [(k, v) for k, v in query.items() if k != "marker"]
    return "/v2/images" + ("?" + urlencode(params) if params else "")


async def show_image(request: web.Request) -> web.Response:
    async with request.config_dict[ENGINE].connect() as conn:
        row = await db.get(conn, context(request), request.match_info["image_id"])
    return web.json_response(db.view(row))


async def download(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    async with request.config_dict[ENGINE].connect() as conn:
        row = await db.get(conn, ctx, request.match_info["image_id"])
    if not ctx.is_image_reader_only:  # the compute hosts' fetch is not a tenant's download
        authorize(request, "download_image", {"owner": row.owner, "visibility": row.visibility,
                                              "member_id": ctx.project if row.visibility == "shared" else None})
    if row.status == "deactivated" and not allowed(request, "context_is_admin"):
        raise errors.Forbidden("The requested image has been deactivated. Image data download is forbidden.")
    if row.status != "active" or not row.content_address:
        # Glance: 204 No Content for an image without data
        return web.Response(status=204)
    path = request.config_dict[STORE].path(row.content_address)
    headers = {"Content-Type": "application/octet-stream"}
    if row.checksum:
        headers["Content-MD5"] = row.checksum  # Glance sends the hex md5 here, and clients expect that
    # FileResponse streams with sendfile off the loop and honours Range requests
    return web.FileResponse(path, headers=headers)


async def schema_image(request: web.Request) -> web.Response:
    return web.json_response(image_schema())


async def schema_images(request: web.Request) -> web.Response:
    return web.json_response(images_schema())


async def schema_member(request: web.Request) -> web.Response:
    return web.json_response(member_schema())


async def schema_members(request: web.Request) -> web.Response:
    return web.json_response(members_schema())


def _is_public(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and request.path in ("/image", "/image/", "/image/versions")


def make_image_app() -> web.Application:
    app = web.Application(middlewares=[error_middleware(image_body), token_auth(_is_public)])
    for path in ("", "/", "/versions"):
        app.router.add_get(path, versions)
    app.router.add_get("/v2/images", list_images)
    app.router.add_get("/v2/images/{image_id}", show_image)
    app.router.add_get("/v2/images/{image_id}/file", download)
    app.router.add_get("/v2/schemas/image", schema_image)
    app.router.add_get("/v2/schemas/images", schema_images)
    app.router.add_get("/v2/schemas/member", schema_member)
    app.router.add_get("/v2/schemas/members", schema_members)
    upload.add_routes(app)  # create, upload, delete: api/image/upload.py
    patch.add_routes(app)  # PATCH, deactivate, reactivate: api/image/patch.py
    members.add_routes(app)  # sharing: api/image/members.py
    imports.add_routes(app)  # stage, import, their tasks, the import and store info: api/image/imports.py
    return app
