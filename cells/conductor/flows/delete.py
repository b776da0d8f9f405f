"""Delete: an instance whose host is dead (or never chosen) is deleted right away
("local delete", as Nova); otherwise task_state=deleting and the host's compute
terminates the guest, then reports instance_destroyed (a suspect host gets the
terminate when it is back; if it is declared dead instead, the delete completes then). Either way the claim is
released in the same transaction that marks the row deleted.

A server in the middle of a move (or in VERIFY_RESIZE) has a copy on a second host and a
claim under its migration: the delete removes that copy too (the source of a finished
move, the destination of one in flight; the move flow, seeing the delete, removes what
it makes afterwards) and releases the migration's claim with the instance's.

A pending delete (deleting, terminate sent to the host) is owned by the conductor that
asked for it (instances.conductor_id). If that conductor dies before the terminate went
out, a live conductor adopts the delete (`adopt_deletes`) and sends it again (same
idempotency key: a compute that got it drops the repeat), or completes it locally when
the host is gone."""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, false, select

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx, state_of, state_values
from cells.conductor.flows import boot_volume
from cells.context import RequestContext, admin_context
from cells.db import action_records, claims, migration_records
from cells.db import instances as idb
from cells.db.commit_hooks import after_commit
from cells.db.fast import AnyRow
from cells.db.schema import instances
from cells.db.volumes import release_instance_volumes
from cells.lifecycle import Action, Event, carry_out, check_unlocked, on
from cells.metrics import DELETES
from cells.network.instance_ports import release_instance
from cells.objects.instance import TaskState, utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpcapi.compute import ComputeAPI
from cells.rpcapi.move_methods import MoveComputeAPI

LOG = logging.getLogger(__name__)
DELETE = "delete"
EV_TERMINATE = "compute_terminate_instance"
EV_LOCAL = "conductor_local_delete"


def visible(ctx: RequestContext, row: AnyRow) -> bool:
    """Project scope as Nova's DB layer: admins and services see all, others their project."""
    return ctx.is_admin or "service" in ctx.roles or ctx.project is None or row.project_id == ctx.project


def complete_delete(conn: Connection, env: FlowEnv, row: AnyRow, event: str = EV_TERMINATE) -> InstanceRecord:
    """deleting -> DELETED: claim released, terminated_at set, actions closed (in the caller's unit of work)."""
    state = state_of(row)
    if state.task_state != TaskState.DELETING:
        state, actions = on(Event.DELETE_REQUESTED, state, row.uuid)
        # completed here: no guest to terminate (no host, a dead one, or its compute cleaned up)
        carry_out(actions, {Action.CAST_TERMINATE: lambda: None})
    state, actions = on(Event.DESTROYED, state, row.uuid)
    now = utcnow_iso()
    values = {**state_values(state), "updated_at": now}
    carry_out(actions, {
        Action.RELEASE_CLAIM: lambda: claims.release_claim(conn, row.uuid),
        Action.SET_TERMINATED_AT: lambda: values.update(terminated_at=now),
        Action.MARK_DELETED: lambda: values.update(deleted=True),
    })
    migration_records.end_for_delete(conn, row.uuid)  # a move's destination claim goes with it
    release_instance(conn, row.uuid)  # ports and fixed IPs go back in the same commit
    release_instance_volumes(conn, row.uuid)  # and its volumes are available again (issue 6)
    boot_volume.release_boot_volumes(conn, env, row, build_failed=False)  # or deleted: delete_on_termination
    idb.update_row(conn, row.uuid, values)
    action_records.fail_open_events(conn, row.uuid, "create", "Instance was deleted while building")
    action_records.finish_event(conn, row.uuid, DELETE, event, action_records.SUCCESS, host=row.host)
    action_records.finish_action(conn, row.uuid, DELETE)
    after_commit(conn, DELETES.labels("deleted").inc)
    return env.record({**row._mapping, **values})


Copies = list[tuple[str, dict[str, Any]]]  # (host, migration): copies of a moving server elsewhere


def _request_delete(conn: Connection, env: FlowEnv, ctx: RequestContext,
                    uuid: str) -> tuple[InstanceRecord, str | None, Copies]:
    """(record, host to cast terminate to or None when deleted locally, other copies to remove)."""
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    check_unlocked(row.locked_by, ctx.is_admin, uuid)
    state, actions = on(Event.DELETE_REQUESTED, state_of(row), uuid)
    if row.task_state != TaskState.DELETING:  # a repeated delete re-sends the terminate, same action
        action_records.start_action(conn, ctx, uuid, DELETE, row.project_id)
    others = migration_records.other_copies(conn, row)  # before complete_delete ends the moves
    host = row.host
    if host is None or env.host_dead(host):  # the terminate has no one to go to: the delete completes here
        return complete_delete(conn, env, row, EV_LOCAL), None, others
    values = {**state_values(state), "conductor_id": env.conductor_id, "updated_at": utcnow_iso()}
    cast_to: list[str] = []
    # a suspect (or fenced) host gets the terminate when it is back (flows/hosts.py host_back, or
    # its reconciliation); if it is declared dead instead, the delete completes then
    carry_out(actions, {Action.CAST_TERMINATE: lambda: cast_to.extend([str(host)] if env.host_alive(host) else [])})
    idb.update_row(conn, uuid, values)
    action_records.start_event(conn, uuid, DELETE, EV_TERMINATE, host)
    return env.record({**row._mapping, **values}), (cast_to[0] if cast_to else None), others


