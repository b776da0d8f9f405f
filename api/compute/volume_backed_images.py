"""createImage of a server booted from a volume (issue 18), as Nova's snapshot_volume_backed, and the boot
from the image it makes.

    snapshot_volumes  every volume attached to the server snapshotted in its cell (Cinder's force: a
                      crash-consistent copy of an in-use volume, counted in the snapshots and gigabytes
                      quotas; over them: Nova's 403), root first; their image mappings
    image_fields      what the image record holds instead of data: active, size 0, raw/bare (Nova
                      activates such an image with a zero-byte upload), `block_device_mapping` (BDM v2
                      snapshot -> volume mappings, a JSON list as Nova stores it in Glance), `bdm_v2`,
                      `root_device_name`
    image_mappings    a boot from such an image: its mappings (tenant input: each checked), merged with the
                      request's as Nova merges them (_check_and_transform_bdm): the image's root replaces
                      the image -> local root the client inserts, a request mapping overrides the image's
                      of the same device_name. The root then is a snapshot -> volume (boot_volumes.py).

A snapshot that cannot be made fails the createImage; the snapshots made before it are deleted once their
volume host finished them (`forget`), so a failed request leaves no snapshot behind.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from api import quota
from api.http import is_uuid
from api.volume import snapshots as volume_snapshots
from cells import errors
from cells.conductor.flows.boot_volume import (
    DELETE_ON_TERMINATION,
    ROOT_DEVICE,
    attached_volumes,
    made_volumes,
    root_volume_id,
)
from cells.context import RequestContext
from cells.rpcapi.volume import VolumeConductorAPI

if TYPE_CHECKING:
    from api.cell_router import Cell
    from api.compute.service import ComputeContext

LOG = logging.getLogger(__name__)
MAX_MAPPINGS = 17  # the root and the 16 volumes a boot may map beside it (boot_volumes.MAX_BLANK_VOLUMES)
SOURCES = ("snapshot", "volume", "blank", "image")
FORGET_WAIT = 120.0  # seconds a snapshot of a failed createImage may take to finish before it is deleted
Spawn = Callable[[Coroutine[Any, Any, None]], None]


def _delete_flags(image: Any) -> dict[str, bool]:
    """volume id -> delete_on_termination, as the server's boot recorded it (a volume attached later: False)."""
    flags = dict(made_volumes(image)) | dict(attached_volumes(image))
    root = root_volume_id(image)
    if root is not None:
        flags[root] = bool((image or {}).get(DELETE_ON_TERMINATION))
    return flags


def _mapping(snapshot: Mapping[str, Any], device: str, delete: bool) -> dict[str, Any]:
    """Nova's image mapping of a volume's snapshot (block_device.snapshot_from_bdm(...).get_image_mapping())."""
    return {"source_type": "snapshot", "destination_type": "volume", "snapshot_id": snapshot["id"],
            "volume_id": None, "image_id": None, "volume_size": int(snapshot["size"]),
            "boot_index": 0 if device == ROOT_DEVICE else None, "delete_on_termination": delete,
            "device_name": device, "disk_bus": "virtio", "device_type": "disk", "guest_format": None,
            "no_device": None, "tag": None, "volume_type": None}


async def snapshot_volumes(cc: ComputeContext, ctx: RequestContext, cell: Cell, record: Mapping[str, Any],
                           image_name: str, spawn: Spawn) -> list[dict[str, Any]]:
    """Snapshot every volume attached to the server (root first, then by device); their image mappings.
    Nothing is left when one fails (the ones made are forgotten, in the background) ."""
    uuid = str(record["uuid"])
    attachments = (await VolumeConductorAPI(cell).volume_attachments(ctx, [uuid])).get(uuid, [])
    attachments = sorted(attachments, key=lambda a: (a.get("device") != ROOT_DEVICE, str(a.get("device") or "")))
    flags = _delete_flags(record.get("image"))
    project = str(record.get("project_id") or ctx.project)
    made: list[dict[str, Any]] = []
    try:
        for att in attachments:
            spec = {"volume_id": att["volume_id"], "force": True, "name": f"snapshot for {image_name}",
                    "description": None, "metadata": {}}
            made.append(await volume_snapshots.make_snapshot(cc.router, cc.db, ctx, project, spec))
    except BaseException as exc:
        if made:
            spawn(forget(cell, ctx, [str(s["id"]) for s in made]))
        if isinstance(exc, quota.VolumeOverLimit):  # Nova answers its snapshot quota check with a 403
            kw = exc.kwargs
            raise errors.QuotaExceeded(f"Quota exceeded: {exc.message}", resource=kw.get("resource"),
                                       requested=kw.get("requested"), limit=kw.get("limit")) from None
        raise
    return [_mapping(snap, str(att.get("device") or ""), flags.get(str(att["volume_id"]), False))
            for snap, att in zip(made, attachments, strict=True)]


