"""/compute/v2.1/servers/{server_id}/os-volume_attachments: Nova 2.1's volume attach API.

    GET    .../os-volume_attachments               {"volumeAttachments": [...]}
    GET    .../os-volume_attachments/{volume_id}   {"volumeAttachment": {...}}
    POST   .../os-volume_attachments               {"volumeAttachment": {"volumeId", "device"?}} -> 200
    DELETE .../os-volume_attachments/{volume_id}   202

The server is found through its instance mapping (another project's server or
a missing one: 404). Its cell's conductor moves the volume available ->
attaching in one conditional UPDATE (of two concurrent attaches one gets 400,
Cinder's "Invalid volume"), answers the attachment at once, and exports and
hot-plugs in its background: the volume shows attaching, then in-use (or back
to available with the reason when the export or the hot-plug failed). A
volume must be in the server's cell. At 2.1 an attachment's id is the volume's.

`add_volume_ids` fills the servers' `os-extended-volumes:volumes_attached`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from api.cell_router import Cell
from api.compute import mappings
from api.http import context, is_uuid, json_body
from api.keys import DB, ROUTER
from api.scatter import answered, scatter
from api.validation import validate
from api.volume import cells as volume_cells
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.volume import VolumeConductorAPI

ATTACH = {
    "type": "object", "required": ["volumeAttachment"], "additionalProperties": False,
    "properties": {"volumeAttachment": {
        "type": "object", "required": ["volumeId"], "additionalProperties": False,
        "properties": {"volumeId": {"type": "string", "format": "uuid"},
                       "device": {"type": ["string", "null"],
                                  "pattern": "(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$"}}}},
}


class VolumeAttachmentNotFound(errors.NotFound):
    code, msg = "volume_attachment_not_found", "Volume {volume_id} is not attached to server {server_id}."


def view(att: dict[str, Any]) -> dict[str, Any]:
    return {"id": att["volume_id"], "volumeId": att["volume_id"], "serverId": att["instance_uuid"],
            "device": att.get("device")}


async def _server(request: web.Request, ctx: RequestContext,
                  server_id: str | None = None) -> tuple[VolumeConductorAPI, str]:
    """The volume API of the server's cell and the server's uuid (default: the URL's); 404 for a server the
    caller cannot see."""
    mapping = await mappings.get(request.config_dict[DB], ctx, server_id or request.match_info["server_id"])
    return VolumeConductorAPI(request.config_dict[ROUTER].cell(mapping.cell_path)), str(mapping.instance_uuid)


async def _attachments(request: web.Request, ctx: RequestContext) -> tuple[VolumeConductorAPI, str, list[dict[str, Any]]]:
    api, uuid = await _server(request, ctx)
    return api, uuid, (await api.volume_attachments(ctx, [uuid])).get(uuid, [])


async def index(request: web.Request) -> web.Response:
    _, _, atts = await _attachments(request, context(request))
    return web.json_response({"volumeAttachments": [view(a) for a in atts]})


async def show(request: web.Request) -> web.Response:
    volume_id = request.match_info["volume_id"]
    _, uuid, atts = await _attachments(request, context(request))
    for att in atts:
        if att["volume_id"] == volume_id.lower():
            return web.json_response({"volumeAttachment": view(att)})
    raise VolumeAttachmentNotFound(volume_id=volume_id, server_id=uuid)


async def attach(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await json_body(request)
    validate(ATTACH, body)
    spec = body["volumeAttachment"]
    att = await attach_volume(request, ctx, request.match_info["server_id"], spec["volumeId"], spec.get("device"))
    return web.json_response({"volumeAttachment": view(att)})


async def attach_volume(request: web.Request, ctx: RequestContext, server_id: str, volume_id: str,
                        device: str | None) -> dict[str, Any]:
    """Attach a volume to a server (this API's POST and EC2's AttachVolume); the attachment record."""
    volume_id = volume_id.lower()
    api, uuid = await _server(request, ctx, server_id)
    try:
        att = await api.volume_attach(ctx, volume_id, uuid, device)
    except errors.VolumeNotFound:
        # the volume may live in another cell: a clearer 400 than "not found" (Nova: not in the same AZ)
        try:
            await volume_cells.find(request.config_dict[ROUTER], ctx, volume_id)
        except errors.VolumeNotFound:
            raise errors.VolumeNotFound(volume_id=volume_id) from None
        raise errors.Invalid(f"Invalid volume: volume {volume_id} is not in the same cell as server {uuid}") \
            from None
    return att


async def detach(request: web.Request) -> web.Response:
    await detach_volume(request, context(request), request.match_info["server_id"], request.match_info["volume_id"])
    return web.Response(status=202)


async def detach_volume(request: web.Request, ctx: RequestContext, server_id: str, volume_id: str) -> dict[str, Any]:
    """Detach a volume from a server (this API's DELETE and EC2's DetachVolume); the attachment record."""
    api, uuid = await _server(request, ctx, server_id)
    if not is_uuid(volume_id):
        raise VolumeAttachmentNotFound(volume_id=volume_id, server_id=uuid)
    try:
        return await api.volume_detach(ctx, volume_id.lower(), uuid)
    except errors.VolumeNotFound:
        raise VolumeAttachmentNotFound(volume_id=volume_id, server_id=uuid) from None


async def add_volume_ids(request: web.Request, ctx: RequestContext, records: Sequence[dict[str, Any]]) -> None:
    """Set each record's "volumes_attached" (volume ids, oldest attachment first), one call per cell.
    A cell that does not answer in time leaves its servers' lists empty (logged), never fails the view."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("cell") and not rec.get("down"):
            by_cell[rec["cell"]].append(rec)
    if not by_cell:
        return
    router = request.config_dict[ROUTER]

    async def one(cell: Cell, bounded: RequestContext) -> dict[str, list[dict[str, Any]]]:
        return await VolumeConductorAPI(cell).volume_attachments(bounded, [r["uuid"] for r in by_cell[cell.path]])
    cells = [router.cells[path] for path in by_cell if path in router.cells]  # no route: nothing to ask
    for cell, found in answered(await scatter(cells, ctx, router.bound, one), "the volumes of server views"):
        for rec in by_cell[cell.path]:
            rec["volumes_attached"] = [a["volume_id"] for a in found.get(rec["uuid"], [])]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers/{server_id}/os-volume_attachments", index)
    app.router.add_post("/v2.1/servers/{server_id}/os-volume_attachments", attach)
    app.router.add_get("/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", show)
    app.router.add_delete("/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}", detach)
