"""Cinder's volume image metadata actions on POST /volume/v3/{project_id}/volumes/{id}/action:

    os-set_image_metadata   {"metadata": {k: v}}  200 {"metadata": {...}}: merged, the whole answered
    os-unset_image_metadata {"key": k}            200 (404 when the volume's image metadata has no k)
    os-show_image_metadata  {}                    200 {"metadata": {...}}

Only what volume_image_metadata shows changes (the cell DB's volumes.image_metadata); a boot from the volume
and an upload of it still read the image record the API checked when the volume was made, so a tenant's
kernel_id here boots nothing. Checked here, applied by the conductor in one write (two changes at once
both apply; cells/conductor/flows/volumes.py _changed_image_metadata).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from cells import errors
from cells.context import RequestContext
from cells.db.volumes import image_metadata_of
from cells.rpcapi.volume import VolumeConductorAPI

ACTIONS = ("os-set_image_metadata", "os-unset_image_metadata", "os-show_image_metadata")


def _changes(name: str, args: Any) -> dict[str, str | None]:
    if not isinstance(args, Mapping):
        raise errors.Invalid("Malformed request body.")
    if name == "os-set_image_metadata":
        meta = args.get("metadata")
        if not isinstance(meta, Mapping) or not meta:
            raise errors.Invalid("Malformed request body.")
        for key, value in meta.items():
            if not isinstance(key, str) or not 1 <= len(key) <= 255:
                raise errors.Invalid("Invalid input received: an image metadata key is 1 to 255 characters")
            if not isinstance(value, str) or len(value) > 255:
                raise errors.Invalid(f"Invalid input received: the value of {key!r} must be a string of at most "
                                     "255 characters")
        return dict(meta)
    if "key" not in args:
        raise errors.Invalid("Malformed request body.")
    key = args["key"]
    if not isinstance(key, str) or not key:
        raise errors.Invalid("The key cannot be None.")
    return {key: None}


async def image_metadata_action(ctx: RequestContext, api: VolumeConductorAPI, volume: dict[str, Any], name: str,
                                args: Any) -> web.Response:
    if name == "os-show_image_metadata":
        return web.json_response({"metadata": image_metadata_of(volume.get("image"), volume.get("image_metadata"))
                                  or {}})
    changes = _changes(name, args)
    record = await api.volume_update(ctx, volume["id"], {"image_metadata": changes})
    if name == "os-unset_image_metadata":
        return web.Response(status=200)
    return web.json_response({"metadata": image_metadata_of(record.get("image"), record.get("image_metadata"))
                              or {}})
