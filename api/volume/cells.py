"""Which cell holds a volume, and the volumes of every cell.

Volumes live in the cell DBs, like servers, but the API keeps no volume
mapping: a show, update or delete asks the cells at once and takes the one
that knows the id (one cell answers in one round trip; many answer in
parallel). A listing asks every cell within the router's bound and merges, newest first;
a cell that fails to answer is left out (and logged), as the server list does.
A new volume goes to a cell in the requested availability zone that has a
live volume host (`volume.<host>` in its directory), else to the first cell
in the zone: its conductor then puts the volume in `error` with the reason.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from api import cell_choice
from api.cell_router import Cell, CellClient, CellRouter
from api.scatter import Down, answered, scatter
from api.timeutil import utcnow
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.volume import VolumeConductorAPI

T = TypeVar("T")


def _cells(router: CellRouter) -> list[Cell]:
    cells = list(router.cells.values())
    if not cells:
        raise errors.NoValidHost(reason="This cloud has no cells.")
    return cells


async def _each(router: CellRouter, ctx: RequestContext,
                fn: Callable[[VolumeConductorAPI, RequestContext], Awaitable[T]],
                strict: bool = False) -> list[tuple[Cell, T]]:
    """fn on every cell at once (api/scatter.py). A cell that fails is left out, or (strict) fails the request."""
    async def one(cell: Cell, bounded: RequestContext) -> T:
        return await fn(VolumeConductorAPI(cell), bounded)
    results = await scatter(_cells(router), ctx, router.bound, one)
    return answered(results, "a volume request", strict)


async def _find(router: CellRouter, ctx: RequestContext,
                fetch: Callable[[VolumeConductorAPI, RequestContext], Awaitable[dict[str, Any]]],
                missing: errors.CellcloudError) -> tuple[VolumeConductorAPI, dict[str, Any]]:
    """(the conductor of the cell whose `fetch` found the record, the record); `missing` when every cell
    said it has none. A cell that did not answer may hold it: then a 503 that names the cell, never a 404
    (a client takes a 404 for "deleted")."""
    async def one(cell: Cell, bounded: RequestContext) -> dict[str, Any] | None:
        try:
            return await fetch(VolumeConductorAPI(cell), bounded)
        except errors.NotFound:
            return None
    results = await scatter(_cells(router), ctx, router.bound, one)
    for cell, record in answered(results, "a volume look-up"):
        if record is not None:
            return VolumeConductorAPI(cell), record
    silent = [f"{cell.path} ({result.reason})" for cell, result in results if isinstance(result, Down)]
    if silent:
        raise errors.RpcError(reason=f"cell {', '.join(silent)} did not answer; the record may be there")
    raise missing


async def set_volume_host(router: CellRouter, ctx: RequestContext, host: str,
                          values: dict[str, Any]) -> dict[str, Any]:
    """A volume host's os-services state, set by the cell that has it (admin); 404 when none has it."""
    _, changed = await _find(router, ctx, lambda api, c: api.volume_host_set(c, host, values),
                             errors.NotFound(f"Host {host} could not be found."))
    return changed


async def messages(router: CellRouter, ctx: RequestContext) -> list[dict[str, Any]]:
    """The caller's user messages of every cell (admins: every project's), newest first."""
    return await _newest_first(router, ctx, lambda api, c: api.message_list(c), False)


async def find_message(router: CellRouter, ctx: RequestContext,
                       message_id: str) -> tuple[VolumeConductorAPI, dict[str, Any]]:
    return await _find(router, ctx, lambda api, c: api.message_get(c, message_id),
                       errors.NotFound(f"Message {message_id} could not be found."))


async def _newest_first(router: CellRouter, ctx: RequestContext,
                        fetch: Callable[[VolumeConductorAPI, RequestContext], Awaitable[list[dict[str, Any]]]],
                        strict: bool) -> list[dict[str, Any]]:
    """Every cell's records, newest first (then by id, as the cell DBs order them)."""
    records = [r for _, rs in await _each(router, ctx, fetch, strict) for r in rs]
    records.sort(key=lambda r: (r.get("created_at") or "", r["id"]), reverse=True)
    return records


async def find(router: CellRouter, ctx: RequestContext, volume_id: str) -> tuple[VolumeConductorAPI, dict[str, Any]]:
    """(the conductor of the cell holding the volume, its record); VolumeNotFound when no cell has it."""
    return await _find(router, ctx, lambda api, c: api.volume_get(c, volume_id),
                       errors.VolumeNotFound(volume_id=volume_id))


