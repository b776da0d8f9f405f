"""Upload a volume to an image (issue 18; Cinder's os-volume_upload_image), validate -> lock -> check -> act:

    available -> uploading (owner recorded) -> volume.<host> upload_volume: the worker PUTs the volume's
    bytes to the image API's /file with the requesting user's token (as Cinder uploads to Glance), so
    the image store inspects, hashes and bounds them as any upload -> available
    any failure: available with the reason in `error` (the image stays queued, with no data)

The image API owns the image's record; this flow owns the volume's state. An adopted `uploading`
volume (its conductor left: the user's token did not survive it) is rolled back to available with
the reason (flows/volume_recovery.py).
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx
from cells.conductor.flows.volumes import _get_visible, _uuid, record
from cells.context import RequestContext
from cells.db import volumes as vdb
from cells.db.volumes import VolumeStatus as S
from cells.objects.records import VolumeRecord
from cells.rpcapi.volume import VolumeAPI

LOG = logging.getLogger(__name__)
UPLOAD_FORMATS = ("raw", "qcow2")  # what the volume host writes the image as (qcow2: qemu-img convert)
INTERRUPTED = "upload to image interrupted: its conductor left (the image stays queued, without data)"


def _begin(conn: Connection, env: FlowEnv, ctx: RequestContext, volume_id: str) -> VolumeRecord:
    row = _get_visible(conn, ctx, volume_id)
    if row.host is None or not vdb.transition(conn, volume_id, [S.AVAILABLE],
                                              {"status": S.UPLOADING, "conductor_id": env.conductor_id,
                                               "error": None}):
        hint = " (an in-use volume is uploaded once detached)" if row.status == S.IN_USE else ""
        raise errors.VolumeInvalidState(reason=f"Volume {volume_id} status must be available to upload it to an "
                                               f"image, but it is {row.status}{hint}.")
    return record(env, conn, vdb.get_row(conn, volume_id))


async def volume_upload(env: FlowEnv, ctx: RequestContext, volume_id: str, image_id: Any,
                        token: Any, disk_format: Any = "raw") -> VolumeRecord:
    image = _uuid(image_id, "image id")
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise errors.Invalid(reason="an upload needs the requesting user's token")
    if disk_format not in UPLOAD_FORMATS:
        raise errors.Invalid(reason=f"disk_format {disk_format!r}: a volume is uploaded as "
                                    f"{' or '.join(UPLOAD_FORMATS)}")
    rec = await env.db.write(lambda conn: _begin(conn, env, ctx, volume_id))
    env.spawn(upload_on_host(env, background_ctx(ctx), rec, image, token, disk_format))
    return rec


async def upload_on_host(env: FlowEnv, ctx: RequestContext, rec: VolumeRecord, image_id: str, token: str,
                         disk_format: str = "raw") -> None:
    vid = rec["id"]
    values: dict[str, Any] = {"status": S.AVAILABLE}
    try:
        await VolumeAPI(env.service).upload_volume(ctx, vdb.volume_host(rec), rec, image_id,
                                                   env.service.cluster.api.public_url, token, disk_format)
        LOG.info("volume %s uploaded to image %s", vid, image_id)
    except errors.CellcloudError as exc:
        LOG.warning("volume %s: upload to image %s failed: %s", vid, image_id, exc)
        values["error"] = f"upload to image {image_id} failed: {exc.message}"
    await env.db.write(lambda conn: vdb.transition(conn, vid, [S.UPLOADING], values))


def roll_back_adopted(conn: Connection, volume_id: str) -> None:
    vdb.transition(conn, volume_id, [S.UPLOADING], {"status": S.AVAILABLE, "error": INTERRUPTED})
