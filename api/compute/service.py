"""The compute service layer (Nova's compute/api.py): what the Nova handlers (api/compute/*.py)
and the EC2 handlers (api/ec2/query_actions.py) do to servers, each a function over a typed
`ComputeContext` and the caller's RequestContext, never an HTTP request.

    create(cc, ctx, BootRequest) -> new server ids         api/compute/server_create.py resolves it
    delete(cc, ctx, server_id)                             the cell deletes; quota and group let go at once
    act(cc, ctx, server_id, action, args) -> record        a lifecycle action (stop, start, reboot, ...)
    console_output(cc, ctx, server_id, length) -> text
    lock(cc, ctx, server_id, reason), unlock(cc, ctx, server_id)   a locked server refuses non-admins' changes
    reset_state(cc, ctx, server_id, state)                  admin: vm_state active|error, task cleared
    create_image(cc, ctx, snaps, server_id, name, metadata) -> image id   createImage (a snapshot)
    resize, confirm_resize, revert_resize, migrate, evacuate(cc, ctx, server_id, ...)   moves (cells/rpcapi/move_methods)
    change_security_group(cc, ctx, server_id, group, add)  a group joins or leaves every port of the server
    update(cc, ctx, server_id, values) -> record           rename, access IPs (the mapping renamed too)
    metadata, change_metadata(cc, ctx, server_id, ...)     a server's metadata, changed under its lock
    instance_actions(cc, ctx, server_id, deleted) -> actions   what was done to it, newest first (2.21: deleted too)
    volume_attachments, attach_volume, detach_volume(cc, ctx, server_id, ...)   its volumes
    show(cc, ctx, server_id) -> record                     the live record of a server the caller may see
    get(cc, ctx, server_id) -> record                      its cell's record as it stands (EC2's actions)
    list_servers(cc, ctx, ServerQuery) -> records          every cell at once, merge-sorted (a down cell's
                                                           servers from the instance mappings, UNKNOWN)

HTTP stays in the handlers: parsing, the body's schema, status codes and views.
"""
from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncEngine

from api import quota
from api.cell_router import Cell, CellRouter, DownRecord, Listed, is_down
from api.compute import (
    aggregates,
    boot_volumes,
    cell_boot,
    down_cells,
    mappings,
    security_groups,
    server_groups,
    server_snapshots,
    shelve,
)
from api.compute.microversions import MIN_VERSION, Microversion, version_of
from api.compute.server_create import BootRequest, instance_records, request_spec, resolve
from api.compute.views import DEFAULT_AZ, record_status
from api.db.schema import instance_mappings
from api.http import is_uuid
from api.keys import CLUSTER, DB, ENGINE, ROUTER
from api.scatter import answered, scatter
from api.volume import cells as volume_cells
from cells import errors, linear_regex
from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.db.engine import Database
from cells.db.instances import fixed_ip_matcher
from cells.objects.records import InstanceRecord, ShownInstance, shown
from cells.rpcapi.conductor import ConductorAPI
from cells.rpcapi.move_methods import MoveConductorAPI
from cells.rpcapi.network import NetworkAPI
from cells.rpcapi.volume import VolumeConductorAPI


@dataclass(frozen=True)
class ComputeContext:
    """What the compute service needs of the API process: the cells, the API DB, the cluster's config,
    and the microversion the request negotiated (api/compute/microversions.py; EC2 and calls from outside
    the compute API: the minimum, 2.1), which every version-gated schema and view asks here."""
    router: CellRouter
    engine: AsyncEngine
    db: Database  # the same API DB as `engine`, one thread hop per unit of work
    cluster: ClusterConfig
    version: Microversion = MIN_VERSION

    @classmethod
    def of(cls, request: web.Request) -> ComputeContext:
        app = request.config_dict
        return cls(router=app[ROUTER], engine=app[ENGINE], db=app[DB], cluster=app[CLUSTER],
                   version=version_of(request))

    def at_least(self, major: int, minor: int) -> bool:
        """Whether the request negotiated microversion major.minor or later."""
        return self.version >= (major, minor)