async def remove_copy(env: FlowEnv, ctx: RequestContext, host: str, record: InstanceRecord,
                      mig: dict[str, Any]) -> None:
    """Destroy the copy of a moving server on `host` (not its recorded host), when the host is
    up; a host that is down reaps it when it comes back (the record is elsewhere or deleted)."""
    if not env.host_alive(host):
        return
    compute = MoveComputeAPI(env.service)
    drop = compute.confirm_move if host == mig["source_host"] else compute.revert_move
    try:
        await drop(ctx, host, record, mig)
    except errors.CellcloudError as exc:
        LOG.warning("copy of %s on %s not removed now (%s); its reaper will", record["uuid"], host, exc)


async def _remove_copies(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, others: Copies) -> None:
    for host, mig in others:
        await remove_copy(env, ctx, host, record, mig)


async def instance_delete(env: FlowEnv, ctx: RequestContext, uuid: str) -> InstanceRecord:
    record, cast_to, others = await env.db.write(lambda conn: _request_delete(conn, env, ctx, uuid))
    if others:
        env.spawn(_remove_copies(env, background_ctx(ctx), record, others))
    if cast_to is not None:
        done = await send_terminate(env, ctx, cast_to, record)
        if done is not None:
            return done
    elif record["deleted"]:  # deleted here: a root volume it marked for deletion goes now
        await boot_volume.delete_released(env, ctx, boot_volume.boot_volume_ids(record["image"]))
    return record


async def send_terminate(env: FlowEnv, ctx: RequestContext, host: str,
                         record: InstanceRecord) -> InstanceRecord | None:
    """Cast the terminate; the record deleted locally (returned) when the host is dead by now (a
    suspect one gets it when it is back: flows/hosts.py host_back)."""
    try:
        await ComputeAPI(env.service).terminate_instance(ctx, host, record)
    except errors.NoLiveMember:  # the host left between the check and the cast: suspect at most
        if env.host_dead(host):
            return await delete_locally(env, record["uuid"])
        LOG.warning("terminate of %s not sent: host %s is %s", record["uuid"], host, env.host_state(host))
    except errors.CellcloudError as exc:  # stays deleting: a repeated delete or the host-lost sweep ends it
        LOG.warning("terminate of %s on %s not sent: %s", record["uuid"], host, exc)
    return None


def pending_delete_owners(conn: Connection) -> list[str]:
    """Conductors that asked for a delete still pending (for the dead-member sweep)."""
    c = instances.c
    rows = conn.execute(select(c.conductor_id).distinct().where(
        c.conductor_id.is_not(None), c.deleted == false(), c.task_state == TaskState.DELETING)).scalars().all()
    return [str(r) for r in rows]


def _adopt_deletes(conn: Connection, env: FlowEnv, owners: list[str]) -> list[InstanceRecord]:
    c = instances.c
    taken = []
    for row in idb.rows_where(conn, c.conductor_id.in_(owners), c.deleted == false(),
                              c.task_state == TaskState.DELETING):
        idb.update_row(conn, row.uuid, {"conductor_id": env.conductor_id, "updated_at": utcnow_iso()})
        taken.append(env.record(row))
    return taken


async def adopt_deletes(env: FlowEnv, owners: list[str]) -> int:
    """Pending deletes of conductors that left: the terminate sent again (or a local delete)."""
    if not owners:
        return 0
    taken = await env.db.write(lambda conn: _adopt_deletes(conn, env, owners))
    ctx = admin_context()
    for record in taken:
        LOG.warning("adopting the pending delete of %s from %s", record["uuid"], owners)
        host = record["host"]
        if host is None or env.host_dead(str(host)):
            await delete_locally(env, record["uuid"])
        elif env.host_alive(str(host)):
            await send_terminate(env, ctx, str(host), record)
        # else suspect or fenced: sent when it is back (flows/hosts.py host_back), completed if it dies
    return len(taken)


def _delete_locally(conn: Connection, env: FlowEnv, uuid: str) -> InstanceRecord:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None:
        raise errors.InstanceNotFound(instance_id=uuid)
    return env.record(row) if row.deleted else complete_delete(conn, env, row, EV_LOCAL)


async def delete_locally(env: FlowEnv, uuid: str) -> InstanceRecord:
    record = await env.db.write(lambda conn: _delete_locally(conn, env, uuid))
    await boot_volume.delete_released(env, admin_context(), boot_volume.boot_volume_ids(record["image"]))
    return record


def _destroyed(conn: Connection, env: FlowEnv, uuid: str, host: str) -> list[str]:
    """The server's boot volumes once its delete completed (those it marked for deletion go after the commit)."""
    row = idb.get_row(conn, uuid, lock=True)
    if row is None:
        raise errors.InstanceNotFound(instance_id=uuid)
    if row.deleted:
        return []  # a repeated report (the method is retry-safe)
    if row.host not in (host, None):
        raise errors.Conflict(reason=f"instance {uuid} is on host {row.host}, not {host}")
    if row.task_state != TaskState.DELETING:
        raise errors.InstanceInvalidState(action="instance_destroyed", instance_id=uuid, attr="task_state",
                                          state=row.task_state)
    complete_delete(conn, env, row)
    return boot_volume.boot_volume_ids(row.image)


async def instance_destroyed(env: FlowEnv, ctx: RequestContext, uuid: str, host: str) -> None:
    volume_ids = await env.db.write(lambda conn: _destroyed(conn, env, uuid, host))
    await boot_volume.delete_released(env, background_ctx(ctx), volume_ids)  # the guest is gone: now its volume
