"""instance_event: a compute reports a step of an instance's flow as a lifecycle event
(cells/lifecycle.py COMPUTE_EVENTS), never as raw fields.

    spawning        the build's guest is being made     building / spawning
    spawned         its guest runs                       active (launched_at, create action done)
    spawn_failed    its guest could not be made          rescheduled or error (flows/boot.py build_failed)
    destroyed       a deleted server's guest is gone     deleted (flows/delete.py instance_destroyed)
    delete_failed   the guest could not be destroyed     error, with the fault
    power_observed  the power sweep's view of a guest    the record follows the hypervisor

validate -> lock the row -> check it is the reporting host's and fire the event on its state
(a transition the machine refuses is a Conflict: typically a delete raced the build, and the
compute stops) -> carry out every action the machine returned, in the same unit of work.
Deleted instances are not found.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx, state_of, state_values
from cells.conductor.flows import boot, boot_volume, delete
from cells.context import RequestContext
from cells.db import action_records
from cells.db import instances as idb
from cells.db.commit_hooks import after_commit
from cells.db.fast import AnyRow
from cells.lifecycle import COMPUTE_EVENTS, Action, Event, carry_out, on
from cells.metrics import BOOTS, DELETES
from cells.objects.instance import PowerState, utcnow_iso
from cells.objects.records import InstanceRecord

POWER_STATES = frozenset(v for k, v in vars(PowerState).items() if k.isupper())


def validate(event: Any, power_state: Any, fault: Any) -> tuple[str, int | None, dict[str, Any] | None]:
    if event not in COMPUTE_EVENTS:
        raise errors.Invalid(reason=f"unknown compute event {event!r}")
    if power_state is not None and (isinstance(power_state, bool) or power_state not in POWER_STATES):
        raise errors.Invalid(reason=f"power_state {power_state!r} is not a power state")
    if fault is not None and not isinstance(fault, Mapping):
        raise errors.Invalid(reason="fault must be a map")
    return str(event), power_state, action_records.make_fault(fault) if fault is not None else None


def _carriers(conn: Connection, row: AnyRow, new: dict[str, Any],
              fault: dict[str, Any] | None) -> dict[str, Callable[[], object]]:
    """How this flow carries out the lifecycle's actions (`new`: the row's values so far)."""
    def record_fault() -> None:
        made = fault or action_records.make_fault("Error")
        action_records.add_fault(conn, row.uuid, made, row.host)
        new["fault"] = made

    def finish_build() -> None:
        action_records.finish_event(conn, row.uuid, boot.CREATE, boot.EV_BUILD, action_records.SUCCESS, host=row.host)
        action_records.finish_action(conn, row.uuid, boot.CREATE)
        boot_volume.settle(conn, row.uuid, row.image)  # a root volume is in-use once its guest runs
        after_commit(conn, BOOTS.labels("active").inc)

    def failed_delete() -> None:
        action_records.fail_open_events(conn, row.uuid, delete.DELETE, (fault or {}).get("message", "Error"))
        after_commit(conn, DELETES.labels("error").inc)

    return {
        Action.SET_LAUNCHED_AT: lambda: new.update(launched_at=new["updated_at"]),
        Action.FINISH_BUILD: finish_build,
        Action.RECORD_FAULT: record_fault,
        Action.FAIL_DELETE: failed_delete,
    }


def _apply(conn: Connection, env: FlowEnv, uuid: str, host: str, event: str, observed: int | None,
           fault: dict[str, Any] | None) -> InstanceRecord:
    row = idb.reported_row(conn, uuid, host)
    state, actions = on(event, state_of(row), uuid, observed=observed)
    new: dict[str, Any] = {**state_values(state), "updated_at": utcnow_iso()}
    carry_out(actions, _carriers(conn, row, new, fault))
    idb.update_row(conn, uuid, new)
    return env.record({**row._mapping, **new})


async def instance_event(env: FlowEnv, ctx: RequestContext, uuid: str, host: str, event: Any,
                         power_state: Any = None, fault: Any = None, retryable: Any = False) -> InstanceRecord | None:
    """The record after the event; None for the events that end the record's life here
    (spawn_failed, destroyed: their flows answer nothing)."""
    name, observed, made = validate(event, power_state, fault)
    if name == Event.SPAWN_FAILED:
        await boot.build_failed(env, ctx, uuid, host, made or action_records.make_fault("Build failed"),
                                bool(retryable))
        return None
    if name == Event.DESTROYED:
        await delete.instance_destroyed(env, ctx, uuid, host)
        return None
    # concurrent on PostgreSQL: the instance's row is locked before the transition is decided
    record = await env.db.write(lambda conn: _apply(conn, env, uuid, host, name, observed, made), concurrent=True)
    if name == Event.SPAWNED:  # the guest runs: the blank volumes made for it are plugged in
        await boot_volume.attach_extras(env, background_ctx(ctx), record)
    return record
