"""Evacuate: rebuild a server of a dead host on a live one (admin).

    evacuate   validate -> lock -> check: the source host is dead (silent past the cell's dead_after,
               or marked down by an operator; else 400, as Nova: "Compute service of <host> is
               still in use." -- a merely suspect host too), vm_state active, stopped
               or error, no task -> migration (evacuation, accepted, owned by us), task rebuilding
    background scheduler claims a destination under the migration's uuid (the dead host
               excluded) -> the destination rebuilds the guest from the image (rebuild_evacuated)
               -> host = destination, the dead host's claim released, the destination claim
               becomes the instance's, vm_state as before (error -> active), migration done
               no room: the server stays on the dead host, task cleared, fault on the action
               deleted meanwhile: the destination copy is removed (flows/move_recovery.py)
The dead host is fenced: if it comes back, it reconciles before serving, finds a domain whose
record lives elsewhere and destroys it instead of running it (node/compute/manager.py).
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx, state_of, state_values
from cells.conductor.flows import move_volumes
from cells.conductor.flows.move_recovery import drive, go_on, why_stop
from cells.conductor.flows.moves import _instance, placement_of, rekey_claim
from cells.context import RequestContext
from cells.db import action_records, migration_records
from cells.db import instances as idb
from cells.db.commit_hooks import after_commit
from cells.db.schema import migrations
from cells.lifecycle import Event, on
from cells.metrics import MOVES
from cells.objects.instance import PowerState, VmState, utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpcapi.move_methods import MoveComputeAPI
from cells.rpcapi.scheduler import SchedulerAPI

LOG = logging.getLogger(__name__)
ACTION, EV_REBUILD = "evacuate", "compute_rebuild_instance"


def _begin(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str) -> tuple[InstanceRecord, dict[str, Any]]:
    row = _instance(conn, ctx, uuid)
    if row.host is None:
        raise errors.Conflict(reason=f"Instance {uuid} has no host to evacuate it from")
    move_volumes.refuse_busy(conn, uuid, "evacuate")
    if not env.host_dead(row.host):  # a suspect host may come back with the guest running: never two copies
        raise errors.Invalid(f"Compute service of {row.host} is still in use.", host=row.host,
                             state=env.host_state(row.host))
    state, _ = on(Event.EVACUATE_REQUESTED, state_of(row), uuid, shown=ACTION)  # a move has no actions
    now = utcnow_iso()
    back = VmState.STOPPED if row.vm_state == VmState.STOPPED else VmState.ACTIVE
    mig = {"uuid": str(uuidlib.uuid4()), "instance_uuid": uuid, "migration_type": "evacuation",
           "status": "accepted", "source_host": row.host, "dest_host": None, "old_flavor": dict(row.flavor),
           "new_flavor": dict(row.flavor), "old_vm_state": back, "conductor_id": env.conductor_id,
           "created_at": now, "updated_at": now}
    conn.execute(migrations.insert().values(**mig))
    action_records.start_action(conn, ctx, uuid, ACTION, row.project_id, now)
    action_records.start_event(conn, uuid, ACTION, EV_REBUILD, None)
    values = {**state_values(state), "updated_at": now}
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values}), migration_records.record(mig)


def _placed(conn: Connection, env: FlowEnv, mig: dict[str, Any]) -> str | None:
    if (reason := why_stop(conn, env, mig)) is None:
        migration_records.set_migration(conn, mig["uuid"], dest_host=mig["dest_host"])
    return reason


def _done(conn: Connection, env: FlowEnv, mig: dict[str, Any], power: int) -> str | None:
    if (reason := why_stop(conn, env, mig)) is not None:
        return reason
    uuid = mig["instance_uuid"]
    rekey_claim(conn, mig["uuid"], uuid)  # the dead host's claim goes, the destination's stays
    row = idb.get_row(conn, uuid, lock=True)  # locked by why_stop already, which found it
    if row is None:
        raise errors.InstanceNotFound(instance_id=uuid)
    state, _ = on(Event.EVACUATED, state_of(row), uuid, observed=power, back_to=mig["old_vm_state"])
    idb.update_row(conn, uuid, {"host": mig["dest_host"], **state_values(state), "fault": None,
                                "launched_at": utcnow_iso(), "updated_at": utcnow_iso()})
    migration_records.set_migration(conn, mig["uuid"], status="done", dest_host=mig["dest_host"])
    action_records.finish_event(conn, uuid, ACTION, EV_REBUILD, action_records.SUCCESS, host=mig["dest_host"])
    action_records.finish_action(conn, uuid, ACTION)
    after_commit(conn, MOVES.labels(ACTION, "done").inc)
    return None


async def evacuate(env: FlowEnv, ctx: RequestContext, uuid: str) -> InstanceRecord:
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden(reason="evacuating a server is an admin action")
    record, mig = await env.db.write(lambda conn: _begin(conn, env, ctx, uuid))
    bctx = background_ctx(ctx)
    env.spawn(drive(env, bctx, ACTION, record, mig, lambda: _run(env, bctx, record, mig)))
    return record


async def _run(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, mig: dict[str, Any]) -> None:
    placement = await env.db.read(lambda conn: placement_of(conn, record["uuid"]))  # its zone, as at boot
    [sel] = await SchedulerAPI(env.service).select_destinations(
        ctx, {"flavor": mig["new_flavor"], "instance_uuid": record["uuid"], **placement},  # its server group too
        [mig["uuid"]], [mig["source_host"]])
    mig["dest_host"] = dest = str(sel["host"])
    await go_on(env, lambda conn: _placed(conn, env, mig))
    await move_volumes.carry(env, ctx, record["uuid"], dest)  # the dead host's exports go to the new one
    power = await MoveComputeAPI(env.service).rebuild_evacuated(ctx, dest, {**record, "host": dest}, mig)
    await move_volumes.plug(env, ctx, record, dest)
    await go_on(env, lambda conn: _done(conn, env, mig, int(power if power is not None else PowerState.RUNNING)))
    LOG.info("evacuated %s from %s to %s", record["uuid"], mig["source_host"], dest)
