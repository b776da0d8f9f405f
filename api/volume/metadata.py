"""/volume/v3/{project_id}/volumes/{id}/metadata and /snapshots/{id}/metadata: Cinder's metadata routes.

    GET    .../metadata          {"metadata": {...}}
    POST   .../metadata          {"metadata": {...}} merged into what is there; answers the whole
    PUT    .../metadata          {"metadata": {...}} instead of what is there
    GET    .../metadata/{key}    {"meta": {key: value}} (404 when the key is not there)
    PUT    .../metadata/{key}    {"meta": {key: value}}: one key, the URL's (400 otherwise)
    DELETE .../metadata/{key}    200 (404 when the key is not there)

A change is checked here (api/volume/volumes.py validate_metadata: strings, sizes, cellcloud:target) and
made by the cell's conductor in one write unit (cells/conductor/flows/volume_states.py update_metadata).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from api.http import context, json_body
from api.volume import snapshots, volumes
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.volume import VolumeConductorAPI


async def _target(request: web.Request, ctx: RequestContext) -> tuple[VolumeConductorAPI, dict[str, Any], bool]:
    """(the conductor, the record, whether it is a snapshot) the route names."""
    if "snapshot_id" in request.match_info:
        api, record = await snapshots.find(request, ctx)
        return api, record, True
    api, record = await volumes.find(request, ctx, request.match_info["volume_id"])
    return api, record, False


async def _change(request: web.Request, ctx: RequestContext, args: dict[str, Any]) -> dict[str, str]:
    api, record, is_snapshot = await _target(request, ctx)
    if is_snapshot:
        changed = await api.snapshot_action(ctx, record["id"], "update_metadata", args)
    else:
        changed = await api.volume_action(ctx, record["id"], "update_metadata", args)
    return dict(changed.get("metadata") or {})


def _body(body: Any, key: str) -> dict[str, str]:
    if not isinstance(body, Mapping) or key not in body:
        raise errors.Invalid(f"Malformed request body: no '{key}'")
    return volumes.validate_metadata(body[key])


async def index(request: web.Request) -> web.Response:
    _, record, _ = await _target(request, context(request))
    return web.json_response({"metadata": dict(record.get("metadata") or {})})


async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    given = _body(await json_body(request), "metadata")
    return web.json_response({"metadata": await _change(request, ctx, {"set": given})})


async def update_all(request: web.Request) -> web.Response:
    ctx = context(request)
    given = _body(await json_body(request), "metadata")
    return web.json_response({"metadata": await _change(request, ctx, {"set": given, "replace": True})})


async def show(request: web.Request) -> web.Response:
    ctx, key = context(request), request.match_info["key"]
    _, record, is_snapshot = await _target(request, ctx)
    meta = record.get("metadata") or {}
    if key not in meta:
        raise errors.MetadataItemNotFound(what="Snapshot" if is_snapshot else "Volume", id=record["id"], key=key)
    return web.json_response({"meta": {key: meta[key]}})


async def update(request: web.Request) -> web.Response:
    ctx, key = context(request), request.match_info["key"]
    given = _body(await json_body(request), "meta")
    if list(given) != [key]:
        raise errors.Invalid("Request body and URI mismatch: give one key, the one the URL names")
    await _change(request, ctx, {"set": given})
    return web.json_response({"meta": given})


async def delete(request: web.Request) -> web.Response:
    ctx = context(request)
    await _change(request, ctx, {"delete": request.match_info["key"]})
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    for base in ("/v3/{project_id}/volumes/{volume_id}/metadata", "/v3/{project_id}/snapshots/{snapshot_id}/metadata"):
        app.router.add_get(base, index)
        app.router.add_post(base, create)
        app.router.add_put(base, update_all)
        app.router.add_get(base + "/{key}", show)
        app.router.add_put(base + "/{key}", update)
        app.router.add_delete(base + "/{key}", delete)