async def create(cc: ComputeContext, ctx: RequestContext, boot: BootRequest) -> list[str]:
    """Boot what `boot` asks for: checked whole first (nothing is made for an invalid request),
    then into the best cell that takes it; the new servers' ids."""
    spec = await resolve(cc, ctx, boot)
    await cc.db.check_free_space("new servers")  # the API DB's watermark (cells/db/settings.py): 507 before a write
    # the instance quota is counted where the mappings are written, in the same API DB write unit
    # (api/quota.py admit_boot): no lock held across the conductor round trip, whatever the workers.
    # A server group's member quota and policy still take the project's (in-process) lock.
    admission = quota.Admission(spec.limits, quota.per_server(spec.flavor), spec.min_count) \
        if quota.counted(spec.limits) else None
    async with quota.project_lock(str(ctx.project)) if spec.group else contextlib.nullcontext():
        choice = await server_groups.admit(cc.engine, spec.group, spec.count, spec.limits, spec.hints)

        def records_for(path: str) -> list[dict[str, Any]]:
            return instance_records(spec, ctx, path)

        def spec_for(recs: list[dict[str, Any]]) -> dict[str, Any]:  # the admitted count, when quota cut it
            return request_spec(replace(spec, count=len(recs)), ctx, recs)
        reserved = await boot_volumes.reserve(cc, ctx, spec.image, spec.count)  # volumes the boot makes
        # an aggregate's zone is no cell's: its hosts' cells are the candidates
        placed = spec.placement or aggregates.Placement(zone=spec.availability_zone)
        cell_hints = {**choice, "target_cell": list(placed.cells)} if placed.cells else choice
        try:
            _, records = await cell_boot.build(  # best cell first, the next when one refuses
                cc.router, cc.db, ctx, spec.flavor, placed.zone, cell_hints, records_for, spec_for,
                admission, spec.attributes)
        finally:  # taken: its cell lists the volume now; refused: nothing was made
            await asyncio.shield(boot_volumes.release(cc, reserved))
        uuids = [r["uuid"] for r in records]
        await server_groups.add_members(cc.engine, spec.group, uuids)
    return uuids


async def _locate(cc: ComputeContext, ctx: RequestContext, server_id: str) -> tuple[ConductorAPI, str]:
    """(the conductor of the server's cell, its uuid); 404 for a server the caller may not see."""
    mapping = await mappings.get(cc.db, ctx, server_id)
    return cc.router.conductor(mapping.cell_path), str(mapping.instance_uuid)


async def delete(cc: ComputeContext, ctx: RequestContext, server_id: str) -> None:
    """Delete a server: its cell tears it down in the background; it stops counting against the
    project's quota and leaves its server group now."""
    mapping = await mappings.get(cc.db, ctx, server_id)
    conductor, uuid = cc.router.conductor(mapping.cell_path), str(mapping.instance_uuid)
    await conductor.instance_delete(ctx, uuid)
    await down_cells.queue_delete(cc.db, uuid)
    await server_groups.remove_members(cc.engine, [uuid])
    await shelve.forget_image(cc, mapping)  # a shelved server's image goes with it


async def act(cc: ComputeContext, ctx: RequestContext, server_id: str, action: str,
              args: dict[str, Any] | None = None) -> InstanceRecord:
    """A lifecycle action (cells/lifecycle.py USER_ACTIONS: stop, start, reboot, reboot_hard, pause,
    rebuild, ...): 409 when it does not fit the server's state; the record with its task state."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.instance_action(ctx, uuid, action, args)


async def get(cc: ComputeContext, ctx: RequestContext, server_id: str) -> InstanceRecord:
    """The server's record as its cell holds it (no view extras, no clean-up of a stale mapping:
    show's); 404 for a server the caller may not see."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.instance_get(ctx, uuid)


