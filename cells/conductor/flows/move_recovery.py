"""What every move flow (flows/moves.py, flows/evacuate.py) does when it cannot go on.

Before each step that changes the record, the owner checks in the same transaction that
the move is still its to drive (`why_stop`):
  DELETED  the server is deleted or being deleted: the delete removes the server's own
           copy; the flow removes the destination copy it made (the delete may have come
           before that copy existed), releases the migration's claim and stops.
  TAKEN    another conductor adopted the move (we were taken for dead: a long stall), or
           it ended: the flow stops and leaves everything to the new owner.
A failed step (or an adopted evacuation whose owner died; an adopted resize or migration goes
on: flows/moves.py adopt) is rolled back: the destination copy
removed, the source guest started again (not for an evacuation: its source is dead), the
record back where it was with a fault on the action. Never two running copies, never none.
Every compute step is idempotent and serialized per instance on the compute, so a rollback
that races the dead owner's last call waits for it and then undoes it.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, state_of, state_values
from cells.conductor.flows import move_volumes
from cells.conductor.flows.delete import remove_copy
from cells.context import RequestContext
from cells.db import action_records, claims, migration_records
from cells.db import instances as idb
from cells.db.commit_hooks import after_commit
from cells.lifecycle import Event, on
from cells.metrics import MOVES
from cells.objects.instance import TaskState, utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpcapi.move_methods import MoveComputeAPI

LOG = logging.getLogger(__name__)
DELETED, TAKEN = "deleted", "taken"
PREP, MIGRATING, REBUILDING = TaskState.RESIZE_PREP, TaskState.RESIZE_MIGRATING, TaskState.REBUILDING
IN_FLIGHT_TASKS = {"resize": (PREP, MIGRATING), "migration": (PREP, MIGRATING), "evacuation": (REBUILDING,)}
ACTION_OF = {"resize": "resize", "migration": "migrate", "evacuation": "evacuate"}  # migration_type -> action


class Stopped(Exception):
    """The owner must stop driving the move (reason DELETED or TAKEN)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def why_stop(conn: Connection, env: FlowEnv, mig: dict[str, Any], statuses: Iterable[str] = migration_records.IN_FLIGHT,
             tasks: Iterable[str] | None = None) -> str | None:
    """None while the move is ours to drive (status in `statuses`, the instance's task in
    `tasks`: by default the in-flight ones of its kind); else DELETED or TAKEN. Locks the row."""
    row = idb.get_row(conn, mig["instance_uuid"], lock=True)
    if row is None or row.deleted or row.task_state == TaskState.DELETING:
        return DELETED
    cur = migration_records.get(conn, mig["uuid"])
    tasks = IN_FLIGHT_TASKS[mig["migration_type"]] if tasks is None else tuple(tasks)
    if cur is None or cur.conductor_id != env.conductor_id or cur.status not in statuses \
            or row.task_state not in tasks:
        return TAKEN
    return None


async def go_on(env: FlowEnv, unit: Callable[[Connection], str | None]) -> None:
    """Run one guarded step (a unit of work returning why_stop's answer); Stopped if it refused."""
    reason = await env.db.write(unit)
    if reason is not None:
        raise Stopped(reason)


def _closed_by_delete(conn: Connection, mig: dict[str, Any], action: str) -> None:
    claims.release_claim(conn, mig["uuid"])  # complete_delete does too: whichever comes first
    cur = migration_records.get(conn, mig["uuid"])
    if cur is not None and cur.status in migration_records.IN_FLIGHT:
        migration_records.set_migration(conn, mig["uuid"], status="error")
    action_records.fail_open_events(conn, mig["instance_uuid"], action, f"Instance was deleted during the {action}")


