"""Shelve, shelveOffload and unshelve through POST /compute/v2.1/servers/{id}/action (Nova's os-shelve, issue 16):

    {"shelve": null}          202; the disk goes into the image `NAME-shelved` (image_type snapshot, owned
                              by the server's project), then the guest is powered off: SHELVED, and
                              SHELVED_OFFLOADED at once when the cell's shelved_offload_time is 0
    {"shelveOffload": null}   202 (admin by default); SHELVED -> SHELVED_OFFLOADED: the host's claim is given
                              back, the guest and its disk removed from the host, no host in the views
    {"unshelve": null | {...}} 202; ACTIVE again: where it is (SHELVED) or, offloaded, from the shelve image on
                              a host the scheduler chooses. 2.77: {"availability_zone": Z}; 2.91: Z may be
                              null (unpins the server) and an admin may name a "host". A zone or host for a
                              server that is not offloaded is a 409, an unknown one a 400, as Nova.

A server booted from a volume is shelved as Nova does it: no image; its guest powered off and offloaded at once
(whatever shelved_offload_time), its volumes staying attached; unshelve makes the guest on its root volume on the
host the scheduler chooses (cells/conductor/flows/shelve.py).

The shelve image is the createImage flow's (api/compute/server_snapshots.py take: the compute's snapshot
file pulled into the image store), reported to the cell's conductor as shelve steps
(cells/conductor/flows/shelve.py). The mapping keeps the image's id (Nova's system_metadata
shelved_image_id): unshelve boots from it and deletes it once the server runs; deleting the server
deletes it too. A shelve that finds an image of an earlier shelve still there (its unshelve's watcher
died with its API process) deletes that one first. The API process taking a shelve's image holds its lease
(a flock, as uploads: api/image/leases.py) for the whole take; a shelve image still queued or saving whose
lease nobody holds lost its process, and every API process's sweep ends that shelve as failed (the server
as it was) and deletes the image.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import insert, select, update

from api.compute import aggregates, mappings, server_snapshots
from api.compute.availability_zones import zones
from api.compute.server_snapshots import SNAPSHOTS, Snapshots, Target
from api.compute.views import DEFAULT_AZ
from api.db.schema import images, instance_mappings
from api.http import authorize
from api.image import images as image_db
from api.image import upload as image_upload
from api.image.leases import UploadLease
from api.image.store import ImageStore
from api.keys import ENGINE, ROUTER, STORE
from api.validation import validate
from cells import errors, lifecycle
from cells.context import RequestContext, admin_context
from cells.objects.instance import VmState
from cells.rpcapi.compute import ComputeAPI
from cells.rpcapi.conductor import ConductorAPI

if TYPE_CHECKING:
    from api.compute.service import ComputeContext

LOG = logging.getLogger(__name__)
ACTIONS = ("shelve", "shelveOffload", "unshelve")
POLICY = {"shelve": "os_compute_api:os-shelve:shelve", "shelveOffload": "os_compute_api:os-shelve:shelve_offload",
          "unshelve": "os_compute_api:os-shelve:unshelve"}
UNSHELVE_TO_HOST = "os_compute_api:os-shelve:unshelve_to_host"
NULL = {"type": "null"}
NULL_OR_EMPTY = {"type": ["object", "null"], "properties": {}, "additionalProperties": False}
ZONE = {"type": "string", "minLength": 1, "maxLength": 255}
UNSHELVE_277 = {"type": ["object", "null"], "additionalProperties": False, "required": ["availability_zone"],
                "properties": {"availability_zone": ZONE}}
UNSHELVE_291 = {"type": ["object", "null"], "additionalProperties": False, "minProperties": 1,
                "properties": {"availability_zone": {"oneOf": [ZONE, NULL]},
                               "host": {"type": "string", "minLength": 1, "maxLength": 255}}}
WATCH_EVERY = 1.0  # seconds between looks at an unshelving server (its shelve image goes once it runs)
WATCH_FOR = 1800.0  # seconds a watcher waits at most (a compute that never reports: the image stays)
LEASE_PREFIX = "shelve-"  # <image_dir>/uploads/shelve-<image id>.lease: held by the API process taking it
SWEEP_INTERVAL = 60.0  # seconds between two sweeps for shelves whose API process died
ORPHANED = "Shelve interrupted: the API process taking its image stopped"


def unshelve_schema(cc: ComputeContext) -> dict[str, Any]:
    if cc.at_least(2, 91):
        return UNSHELVE_291
    return UNSHELVE_277 if cc.at_least(2, 77) else NULL


async def action(request: web.Request, cc: ComputeContext, ctx: RequestContext, server_id: str, name: str,
                 spec: Any) -> web.Response:
    mapping = await mappings.get(cc.db, ctx, server_id)  # 404 for a server the caller may not see
    authorize(request, POLICY[name], {"project_id": mapping.project_id})
    snaps = request.config_dict[SNAPSHOTS]
    if name == "shelve":
        validate(NULL_OR_EMPTY, spec, name)
        await shelve(cc, ctx, snaps, mapping)
    elif name == "shelveOffload":
        validate(NULL_OR_EMPTY, spec, name)
        await cc.router.conductor(mapping.cell_path).instance_action(ctx, str(mapping.instance_uuid),
                                                                     "shelve_offload", {})
    else:
        validate(unshelve_schema(cc), spec, name)
        if spec and "host" in spec:
            authorize(request, UNSHELVE_TO_HOST, {"project_id": mapping.project_id})
        await unshelve(cc, ctx, snaps, mapping, spec)
    return web.Response(status=202)


# --- shelve -------------------------------------------------------------------------------

async def shelve(cc: ComputeContext, ctx: RequestContext, snaps: Snapshots, mapping: Any) -> str:
    """Start shelving: the server's task set, its image queued (its id); the data and the power-off follow."""
    uuid = str(mapping.instance_uuid)
    cell = cc.router.cell(mapping.cell_path)
    conductor = ConductorAPI(cell)
    record = await conductor.shelve_begin(ctx, uuid)  # 409 before anything is made
    target = Target(conductor, ComputeAPI(cell), uuid, str(record["host"]), progress=conductor.shelve_progress)
    if not (record.get("image") or {}).get("id"):  # booted from a volume: Nova makes no image, it offloads
        try:
            await conductor.shelve_progress(ctx, uuid, lifecycle.SHELVE_UPLOADING, None)  # no data to take
        except BaseException as exc:
            await asyncio.shield(server_snapshots.end_step(target, ctx, lifecycle.SHELVE_FAILED,
                                                           server_snapshots.why_failed(exc)))
            raise
        await conductor.shelve_progress(ctx, uuid, lifecycle.SHELVE_DONE, None)  # a compute away ends its task
        return ""
    owner = dataclasses.replace(ctx, project=str(record["project_id"]))  # the image is the server's project's
    lease: UploadLease | None = None
    try:
        values = server_snapshots.image_values(record, owner, f"{record['name']}-shelved", {}, {})
        lease = UploadLease(snaps.store.root, LEASE_PREFIX + values["id"])  # held before the image exists
        if not await asyncio.to_thread(lease.acquire):
            raise errors.Conflict(reason=f"image {values['id']} is being taken already")
        async with snaps.engine.begin() as conn:
            await conn.execute(insert(images).values(**values))
            await conn.execute(update(instance_mappings).where(instance_mappings.c.instance_uuid == uuid)
                               .values(shelved_image_id=values["id"]))
    except BaseException as exc:
        if lease is not None:
            await asyncio.shield(asyncio.to_thread(lease.release))
        await asyncio.shield(server_snapshots.end_step(target, ctx, lifecycle.SHELVE_FAILED,
                                                       server_snapshots.why_failed(exc)))
        raise
    if mapping.shelved_image_id and mapping.shelved_image_id != values["id"]:
        await _delete_quietly(snaps.engine, snaps.store, str(mapping.shelved_image_id))
    snaps.spawn(_taking(snaps, target, dataclasses.replace(ctx, deadline=None), str(values["id"]), lease))
    return str(values["id"])