async def console_output(cc: ComputeContext, ctx: RequestContext, server_id: str, length: int | None) -> str:
    """The last `length` lines of the server's serial console log (None: all of it)."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.console_output(ctx, uuid, length)


async def lock(cc: ComputeContext, ctx: RequestContext, server_id: str, reason: str | None = None) -> dict[str, Any]:
    """Lock the server: its project's members can change nothing on it until it is unlocked (409)."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.instance_lock(ctx, uuid, True, reason)


async def reset_state(cc: ComputeContext, ctx: RequestContext, server_id: str, state: str) -> dict[str, Any]:
    """Admin: the server's vm_state set to active or error and its task cleared (Nova's os-resetState)."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.instance_reset_state(ctx, uuid, state)


async def unlock(cc: ComputeContext, ctx: RequestContext, server_id: str) -> dict[str, Any]:
    """Lift the lock: an admin's lock only an admin may lift (403)."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.instance_lock(ctx, uuid, False)


async def create_image(cc: ComputeContext, ctx: RequestContext, snaps: server_snapshots.Snapshots, server_id: str,
                       name: str, metadata: dict[str, str]) -> str:
    """A snapshot of the server's disk as a new image (api/compute/server_snapshots.py); its id at once,
    the data follows in the background (the image goes active, or is deleted when the snapshot fails)."""
    return await server_snapshots.create(cc, ctx, snaps, server_id, name, metadata)


async def _mover(cc: ComputeContext, ctx: RequestContext, server_id: str) -> tuple[MoveConductorAPI, str]:
    conductor, uuid = await _locate(cc, ctx, server_id)
    return MoveConductorAPI(conductor.caller), uuid


async def resize(cc: ComputeContext, ctx: RequestContext, server_id: str, flavor: dict[str, Any]) -> None:
    """Move the server to `flavor` (another host, or its own where the cell allows). The new flavor
    counts against the server's project's quota at once (403 when the increase does not fit; an admin
    resizing another project's server too), as in Nova, and the old one again if the cell refuses."""
    mapping = await mappings.get(cc.db, ctx, server_id)
    conductor, uuid = MoveConductorAPI(cc.router.conductor(mapping.cell_path).caller), str(mapping.instance_uuid)
    project = str(mapping.project_id)
    placement = await _move_placement(cc, mapping, flavor)  # 400 before the quota moves
    old = await cc.db.write(lambda conn: quota.admit_resize(conn, project, uuid, flavor))
    try:
        await conductor.move_instance(ctx, uuid, "resize", flavor, placement)
    except BaseException:
        await asyncio.shield(cc.db.write(lambda conn: quota.count_as(conn, uuid, *old)))  # refused: as before
        raise


async def confirm_resize(cc: ComputeContext, ctx: RequestContext, server_id: str) -> None:
    conductor, uuid = await _mover(cc, ctx, server_id)
    await conductor.confirm_move(ctx, uuid)


async def revert_resize(cc: ComputeContext, ctx: RequestContext, server_id: str) -> None:
    conductor, uuid = await _mover(cc, ctx, server_id)
    await conductor.revert_move(ctx, uuid)


async def _move_placement(cc: ComputeContext, mapping: Any, flavor: dict[str, Any]) -> dict[str, list[str]]:
    """Where the aggregates let a move take the server, as they are now (Nova's AvailabilityZone and
    AggregateInstanceExtraSpecs filters): the hosts of the zone it was pinned to at boot, those whose
    aggregates match `flavor`'s extra specs; none of them: no constraint."""
    zone = mapping.pinned_availability_zone or DEFAULT_AZ
    placed = await aggregates.placement(cc.engine, cc.cluster, zone, DEFAULT_AZ, flavor.get("extra_specs") or {},
                                        cc.router.zone_exists)
    return placed.spec_part()


async def migrate(cc: ComputeContext, ctx: RequestContext, server_id: str) -> None:
    """To another host of the server's cell, chosen by its scheduler among those its aggregates allow."""
    mapping = await mappings.get(cc.db, ctx, server_id)
    uuid = str(mapping.instance_uuid)
    record = await cc.router.conductor(mapping.cell_path).instance_get(ctx, uuid)
    placement = await _move_placement(cc, mapping, dict(record.get("flavor") or {}))
    await MoveConductorAPI(cc.router.conductor(mapping.cell_path).caller).move_instance(ctx, uuid, "migrate", None,
                                                                                          placement)


