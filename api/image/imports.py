"""Glance's interoperable image import (API 2.6+), its discovery (2.6 /v2/info/import, 2.8 stores) and the
tasks of an image (2.12).

    GET  /v2/info/import         the import methods served: glance-direct only
    GET  /v2/info/stores         the one store (the API host's content-addressed image store)
    GET  /v2/info/stores/detail  the same with its type (stores_info_detail: admins)
    PUT  /v2/images/{id}/stage   queued -> uploading: the data, bounded and inspected as an upload
                                 (api/image/upload.py), kept but not yet the image's
    POST /v2/images/{id}/import  uploading -> active (202), recorded as an api_image_import task
    GET  /v2/images/{id}/tasks   the image's import tasks, to whoever sees the image

Not served: `web-download` (the API host would fetch any URL a tenant names, inside the cloud's network:
an SSRF by design), `glance-download` (no other region to pull from) and `copy-image` (one store only);
asking for one is a 400, as Glance answers a method it does not enable.
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import and_, insert, select, update

from api.db.schema import image_tasks, images
from api.http import authorize, context, json_body
from api.image import images as db
from api.image.bounds import Bounds
from api.image.upload import CHUNK, save_data
from api.keys import CLUSTER, ENGINE, STORE
from api.timeutil import iso_micro, utcnow
from cells import errors

METHODS = db.IMPORT_METHODS
STORE_ID = db.STORE_ID
TASK_TTL = timedelta(hours=48)  # Glance's task_time_to_live: what expires_at says


def _store(detail: bool) -> dict[str, Any]:
    store: dict[str, Any] = {"id": STORE_ID, "description": "The image store on the API host (content-addressed "
                             "files, checksummed; compute hosts fetch from it)", "default": True}
    if detail:
        store.update({"type": "file", "weight": 0, "properties": {}})
    return store


async def info_import(request: web.Request) -> web.Response:
    return web.json_response({"import-methods": {"description": "Import methods available.", "type": "array",
                                                 "value": list(METHODS)}})


async def info_stores(request: web.Request) -> web.Response:
    return web.json_response({"stores": [_store(detail=False)]})


async def info_stores_detail(request: web.Request) -> web.Response:
    authorize(request, "stores_info_detail")
    return web.json_response({"stores": [_store(detail=True)]})


async def _changeable(request: web.Request) -> Any:
    """The image the path names, if the caller sees it (404) and may change it (modify_image: 403)."""
    async with request.config_dict[ENGINE].connect() as conn:
        row = await db.get(conn, context(request), request.match_info["image_id"])
    authorize(request, "modify_image", {"owner": row.owner, "visibility": row.visibility})
    return row


async def stage(request: web.Request) -> web.Response:
    """PUT /v2/images/{id}/stage: Glance's stage call (no policy of its own: modify_image, as Glance)."""
    row = await _changeable(request)
    if not row.disk_format or not row.container_format:
        raise errors.Invalid("Properties disk_format, container_format must be set prior to staging data.")
    if row.status != "queued":
        raise errors.Conflict(f"Image status transition from {row.status} to uploading is not allowed")
    await save_data(request.config_dict[ENGINE], request.config_dict[STORE], Bounds.of(request.config_dict[CLUSTER].api),
                    row, request.content.iter_chunked(CHUNK), request.content_length, staged=True)
    return web.Response(status=204)


def _import_request(body: Any) -> dict[str, Any]:
    """The validated import body: {"method": {"name"}, "stores"?, "all_stores"?, "all_stores_must_succeed"?}."""
    method = body.get("method") if isinstance(body, dict) else None
    name = method.get("name") if isinstance(method, dict) else None
    if not isinstance(name, str):
        raise errors.Invalid("Invalid input: the import body needs method.name")
    if name not in METHODS:
        raise errors.Invalid(f"Import method {name} is not valid: this cloud serves {', '.join(METHODS)}.")
    stores = body.get("stores")
    if stores is not None and (not isinstance(stores, list) or any(s != STORE_ID for s in stores)):
        raise errors.Invalid(f"Invalid stores {stores!r}: the only store is {STORE_ID!r}.")
    for flag in ("all_stores", "all_stores_must_succeed"):
        if flag in body and not isinstance(body[flag], bool):
            raise errors.Invalid(f"Invalid value for {flag}: expected a boolean.")
    return {k: v for k, v in body.items() if k in ("method", "stores", "all_stores", "all_stores_must_succeed")}


async def import_image(request: web.Request) -> web.Response:
    """POST /v2/images/{id}/import: a staged image becomes active. The data is in the store already
    (staged, inspected, checksummed), so the task ends at once; the status change is one conditional UPDATE:
    of two imports, one wins and the other is a 409."""
    row = await _changeable(request)  # an image the caller may not see is a 404 whatever the body says
    import_req = _import_request(await json_body(request))
    ctx = context(request)
    if row.status != "uploading" or not row.content_address:
        raise errors.Conflict("Image needs to be staged before 'glance-direct' method can be used")
    now = utcnow()
    async with request.config_dict[ENGINE].begin() as conn:
        done = await conn.execute(update(images).where(and_(
            images.c.id == row.id, images.c.status == "uploading", images.c.content_address.is_not(None)))
            .values(status="active", updated_at=now))
        if done.rowcount != 1:
            raise errors.Conflict("Image needs to be staged before 'glance-direct' method can be used")
        await conn.execute(insert(image_tasks).values(
            id=str(uuid.uuid4()), image_id=row.id, type="api_image_import", status="success",
            input={"image_id": row.id, "import_req": import_req, "backend": [STORE_ID]},
            result={"image_id": row.id}, message="", owner=ctx.project, user_id=ctx.user,
            request_id=ctx.request_id, created_at=now, updated_at=now))
    return web.Response(status=202)


def _task_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "type": row.type, "status": row.status, "owner": row.owner, "input": row.input,
            "result": row.result, "message": row.message, "image_id": row.image_id, "request_id": row.request_id,
            "user_id": row.user_id, "created_at": iso_micro(row.created_at), "updated_at": iso_micro(row.updated_at),
            "expires_at": iso_micro(row.updated_at + TASK_TTL)}


async def image_tasks_list(request: web.Request) -> web.Response:
    """GET /v2/images/{id}/tasks (2.12): the image's import tasks, newest first; an unseen image is a 404."""
    async with request.config_dict[ENGINE].connect() as conn:
        row = await db.get(conn, context(request), request.match_info["image_id"])
        tasks = (await conn.execute(select(image_tasks).where(image_tasks.c.image_id == row.id)
                                    .order_by(image_tasks.c.created_at.desc()))).all()
    return web.json_response({"tasks": [_task_view(t) for t in tasks]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/info/import", info_import)
    app.router.add_get("/v2/info/stores", info_stores)
    app.router.add_get("/v2/info/stores/detail", info_stores_detail)
    app.router.add_put("/v2/images/{image_id}/stage", stage)
    app.router.add_post("/v2/images/{image_id}/import", import_image)
    app.router.add_get("/v2/images/{image_id}/tasks", image_tasks_list)
