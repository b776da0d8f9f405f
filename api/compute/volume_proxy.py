"""Nova's os-volumes and os-snapshots proxies of the volume API (api/volume), up to 2.35 (from 2.36 a 404, as
Nova):

    GET  /os-volumes[/detail][?offset=&limit=]   POST /os-volumes {"volume": {size, display_name, display_description,
                                                 volume_type, metadata, availability_zone, snapshot_id}}
    GET  /os-volumes/{id}       DELETE /os-volumes/{id} (202)
    GET  /os-snapshots[/detail] POST /os-snapshots {"snapshot": {volume_id, force, display_name,
                                                     display_description}}
    GET  /os-snapshots/{id}     DELETE /os-snapshots/{id} (202)

The volumes are the cells' (the same create, quota and delete as /volume/v3); only Nova's views and
request names differ: {id, status, size, availabilityZone, createdAt, displayName, displayDescription,
volumeType, snapshotId, metadata, attachments} ([{}] for a volume attached nowhere, as Nova's) and
{id, volumeId, status, size, createdAt, displayName, displayDescription}.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import microversions
from api.http import context, is_uuid, json_body, query_int
from api.keys import ROUTER
from api.timeutil import iso_naive_micro
from api.validation import validate
from api.volume import cells as volume_cells
from api.volume import snapshots as volume_snapshots
from api.volume import volumes as volume_volumes
from api.volume.views import attachments
from cells import errors

PROXY_REMOVED = (2, 36)
MAX_LIMIT = 1000
_TEXT = {"type": "string", "maxLength": 255}
VOLUME_CREATE = {"type": "object", "required": ["volume"], "additionalProperties": False, "properties": {"volume": {
    "type": "object", "required": ["size"], "additionalProperties": False, "properties": {
        "size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
        "display_name": _TEXT, "display_description": _TEXT, "volume_type": _TEXT, "availability_zone": _TEXT,
        "snapshot_id": _TEXT, "metadata": {"type": "object"}}}}}
SNAPSHOT_CREATE = {"type": "object", "required": ["snapshot"], "additionalProperties": False, "properties": {
    "snapshot": {"type": "object", "required": ["volume_id"], "additionalProperties": False, "properties": {
        "volume_id": {"type": "string", "minLength": 1}, "display_name": _TEXT, "display_description": _TEXT,
        "force": {"type": ["boolean", "string"]}}}}}


def _check_version(request: web.Request) -> None:
    if microversions.version_of(request) >= PROXY_REMOVED:
        raise web.HTTPNotFound()


def limited(request: web.Request, items: list[Any]) -> list[Any]:
    """Nova's common.limited: ?offset and ?limit (non-negative integers, 400 otherwise), at most 1000 a page."""
    offset = query_int(request.query, "offset", 0, message="offset param must be an integer") or 0
    limit = query_int(request.query, "limit", MAX_LIMIT, message="limit param must be an integer")
    return items[offset:offset + min(MAX_LIMIT if limit is None else limit, MAX_LIMIT)]


def volume_view(record: dict[str, Any]) -> dict[str, Any]:
    attached = [{"id": a["attachment_id"], "volumeId": a["volume_id"], "serverId": a["server_id"],
                 **({"device": a["device"]} if a.get("device") else {})} for a in attachments(record)]
    return {"id": record["id"], "status": record["status"], "size": int(record["size"]),
            "availabilityZone": record.get("availability_zone") or "nova",
            "createdAt": iso_naive_micro(record.get("created_at")), "displayName": record.get("name"),
            "displayDescription": record.get("description"), "volumeType": record.get("volume_type"),
            "snapshotId": record.get("snapshot_id"), "metadata": dict(record.get("metadata") or {}),
            "attachments": attached or [{}]}


def snapshot_view(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "volumeId": record["volume_id"], "status": record["status"],
            "size": int(record["size"]), "createdAt": iso_naive_micro(record.get("created_at")),
            "displayName": record.get("name"), "displayDescription": record.get("description")}


async def list_volumes(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    records = await volume_cells.list_all(request.config_dict[ROUTER], ctx, {"project_id": ctx.project})
    return web.json_response({"volumes": [volume_view(r) for r in limited(request, records)]})


async def create_volume(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    body = await json_body(request)
    validate(VOLUME_CREATE, body)
    item = body["volume"]
    spec = volume_volumes.validate_create({"volume": {
        "size": item["size"], "name": item.get("display_name"), "description": item.get("display_description"),
        "volume_type": item.get("volume_type"), "availability_zone": item.get("availability_zone"),
        "snapshot_id": item.get("snapshot_id"), "metadata": item.get("metadata")}})
    record = await volume_volumes.create_volume(request, ctx, str(ctx.project), spec)
    return web.json_response({"volume": volume_view(record)})


async def show_volume(request: web.Request) -> web.Response:
    _check_version(request)
    _, record = await volume_volumes.find(request, context(request), request.match_info["volume_id"])
    return web.json_response({"volume": volume_view(record)})


async def delete_volume(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    api, record = await volume_volumes.find(request, ctx, request.match_info["volume_id"])
    await api.volume_delete(ctx, record["id"], cascade=False)
    return web.Response(status=202)


async def list_snapshots(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    records = await volume_cells.list_snapshots(request.config_dict[ROUTER], ctx, {"project_id": ctx.project})
    return web.json_response({"snapshots": [snapshot_view(r) for r in limited(request, records)]})


async def create_snapshot(request: web.Request) -> web.Response:
    _check_version(request)
    ctx = context(request)
    body = await json_body(request)
    validate(SNAPSHOT_CREATE, body)
    item = body["snapshot"]
    spec = volume_snapshots.validate_create({"snapshot": {
        "volume_id": item["volume_id"], "force": item.get("force", False), "name": item.get("display_name"),
        "description": item.get("display_description")}})
    record = await volume_snapshots.create_snapshot(request, ctx, str(ctx.project), spec)
    return web.json_response({"snapshot": snapshot_view(record)})


async def _snapshot(request: web.Request) -> tuple[Any, dict[str, Any]]:
    sid = request.match_info["snapshot_id"]
    if not is_uuid(sid):
        raise errors.SnapshotNotFound(snapshot_id=sid)
    return await volume_cells.find_snapshot(request.config_dict[ROUTER], context(request), sid.lower())


async def show_snapshot(request: web.Request) -> web.Response:
    _check_version(request)
    _, record = await _snapshot(request)
    return web.json_response({"snapshot": snapshot_view(record)})


async def delete_snapshot(request: web.Request) -> web.Response:
    _check_version(request)
    api, record = await _snapshot(request)
    await api.snapshot_delete(context(request), record["id"])
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    for name, listing, create, show, delete in (
            ("os-volumes", list_volumes, create_volume, show_volume, delete_volume),
            ("os-snapshots", list_snapshots, create_snapshot, show_snapshot, delete_snapshot)):
        app.router.add_get(f"/v2.1/{name}", listing)
        app.router.add_get(f"/v2.1/{name}/detail", listing)
        app.router.add_post(f"/v2.1/{name}", create)
        key = "volume_id" if name == "os-volumes" else "snapshot_id"
        app.router.add_get(f"/v2.1/{name}/{{{key}}}", show)
        app.router.add_delete(f"/v2.1/{name}/{{{key}}}", delete)