async def evacuate(cc: ComputeContext, ctx: RequestContext, server_id: str) -> None:
    """Rebuild the server on another host of its cell: only when its host is dead."""
    conductor, uuid = await _mover(cc, ctx, server_id)
    await conductor.evacuate(ctx, uuid)


async def change_security_group(cc: ComputeContext, ctx: RequestContext, server_id: str, group: str,
                                add: bool) -> None:
    """`group` (a name or id of the server's project) joins (`add`) or leaves every port of the server,
    through its cell's network controller: 404 for an unknown group or a server without ports."""
    mapping = await mappings.get(cc.db, ctx, server_id)  # 404 for another project's
    uuid = str(mapping.instance_uuid)
    if not security_groups.cell_has_network(cc.cluster, mapping.cell_path):  # no network here: no ports
        raise errors.SecurityGroupNotFound(f"instance_id {uuid} could not be found as device id on any ports",
                                           id=group)
    api = NetworkAPI(cc.router.cell(mapping.cell_path))
    if add:
        await api.add_security_group(ctx, uuid, group)
    else:
        await api.remove_security_group(ctx, uuid, group)

@dataclass(frozen=True)
class ServerQuery:
    """A listing: conductor filters, a total sort order, the page's size and where it starts."""
    filters: dict[str, Any]
    sort_keys: list[str]
    sort_dirs: list[str]
    limit: int
    statuses: list[str] | None = None  # Nova statuses to keep (None: any)
    marker: str | None = None  # the id of the last server of the previous page
    with_down: bool = True  # a down cell's servers from the instance mappings (status UNKNOWN)
    views: bool = False  # a detail listing: records with their views' volumes and groups where cells can


async def show(cc: ComputeContext, ctx: RequestContext, server_id: str, view: bool = False) -> ShownInstance:
    """The live record of a server the caller may see; 404 for everything else. `view`: with the
    server view's volumes and security groups, in the same conductor call where it speaks RPC 1.2."""
    db = cc.db
    mapping = await mappings.get(db, ctx, server_id)
    conductor = cc.router.conductor(mapping.cell_path)
    record: ShownInstance | None
    try:
        if view:
            try:  # every poll of a booting server is one: one call and one read instead of three
                record = await conductor.instance_show(ctx, mapping.instance_uuid,
                                                       security_groups.cell_has_network(cc.cluster, mapping.cell_path))
            # a conductor of an older release: show() asks for the rest apart (UnknownMethod: a nested cell's
            # conductor, reached through its routers, whose release the API cannot see beforehand)
            except (errors.UnsupportedVersion, errors.UnknownMethod):
                record = shown(await conductor.instance_get(ctx, mapping.instance_uuid))
        else:
            record = shown(await conductor.instance_get(ctx, mapping.instance_uuid))
    except errors.InstanceNotFound:
        record = None
    if record is None or record.get("deleted"):
        await mappings.remove(db, [mapping.instance_uuid])  # gone from its cell: the mapping points nowhere
        raise errors.InstanceNotFound(instance_id=server_id)
    if record.get("project_id") != ctx.project and \
            not ctx.allows("os_compute_api:servers:show", {"project_id": record.get("project_id")}):
        raise errors.InstanceNotFound(instance_id=server_id)
    mappings.recount_if_stale(db, mapping, record)
    return record


