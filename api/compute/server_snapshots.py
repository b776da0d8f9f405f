"""createImage (Nova's snapshot of a server, issue 16): the guest's disk into the image service.

    create(cc, ctx, snaps, server_id, name, metadata[, backup]) -> image id

A backup (createBackup, api/compute/server_backups.py) is the same snapshot under the action createBackup,
with image_type backup and its backup_type, and its rotation run once the image is active.

validate -> the server's cell sets its task (conductor snapshot_begin: 409 when the state does not allow
it, 400 for a backup of a volume-backed server; a createImage of one snapshots its volumes instead, as Nova:
api/compute/volume_backed_images.py) -> the image record, queued, `image_type: snapshot`, owned by the
caller's project, private, with the properties of the image the server was booted from (so it boots
again the same way) and the request's metadata -> 202. Then, in this API process's background
(`Snapshots`, closed with the app): the compute makes the snapshot file (make_snapshot: the running guest
paused for the copy), the task goes image_uploading, the data is pulled in 4 MiB chunks (read_snapshot)
through the image upload's own path (api/image/upload.py save_data: lease, bounds, format inspection),
its sha256 checked against the compute's, the file dropped on the host, and the task ends. A failure
anywhere deletes the image (as Nova) and records the error on the server's createImage action.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import insert, select, update

from api.compute import mappings, volume_backed_images
from api.db.schema import images
from api.image import upload as image_upload
from api.image.bounds import Bounds
from api.image.store import ImageStore
from api.keys import CLUSTER, ENGINE, STORE
from api.timeutil import utcnow
from cells import errors, lifecycle
from cells.context import RequestContext
from cells.rpcapi.compute import ComputeAPI
from cells.rpcapi.conductor import ConductorAPI

if TYPE_CHECKING:
    from api.cell_router import Cell
    from api.compute.service import ComputeContext

LOG = logging.getLogger(__name__)
CHUNK = 4 * 1024 * 1024  # bytes per read_snapshot (the compute's MAX_CHUNK is 16 MiB)
MAX_PROPERTIES = image_upload.MAX_PROPERTIES
# what a snapshot does not inherit from the image its server was booted from (Nova's
# non_inheritable_image_properties, and what the snapshot sets itself)
NOT_INHERITED = frozenset({"cache_in_nova", "bittorrent", "img_signature", "img_signature_hash_method",
                           "img_signature_certificate_uuid", "img_signature_key_type", "image_type",
                           "instance_uuid", "base_image_ref", "user_id", "owner_user_name", "owner_project_name"})


class Snapshots:
    """The snapshots this API process is taking: background work owned by the app (`cleanup`)."""

    def __init__(self, engine: Any, store: ImageStore, bounds: Bounds) -> None:
        self.engine, self.store, self.bounds = engine, store, bounds
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


SNAPSHOTS: web.AppKey[Snapshots] = web.AppKey("server_snapshots")


async def cleanup(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the database's): snapshots in flight are cancelled at shutdown, each ending
    its server's task and deleting its image on the way out."""
    app[SNAPSHOTS] = Snapshots(app[ENGINE], app[STORE], Bounds.of(app[CLUSTER].api))
    yield
    await app[SNAPSHOTS].close()


@dataclass(frozen=True)
class Backup:
    """createBackup's part: the properties it sets, and what runs once its image is active (rotation)."""
    properties: dict[str, str]
    then: Callable[[], Awaitable[None]]


# how far the data got (lifecycle SNAPSHOT_UPLOADING / DONE / FAILED, why it failed), for another flow
Progress = Callable[[RequestContext, str, str, "str | None"], Awaitable[Any]]


@dataclass(frozen=True)
class Target:
    conductor: ConductorAPI
    compute: ComputeAPI
    uuid: str
    host: str
    action: str = "createImage"
    # where the steps go instead of the conductor's snapshot_progress: a shelve's (api/compute/shelve.py)
    progress: Progress | None = None

    async def report(self, ctx: RequestContext, step: str, message: str | None) -> None:
        if self.progress is not None:
            await self.progress(ctx, self.uuid, step, message)
        else:
            await self.conductor.snapshot_progress(ctx, self.uuid, step, message, self.action)


