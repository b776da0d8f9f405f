"""Lock and unlock a server (Nova's os-lock-server): a locked server refuses every change by a
non-admin (cells/lifecycle.py check_unlocked, asked by each flow as it takes the row's lock). And an
admin's os-resetState (instance_reset_state): the vm_state set to active or error, the task cleared.

    instance_lock   validate -> lock the row -> check who may lift the lock -> locked_by / reason set,
                    action "lock" or "unlock" recorded (started and finished: nothing runs on a host)

Nova's rules: the lock records "owner" when the caller is of the server's project, else "admin";
an owner's lock its project may lift, an admin's lock only an admin (403 otherwise). Locking a
locked server again takes the new locker and reason, as Nova.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from cells import errors, lifecycle
from cells.conductor.env import FlowEnv, state_of
from cells.conductor.flows.delete import visible
from cells.context import RequestContext
from cells.db import action_records
from cells.db import instances as idb
from cells.objects.instance import utcnow_iso
from cells.objects.records import InstanceRecord

MAX_REASON = 255  # Nova's locked_reason maxLength
UNLOCK_OVERRIDE = "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be performed."


def validate(lock: Any, reason: Any) -> tuple[bool, str | None]:
    if not isinstance(lock, bool):
        raise errors.Invalid(reason="lock must be true or false")
    if reason is not None and (not isinstance(reason, str) or not 1 <= len(reason) <= MAX_REASON or not lock):
        raise errors.Invalid(reason=f"locked_reason must be 1 to {MAX_REASON} characters, and only with a lock")
    return lock, reason


def _set_lock(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, lock: bool,
              reason: str | None) -> InstanceRecord:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    if lock:
        values: dict[str, Any] = {"locked_by": lifecycle.locker(ctx.project, row.project_id), "locked_reason": reason}
    else:
        if not lifecycle.may_unlock(row.locked_by, ctx.project, row.project_id, ctx.is_admin):
            raise errors.Forbidden(UNLOCK_OVERRIDE)
        values = {"locked_by": None, "locked_reason": None}
    now = utcnow_iso()
    values["updated_at"] = now
    name = "lock" if lock else "unlock"
    action_records.start_action(conn, ctx, uuid, name, row.project_id, now)
    action_records.finish_action(conn, uuid, name)
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values})


async def instance_lock(env: FlowEnv, ctx: RequestContext, uuid: str, lock: Any, reason: Any = None) -> InstanceRecord:
    clean_lock, clean_reason = validate(lock, reason)
    return await env.db.write(lambda conn: _set_lock(conn, env, ctx, uuid, clean_lock, clean_reason))


def _reset(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, to: str) -> InstanceRecord:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    state = lifecycle.reset_state(state_of(row), to, uuid)
    now = utcnow_iso()
    values = {"vm_state": state.vm_state, "task_state": None, "updated_at": now}
    action_records.start_action(conn, ctx, uuid, "resetState", row.project_id, now)
    action_records.finish_action(conn, uuid, "resetState")
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values})


async def instance_reset_state(env: FlowEnv, ctx: RequestContext, uuid: str, state: Any) -> InstanceRecord:
    """Admin only (os_compute_api:os-admin-actions:reset_state): 403 for anyone else."""
    if not ctx.is_admin:
        raise errors.Forbidden("Policy doesn't allow os_compute_api:os-admin-actions:reset_state to be performed.")
    if not isinstance(state, str):
        raise errors.Invalid(reason="state must be a string")
    return await env.db.write(lambda conn: _reset(conn, env, ctx, uuid, state))
