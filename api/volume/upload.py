"""POST /volume/v3/{project_id}/volumes/{id}/action os-volume_upload_image (issue 18): a volume to an image.

The API makes the image record (queued, the caller's, Glance's create rules and checks), then asks the
volume's cell to upload it (cells/conductor/flows/volume_upload.py): the volume host PUTs the bytes to the
image API with the caller's token, so the image store inspects, hashes and bounds them as any upload.
The image gets min_disk = the volume's size and the properties of the image the volume was made from
(an AMI's kernel_id, ramdisk_id, os_command_line): booting it boots what the volume booted. As a raw or a
qcow2 image (disk_format; the volume host converts with qemu-img, a standalone file without backing chain).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert

from api.db.schema import images
from api.http import authorize
from api.image.upload import validate_create as validate_image
from api.keys import ENGINE
from api.volume.microversions import version_of
from cells import errors
from cells.conductor.flows.volume_upload import UPLOAD_FORMATS
from cells.context import RequestContext
from cells.rpcapi.volume import VolumeConductorAPI

KEYS = {"image_name", "force", "disk_format", "container_format", "visibility", "protected"}
CARRIED = ("kernel_id", "ramdisk_id", "os_command_line")  # what booting the image needs from the volume's


def validate(args: Any) -> dict[str, Any]:
    if not isinstance(args, Mapping):
        raise errors.Invalid("Invalid input received: os-volume_upload_image takes a map")
    unknown = sorted(set(args) - KEYS)
    if unknown:
        raise errors.Invalid(f"Invalid input received: unexpected {', '.join(unknown)} in os-volume_upload_image")
    name = args.get("image_name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise errors.Invalid("Invalid input received: image_name must be a string of 1 to 255 characters")
    disk_format = args.get("disk_format") or "raw"
    if disk_format not in UPLOAD_FORMATS:
        raise errors.Invalid(f"Invalid input received: disk_format {disk_format!r}: this cloud uploads volumes as "
                             f"{' or '.join(UPLOAD_FORMATS)} images")
    container = args.get("container_format") or "bare"
    if container != "bare":
        raise errors.Invalid(f"Invalid input received: container_format {container!r} (bare only)")
    if args.get("force") in (True, "true", "True"):
        raise errors.Invalid("Invalid input received: force: an in-use volume is uploaded once detached")
    return {"name": name, "disk_format": disk_format, "container_format": container,
            "visibility": args.get("visibility") or "private", "protected": args.get("protected") or False}


async def upload_to_image(request: web.Request, ctx: RequestContext, api: VolumeConductorAPI,
                          volume: dict[str, Any], args: Any) -> web.Response:
    spec = validate(args)
    if volume.get("status") != "available":
        raise errors.VolumeInvalidState(reason=f"Volume {volume['id']} status must be available to upload it to an "
                                               f"image, but it is {volume.get('status')}.")
    props = {k: str(v) for k, v in ((volume.get("image") or {}).get("properties") or {}).items() if k in CARRIED}
    body = {**spec, "min_disk": int(volume["size"]), **props}
    if version_of(request) < (3, 1):  # visibility and protected are 3.1's
        body.update(visibility="private", protected=False)
    values = validate_image(ctx, body)
    authorize(request, "add_image", {"owner": values["owner"], "visibility": values["visibility"]})
    if values["visibility"] in ("public", "community"):
        authorize(request, "publicize_image" if values["visibility"] == "public" else "communitize_image",
                  {"owner": values["owner"], "visibility": values["visibility"]})
    engine = request.config_dict[ENGINE]
    async with engine.begin() as conn:
        await conn.execute(insert(images).values(**values))
    try:
        await api.volume_upload(ctx, volume["id"], values["id"], request.headers.get("X-Auth-Token", ""),
                                values["disk_format"])
    except BaseException:  # nothing half-made: the volume was not taken, so the record goes
        async with engine.begin() as conn:
            await conn.execute(delete(images).where(images.c.id == values["id"]))
        raise
    vtype = volume.get("volume_type")
    return web.json_response({"os-volume_upload_image": {
        "id": volume["id"], "updated_at": volume.get("updated_at"), "status": "uploading",
        "display_description": volume.get("description"), "size": int(volume["size"]),
        "volume_type": None if vtype is None else {"name": vtype}, "image_id": values["id"],
        "container_format": values["container_format"], "disk_format": values["disk_format"],
        "image_name": values["name"], "visibility": values["visibility"], "protected": values["protected"]}},
        status=202)