def _properties(record: dict[str, Any], ctx: RequestContext, metadata: dict[str, str],
                extra: dict[str, str]) -> dict[str, str]:
    base = record.get("image") or {}
    props = {str(k): str(v) for k, v in (base.get("properties") or {}).items()
             if k not in NOT_INHERITED and isinstance(v, (str, int, float, bool))}
    props.update({"image_type": "snapshot", "base_image_ref": str(base.get("id") or ""),
                  "user_id": str(ctx.user or "")})
    props.update(metadata)  # as Nova: the request's metadata over the snapshot's own keys (image_type too)
    props.update(extra)  # a backup's image_type and backup_type, which its rotation goes by
    props["instance_uuid"] = str(record["uuid"])  # never another server's (backup rotation reads it)
    if len(props) > MAX_PROPERTIES:
        raise errors.Invalid(f"Maximum number of image properties ({MAX_PROPERTIES}) exceeded.")
    return props


def image_values(record: dict[str, Any], ctx: RequestContext, name: str, metadata: dict[str, str],
                  extra: dict[str, str]) -> dict[str, Any]:
    base, flavor = record.get("image") or {}, record.get("flavor") or {}
    now = utcnow()
    return {"id": str(uuidlib.uuid4()), "name": name, "status": "queued", "visibility": "private",
            "owner": ctx.project, "checksum": None, "os_hash_algo": None, "os_hash_value": None, "size": None,
            "virtual_size": None, "disk_format": None, "container_format": "bare",
            # Nova: the flavor's root disk (or the base's min_disk when larger), the base's min_ram
            "min_disk": max(int(flavor.get("disk") or 0), int(base.get("min_disk") or 0)),
            "min_ram": int(base.get("min_ram") or 0), "protected": False, "os_hidden": False,
            "properties": _properties(record, ctx, metadata, extra), "tags": [], "content_address": None,
            "created_at": now, "updated_at": now}


async def create(cc: ComputeContext, ctx: RequestContext, snaps: Snapshots, server_id: str, name: str,
                 metadata: dict[str, str], backup: Backup | None = None) -> str:
    """Start a snapshot (or a backup) of the server; its image's id (the image is queued until the data is in)."""
    mapping = await mappings.get(cc.db, ctx, server_id)  # 404 for a server the caller may not see
    cell = cc.router.cell(mapping.cell_path)
    conductor = ConductorAPI(cell)
    action = "createImage" if backup is None else "createBackup"
    record = await conductor.snapshot_begin(ctx, str(mapping.instance_uuid), action)  # 409 / 400 before anything
    target = Target(conductor, ComputeAPI(cell), str(record["uuid"]), str(record["host"]), action)
    if not (record.get("image") or {}).get("id"):  # booted from a volume (createImage only: the cell checked)
        return await _volume_backed(cc, ctx, snaps, cell, target, record, name, metadata)
    try:
        values = image_values(record, ctx, name, metadata, backup.properties if backup else {})
        async with snaps.engine.begin() as conn:
            await conn.execute(insert(images).values(**values))
    except BaseException as exc:
        await asyncio.shield(end_step(target, ctx, lifecycle.SNAPSHOT_FAILED, why_failed(exc)))
        raise
    snaps.spawn(take(snaps, target, dataclasses.replace(ctx, deadline=None), values["id"],
                     backup.then if backup else None))
    return str(values["id"])


async def _volume_backed(cc: ComputeContext, ctx: RequestContext, snaps: Snapshots, cell: Cell, target: Target,
                         record: dict[str, Any], name: str, metadata: dict[str, str]) -> str:
    """Nova's snapshot_volume_backed: the server's volumes snapshotted in their cell, the image their mappings
    and no data (api/compute/volume_backed_images.py); the task ends before the 202, the image is active."""
    try:
        mappings = await volume_backed_images.snapshot_volumes(cc, ctx, cell, record, name, snaps.spawn)
        values = image_values(record, ctx, name, metadata, {})
        values.update(volume_backed_images.image_fields(mappings, values["properties"]))
        async with snaps.engine.begin() as conn:
            await conn.execute(insert(images).values(**values))
    except BaseException as exc:
        await asyncio.shield(end_step(target, ctx, lifecycle.SNAPSHOT_FAILED, why_failed(exc)))
        raise
    await end_step(target, ctx, lifecycle.SNAPSHOT_DONE)
    return str(values["id"])


def why_failed(exc: BaseException) -> str:
    return exc.message if isinstance(exc, errors.CellcloudError) else type(exc).__name__


async def end_step(target: Target, ctx: RequestContext, step: str, message: str | None = None) -> None:
    try:
        await target.report(ctx, step, message)
    except errors.CellcloudError as exc:  # the server was deleted meanwhile, or its cell is away: logged
        LOG.warning("snapshot of %s could not be marked %s: %s", target.uuid, step, exc)


