"""createBackup (Nova's os-create-backup, issue 16): a snapshot kept in a rotation.

    {"createBackup": {"name": N, "backup_type": T, "rotation": R, "metadata"?}}
        202, Location: the image when R > 0 (2.45: {"image_id"} instead)

The backup is createImage's snapshot (api/compute/server_snapshots.py) under the action createBackup, its
image marked `image_type: backup` and `backup_type: T`. Once that image is active, the server's backups
of type T beyond the newest R are deleted, oldest first, as Nova's compute does (R = 0 keeps none, the new
one included). A volume-backed server is a 400, a server busy with a task a 409, before anything is made.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from api.compute import mappings, server_snapshots, service
from api.compute.schemas import NAME, SERVER_CREATE
from api.db.schema import images
from api.image import upload as image_upload
from api.keys import public_url
from api.validation import validate
from cells.context import RequestContext

ACTIONS = frozenset({"createBackup"})
BACKUP = {"type": "object", "required": ["name", "backup_type", "rotation"], "additionalProperties": False,
          "properties": {"name": NAME, "backup_type": {"type": "string"},
                         # Nova's non_negative_integer: an integer, or a string of digits
                         "rotation": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 0},
                         "metadata": SERVER_CREATE["properties"]["server"]["properties"]["metadata"]}}
IMAGE_ID_BODY_VERSION = (2, 45)  # as createImage: {"image_id"} and no Location header from 2.45


async def rotate(snaps: server_snapshots.Snapshots, owner: str | None, instance_uuid: str, backup_type: str,
                 rotation: int) -> None:
    """Delete the server's backups of `backup_type` beyond the newest `rotation` (protected ones stay)."""
    async with snaps.engine.connect() as conn:
        rows = (await conn.execute(select(images.c.id, images.c.properties, images.c.protected)
                                   .where(images.c.owner == owner)
                                   .order_by(images.c.created_at.desc(), images.c.id.desc()))).all()
    backups = [row for row in rows if _is_backup_of(row.properties or {}, instance_uuid, backup_type)]
    for row in backups[rotation:]:
        if not row.protected:
            await image_upload.delete_with_data(snaps.engine, snaps.store, str(row.id))


def _is_backup_of(props: dict[str, Any], instance_uuid: str, backup_type: str) -> bool:
    return (props.get("image_type") == "backup" and props.get("instance_uuid") == instance_uuid
            and props.get("backup_type") == backup_type)


async def backup_action(request: web.Request, ctx: RequestContext, server_id: str, spec: Any) -> web.Response:
    validate(BACKUP, spec, "createBackup")
    cc = service.ComputeContext.of(request)
    snaps = request.config_dict[server_snapshots.SNAPSHOTS]
    backup_type, rotation = str(spec["backup_type"]), int(spec["rotation"])
    uuid = str((await mappings.get(cc.db, ctx, server_id)).instance_uuid)  # 404 first, as Nova
    backup = server_snapshots.Backup(
        properties={"image_type": "backup", "backup_type": backup_type},
        then=lambda: rotate(snaps, ctx.project, uuid, backup_type, rotation))
    image_id = await server_snapshots.create(cc, ctx, snaps, server_id, spec["name"],
                                             dict(spec.get("metadata") or {}), backup)
    if cc.at_least(*IMAGE_ID_BODY_VERSION):
        return web.json_response({"image_id": image_id}, status=202)
    headers = {"Location": f"{public_url(request)}/image/v2/images/{image_id}"} if rotation > 0 else {}
    return web.Response(status=202, headers=headers)
