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

The handlers parse and render; api/compute/service.py (volume_attachments, attach_volume,
detach_volume) does the rest, for EC2's volume calls too. `add_volume_ids` fills the servers'
`os-extended-volumes:volumes_attached`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from api.cell_router import Cell, Listed, is_down
from api.compute import service
from api.http import context, json_body
from api.scatter import answered, scatter
from api.validation import validate
from cells.context import RequestContext
from cells.objects.records import ShownInstance, shown
from cells.rpcapi.volume import VolumeConductorAPI

ATTACH = {
    "type": "object", "required": ["volumeAttachment"], "additionalProperties": False,
    "properties": {"volumeAttachment": {
        "type": "object", "required": ["volumeId"], "additionalProperties": False,
        "properties": {"volumeId": {"type": "string", "format": "uuid"},
                       "device": {"type": ["string", "null"],
                                  "pattern": "(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$"}}}},
}


def view(att: dict[str, Any]) -> dict[str, Any]:
    return {"id": att["volume_id"], "volumeId": att["volume_id"], "serverId": att["instance_uuid"],
            "device": att.get("device")}


async def _attachments(request: web.Request) -> tuple[str, list[dict[str, Any]]]:
    return await service.volume_attachments(service.ComputeContext.of(request), context(request),
                                            request.match_info["server_id"])


async def index(request: web.Request) -> web.Response:
    _, atts = await _attachments(request)
    return web.json_response({"volumeAttachments": [view(a) for a in atts]})


async def show(request: web.Request) -> web.Response:
    volume_id = request.match_info["volume_id"]
    uuid, atts = await _attachments(request)
    for att in atts:
        if att["volume_id"] == volume_id.lower():
            return web.json_response({"volumeAttachment": view(att)})
    raise service.VolumeAttachmentNotFound(volume_id=volume_id, server_id=uuid)


async def attach(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await json_body(request)
    validate(ATTACH, body)
    spec = body["volumeAttachment"]
    att = await service.attach_volume(service.ComputeContext.of(request), ctx, request.match_info["server_id"],
                                      spec["volumeId"], spec.get("device"))
    return web.json_response({"volumeAttachment": view(att)})


async def detach(request: web.Request) -> web.Response:
    await service.detach_volume(service.ComputeContext.of(request), context(request), request.match_info["server_id"],
                                request.match_info["volume_id"])
    return web.Response(status=202)


async def add_volume_ids(cc: service.ComputeContext, ctx: RequestContext, records: Sequence[Listed]) -> None:
    """Set each record's "volumes_attached" (volume ids, oldest attachment first), one call per cell.
    A cell that does not answer in time leaves its servers' lists empty (logged), never fails the view."""
    by_cell: dict[str, list[ShownInstance]] = defaultdict(list)
    for rec in records:
        if not is_down(rec) and rec["cell"]:
            by_cell[rec["cell"]].append(shown(rec))
    if not by_cell:
        return
    router = cc.router

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
