"""/volume/v3/{project_id}/snapshots: create, list (brief and detail), show, update, delete (issue 18).

A snapshot is made in the cell of its volume (the API asks the cells which one holds it). Validate ->
quota -> act, as volumes: the body is checked whole, then the project's snapshots and gigabytes quotas
(gigabytes counts volumes and snapshots together, as Cinder) are checked and the snapshot reserved in one
write unit of the API DB (api/quota.py reserve_volume), then the cell's conductor takes it (202,
status `creating`; the volume host copies the volume and it becomes `available`, or `error` with the
reason). An in-use volume needs `force` (Cinder's crash-consistent snapshot).
"""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import select

from api import quota
from api.cell_router import CellRouter
from api.db.schema import group_snapshot_members
from api.http import allowed, context, is_uuid, json_body, query_int
from api.keys import DB, ROUTER
from api.timeutil import iso_naive_micro
from api.volume import actions, cells
from api.volume.microversions import version_of
from api.volume.volumes import (
    MAX_LIMIT,
    _names,
    _project,
    _sort,
    after_marker,
    sort_records,
    validate_metadata,
    validate_update,
)
from api.volume.volumes import _item as volume_item
from cells import errors
from cells.context import RequestContext
from cells.db.engine import Database
from cells.rpcapi.volume import VolumeConductorAPI

CREATE_KEYS = {"volume_id", "force", "name", "display_name", "description", "display_description", "metadata"}
_sm = group_snapshot_members.c
_TRUE, _FALSE = ("true", "1", "yes", "on", "t", "y"), ("false", "0", "no", "off", "f", "n")


def _item(body: Any) -> Mapping[str, Any]:
    return volume_item(body, "snapshot")


def _force(raw: Any) -> bool:
    """Cinder's force: a boolean or a boolean string; anything else is a 400."""
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in (*_TRUE, *_FALSE):
        return raw.strip().lower() in _TRUE
    raise errors.Invalid(f"Invalid value '{raw}' for force. Accepted values are true and false.")


def validate_create(body: Any) -> dict[str, Any]:
    item = _item(body)
    unknown = sorted(set(item) - CREATE_KEYS)
    if unknown:
        raise errors.Invalid(f"Invalid input: unexpected attribute(s) {', '.join(unknown)} in snapshot")
    vid = item.get("volume_id")
    if vid is None or (isinstance(vid, str) and not is_uuid(vid)):
        raise errors.VolumeNotFound(volume_id=vid)  # Cinder looks the volume up: no such volume, a 404
    if not isinstance(vid, str):
        raise errors.Invalid("Invalid input received: a snapshot needs the volume_id of a volume")
    return {"volume_id": vid.lower(), "force": _force(item.get("force")), **_names(item),
            "metadata": validate_metadata(item.get("metadata"))}


# --- views ---------------------------------------------------------------------------------

def snapshot_detail(record: dict[str, Any]) -> dict[str, Any]:
    """Cinder 3.0's snapshot view (with the extended snapshot attributes)."""
    done = record["status"] in ("available", "deleting")
    return {"id": record["id"], "created_at": iso_naive_micro(record.get("created_at")),
            "updated_at": iso_naive_micro(record.get("updated_at")), "name": record.get("name"),
            "description": record.get("description"), "volume_id": record["volume_id"],
            "status": record["status"], "size": int(record["size"]), "metadata": dict(record.get("metadata") or {}),
            "os-extended-snapshot-attributes:progress": record.get("progress") or ("100%" if done else "0%"),
            "os-extended-snapshot-attributes:project_id": record["project_id"]}


def snapshot_brief(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snapshot_detail(record).items() if not k.startswith("os-extended")}


# --- handlers ---------------------------------------------------------------------------------

async def find(request: web.Request, ctx: RequestContext) -> tuple[VolumeConductorAPI, dict[str, Any]]:
    sid = request.match_info["snapshot_id"]
    if not is_uuid(sid):
        raise errors.SnapshotNotFound(snapshot_id=sid)
    return await cells.find_snapshot(request.config_dict[ROUTER], ctx, sid.lower())


async def create_snapshot(request: web.Request, ctx: RequestContext, project: str,
                          spec: dict[str, Any]) -> dict[str, Any]:
    """Create a snapshot from a validated spec (this API's POST and EC2's CreateSnapshot); its record."""
    if not is_uuid(spec["volume_id"]):
        raise errors.VolumeNotFound(volume_id=spec["volume_id"])
    return await make_snapshot(request.config_dict[ROUTER], request.config_dict[DB], ctx, project, spec)


