"""Dead members: compute hosts that left the directory and conductors that died mid-flow.

- A compute host leaves: its instances still building go to ERROR (fault
  "Compute host <host> stopped responding while building the instance", claim
  released), and its pending deletes complete (the guest is gone with the host,
  or will be reaped when the host comes back).
- A conductor dies mid-flow: a live conductor adopts the builds it was scheduling
  (building/scheduling, not yet taken over by a compute). Adoption is one
  conditional UPDATE of the owner (conductor_id) in one transaction, so of several
  live conductors exactly one wins each build; the winner resumes it: schedule
  again (the scheduler's claim replaces any claim the dead owner made) or, when
  the host was already chosen, send it to that host again (the cast carries the
  same idempotency key). The moves it was driving are adopted the same way
  (flows/moves.py adopt: rolled back, or a confirm/revert done again).
- Its volume flows (flows/volume_recovery.py) and pending deletes (flows/delete.py
  adopt_deletes) are adopted too, and driven on from where the DB says they are.
- Both are noticed on the directory's leave event and, as a safety net, by a periodic
  sweep of the owners recorded on unfinished work that are not live.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, false, or_, select
from sqlalchemy.engine import Row

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows import network, volume_recovery
from cells.conductor.flows.boot import CREATE, build_failed, schedule_and_build, set_error
from cells.conductor.flows.delete import adopt_deletes, complete_delete, pending_delete_owners
from cells.context import admin_context
from cells.db import actions
from cells.db import instances as idb
from cells.db.moves import open_owners
from cells.db.schema import instances
from cells.lifecycle import Event
from cells.objects.instance import TaskState, VmState, utcnow_iso
from cells.rpcapi.compute import ComputeAPI

LOG = logging.getLogger(__name__)
HOST_LOST = "Compute host {host} stopped responding while building the instance"
EV_ADOPT = "conductor_adopt_build"
COMPUTE_PREFIX = "compute."


def _host_lost(conn: Connection, env: FlowEnv, host: str) -> tuple[int, int]:
    c = instances.c
    failed = deleted = 0
    for row in idb.rows_where(conn, c.host == host, c.deleted == false(),
                              or_(c.vm_state == VmState.BUILDING, c.task_state == TaskState.DELETING)):
        if row.task_state == TaskState.DELETING:
            complete_delete(conn, env, row)
            deleted += 1
        else:
            set_error(conn, row, actions.make_fault(HOST_LOST.format(host=host)), Event.HOST_LOST)
            failed += 1
    return failed, deleted


async def host_lost(env: FlowEnv, host: str) -> None:
    failed, deleted = await env.db.write(lambda conn: _host_lost(conn, env, host))
    if failed or deleted:
        LOG.warning("compute host %s lost: %d builds failed, %d deletes completed", host, failed, deleted)


def _adopt(conn: Connection, env: FlowEnv, owners: list[str]) -> list[Row[Any]]:
    """Take over the builds `owners` were scheduling; returns the rows now ours."""
    c = instances.c
    rows = idb.rows_where(conn, c.conductor_id.in_(owners), c.deleted == false(),
                          c.vm_state == VmState.BUILDING, c.task_state == TaskState.SCHEDULING)
    for row in rows:
        idb.update_row(conn, row.uuid, {"conductor_id": env.conductor_id, "updated_at": utcnow_iso()})
        actions.start_event(conn, row.uuid, CREATE, EV_ADOPT, None)
        actions.finish_event(conn, row.uuid, CREATE, EV_ADOPT, actions.SUCCESS,
                             f"adopted by {env.conductor_id} from {row.conductor_id}")
    return rows


async def _resume(env: FlowEnv, row: Row[Any]) -> None:
    ctx = admin_context()
    if row.host is None:  # not placed yet (or the placement was not recorded): schedule again
        spec = dict(row.request_spec or {"flavor": row.flavor})
        await schedule_and_build(env, ctx, [row.uuid], spec, list(row.retry_hosts or []))
        return
    record = await network.allocate_for_build(env, ctx, env.record(row))  # idempotent
    if record is None:
        return
    try:  # same key as the dead owner's cast: a compute that got it already drops the repeat
        await ComputeAPI(env.service).build_and_run_instance(ctx, str(row.host), record)
    except errors.CellcloudError as exc:
        await build_failed(env, ctx, row.uuid, str(row.host),
                           {"message": f"Could not reach compute host {row.host}: {exc.message}"}, retryable=True)


async def orphaned_builds(env: FlowEnv, owners: Iterable[str]) -> None:
    """Adopt and resume the builds of conductors that left (or of our own previous run)."""
    owners = list(owners)
    if not owners:
        return
    rows = await env.db.write(lambda conn: _adopt(conn, env, owners))
    if rows:
        LOG.warning("adopted %d builds of conductor(s) %s", len(rows), owners)
    for row in rows:
        env.spawn(_resume(env, row))
    from cells.conductor.flows import moves  # imports boot, delete: kept out of this module's import time
    await moves.adopt(env, owners)
    volumes = await volume_recovery.adopt(env, owners)
    deletes = await adopt_deletes(env, owners)
    if volumes or deletes:
        LOG.warning("adopted %d volume flows and %d pending deletes of conductor(s) %s", volumes, deletes, owners)


def _unfinished(conn: Connection) -> tuple[list[str], list[str]]:
    """Hosts with builds or deletes in flight, and conductors with builds being scheduled,
    moves to drive (cells/db/moves.py open_owners), volume flows or pending deletes."""
    c = instances.c
    hosts = conn.execute(select(c.host).distinct().where(
        c.host.is_not(None), c.deleted == false(),
        or_(c.vm_state == VmState.BUILDING, c.task_state == TaskState.DELETING))).scalars().all()
    owners = conn.execute(select(c.conductor_id).distinct().where(
        c.conductor_id.is_not(None), c.deleted == false(), c.vm_state == VmState.BUILDING,
        c.task_state == TaskState.SCHEDULING)).scalars().all()
    return [str(h) for h in hosts], sorted({str(o) for o in owners} | set(open_owners(conn))
                                           | set(volume_recovery.owners_in_progress(conn))
                                           | set(pending_delete_owners(conn)))


async def sweep(env: FlowEnv, suspects: set[str]) -> set[str]:
    """Safety net behind the directory listener (missed events, conductor restarts):
    a host or conductor with unfinished work that is absent from the directory in two
    consecutive sweeps is handled as lost. Returns the names absent this time."""
    hosts, owners = await env.db.read(_unfinished)
    absent: set[str] = set()
    for host in hosts:
        if not env.host_alive(host):
            absent.add(COMPUTE_PREFIX + host)
            if COMPUTE_PREFIX + host in suspects:
                await host_lost(env, host)
    dead = [o for o in owners if o != env.conductor_id and not env.service.view.alive(o)]
    absent.update(dead)
    await orphaned_builds(env, [o for o in dead if o in suspects])
    return absent


def compute_hosts(members: Iterable[Any]) -> set[str]:
    """Hosts with a live compute member, from DirectoryView members."""
    return {t[len(COMPUTE_PREFIX):] for m in members for t in m.topics if t.startswith(COMPUTE_PREFIX)}
