"""Dead members: compute hosts declared dead and conductors that died mid-flow.

- A compute host that leaves the directory is only suspect (cells/rpc/liveness.py):
  nothing is done to its work. Once it is dead (silent for the cell's dead_after, or
  marked down by an operator) it is fenced in the cell DB, its builds are rescheduled
  to other hosts as a retryable build failure (fault "Compute host <host> was declared
  dead while building the instance"; ERROR only when no attempt is left), and its
  pending deletes complete (the guest is reaped when the host comes back: a fenced
  host reconciles before it serves again, then calls host_rejoined).
- A compute host that comes back from suspect gets the terminates of the deletes
  requested while it was away.
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
from cells.conductor.flows import boot_volume, network, volume_recovery
from cells.conductor.flows.boot import (
    CREATE,
    Reschedule,
    build_failed,
    fail_builds,
    record_build_failure,
    schedule_and_build,
)
from cells.conductor.flows.delete import adopt_deletes, complete_delete, pending_delete_owners
from cells.context import admin_context
from cells.db import action_records
from cells.db import hosts as hdb
from cells.db import instances as idb
from cells.db.migration_records import open_owners
from cells.db.schema import instances
from cells.objects.instance import TaskState, VmState, utcnow_iso
from cells.rpcapi.compute import ComputeAPI

LOG = logging.getLogger(__name__)
HOST_DEAD = "Compute host {host} was declared dead while building the instance"
EV_ADOPT = "conductor_adopt_build"
COMPUTE_PREFIX = "compute."


def _host_dead(conn: Connection, env: FlowEnv, host: str) -> tuple[list[tuple[str, Reschedule]], int, list[str]]:
    """Fence the host; its builds fail retryably (rescheduled or, out of attempts, ERROR);
    its deletes complete. One unit of work. Also the servers it ended or rescheduled (their root volumes
    marked for deletion are removed after the commit)."""
    c = instances.c
    hdb.fence(conn, host)
    again: list[tuple[str, Reschedule]] = []
    deleted, ended = 0, []
    fault = action_records.make_fault(HOST_DEAD.format(host=host))
    for row in idb.rows_where(conn, c.host == host, c.deleted == false(),
                              or_(c.vm_state == VmState.BUILDING, c.task_state == TaskState.DELETING)):
        ended.append(row.uuid)
        if row.task_state == TaskState.DELETING:
            complete_delete(conn, env, row)
            deleted += 1
        elif (retry := record_build_failure(conn, env, row.uuid, host, fault, retryable=True)) is not None:
            again.append((row.uuid, retry))
    return again, deleted, ended


async def host_dead(env: FlowEnv, host: str) -> None:
    again, deleted, ended = await env.db.write(lambda conn: _host_dead(conn, env, host))
    env.liveness.fenced.add(host)
    LOG.warning("compute host %s declared dead: fenced, %d builds rescheduled, %d deletes completed",
                host, len(again), deleted)
    for uuid, (spec, tried) in again:
        env.spawn(schedule_and_build(env, admin_context(), [uuid], spec, tried))
    await boot_volume.delete_released_of(env, admin_context(), ended)


def _pending_deletes(conn: Connection, host: str) -> list[Row[Any]]:
    c = instances.c
    return list(idb.rows_where(conn, c.host == host, c.deleted == false(), c.task_state == TaskState.DELETING))


async def host_back(env: FlowEnv, host: str) -> None:
    """A host back in the table (from suspect): send the terminates of the deletes asked
    meanwhile (a repeated terminate is harmless: the compute serializes per instance)."""
    if not env.host_alive(host):
        return  # fenced: its reconciliation removes those guests
    rows = await env.db.read(lambda conn: _pending_deletes(conn, host))
    for row in rows:
        try:
            await ComputeAPI(env.service).terminate_instance(admin_context(), host, env.record(row))
        except errors.CellcloudError as exc:
            LOG.warning("terminate of %s on %s not sent: %s", row.uuid, host, exc)


def _adopt(conn: Connection, env: FlowEnv, owners: list[str]) -> list[Row[Any]]:
    """Take over the builds `owners` were scheduling; returns the rows now ours."""
    c = instances.c
    rows = idb.rows_where(conn, c.conductor_id.in_(owners), c.deleted == false(),
                          c.vm_state == VmState.BUILDING, c.task_state == TaskState.SCHEDULING)
    for row in rows:
        idb.update_row(conn, row.uuid, {"conductor_id": env.conductor_id, "updated_at": utcnow_iso()})
        action_records.start_event(conn, row.uuid, CREATE, EV_ADOPT, None)
        action_records.finish_event(conn, row.uuid, CREATE, EV_ADOPT, action_records.SUCCESS,
                             f"adopted by {env.conductor_id} from {row.conductor_id}")
    return rows


async def _resume(env: FlowEnv, row: Row[Any]) -> None:
    ctx = admin_context()
    if row.host is None:  # not placed yet (or the placement was not recorded): schedule again
        spec = dict(row.request_spec or {"flavor": row.flavor})
        failure = await boot_volume.make_volumes(env, ctx, row.uuid, row.image)  # again: idempotent
        if failure is not None:
            await fail_builds(env, [row.uuid], action_records.make_fault(
                f"Build of instance {row.uuid} aborted: a volume it boots with could not be made: {failure}"), ctx)
            return
        await schedule_and_build(env, ctx, [row.uuid], spec, list(row.retry_hosts or []))
        return
    record = await network.allocate_for_build(env, ctx, env.record(row))  # idempotent
    if record is None:
        return
    try:  # a boot from a volume: its export again (idempotent), the dead owner may not have made it
        await boot_volume.export_to(env, ctx, record, str(row.host))
    except errors.CellcloudError as exc:
        await build_failed(env, ctx, row.uuid, str(row.host),
                           {"message": f"Could not export the root volume to {row.host}: {exc.message}"},
                           retryable=False)
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


def _unfinished(conn: Connection) -> list[str]:
    """Conductors with builds being scheduled, moves to drive (cells/db/migration_records.py open_owners),
    volume flows or pending deletes."""
    c = instances.c
    owners = conn.execute(select(c.conductor_id).distinct().where(
        c.conductor_id.is_not(None), c.deleted == false(), c.vm_state == VmState.BUILDING,
        c.task_state == TaskState.SCHEDULING)).scalars().all()
    return sorted({str(o) for o in owners} | set(open_owners(conn))
                                           | set(volume_recovery.owners_in_progress(conn))
                                           | set(pending_delete_owners(conn)))


async def sweep(env: FlowEnv, suspects: set[str]) -> set[str]:
    """Safety net behind the directory listener (missed events, conductor restarts): a
    conductor with unfinished work that is absent from the directory in two consecutive
    sweeps is handled as lost. Returns the names absent this time. (Hosts: the conductor's
    liveness watch, cells/conductor/manager.py.)"""
    owners = await env.db.read(_unfinished)
    absent: set[str] = set()
    dead = [o for o in owners if o != env.conductor_id and not env.service.view.alive(o)]
    absent.update(dead)
    await orphaned_builds(env, [o for o in dead if o in suspects])
    return absent


def compute_hosts(members: Iterable[Any]) -> set[str]:
    """Hosts with a live compute member, from DirectoryView members."""
    return {t[len(COMPUTE_PREFIX):] for m in members for t in m.topics if t.startswith(COMPUTE_PREFIX)}