async def _taking(snaps: Snapshots, target: Target, ctx: RequestContext, image_id: str, lease: UploadLease) -> None:
    """createImage's take under the shelve's lease: while this process lives, no sweep ends its shelve."""
    try:
        await server_snapshots.take(snaps, target, ctx, image_id)
    finally:
        await asyncio.shield(asyncio.to_thread(lease.release))


# --- shelves whose API process died (issue 14: every transition has an owner) ---------------------

async def sweep_orphans(engine: Any, router: Any, store: ImageStore) -> list[str]:
    """A shelve image still queued or saving whose shelve lease nobody holds lost its API process: the
    server's shelve ends failed (it is as it was, its action says why) and the image goes. The uuids ended."""
    m = instance_mappings.c
    async with engine.connect() as conn:
        rows = (await conn.execute(select(m.instance_uuid, m.cell_path, images.c.id)
                                   .join(images, images.c.id == m.shelved_image_id)
                                   .where(images.c.status.in_(("queued", "saving"))))).all()
    ended = []
    for row in rows:
        lease = UploadLease(store.root, LEASE_PREFIX + str(row.id))
        if not await asyncio.to_thread(lease.acquire):
            continue  # a live shelve holds it
        try:
            try:
                await router.conductor(row.cell_path).shelve_progress(
                    admin_context(), str(row.instance_uuid), lifecycle.SHELVE_FAILED, ORPHANED)
            except (errors.UnexpectedTaskState, errors.InstanceNotFound):
                pass  # the server moved on (reset, deleted): only its image is left
            except errors.CellcloudError as exc:  # its cell is away: the next sweep
                LOG.info("orphaned shelve of %s not ended yet: %s", row.instance_uuid, exc.message)
                continue
            async with engine.begin() as conn:
                await conn.execute(update(instance_mappings).where(
                    m.instance_uuid == row.instance_uuid, m.shelved_image_id == row.id).values(shelved_image_id=None))
            await _delete_quietly(engine, store, str(row.id))
            LOG.warning("shelve of %s lost its API process: ended, image %s deleted", row.instance_uuid, row.id)
            ended.append(str(row.instance_uuid))
        finally:
            await asyncio.to_thread(lease.release)
    return ended


