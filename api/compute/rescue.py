"""Rescue and unrescue through POST /compute/v2.1/servers/{id}/action (Nova's os-rescue, issue 16):

    {"rescue": null | {"adminPass"?, "rescue_image_ref"?}}   200 {"adminPass": ...}; the server goes RESCUE
    {"unrescue": null}                                       202; ACTIVE on its own disk again

The rescue guest boots from `rescue_image_ref`, or the image the server was booted from, with the
server's own disk attached second (node/compute/rescue.py). The image must be one the caller may use
and active (400 otherwise); a server booted from a volume is a 409, as Nova before stable rescue.
Rescue from active, stopped or error; unrescue from RESCUE only (409 with Nova's message otherwise).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import mappings, service
from api.compute.server_create import server_admin_pass
from api.http import is_uuid
from api.image import images as image_db
from api.validation import validate
from cells import errors
from cells.context import RequestContext

ACTIONS = ("rescue", "unrescue")
RESCUE = {"type": ["object", "null"], "additionalProperties": False,
          "properties": {"adminPass": {"type": "string"},
                         "rescue_image_ref": {"type": "string", "format": "uuid"}}}
UNRESCUE = {"type": ["object", "null"], "properties": {}, "additionalProperties": False}


async def rescue_image(cc: service.ComputeContext, ctx: RequestContext, ref: str) -> dict[str, Any]:
    """The record the compute boots the rescue guest from: an active image the caller may see (400)."""
    if not is_uuid(ref):
        raise errors.Invalid("Invalid rescue_image_ref provided.")
    async with cc.engine.connect() as conn:
        try:
            image = await image_db.get(conn, ctx, ref)
        except errors.ImageNotFound as exc:
            raise errors.Invalid(exc.message) from None
        if image.status != "active":
            raise errors.Invalid(f"Image {image.id} is not active.")
        record: dict[str, Any] = await conn.run_sync(image_db.boot_snapshot_of, ctx, image)
        return record


async def rescue_action(request: web.Request, ctx: RequestContext, server_id: str, name: str,
                        spec: Any) -> web.Response:
    cc = service.ComputeContext.of(request)
    mapping = await mappings.get(cc.db, ctx, server_id)  # 404 for a server the caller may not see
    if name == "unrescue":
        validate(UNRESCUE, spec, name)
        await service.act(cc, ctx, server_id, "unrescue")
        return web.Response(status=202)
    validate(RESCUE, spec, name)
    spec = spec or {}
    ref = spec.get("rescue_image_ref")
    if ref is None:  # Nova: the image the server was booted from
        own = (await service.get(cc, ctx, server_id)).get("image") or {}
        if own.get("root_volume_id") or not own.get("id"):
            raise errors.Conflict(reason=f"Cannot 'rescue' instance {mapping.instance_uuid}: it was booted "
                                         "from a volume, and rescue of such a server is not supported by "
                                         "this cloud yet.")
        ref = str(own["id"])
    image = await rescue_image(cc, ctx, ref)
    await service.act(cc, ctx, server_id, "rescue", {"image": image})
    return web.json_response({"adminPass": server_admin_pass(spec)}, status=200)
