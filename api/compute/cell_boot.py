"""Boot into the best cell, and the next best when a cell refuses.

For each candidate cell (api/cell_choice.py, best first): write the instance
mappings for that cell, ask its conductor to build with `admission` (the cell
refuses at once with NoValidHost when no live host has room: its own view is
current, ours is up to a heartbeat old), and on a refusal or an unreachable
cell (no answer within BUILD_BOUND) remove the mappings and try the next. The last candidate builds without
admission: with no room anywhere the server goes to ERROR with Nova's "No
valid host" fault, as in Nova, rather than the request failing; and its build is
sent again while its conductor restarts (RESTART_BOUND): one conductor's death
does not fail a boot. Nothing is left half-made: a
failure other than those removes the mappings, and after a timeout (the cell
may have made the rows) asks the cell to drop them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from api import quota
from api.cell_router import Cell, CellRouter
from api.compute import mappings
from cells import errors
from cells.context import RequestContext
from cells.db.engine import Database

LOG = logging.getLogger(__name__)
_CLEANUPS: set[asyncio.Task[None]] = set()  # strong refs to background cleanups
BUILD_BOUND = 5.0  # seconds a cell has to take a boot (it only writes rows) before the next is tried
FORGET_BOUND = 60.0  # seconds an unreachable cell is asked again to drop a boot the API gave up on
FORGET_RETRY = 1.0
CELL_POLL = 0.25  # seconds between looks for a down cell coming back, when no cell is up
RESTART_BOUND = 15.0  # seconds the last candidate cell's build is sent again while its conductor restarts

RecordsFor = Callable[[str], list[dict[str, Any]]]
SpecFor = Callable[[list[dict[str, Any]]], dict[str, Any]]


async def build(router: CellRouter, db: Database, ctx: RequestContext, flavor: dict[str, Any],
                zone: str | None, hints: dict[str, Any], records_for: RecordsFor,
                spec_for: SpecFor, admission: quota.Admission | None = None,
                attributes: mappings.ServerAttributes = mappings.NO_ATTRIBUTES) -> tuple[Cell, list[dict[str, Any]]]:
    """(the cell that took the boot, the instance records sent to it). With `admission` the
    mappings are written only for as many records as the project's quota admits (mappings.add)."""
    tried: list[str] = []
    last: errors.CellcloudError | None = None
    failures: list[errors.CellcloudError] = []  # each candidate cell's failure
    candidates = router.candidates(flavor, zone, hints)
    if not candidates and router.unreachable():
        candidates = await _wait_for_a_cell(router, flavor, zone, hints)
    for i, cell in enumerate(candidates):
        records = await mappings.add(db, records_for(cell.path), cell.path, admission, attributes)
        uuids = [r["uuid"] for r in records]
        last_candidate = i == len(candidates) - 1
        try:
            await _send_build(cell, ctx, records, {**spec_for(records), "admission": not last_candidate},
                              RESTART_BOUND if last_candidate else 0.0)
        except BaseException as exc:
            await asyncio.shield(mappings.remove(db, uuids))  # no half-made server
            if isinstance(exc, errors.RpcError) and not isinstance(exc, errors.NoLiveMember):
                # it may have made the rows before going silent: ask it to drop them (new ids go elsewhere)
                task = asyncio.ensure_future(_forget(cell, ctx, uuids))
                _CLEANUPS.add(task)
                task.add_done_callback(_CLEANUPS.discard)
            if isinstance(exc, (errors.NoValidHost, errors.RpcError)):  # refused, or down: the next cell
                LOG.info("cell %s did not take a boot (%s): trying the next", cell.path, exc)
                tried.append(cell.path)
                failures.append(exc)
                last = exc
                continue
            raise
        mappings.mark_built(db, uuids)
        router.pending.add(cell.path, int(flavor.get("ram") or 0), int(flavor.get("vcpus") or 0), len(records))
        return cell, records
    where = f" in availability zone {zone}" if zone else ""
    down = tried if tried else router.unreachable()
    if down and all(isinstance(e, errors.RpcError) for e in failures):
        # no cell refused: every one tried was unreachable, or none could be tried because cells
        # are down (a conductor or router restarting): a 503 the client may retry, not Nova's 500
        # "No valid host"; nothing was made (mappings removed above)
        raise errors.CellsUnreachable(reason=f"{', '.join(down)} unreachable{where}."
                                             + (f" Last error: {last.message}" if last else ""))
    detail = f" Tried: {', '.join(tried)}." if tried else " No cell is reachable."
    raise errors.NoValidHost(reason=f"No cell{where} could take the server.{detail}"
                                    + (f" Last refusal: {last.message}" if last else ""))


async def _send_build(cell: Cell, ctx: RequestContext, records: list[dict[str, Any]], spec: dict[str, Any],
                      resend_for: float) -> None:
    """build_instances to the cell; when its conductor went away before answering (killed: the
    supervisor restarts it; MemberGone, a timeout, or no member for a moment) it is sent again, with
    the same records, for up to `resend_for` seconds: the conductor's build_instances is idempotent
    (a repeat gets the rows the first one made, and the restarted conductor schedules what the dead
    one left), so the last cell a boot can go to does not fail it because one conductor died."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + resend_for
    while True:
        try:
            await cell.conductor.build_instances(ctx.with_timeout(BUILD_BOUND), records, spec)
            return
        except (errors.MemberGone, errors.RpcTimeout, errors.NoLiveMember) as exc:
            if loop.time() >= give_up:
                raise
            LOG.info("cell %s: build_instances unanswered (%s): sending it again", cell.path, exc)
        await asyncio.sleep(CELL_POLL)


async def _wait_for_a_cell(router: CellRouter, flavor: dict[str, Any], zone: str | None,
                           hints: dict[str, Any]) -> list[Cell]:
    """Candidates, waiting up to BUILD_BOUND for a down cell to come back: a cell is down for us
    while its conductor restarts and until the new one's first capacity report (a beat or two)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + BUILD_BOUND
    while loop.time() < give_up:
        await asyncio.sleep(CELL_POLL)
        if candidates := router.candidates(flavor, zone, hints):
            return candidates
    return []


async def _forget(cell: Cell, ctx: RequestContext, uuids: list[str]) -> None:
    """Drop what a cell that went silent may have made. A cell unreachable now (its conductor
    killed and restarting) is asked again until FORGET_BOUND: the rows a killed conductor wrote
    are scheduled by its restarted process, and would be servers nobody maps, holding claims,
    ports and quota."""
    ctx = dataclasses.replace(ctx, deadline=None)  # the boot's deadline has passed by now
    loop = asyncio.get_running_loop()
    give_up = loop.time() + FORGET_BOUND
    for instance_uuid in uuids:
        while True:
            try:
                await cell.conductor.instance_delete(ctx, instance_uuid)
            except errors.RpcError as exc:
                if loop.time() < give_up:
                    LOG.info("cleanup of unmapped instance %s: %s; asking again", instance_uuid, exc)
                    await asyncio.sleep(FORGET_RETRY)
                    continue
                LOG.warning("cleanup of unmapped instance %s given up: %s", instance_uuid, exc)
            except errors.CellcloudError as exc:  # InstanceNotFound: never made
                LOG.info("cleanup of unmapped instance %s: %s", instance_uuid, exc)
            break
