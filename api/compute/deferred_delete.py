"""Soft delete (Nova's deferred delete, issue 16): cluster.yaml `reclaim_instance_interval` seconds.

    DELETE /servers/{id}               interval 0 (default): deleted now. Otherwise a server a compute
                                       holds and no flow is changing is powered off and kept:
                                       SOFT_DELETED, still counted against the quota (as Nova)
    {"restore": null}                  202; SOFT_DELETED -> ACTIVE (409 from any other state)
    {"forceDelete": null}              202; deleted now, whatever its state (409 when locked)

A server with nothing to keep (never reached a host, building, a task in flight, rescued, or
already SOFT_DELETED) is deleted at once, as Nova deletes what has no compute. The reclaim is a sweep each
API process runs (`sweeper`): every cell is asked for its SOFT_DELETED servers, and one whose
soft delete (its terminated_at, kept in its cell's DB) is older than the interval is deleted through
the same path as a DELETE, so its mapping and quota go with it. Nothing of it lives in memory: an
API or conductor restart only delays a reclaim to the next sweep.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from api.compute import mappings, service
from api.keys import CLUSTER, DB, ENGINE, ROUTER
from api.timeutil import parse, utcnow
from api.validation import validate
from cells import errors
from cells.context import RequestContext, admin_context
from cells.lifecycle import SOFT_DELETE_FROM
from cells.objects.instance import VmState
from cells.objects.records import InstanceRecord

LOG = logging.getLogger(__name__)
ACTIONS = ("restore", "forceDelete")
_NULL_OR_EMPTY = {"type": ["null", "object"], "properties": {}, "additionalProperties": False}
MAX_SWEEP_INTERVAL = 10.0  # seconds between reclaim sweeps at most (a third of a short reclaim interval)
BATCH = 200  # soft-deleted servers asked of one cell per sweep
ASK_BOUND = 5.0  # seconds a cell has to answer


def keepable(record: InstanceRecord) -> bool:
    """Whether a DELETE keeps this server (a compute holds it, no flow is changing it)."""
    return bool(record.get("host")) and record.get("vm_state") in SOFT_DELETE_FROM \
        and record.get("task_state") is None


async def delete(cc: service.ComputeContext, ctx: RequestContext, server_id: str) -> None:
    """DELETE /servers/{id}: soft when the cluster keeps deleted servers and this one has something to keep."""
    if cc.cluster.reclaim_instance_interval > 0 and keepable(await service.show(cc, ctx, server_id)):
        try:
            await service.act(cc, ctx, server_id, "soft_delete")
            return
        except errors.InstanceIsLocked:
            raise
        except errors.Conflict as exc:  # changed meanwhile, or its host went away: deleted for real
            LOG.info("soft delete of %s not possible (%s): deleting it", server_id, exc.message)
    await service.delete(cc, ctx, server_id)


async def deferred_action(request: web.Request, ctx: RequestContext, server_id: str, name: str,
                          spec: Any) -> web.Response:
    cc = service.ComputeContext.of(request)
    await mappings.get(cc.db, ctx, server_id)  # 404 for a server the caller may not see, before the body
    validate(_NULL_OR_EMPTY, spec, name)
    if name == "restore":
        await service.act(cc, ctx, server_id, "restore")
    else:
        await service.delete(cc, ctx, server_id)
    return web.Response(status=202)


def _due(record: InstanceRecord, before: datetime) -> bool:
    when = parse(record.get("terminated_at"))
    return record.get("task_state") is None and when is not None and when <= before


async def reclaim_once(cc: service.ComputeContext, now: datetime | None = None) -> list[str]:
    """One sweep: every SOFT_DELETED server older than the interval deleted (`now`: naive UTC); their ids. A cell that
    does not answer is asked again next time."""
    before = (now or utcnow()) - timedelta(seconds=cc.cluster.reclaim_instance_interval)
    reclaimed: list[str] = []
    for path in list(cc.router.cells):
        ctx = admin_context().with_timeout(ASK_BOUND)
        try:
            records = await cc.router.conductor(path).instance_list(
                ctx, {"vm_state": VmState.SOFT_DELETED}, [], [], BATCH, None)
        except errors.CellcloudError as exc:
            LOG.info("reclaim: cell %s not asked: %s", path, exc)
            continue
        for record in records:
            if not _due(record, before):
                continue
            try:
                await service.delete(cc, admin_context().with_timeout(ASK_BOUND), str(record["uuid"]))
                reclaimed.append(str(record["uuid"]))
            except errors.CellcloudError as exc:
                LOG.warning("reclaim of %s deferred: %s", record["uuid"], exc)
    if reclaimed:
        LOG.info("reclaimed %d soft-deleted servers: %s", len(reclaimed), reclaimed)
    return reclaimed


def sweep_interval(reclaim_interval: int) -> float:
    """Seconds between sweeps: a server is reclaimed at most a third of its interval late (10 s at most)."""
    return min(MAX_SWEEP_INTERVAL, max(1.0, reclaim_interval / 3))


async def _loop(cc: service.ComputeContext) -> None:
    while True:
        await asyncio.sleep(sweep_interval(cc.cluster.reclaim_instance_interval))
        try:
            await reclaim_once(cc)
        except Exception:  # a safety net must never take the API down
            LOG.exception("reclaim sweep failed")


async def sweeper(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry (after the database and the cells): the reclaim runs while the API does, when on."""
    task = None
    if app[CLUSTER].reclaim_instance_interval > 0:
        cc = service.ComputeContext(router=app[ROUTER], engine=app[ENGINE], db=app[DB], cluster=app[CLUSTER])
        task = asyncio.create_task(_loop(cc))
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