async def make_snapshot(router: CellRouter, db: Database, ctx: RequestContext, project: str,
                        spec: dict[str, Any]) -> dict[str, Any]:
    """create_snapshot's work, for a caller holding the router and the API DB (and a createImage of a server
    booted from a volume: api/compute/volume_backed_images.py)."""
    api, volume = await cells.find(router, ctx, str(spec["volume_id"]).lower())
    sid, size = str(uuidlib.uuid4()), int(volume["size"])
    listed, listed_ids, since = await cells.project_usage(router, ctx, project)
    await db.write(lambda conn: quota.reserve_volume(conn, project, sid, size, listed, listed_ids, "snapshot",
                                                     volume.get("volume_type"), since))
    snapshot = {"id": sid, "volume_id": volume["id"], "project_id": project, "user_id": ctx.user,
                "name": spec.get("name"), "description": spec.get("description"), "metadata": spec["metadata"]}
    try:
        made = await api.snapshot_create(ctx, snapshot, force=spec["force"])
    except BaseException:
        await asyncio.shield(db.write(lambda conn: quota.release_volume(conn, sid)))
        raise
    await db.write(lambda conn: quota.volume_made(conn, sid))
    return made


async def create(request: web.Request) -> web.Response:
    ctx, project = context(request), _project(request)
    spec = validate_create(await json_body(request))
    record = await create_snapshot(request, ctx, project, spec)
    return web.json_response({"snapshot": snapshot_brief(record)}, status=202)  # as Cinder: no extended attributes


def _filters(request: web.Request, ctx: RequestContext, query: Mapping[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {"project_id": ctx.project}
    if query.get("all_tenants") not in (None, "0", "false", "False") and allowed(request, "volume:get_all_tenants"):
        filters.pop("project_id")
    for key in ("name", "status", "volume_id"):
        if query.get(key):
            filters[key] = query[key]
    return filters


async def _list(request: web.Request, detail: bool) -> web.Response:
    ctx, query = context(request), request.query
    order = _sort(query)  # a bad sort key, limit or offset is a 400 before any cell is asked
    limit = min(query_int(query, "limit", MAX_LIMIT) or 0, MAX_LIMIT)
    offset = query_int(query, "offset", 0) or 0  # Cinder's offset, counted after the marker
    records = await cells.list_snapshots(request.config_dict[ROUTER], ctx, _filters(request, ctx, query))
    records = after_marker(sort_records(records, order), query)[offset:offset + limit]
    view = snapshot_detail if detail else snapshot_brief
    return web.json_response({"snapshots": [await _in_group(request, view(r)) for r in records]})


async def _in_group(request: web.Request, view: dict[str, Any]) -> dict[str, Any]:
    """3.14: the group snapshot a snapshot belongs to (api/volume/group_snapshots.py)."""
    if version_of(request) < (3, 14):
        return view
    return {**view, "group_snapshot_id": (await group_snapshots_of(request, [view["id"]])).get(view["id"])}


async def group_snapshots_of(request: web.Request, snapshot_ids: list[str]) -> dict[str, str]:
    """snapshot id -> the group snapshot holding it (api/volume/group_snapshots.py)."""
    if not snapshot_ids:
        return {}
    rows = await request.config_dict[DB].read(lambda conn: conn.execute(
        select(_sm.snapshot_id, _sm.group_snapshot_id).where(_sm.snapshot_id.in_(snapshot_ids))).all())
    return {r.snapshot_id: r.group_snapshot_id for r in rows}


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def show(request: web.Request) -> web.Response:
    _, record = await find(request, context(request))
    return web.json_response({"snapshot": await _in_group(request, snapshot_detail(record))})


async def update(request: web.Request) -> web.Response:
    ctx = context(request)
    values = validate_update(await json_body(request), "snapshot")
    api, record = await find(request, ctx)
    if values:
        record = await api.snapshot_update(ctx, record["id"], values)
    return web.json_response({"snapshot": snapshot_brief(record)})


async def delete(request: web.Request) -> web.Response:
    ctx = context(request)
    api, record = await find(request, ctx)
    if await group_snapshots_of(request, [record["id"]]):
        raise errors.Invalid(f"Invalid snapshot: snapshot {record['id']} is part of a group snapshot and cannot be "
                             "deleted alone")
    await api.snapshot_delete(ctx, record["id"])
    return web.Response(status=202)


async def action(request: web.Request) -> web.Response:
    """POST .../snapshots/{id}/action: os-reset_status, os-force_delete (api/volume/actions.py)."""
    ctx = context(request)
    body = await json_body(request)
    api, record = await find(request, ctx)
    return await actions.snapshot_action(request, ctx, api, record, body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/{project_id}/snapshots", index)
    app.router.add_post("/v3/{project_id}/snapshots", create)
    app.router.add_get("/v3/{project_id}/snapshots/detail", detail)
    app.router.add_get("/v3/{project_id}/snapshots/{snapshot_id}", show)
    app.router.add_put("/v3/{project_id}/snapshots/{snapshot_id}", update)
    app.router.add_delete("/v3/{project_id}/snapshots/{snapshot_id}", delete)
    app.router.add_post("/v3/{project_id}/snapshots/{snapshot_id}/action", action)