async def for_views(cc: ComputeContext, ctx: RequestContext, records: Sequence[Listed],
                    show: bool = False) -> None:
    """Add to `records` what their views show at the negotiated version beyond the cell's record
    (api/compute/views.py): the API-side attributes (2.3: reservation, launch index, hostname;
    2.19 description; 2.96 pinned zone), for admins each host's status (2.16: UP while its compute
    service is in its cell's directory, DOWN once it left, UNKNOWN while the cell is unreachable), and
    for one server (`show`) its server group (2.71). Nothing is read at versions that show none of it."""
    live = [shown(r) for r in records if not is_down(r)]
    if not live:
        return
    if cc.at_least(2, 3):
        await mappings.with_attributes(cc.db, live)
    if cc.at_least(2, 16) and ctx.allows("os_compute_api:servers:show:host_status", {"project_id": ctx.project}):
        for record in live:
            record["host_status"] = _host_status(cc, record)
    if show and cc.at_least(2, 71):
        groups = await server_groups.groups_of(cc.engine, [r["uuid"] for r in live])
        for record in live:
            record["server_groups"] = [groups[record["uuid"]]] if record["uuid"] in groups else []


def _host_status(cc: ComputeContext, record: InstanceRecord) -> str:
    host, path = record.get("host"), record.get("cell")
    if not host or not path:
        return ""  # not scheduled yet (Nova's empty host_status)
    try:
        cell = cc.router.cell(str(path))
    except errors.CellcloudError:
        return "UNKNOWN"
    if not cell.reachable():
        return "UNKNOWN"
    return "UP" if cell.view.members(f"compute.{host}") else "DOWN"


async def list_servers(cc: ComputeContext, ctx: RequestContext, q: ServerQuery) -> list[Listed]:
    """A page of servers from every cell at once (api/cell_router.py), after `q.marker`, re-checked here
    for what isolation depends on; MarkerNotFound for a marker the caller may not see."""
    marker: Listed | None = None
    if q.marker is not None:
        try:
            marker = await show(cc, ctx, q.marker)
        except errors.InstanceNotFound:
            raise errors.MarkerNotFound(marker=q.marker) from None
        except errors.RpcError:  # the marker's cell is down: its mapping still gives its sort position
            marker = down_cells.record(await mappings.get(cc.db, ctx, q.marker))
    if q.limit == 0 or (q.statuses and not q.filters.get("vm_state")):  # an empty page; no state has those statuses
        return []

    default_order = q.sort_keys == ["created_at", "uuid"] and q.sort_dirs == ["desc", "desc"]

    async def down_records(paths: list[str]) -> list[DownRecord]:  # the page's worth, in the default order
        return await down_cells.records(cc.engine, paths, q.filters, q.limit if default_order else None, marker)
    def views(path: str) -> bool:  # groups where the cell has a network controller, as show() asks them
        return security_groups.cell_has_network(cc.cluster, path)
    records = await cc.router.list_instances(ctx, q.filters, q.sort_keys, q.sort_dirs, q.limit, marker,
                                             down_records=down_records if q.with_down else None,
                                             views=views if q.views else None)
    return await _kept(records, q.filters, q.statuses)


def name_pattern(pattern: str) -> linear_regex.LinearRegex:
    """The name filter, compiled for a search in time linear in the name (cells/linear_regex.py):
    Python's re would let one pattern like (a+)+$ hold the event loop for seconds. 400 outside that subset."""
    try:
        return linear_regex.compile_pattern(pattern)
    except linear_regex.PatternError as exc:
        raise errors.Invalid(f"Invalid regular expression for name filter: {exc}") from None


def _name_ok(record: Listed, filters: dict[str, Any]) -> bool:
    return "name" not in filters or name_pattern(filters["name"]).search(record.get("name") or "")


def _keep(record: Listed, filters: dict[str, Any], statuses: list[str] | None) -> bool:
    """The API re-checks what isolation and correctness depend on, whatever a cell did with the filters."""
    if "project_id" in filters and record.get("project_id") != filters["project_id"]:
        return False
    if filters.get("deleted") is False and record.get("deleted"):
        return False
    if is_down(record):  # from a down cell's mappings: its status is UNKNOWN
        return not statuses and _name_ok(record, filters)
    if statuses and record_status(record) not in {s.upper() for s in statuses}:
        return False
    if "flavor_id" in filters and (record.get("flavor") or {}).get("id") != filters["flavor_id"]:
        return False
    if "image_id" in filters and (record.get("image") or {}).get("id") != filters["image_id"]:
        return False
    ip_ok = fixed_ip_matcher(filters)
    if ip_ok is not None and not ip_ok(record.get("addresses")):
        return False
    return _name_ok(record, filters)