async def take(snaps: Snapshots, target: Target, ctx: RequestContext, image_id: str,
               then: Callable[[], Awaitable[None]] | None = None) -> None:
    """The snapshot's data into the image record: the whole flow after the 202, never raising; `then`
    (a backup's rotation) once the image is active."""
    try:
        made = await target.compute.make_snapshot(ctx, target.host, target.uuid, image_id)
        size, sha256, fmt = _checked(made)
        await target.report(ctx, lifecycle.SNAPSHOT_UPLOADING, None)
        async with snaps.engine.begin() as conn:
            await conn.execute(update(images).where(images.c.id == image_id, images.c.status == "queued")
                               .values(disk_format=fmt, updated_at=utcnow()))
            row = (await conn.execute(select(images).where(images.c.id == image_id))).first()
        if row is None or row.status != "queued":
            raise errors.Conflict(reason=f"image {image_id} was deleted or changed during the snapshot")
        digest = hashlib.sha256()
        await image_upload.save_data(snaps.engine, snaps.store, snaps.bounds, row,
                                     _pulled(target, ctx, image_id, size, digest), size)
        if digest.hexdigest() != sha256:  # the store already has it: take it back out
            raise errors.Conflict(reason=f"snapshot data sha256 {digest.hexdigest()} is not the host's {sha256}")
    except BaseException as exc:
        LOG.warning("snapshot %s of %s failed: %s", image_id, target.uuid, why_failed(exc))
        await asyncio.shield(_failed(snaps, target, ctx, image_id, why_failed(exc)))
        if not isinstance(exc, Exception):
            raise
    else:
        await asyncio.shield(end_step(target, ctx, lifecycle.SNAPSHOT_DONE))
        if then is not None:
            await asyncio.shield(_then(then, image_id))
    finally:
        await asyncio.shield(_drop(target, ctx, image_id))


async def _then(then: Callable[[], Awaitable[None]], image_id: str) -> None:
    try:
        await then()
    except Exception:  # the image is made; what follows it (a rotation) is retried by the next backup
        LOG.exception("after image %s was made", image_id)


def _checked(made: dict[str, Any]) -> tuple[int, str, str]:
    """The host's description of its snapshot file: remote input, checked."""
    size, sha256, fmt = made.get("size"), made.get("sha256"), made.get("disk_format")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or not isinstance(sha256, str) \
            or len(sha256) != 64 or fmt not in ("raw", "qcow2"):
        raise errors.RpcError(reason=f"bad snapshot description from the compute host: {made!r}")
    return size, sha256, str(fmt)


async def _pulled(target: Target, ctx: RequestContext, image_id: str, size: int,
                  digest: Any) -> AsyncIterator[bytes]:
    """The snapshot file's bytes in order, from its host; the next chunk is on its way while this one is stored."""
    def ask(at: int) -> asyncio.Future[bytes]:
        return asyncio.ensure_future(target.compute.read_snapshot(ctx, target.host, target.uuid, image_id, at,
                                                                  min(CHUNK, size - at)))
    offset = 0
    nxt: asyncio.Future[bytes] | None = ask(0)
    try:
        while nxt is not None:
            data = await nxt
            if not data or len(data) > min(CHUNK, size - offset):
                raise errors.RpcError(reason=f"read_snapshot at {offset} answered {len(data)} bytes")
            offset += len(data)
            nxt = ask(offset) if offset < size else None
            digest.update(data)
            yield data
    finally:
        if nxt is not None:
            nxt.cancel()
            await asyncio.gather(nxt, return_exceptions=True)


async def _failed(snaps: Snapshots, target: Target, ctx: RequestContext, image_id: str, why: str) -> None:
    """Nova deletes the image of a failed snapshot: its row, and its data if it got into the store."""
    try:
        await image_upload.delete_with_data(snaps.engine, snaps.store, image_id)
    except Exception:
        LOG.exception("image %s of a failed snapshot could not be deleted", image_id)
    await end_step(target, ctx, lifecycle.SNAPSHOT_FAILED, f"Snapshot failed: {why}")


async def _drop(target: Target, ctx: RequestContext, image_id: str) -> None:
    try:
        await target.compute.drop_snapshot(ctx, target.host, target.uuid, image_id)
    except errors.CellcloudError as exc:  # the host is away: its file goes with the instance dir
        LOG.warning("snapshot file %s on %s not removed: %s", image_id, target.host, exc)