async def _sweep_forever(app: web.Application) -> None:
    while True:
        try:
            await sweep_orphans(app[ENGINE], app[ROUTER], app[STORE])
        except Exception:  # a safety net must never take the API down
            LOG.exception("orphaned shelve sweep failed")
        await asyncio.sleep(SWEEP_INTERVAL)


async def sweeper(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry (after the database and the cells): orphaned shelves ended at start and every minute."""
    task = asyncio.create_task(_sweep_forever(app))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _delete_quietly(engine: Any, store: ImageStore, image_id: str) -> None:
    try:
        await image_upload.delete_with_data(engine, store, image_id)
    except Exception:  # the server goes on; the image is an admin's to delete
        LOG.exception("shelve image %s could not be deleted", image_id)


async def forget_image(cc: ComputeContext, mapping: Any) -> None:
    """The server is being deleted: its shelve image goes with it (Nova's)."""
    if mapping.shelved_image_id:
        await _delete_quietly(cc.engine, ImageStore(cc.cluster.api.image_dir), str(mapping.shelved_image_id))


# --- unshelve -----------------------------------------------------------------------------

def _cell_hosts(cc: ComputeContext, cell_path: str) -> set[str]:
    cell = cc.router.cell(cell_path).cell
    return {s.host for s in cc.cluster.services if s.kind == "compute" and s.cell in (cell.name, cell.path)}


async def placement(cc: ComputeContext, mapping: Any, spec: dict[str, Any]) -> dict[str, list[str]]:
    """The scheduler's only_hosts / excluded_hosts for an unshelve's zone (None: unpinned, any host of the
    server's cell) and host (2.91), each checked: 400 for one that does not exist or is not where the other
    says. A server never leaves its cell: a zone that is another cell's is a 400 too."""
    cell_path = str(mapping.cell_path)
    out: dict[str, list[str]] = {}
    zone = spec.get("availability_zone")
    if zone is not None:
        placed = await aggregates.placement(cc.engine, cc.cluster, zone, DEFAULT_AZ, {}, cc.router.zone_exists)
        if placed.only is None and zone != DEFAULT_AZ:
            in_zone = {c.path for c in zones(cc.cluster).get(zone, [])}
            if cc.router.cell(cell_path).cell.path not in in_zone:
                raise errors.Invalid(f"The requested availability zone is not available: {zone}: instance "
                                     f"{mapping.instance_uuid} cannot leave its cell")
        out = {k: list(v) for k, v in placed.spec_part().items()}
    host = spec.get("host")
    if host is not None:
        if host not in _cell_hosts(cc, cell_path):
            raise errors.Invalid(f"Compute host {host} could not be found.")
        if host in out.get("excluded_hosts", []) or "only_hosts" in out and host not in out["only_hosts"]:
            raise errors.Invalid(f"Host {host} is not in the availability zone {zone}.")
        out = {"only_hosts": [host]}
    return out


async def _shelve_image(cc: ComputeContext, ctx: RequestContext, mapping: Any) -> dict[str, Any]:
    image_id = mapping.shelved_image_id
    if not image_id:
        raise errors.Conflict(reason=f"Instance {mapping.instance_uuid} has no shelve image to unshelve from")
    async with cc.engine.connect() as conn:
        try:
            image = await image_db.get(conn, ctx, str(image_id))
        except errors.ImageNotFound:
            raise errors.Conflict(reason=f"Shelve image {image_id} of instance {mapping.instance_uuid} "
                                         "is gone") from None
        if image.status != "active":
            raise errors.Conflict(reason=f"Shelve image {image_id} is {image.status}, not active")
        record: dict[str, Any] = await conn.run_sync(image_db.boot_snapshot_of, ctx, image)
        return record


async def unshelve(cc: ComputeContext, ctx: RequestContext, snaps: Snapshots, mapping: Any, spec: Any) -> None:
    uuid = str(mapping.instance_uuid)
    conductor = cc.router.conductor(mapping.cell_path)
    spec = dict(spec or {})
    server = await conductor.instance_get(ctx, uuid)
    offloaded = server.get("vm_state") == VmState.SHELVED_OFFLOADED
    where = None
    if spec:
        if server.get("vm_state") == VmState.SHELVED:  # Nova: only an offloaded server may change place
            raise errors.Conflict(reason=f"The availability_zone or host of instance {uuid} can only be "
                                         "given when it is SHELVED_OFFLOADED")
        where = await placement(cc, mapping, spec) if offloaded else None
    volume_backed = not (server.get("image") or {}).get("id")  # its guest is made on its root volume again
    image = await _shelve_image(cc, ctx, mapping) if offloaded and not volume_backed else None
    await conductor.unshelve(ctx, uuid, image, where)
    if "availability_zone" in spec:  # 2.77 pins the server to the zone, 2.91's null unpins it
        await mappings.set_attributes(cc.db, uuid, {"pinned_availability_zone": spec["availability_zone"]})
    if mapping.shelved_image_id:
        snaps.spawn(_forget_when_running(cc, snaps, conductor, dataclasses.replace(ctx, deadline=None), uuid,
                                         str(mapping.shelved_image_id)))


async def _forget_when_running(cc: ComputeContext, snaps: Snapshots, conductor: ConductorAPI,
                               ctx: RequestContext, uuid: str, image_id: str) -> None:
    """Once the unshelved server runs, its shelve image goes (Nova's); a failed unshelve keeps it."""
    loop = asyncio.get_running_loop()
    until = loop.time() + WATCH_FOR
    while loop.time() < until:
        await asyncio.sleep(WATCH_EVERY)
        try:
            server = await conductor.instance_get(ctx, uuid)
        except errors.InstanceNotFound:
            return  # deleted: the delete took the image
        except errors.CellcloudError as exc:
            LOG.info("unshelve of %s: cannot look yet (%s)", uuid, exc.message)
            continue
        if server.get("task_state") is not None:
            continue
        if server.get("vm_state") in (VmState.SHELVED, VmState.SHELVED_OFFLOADED):
            return  # the unshelve failed: the server still needs its image
        async with snaps.engine.begin() as conn:
            changed = await conn.execute(update(instance_mappings).where(
                instance_mappings.c.instance_uuid == uuid, instance_mappings.c.shelved_image_id == image_id)
                .values(shelved_image_id=None))
        if changed.rowcount:
            await _delete_quietly(snaps.engine, snaps.store, image_id)
        return
    LOG.warning("unshelve of %s did not end within %.0f s: its shelve image %s is kept", uuid, WATCH_FOR, image_id)