async def _kept(records: list[Listed], filters: dict[str, Any], statuses: list[str] | None) -> list[Listed]:
    def keep() -> list[Listed]:
        return [r for r in records if _keep(r, filters, statuses)]
    # a name search over a page (up to 1000 names of up to 255 characters) runs off the event loop
    slow = "name" in filters or "ip" in filters or "ip6" in filters
    return await asyncio.to_thread(keep) if slow and records else keep()


# --- a server's parts: name and metadata, volume attachments, actions ----------------------------

class VolumeAttachmentNotFound(errors.NotFound):
    code, msg = "volume_attachment_not_found", "Volume {volume_id} is not attached to server {server_id}."


_METADATA_VM_STATES = ("active", "paused", "suspended", "stopped")  # Nova's check_instance_state for metadata
_UPDATE_LOCKS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _update_lock(uuid: str) -> asyncio.Lock:
    """One change of a server's name or metadata at a time in this API process (read, check, write)."""
    lock = _UPDATE_LOCKS.get(uuid)
    if lock is None:
        lock = _UPDATE_LOCKS[uuid] = asyncio.Lock()
    return lock


async def _live(cc: ComputeContext, ctx: RequestContext, server_id: str) -> tuple[ConductorAPI, InstanceRecord]:
    """(the conductor of its cell, the live record) of a server the caller may see; 404 otherwise."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    record = await conductor.instance_get(ctx, uuid)
    if record.get("deleted"):
        raise errors.InstanceNotFound(instance_id=uuid)
    return conductor, record


async def update(cc: ComputeContext, ctx: RequestContext, server_id: str, values: dict[str, Any],
                 attributes: dict[str, Any] | None = None) -> InstanceRecord:
    """Set the server's name and access IPs (`values`: name, access_ipv4, access_ipv6) and its API-side
    `attributes` (description 2.19, hostname 2.90). A rename renames its instance mapping too: what a
    listing shows while the server's cell is down."""
    conductor, record = await _live(cc, ctx, server_id)
    if values:
        async with _update_lock(record["uuid"]):
            record = await conductor.instance_update(ctx, record["uuid"], values)
            if "name" in values:
                async with cc.engine.begin() as conn:
                    await conn.execute(sql_update(instance_mappings).where(
                        instance_mappings.c.instance_uuid == record["uuid"]).values(name=values["name"]))
    if attributes:
        await mappings.set_attributes(cc.db, record["uuid"], attributes)
    return record


async def metadata(cc: ComputeContext, ctx: RequestContext, server_id: str) -> dict[str, str]:
    _, record = await _live(cc, ctx, server_id)
    return dict(record.get("metadata") or {})


