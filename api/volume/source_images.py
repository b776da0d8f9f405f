"""A volume made from an image (issue 18): the image as the creating project sees it.

The image is resolved by the API (the project's own, public or community images; another project's
private image is a 404, as a missing one) with an AMI's kernel and ramdisk records, checked against the
volume's size (Cinder: the volume must hold the image's size, virtual size and min_disk), and travels to
the volume host as that record, which downloads the bytes as the compute hosts do and verifies them
against its hashes. The record stays with the volume: its volume_image_metadata, and what a server booted
from the volume boots (kernel, ramdisk, command line).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.image import images as image_db
from api.keys import DB
from cells import errors
from cells.conductor.flows.volumes import IMAGE_FORMATS
from cells.context import RequestContext

GIB = 1 << 30


def image_id_of(ref: Any) -> str:
    """imageRef is an image id (or a link ending in one, as Nova takes it)."""
    if not isinstance(ref, str) or not ref:
        raise errors.Invalid("Invalid input received: imageRef must be an image id")
    return ref.rstrip("/").rsplit("/", 1)[-1].lower()


async def image_for_volume(request: web.Request, ctx: RequestContext, ref: str, size_gb: int) -> dict[str, Any]:
    def read(conn: Any) -> tuple[Any, dict[str, Any]]:
        row = image_db.get_of(conn, ctx, ref)
        return row, image_db.boot_snapshot_of(conn, ctx, row)
    try:
        row, record = await request.config_dict[DB].read(read)
    except errors.ImageNotFound:  # Cinder's answer for an image id it cannot use
        raise errors.Invalid("Invalid image identifier or unable to access requested image.") from None
    if row.status != "active":
        raise errors.Invalid(f"Image {row.id} is not active.")
    if row.disk_format not in IMAGE_FORMATS:
        raise errors.Invalid(f"Image {row.id} is a {row.disk_format} image: a volume is made from a "
                             f"{', '.join(IMAGE_FORMATS)} image")
    biggest = max(int(row.size or 0), int(row.virtual_size or 0))
    if biggest > size_gb * GIB:
        raise errors.Invalid(f"Size of specified image {-(-biggest // GIB)} GB is larger than volume size "
                             f"{size_gb} GB.")
    if (row.min_disk or 0) > size_gb:
        raise errors.Invalid(f"Volume size {size_gb} GB cannot be smaller than the image minDisk size "
                             f"{row.min_disk} GB.")
    return record
