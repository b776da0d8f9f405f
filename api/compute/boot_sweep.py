"""Half-made boots (issue 14): an API process killed between writing a boot's instance
mappings and its cell taking the build leaves mappings that point at nothing, which a
listing of a down cell would show and the project's quota would count (api/quota.py).

A mapping is written `built = false`; the API marks it built once the cell's conductor
answered build_instances (api/compute/mappings.py mark_built, in the background). Every
API process runs this sweep: a mapping still not built after the grace (cluster.yaml
api.half_made_boot_grace, 60 s by default and never under 25: beyond the time a boot's build
call may be in flight, api/compute/cell_boot.py, so no boot in flight is touched) is checked
with its cell. The cell has the server: the mapping is marked built. The cell says it
does not exist: the mapping is removed, and with it what it counted against the quota.
A cell that does not answer is asked again on the next sweep. Several API workers may
sweep the same mapping at once: each step is idempotent.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web
from sqlalchemy import Connection, false, select

from api.cell_router import CellRouter
from api.compute import mappings
from api.db.schema import instance_mappings
from api.keys import CLUSTER, DB, ROUTER
from api.timeutil import utcnow
from cells import errors
from cells.context import admin_context
from cells.db.engine import Database

LOG = logging.getLogger(__name__)
MAX_INTERVAL = 15.0  # seconds between sweeps at most (a fifth of a short grace)
BATCH = 100  # mappings checked per sweep
ASK_BOUND = 5.0  # seconds a cell has to answer about one server


def _suspects(conn: Connection, grace: float) -> list[tuple[str, str]]:
    m = instance_mappings.c
    before = utcnow() - timedelta(seconds=grace)
    rows = conn.execute(select(m.instance_uuid, m.cell_path).where(m.built == false(), m.created_at < before)
                        .order_by(m.created_at).limit(BATCH)).all()
    return [(str(r.instance_uuid), str(r.cell_path)) for r in rows]


def sweep_interval(grace: float) -> float:
    """Seconds between sweeps: a half-made boot is swept at most a fifth of its grace late (15 s at most)."""
    return min(MAX_INTERVAL, max(1.0, grace / 5))


async def sweep_once(db: Database, router: CellRouter, grace: float) -> tuple[list[str], list[str]]:
    """(mappings removed, mappings confirmed built) by one pass."""
    gone: list[str] = []
    built: list[str] = []
    for uuid, cell_path in await db.read(lambda conn: _suspects(conn, grace)):
        try:
            await router.conductor(cell_path).instance_get(admin_context().with_timeout(ASK_BOUND), uuid)
        except errors.InstanceNotFound:
            gone.append(uuid)
        except errors.CellcloudError as exc:  # the cell is down or unknown now: asked again next time
            LOG.info("half-made boot check of %s in %s deferred: %s", uuid, cell_path, exc)
        else:
            built.append(uuid)
    if gone:
        await mappings.remove(db, gone)
        LOG.warning("removed %d instance mappings whose boot never reached its cell: %s", len(gone), gone)
    if built:
        await mappings.set_built(db, built)
    return gone, built


async def _loop(db: Database, router: CellRouter, grace: float) -> None:
    while True:
        await asyncio.sleep(sweep_interval(grace))
        try:
            await sweep_once(db, router, grace)
        except Exception:  # a safety net must never take the API down
            LOG.exception("half-made boot sweep failed")


async def sweeper(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry (after the database and the cells): the sweep runs while the API does."""
    task = asyncio.create_task(_loop(app[DB], app[ROUTER], app[CLUSTER].api.half_made_boot_grace))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