async def change_metadata(cc: ComputeContext, ctx: RequestContext, server_id: str,
                          change: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
    """Apply change(old metadata) -> new metadata under the server's lock, after the state check (409)
    and the project's metadata_items quota (403); the metadata the server then has."""
    conductor, record = await _live(cc, ctx, server_id)
    async with _update_lock(record["uuid"]):
        record = await conductor.instance_get(ctx, record["uuid"])  # fresh, now that we hold the lock
        if record.get("vm_state") not in _METADATA_VM_STATES or record.get("task_state") is not None:
            attr, state = ("vm_state", record.get("vm_state")) if record.get("vm_state") not in _METADATA_VM_STATES \
                else ("task_state", record.get("task_state"))
            raise errors.InstanceInvalidState(action="update metadata", instance_id=record["uuid"], attr=attr,
                                              state=state)
        new = change(dict(record.get("metadata") or {}))
        limits = await quota.limits(cc.engine, str(record.get("project_id")))
        quota.check_metadata(limits, len(new))
        record = await conductor.instance_update(ctx, record["uuid"], {"metadata": new})
    return dict(record.get("metadata") or {})


async def instance_actions(cc: ComputeContext, ctx: RequestContext, server_id: str,
                           deleted: bool = False) -> list[dict[str, Any]]:
    """What was done to a live server the caller may see, newest first, each with its events; with
    `deleted` (Nova 2.21) to a deleted one too, as long as its cell keeps its row."""
    try:
        conductor, record = await _live(cc, ctx, server_id)
    except errors.InstanceNotFound:
        if not deleted or not is_uuid(server_id):
            raise
        acts = await _deleted_server_actions(cc, ctx, server_id.lower())
    else:
        acts = await conductor.instance_actions(ctx, record["uuid"])
    return sorted(acts, key=lambda a: str(a.get("start_time") or ""), reverse=True)


async def _deleted_server_actions(cc: ComputeContext, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
    """A deleted server's mapping is gone once a read saw it deleted: every cell is asked at once, and
    the one still keeping its row (the caller's project's, or any for an admin) answers."""
    async def one(cell: Cell, bounded: RequestContext) -> list[dict[str, Any]] | None:
        try:
            return await cell.conductor.instance_actions(bounded, uuid)
        except errors.InstanceNotFound:
            return None
    found = [acts for _, acts in answered(await scatter(list(cc.router.cells.values()), ctx, cc.router.bound, one),
                                          "a deleted server's actions") if acts is not None]
    if not found:
        raise errors.InstanceNotFound(instance_id=uuid)
    return found[0]


async def _volume_api(cc: ComputeContext, ctx: RequestContext, server_id: str) -> tuple[VolumeConductorAPI, str]:
    """The volume API of the server's cell and the server's uuid; 404 for a server the caller cannot see."""
    mapping = await mappings.get(cc.db, ctx, server_id)
    return VolumeConductorAPI(cc.router.cell(mapping.cell_path)), str(mapping.instance_uuid)


async def volume_attachments(cc: ComputeContext, ctx: RequestContext,
                             server_id: str) -> tuple[str, list[dict[str, Any]]]:
    """(the server's uuid, its volume attachments, oldest first)."""
    api, uuid = await _volume_api(cc, ctx, server_id)
    return uuid, (await api.volume_attachments(ctx, [uuid])).get(uuid, [])


async def attach_volume(cc: ComputeContext, ctx: RequestContext, server_id: str, volume_id: str,
                        device: str | None) -> dict[str, Any]:
    """Attach a volume of the server's cell (Nova's POST os-volume_attachments, EC2's AttachVolume): the
    attachment at once, attaching; its cell exports and hot-plugs in the background. 400 for a volume in
    another cell or one not available."""
    volume_id = volume_id.lower()
    api, uuid = await _volume_api(cc, ctx, server_id)
    try:
        return await api.volume_attach(ctx, volume_id, uuid, device)
    except errors.VolumeNotFound:
        # the volume may live in another cell: a clearer 400 than "not found" (Nova: not in the same AZ)
        try:
            await volume_cells.find(cc.router, ctx, volume_id)
        except errors.VolumeNotFound:
            raise errors.VolumeNotFound(volume_id=volume_id) from None
        raise errors.Invalid(f"Invalid volume: volume {volume_id} is not in the same cell as server {uuid}") \
            from None


async def detach_volume(cc: ComputeContext, ctx: RequestContext, server_id: str, volume_id: str) -> dict[str, Any]:
    """Detach a volume from a server (Nova's DELETE, EC2's DetachVolume); the attachment, detaching."""
    api, uuid = await _volume_api(cc, ctx, server_id)
    if not is_uuid(volume_id):
        raise VolumeAttachmentNotFound(volume_id=volume_id, server_id=uuid)
    try:
        return await api.volume_detach(ctx, volume_id.lower(), uuid)
    except errors.VolumeNotFound:
        raise VolumeAttachmentNotFound(volume_id=volume_id, server_id=uuid) from None
