"""The compute service layer (Nova's compute/api.py): what the Nova handlers (api/compute/*.py)
and the EC2 handlers (api/ec2/actions.py) do to servers, each a function over a typed
`ComputeContext` and the caller's RequestContext, never an HTTP request.

    create(cc, ctx, BootRequest) -> new server ids         api/compute/server_create.py resolves it
    delete(cc, ctx, server_id)                             the cell deletes; quota and group let go at once
    act(cc, ctx, server_id, action, args) -> record        a lifecycle action (stop, start, reboot, ...)
    console_output(cc, ctx, server_id, length) -> text

HTTP stays in the handlers: parsing, the body's schema, status codes and views.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from api import quota
from api.cell_router import CellRouter
from api.compute import down_cells, mappings, placement, server_groups
from api.compute.server_create import BootRequest, instance_records, request_spec, resolve
from api.keys import CLUSTER, DB, ENGINE, ROUTER
from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.db.engine import Database
from cells.rpcapi.conductor import ConductorAPI


@dataclass(frozen=True)
class ComputeContext:
    """What the compute service needs of the API process: the cells, the API DB, the cluster's config."""
    router: CellRouter
    engine: AsyncEngine
    db: Database  # the same API DB as `engine`, one thread hop per unit of work
    cluster: ClusterConfig

    @classmethod
    def of(cls, request: web.Request) -> ComputeContext:
        app = request.config_dict
        return cls(router=app[ROUTER], engine=app[ENGINE], db=app[DB], cluster=app[CLUSTER])


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
        _, records = await placement.build(  # best cell first, the next when one refuses
            cc.router, cc.db, ctx, spec.flavor, spec.availability_zone, choice, records_for, spec_for, admission)
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
    conductor, uuid = await _locate(cc, ctx, server_id)
    await conductor.instance_delete(ctx, uuid)
    await down_cells.queue_delete(cc.db, uuid)
    await server_groups.remove_members(cc.engine, [uuid])


async def act(cc: ComputeContext, ctx: RequestContext, server_id: str, action: str,
              args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A lifecycle action (cells/lifecycle.py USER_ACTIONS: stop, start, reboot, reboot_hard, pause,
    rebuild, ...): 409 when it does not fit the server's state; the record with its task state."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.instance_action(ctx, uuid, action, args)


async def console_output(cc: ComputeContext, ctx: RequestContext, server_id: str, length: int | None) -> str:
    """The last `length` lines of the server's serial console log (None: all of it)."""
    conductor, uuid = await _locate(cc, ctx, server_id)
    return await conductor.console_output(ctx, uuid, length)