async def list_all(router: CellRouter, ctx: RequestContext, filters: dict[str, Any],
                   strict: bool = False) -> list[dict[str, Any]]:
    """Every matching volume of every cell, newest first."""
    return await _newest_first(router, ctx, lambda api, c: api.volume_list(c, filters), strict)


async def find_snapshot(router: CellRouter, ctx: RequestContext,
                        snapshot_id: str) -> tuple[VolumeConductorAPI, dict[str, Any]]:
    """(the conductor of the cell holding the snapshot, its record); SnapshotNotFound when no cell has it."""
    return await _find(router, ctx, lambda api, c: api.snapshot_get(c, snapshot_id),
                       errors.SnapshotNotFound(snapshot_id=snapshot_id))


async def list_snapshots(router: CellRouter, ctx: RequestContext, filters: dict[str, Any],
                         strict: bool = False) -> list[dict[str, Any]]:
    """Every matching snapshot of every cell, newest first."""
    return await _newest_first(router, ctx, lambda api, c: api.snapshot_list(c, filters), strict)


async def volume_hosts(router: CellRouter, ctx: RequestContext) -> tuple[set[str], list[dict[str, Any]]]:
    """(the paths of the cells whose conductor answered, the volume hosts they listed by name) (admin)."""
    answers = await _each(router, ctx, lambda api, c: api.volume_host_list(c))
    hosts = sorted((h for _, hs in answers for h in hs), key=lambda h: str(h["host"]))
    return {cell.path for cell, _ in answers}, hosts


async def project_usage(router: CellRouter, ctx: RequestContext,
                        project: str) -> tuple[dict[str, int], set[str], datetime]:
    """What the project holds in every cell (a cell that cannot answer fails the request): volumes,
    snapshots and their gigabytes together (as Cinder counts them), the same per volume type
    (volumes_<type>, snapshots_<type>, gigabytes_<type>), the ids listed, and when the listing began (a
    reservation of a volume listed before that and not now is of a deleted one: api/quota.py)."""
    began = utcnow()
    volumes = await list_all(router, ctx, {"project_id": project}, strict=True)
    snapshots = await list_snapshots(router, ctx, {"project_id": project}, strict=True)
    used = {"volumes": 0, "snapshots": 0, "gigabytes": 0}
    type_of = {str(v["id"]): v.get("volume_type") for v in volumes}
    for count, records in (("volumes", volumes), ("snapshots", snapshots)):
        for r in records:  # a snapshot counts against its volume's type
            vtype = r.get("volume_type") if count == "volumes" else type_of.get(str(r["volume_id"]))
            for suffix in ("", f"_{vtype}") if vtype else ("",):
                used[count + suffix] = used.get(count + suffix, 0) + 1
                used["gigabytes" + suffix] = used.get("gigabytes" + suffix, 0) + int(r["size"])
    return used, {str(r["id"]) for r in (*volumes, *snapshots)}, began


def has_volume_host(cell: Cell) -> bool | None:
    """Whether the cell's directory lists a volume worker (None: not visible from here, a relayed cell)."""
    if not isinstance(cell, CellClient):
        return None
    return any(t.startswith("volume.") for m in cell.view.by_id.values() for t in m.topics)


def choose(router: CellRouter, zone: str | None) -> Cell:
    """The cell for a new volume in `zone` (None or "nova": anywhere)."""
    if zone and zone != cell_choice.DEFAULT_ZONE and not router.zone_exists(zone):
        raise errors.Invalid(f"Availability zone '{zone}' is invalid.")
    in_zone = [c for c in _cells(router) if cell_choice.in_zone(c.cell, zone) and c.reachable()]
    if not in_zone:
        raise errors.RpcError(reason=f"no cell in availability zone {zone or cell_choice.DEFAULT_ZONE!r} is reachable")
    return min(in_zone, key=lambda c: {True: 0, None: 1, False: 2}[has_volume_host(c)])


def zones(router: CellRouter) -> list[tuple[str, bool]]:
    """(zone, available) of every zone a volume may be made in (choose's): the default zone, each site and
    each cell; available while a cell in it is reachable."""
    names = [cell_choice.DEFAULT_ZONE]
    for c in router.cells.values():
        names += [n for n in (c.cell.site, c.cell.name) if n and n not in names]
    return [(z, any(cell_choice.in_zone(c.cell, z) and c.reachable() for c in router.cells.values())) for z in names]