async def forget(cell: Cell, ctx: RequestContext, snapshot_ids: list[str]) -> None:
    """Delete the snapshots of a createImage that failed, each once it left `creating` (never raising)."""
    api = VolumeConductorAPI(cell)
    loop = asyncio.get_running_loop()
    for sid in snapshot_ids:
        deadline = loop.time() + FORGET_WAIT
        try:
            while (await api.snapshot_get(ctx, sid)).get("status") == "creating" and loop.time() < deadline:
                await asyncio.sleep(0.5)
            await api.snapshot_delete(ctx, sid)
        except errors.SnapshotNotFound:
            continue
        except errors.CellcloudError as exc:
            LOG.warning("snapshot %s of a failed createImage not deleted: %s", sid, exc)


EMPTY_MD5, EMPTY_SHA512 = hashlib.md5(b"", usedforsecurity=False).hexdigest(), hashlib.sha512(b"").hexdigest()


def image_fields(mappings: list[dict[str, Any]], properties: Mapping[str, str]) -> dict[str, Any]:
    """The image record's values for a volume-backed server's snapshot: no data, its mappings in the properties."""
    props = {k: v for k, v in properties.items() if k not in ("block_device_mapping", "bdm_v2", "root_device_name")}
    props.update({"block_device_mapping": json.dumps(mappings), "bdm_v2": "True", "root_device_name": ROOT_DEVICE})
    return {"status": "active", "size": 0, "virtual_size": None, "disk_format": "raw", "container_format": "bare",
            "checksum": EMPTY_MD5, "os_hash_algo": "sha512", "os_hash_value": EMPTY_SHA512, "properties": props}


# --- a boot from such an image -----------------------------------------------------------------------------

def _bad(image_id: str, why: str) -> errors.Invalid:
    return errors.Invalid(f"Block Device Mapping is Invalid: image {image_id}'s block_device_mapping: {why}.")


def _checked(image_id: str, raw: Any) -> dict[str, Any]:
    """One mapping of an image's block_device_mapping (anyone who may update the image wrote it) in the
    request's BDM v2 form."""
    if not isinstance(raw, dict):
        raise _bad(image_id, "a mapping must be an object")
    source, dest = raw.get("source_type"), raw.get("destination_type") or "volume"
    if source not in SOURCES or dest not in ("volume", "local"):
        raise _bad(image_id, f"source_type {source!r} / destination_type {dest!r} is not served")
    out: dict[str, Any] = {"source_type": source, "destination_type": dest}
    ref = raw.get("uuid") or raw.get(f"{source}_id")
    if source != "blank":
        if not isinstance(ref, str) or not is_uuid(ref):
            raise _bad(image_id, f"a {source} mapping needs the {source}'s uuid")
        out["uuid"] = ref.lower()
    for key, kind in (("volume_size", int), ("boot_index", int), ("delete_on_termination", bool),
                      ("device_name", str)):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind) \
                or (kind is int and not -1 <= int(value) <= 1 << 20) or (kind is str and len(str(value)) > 255):
            raise _bad(image_id, f"{key} {value!r} is not a valid {kind.__name__}")
        out[key] = value
    return out


def image_mappings(image_id: str, properties: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The BDM v2 mappings an image defines (a volume-backed server's snapshot), None for an image without."""
    raw = properties.get("block_device_mapping")
    if raw is None:
        return None
    if str(properties.get("bdm_v2", "")).lower() not in ("true", "1", "yes"):
        raise _bad(image_id, "legacy (not bdm_v2) mappings are not served by this cloud")
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise _bad(image_id, "not a JSON list") from None
    if not isinstance(parsed, list) or len(parsed) > MAX_MAPPINGS:
        raise _bad(image_id, f"a list of at most {MAX_MAPPINGS} mappings")
    return [_checked(image_id, m) for m in parsed]


def merged(image_defined: list[dict[str, Any]], requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nova's merge: with a root among the image's mappings the request's image root (the client inserts one
    for --image) goes; a request mapping replaces the image's of the same device_name."""
    if any(str(m.get("boot_index")) == "0" for m in image_defined):
        requested = [m for m in requested if not (str(m.get("boot_index")) == "0" and m.get("source_type") == "image")]
    taken = {m.get("device_name") for m in requested if m.get("device_name")}
    return [m for m in image_defined if m.get("device_name") not in taken] + requested