def fail(conn: Connection, env: FlowEnv, mig: dict[str, Any], action: str, message: str) -> str | None:
    """Roll the record back to before the move (the server stays where it was, the fault on
    the action), when the move is still ours; returns why_stop's answer."""
    reason = why_stop(conn, env, mig)
    if reason == DELETED:
        _closed_by_delete(conn, mig, action)
    if reason is not None:
        return reason
    uuid = mig["instance_uuid"]
    claims.release_claim(conn, mig["uuid"])
    migration_records.set_migration(conn, mig["uuid"], status="error")
    row = idb.get_row(conn, uuid, lock=True)  # locked by why_stop already, which found it
    if row is None:
        raise errors.InstanceNotFound(instance_id=uuid)
    state, _ = on(Event.MOVE_FAILED, state_of(row), uuid, back_to=mig["old_vm_state"])  # no actions
    idb.update_row(conn, uuid, {**state_values(state), "host": mig["source_host"], "flavor": mig["old_flavor"],
                                "updated_at": utcnow_iso()})
    action_records.add_fault(conn, uuid, action_records.make_fault(message), mig["source_host"])
    action_records.fail_open_events(conn, uuid, action, message)
    after_commit(conn, MOVES.labels(action, "error").inc)
    return None


async def stopped(env: FlowEnv, ctx: RequestContext, action: str, record: InstanceRecord, mig: dict[str, Any],
                  reason: str) -> None:
    if reason == TAKEN:
        LOG.warning("%s %s of %s is no longer ours (adopted or ended): leaving it", action, mig["uuid"],
                    record["uuid"])
        return
    LOG.info("%s of %s stopped: the server is being deleted", action, record["uuid"])
    dest = mig.get("dest_host")
    if dest and dest != mig["source_host"]:  # a same-host move has only the server's own copy
        await remove_copy(env, ctx, str(dest), record, mig)
    await env.db.write(lambda conn: _closed_by_delete(conn, mig, action))


async def undo_guests(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, mig: dict[str, Any]) -> None:
    """Best effort: no guest left on the destination, the source guest as before (a host
    that is down is skipped: its reaper removes a guest whose record is elsewhere)."""
    compute = MoveComputeAPI(env.service)
    dest, source = mig.get("dest_host"), mig["source_host"]
    if dest and env.host_alive(str(dest)):
        try:  # on the same host: the guest back to the old flavor, stopped
            await compute.revert_move(ctx, str(dest), record, mig)
        except errors.CellcloudError as exc:
            LOG.warning("could not remove the guest of %s on %s: %s", record["uuid"], dest, exc)
    if mig["migration_type"] != "evacuation" and env.host_alive(source):
        if dest and dest != source:  # volumes a move carried go back to the source guest
            await move_volumes.carry_back(env, ctx, record, source)
        try:
            await compute.finish_revert(ctx, source, record, mig)
            if dest and dest != source:  # a source guest made again has them plugged again
                await move_volumes.plug(env, ctx, record, source)
        except errors.CellcloudError as exc:
            LOG.warning("could not restart the guest of %s on %s: %s", record["uuid"], source, exc)


async def roll_back(env: FlowEnv, ctx: RequestContext, action: str, record: InstanceRecord, mig: dict[str, Any],
                    message: str) -> None:
    reason = await env.db.read(lambda conn: why_stop(conn, env, mig))
    if reason is not None:
        await stopped(env, ctx, action, record, mig, reason)
        return
    await undo_guests(env, ctx, record, mig)
    await env.db.write(lambda conn: fail(conn, env, mig, action, message))


async def drive(env: FlowEnv, ctx: RequestContext, action: str, record: InstanceRecord, mig: dict[str, Any],
                body: Callable[[], Awaitable[None]]) -> None:
    """Run a move's steps; stop or roll back as above when they cannot go on."""
    try:
        await body()
    except Stopped as stop:
        await stopped(env, ctx, action, record, mig, stop.reason)
    except errors.CellcloudError as exc:
        LOG.warning("%s of %s failed: %s", action, record["uuid"], exc.message)
        await roll_back(env, ctx, action, record, mig, exc.message)
    except Exception as exc:  # a bug must not leave the move half-done with a live owner nobody adopts from
        LOG.exception("%s of %s failed", action, record["uuid"])
        await roll_back(env, ctx, action, record, mig, f"{action} failed: {type(exc).__name__}")
