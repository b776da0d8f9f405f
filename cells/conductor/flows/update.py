"""instance_update: the API's server set (name, metadata), and the step reports of computes of
release 4 and before, which sent raw fields. A compute of this release reports lifecycle events
instead (instance_event: cells/conductor/flows/compute_events.py).

The optional expected_task_state is the old compute's check: when the record's
task_state is not one of them (typically a delete raced the build) the update
is refused with UnexpectedTaskState / UnexpectedDeletingTaskState (Conflict),
and the compute stops what it was doing. Deleted instances are not found.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows.boot import CREATE, EV_BUILD
from cells.context import RequestContext
from cells.db import action_records, migration_records
from cells.db import instances as idb
from cells.db.fast import AnyRow
from cells.objects.instance import FIELDS, TaskState, VmState, utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpc.principal import Principal, host_worker

# what a compute may change; identity, ownership and deletion go through their own methods
UPDATABLE = frozenset(FIELDS) - {"uuid", "cell", "project_id", "user_id", "created_at", "deleted", "terminated_at"}
VM_STATES = frozenset({VmState.BUILDING, VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED,
                       VmState.ERROR})


def validate_values(values: Any) -> dict[str, Any]:
    if not isinstance(values, dict) or not values:
        raise errors.Invalid(reason="values must be a non-empty map")
    bad = set(values) - UPDATABLE
    if bad:
        raise errors.Invalid(reason=f"instance field(s) {sorted(bad)} cannot be updated this way")
    if "vm_state" in values and values["vm_state"] not in VM_STATES:
        raise errors.Invalid(reason=f"vm_state {values['vm_state']!r} cannot be set by instance_update")
    out = dict(values)
    if out.get("fault") is not None:
        out["fault"] = action_records.make_fault(out["fault"])
    return out


def _update(conn: Connection, env: FlowEnv, uuid: str, new: dict[str, Any],
            expected_task_state: list[str | None] | None, worker: Principal | None) -> InstanceRecord:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.deleted:
        raise errors.InstanceNotFound(instance_id=uuid)
    if worker is not None:
        _check_worker(conn, row, new, worker)
    if expected_task_state is not None and row.task_state not in expected_task_state:
        cls = (errors.UnexpectedDeletingTaskState if row.task_state == TaskState.DELETING
               else errors.UnexpectedTaskState)
        raise cls(instance_id=uuid, expected=expected_task_state, actual=row.task_state)
    new["updated_at"] = utcnow_iso()
    if row.vm_state == VmState.BUILDING and new.get("vm_state") == VmState.ACTIVE:
        if new.get("launched_at") is None:
            new["launched_at"] = new["updated_at"]
        action_records.finish_event(conn, uuid, CREATE, EV_BUILD, action_records.SUCCESS, host=row.host)
        action_records.finish_action(conn, uuid, CREATE)
    if new.get("fault") is not None:
        action_records.add_fault(conn, uuid, new["fault"], row.host)
    if row.vm_state == VmState.BUILDING and new.get("vm_state") == VmState.ERROR:
        action_records.fail_open_events(conn, uuid, CREATE, (new.get("fault") or {}).get("message", "Error"))
    idb.update_row(conn, uuid, new)
    return env.record({**row._mapping, **new})


def _check_worker(conn: Connection, row: AnyRow, new: dict[str, Any], worker: Principal) -> None:
    """A compute updates only the instances it holds a copy of (its host's, or a move's other end),
    and never hands one to another host."""
    if not migration_records.holds_copy(conn, row.uuid, worker.host) or new.get("host", worker.host) != worker.host:
        raise errors.RpcForbidden(principal=worker.name, method="instance_update",
                                  reason=f"instance {row.uuid} is not on host {worker.host}")


async def instance_update(env: FlowEnv, ctx: RequestContext, uuid: str, values: Any,
                          expected_task_state: list[str | None] | None = None) -> InstanceRecord:
    new = validate_values(values)
    expected = expected_task_state
    if expected is not None and not isinstance(expected, list):
        expected = [expected]
    worker = host_worker(ctx)
    return await env.db.write(lambda conn: _update(conn, env, uuid, new, expected, worker))
