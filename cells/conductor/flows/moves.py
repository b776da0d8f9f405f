"""Moves: resize and cold migration (one flow, a new flavor or the same one), confirm,
revert, and the adoption of moves whose conductor died. Evacuation: flows/evacuate.py;
stopping and rolling back: flows/move_recovery.py.

    move_instance   validate (flavor, placement: 400) -> lock the row -> check (active/stopped, no task,
                    host alive: 409) -> migration row (pre-migrating, owned by us), task
                    resize_prep, action "resize"/"migrate", the API's placement into the row's
                    request spec -> returns; the rest runs here:
    background      scheduler claims the destination under the MIGRATION's uuid, among the hosts the
                    request spec's placement allows (the aggregates' zone and flavor specs; the source
                    keeps the instance's claim) -> source compute powers the guest off and
                    keeps it (prep_move) -> destination compute makes the guest there with the
                    new flavor on a copy of the source's disks (finish_move with disk_source;
                    made from the image where a compute is too old to copy, said in the log
                    and on the compute_finish_resize event) -> host=dest, flavor=new, old_flavor=old,
                    vm_state resized (VERIFY_RESIZE), migration finished
                    no room anywhere: task cleared, server ACTIVE where it was, the action's
                    event closed with the fault (NoValidHost)
                    each step checks first that the move is still ours and the server not
                    being deleted (move_recovery.why_stop)
    confirm_move    resized -> source guest destroyed; the instance's (source) claim released,
                    the migration's (destination) claim becomes the instance's; vm_state back
    revert_move     resized -> destination guest destroyed, source guest powered on again;
                    the migration's claim released; host and flavor back
    adopt           a dead owner's resize or migration in flight: driven on from its last recorded
                    step (scheduled again without a destination, else from the source's prep: every
                    compute step is idempotent), so an accepted move ends as asked or rolled back
                    with its fault; an evacuation in flight: rolled back (destination guest removed,
                    destination claim released); a confirm or revert it was running: done again

Same-host resize only when the cell allows it (cluster.yaml allow_resize_to_same_host, as
Nova's option; never for a migration): both claims are then on the one host until confirm,
and the compute changes the one guest's flavor in place (node/compute/guest_moves.py).
"""
from __future__ import annotations

import functools
import logging
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.engine import Row

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx, state_of, state_values, through_host_restart
from cells.conductor.flows import move_volumes
from cells.conductor.flows.delete import remove_copy, visible
from cells.conductor.flows.move_recovery import ACTION_OF, DELETED, drive, go_on, roll_back, why_stop
from cells.context import RequestContext, admin_context
from cells.db import action_records, claims, migration_records
from cells.db import instances as idb
from cells.db.commit_hooks import after_commit
from cells.db.fast import AnyRow
from cells.db.migration_records import CONFIRMING, FINISHED, REVERTING
from cells.db.schema import claims as claims_table
from cells.db.schema import instances as instances_table
from cells.db.schema import migrations
from cells.lifecycle import Event, check_unlocked, on
from cells.metrics import MOVES
from cells.objects.base import newer
from cells.objects.instance import utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpcapi.compute import topic as compute_topic
from cells.rpcapi.move_methods import DISK_COPY_VERSION, MoveComputeAPI
from cells.rpcapi.scheduler import SchedulerAPI

LOG = logging.getLogger(__name__)
EV_PREP, EV_MOVE, EV_FINISH = "compute_prep_resize", "compute_resize_instance", "compute_finish_resize"
EV_CONFIRM, EV_REVERT = "compute_confirm_resize", "compute_revert_resize"
EV_ADOPT = "conductor_adopt_move"
MOVE_KINDS = {"resize": "resize", "migrate": "migration"}  # action -> Nova's migration_type


# --- validate (pure) ---------------------------------------------------------------

def validate_resize(old: Mapping[str, Any], new: Any) -> dict[str, Any]:
    """Nova's checks: a different flavor, and no smaller root disk (the disk cannot shrink)."""
    if not isinstance(new, Mapping) or not new.get("id"):
        raise errors.Invalid(reason="resize needs the new flavor")
    if str(new["id"]) == str(old.get("id")):
        raise errors.Invalid("When resizing, instances must change flavor!")
    if int(new.get("disk") or 0) < int(old.get("disk") or 0):
        raise errors.Invalid("Resizing to a smaller disk flavor is not allowed.")
    return dict(new)


PLACEMENT_KEYS = ("only_hosts", "excluded_hosts")  # what the API's aggregates allow (cells/scheduler/manager.py)


def validate_placement(value: Any) -> dict[str, list[str]] | None:
    """The API's {only_hosts?, excluded_hosts?}: lists of host names (None: the boot's placement stays)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - set(PLACEMENT_KEYS) or not all(
            isinstance(hosts, list) and all(isinstance(h, str) for h in hosts) for hosts in value.values()):
        raise errors.Invalid(reason="placement must be {only_hosts?, excluded_hosts?}: lists of host names")
    return {k: list(v) for k, v in value.items()}


def placement_of(conn: Connection, uuid: str) -> dict[str, Any]:
    """The placement part of the instance's request spec: where any move of it may go."""
    row = idb.get_row(conn, uuid)
    spec = (row.request_spec if row is not None else None) or {}
    return {k: spec[k] for k in PLACEMENT_KEYS if k in spec}


def _keep_placement(conn: Connection, row: AnyRow, placement: dict[str, list[str]]) -> None:
    spec = {k: v for k, v in (row.request_spec or {}).items() if k not in PLACEMENT_KEYS}
    conn.execute(update(instances_table).where(instances_table.c.uuid == row.uuid)
                 .values(request_spec={**spec, **placement}))


# --- DB steps (parts of one unit of work each) -------------------------------------------

def _instance(conn: Connection, ctx: RequestContext, uuid: str) -> AnyRow:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    return row


def rekey_claim(conn: Connection, from_consumer: str, to_consumer: str) -> None:
    """The destination claim, made under the migration, becomes the instance's."""
    claims.release_claim(conn, to_consumer)
    conn.execute(update(claims_table).where(claims_table.c.instance_uuid == from_consumer)
                 .values(instance_uuid=to_consumer))


def _begin(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, action: str,
           new_flavor: dict[str, Any] | None,
           placement: dict[str, list[str]] | None = None) -> tuple[InstanceRecord, dict[str, Any]]:
    row = _instance(conn, ctx, uuid)
    check_unlocked(row.locked_by, ctx.is_admin, uuid)
    move_volumes.refuse_busy(conn, uuid, action)
    state, _ = on(Event.MOVE_REQUESTED, state_of(row), uuid, shown=action)  # a move has no actions
    if row.host is None or not env.host_alive(row.host):
        raise errors.Conflict(reason=f"Compute host {row.host} of instance {uuid} is not available")
    flavor = validate_resize(row.flavor, new_flavor) if action == "resize" else dict(row.flavor)
    now = utcnow_iso()
    mig = {"uuid": str(uuidlib.uuid4()), "instance_uuid": uuid, "migration_type": MOVE_KINDS[action],
           "status": "pre-migrating", "source_host": row.host, "dest_host": None, "old_flavor": dict(row.flavor),
           "new_flavor": flavor, "old_vm_state": row.vm_state, "conductor_id": env.conductor_id,
           "created_at": now, "updated_at": now}
    conn.execute(migrations.insert().values(**mig))
    action_records.start_action(conn, ctx, uuid, action, row.project_id, now)
    action_records.start_event(conn, uuid, action, EV_PREP, None)
    values = {**state_values(state), "updated_at": now}
    idb.update_row(conn, uuid, values)
    if placement is not None:  # kept with the row: a conductor adopting the move schedules the same way
        _keep_placement(conn, row, placement)
    return env.record({**row._mapping, **values}), migration_records.record(mig)


def _fire(conn: Connection, uuid: str, event: str, **kw: Any) -> dict[str, Any]:
    """The row's state values after a move's `event` (its row locked by why_stop already)."""
    row = idb.get_row(conn, uuid, lock=True)
    if row is None:
        raise errors.InstanceNotFound(instance_id=uuid)
    state, _ = on(event, state_of(row), uuid, **kw)  # a move's transitions have no actions
    return state_values(state)


def _step(conn: Connection, env: FlowEnv, mig: dict[str, Any], action: str, done: str, nxt: str | None,
          **mig_values: Any) -> str | None:
    reason = why_stop(conn, env, mig)
    if reason is not None:
        return reason
    uuid = mig["instance_uuid"]
    state = _fire(conn, uuid, Event.MOVE_MIGRATING)
    action_records.finish_event(conn, uuid, action, done, action_records.SUCCESS, host=mig["source_host"])
    if nxt:
        action_records.start_event(conn, uuid, action, nxt, mig_values.get("dest_host") or mig["dest_host"])
    idb.update_row(conn, uuid, {**state, "updated_at": utcnow_iso()})
    migration_records.set_migration(conn, mig["uuid"], **mig_values)
    return None


def _finished(conn: Connection, env: FlowEnv, mig: dict[str, Any], action: str, power: int,
              disk_note: str | None) -> str | None:
    reason = why_stop(conn, env, mig)
    if reason is not None:
        return reason
    now = utcnow_iso()
    state = _fire(conn, mig["instance_uuid"], Event.MOVE_FINISHED, observed=power)
    idb.update_row(conn, mig["instance_uuid"], {
        "host": mig["dest_host"], "flavor": mig["new_flavor"], "old_flavor": mig["old_flavor"], **state,
        "updated_at": now})
    migration_records.set_migration(conn, mig["uuid"], status=FINISHED)
    action_records.finish_event(conn, mig["instance_uuid"], action, EV_FINISH, action_records.SUCCESS, disk_note,
                         host=mig["dest_host"])
    action_records.finish_action(conn, mig["instance_uuid"], action)
    after_commit(conn, MOVES.labels(action, "done").inc)
    return None


# --- act --------------------------------------------------------------------------------

async def move_instance(env: FlowEnv, ctx: RequestContext, uuid: str, action: Any,
                        flavor: Any = None, placement: Any = None) -> InstanceRecord:
    if action not in MOVE_KINDS:
        raise errors.Invalid(reason=f"unknown move {action!r}")
    allowed = validate_placement(placement)
    if action == "migrate" and not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden(reason="migrating a server is an admin action")
    record, mig = await env.db.write(lambda conn: _begin(conn, env, ctx, uuid, action, flavor, allowed))
    bctx = background_ctx(ctx)
    env.spawn(drive(env, bctx, action, record, mig, lambda: _move(env, bctx, action, record, mig)))
    return record


async def _move(env: FlowEnv, ctx: RequestContext, action: str, record: InstanceRecord,
                mig: dict[str, Any]) -> None:
    """The move's steps; a move adopted from a dead owner (`mig` as the DB holds it) goes on from
    its last recorded step: scheduled again while it has no destination, else from the source's
    prep. Each compute step is idempotent, and sent again when its compute restarts meanwhile."""
    uuid, source = record["uuid"], mig["source_host"]
    if mig.get("dest_host") is None:
        # 1. a destination, claimed (under the migration) before anything moves; the source
        #    host only for a resize, and only where the cell allows it (Nova's rule); a claim
        #    a dead owner made under the migration is replaced
        same_host = action == "resize" and env.allow_resize_to_same_host
        placement = await env.db.read(lambda conn: placement_of(conn, uuid))  # the zone and specs' hosts
        [sel] = await SchedulerAPI(env.service).select_destinations(
            ctx, {"flavor": mig["new_flavor"], "instance_uuid": uuid, **placement},  # its server group goes too
            [mig["uuid"]], [] if same_host else [source])
        dest = str(sel["host"])
        await go_on(env, lambda conn: _step(conn, env, mig, action, EV_PREP, EV_MOVE,
                                            dest_host=dest, status="migrating"))
        mig["dest_host"] = dest
    dest = str(mig["dest_host"])
    compute = MoveComputeAPI(env.service)
    what = f"{action} of {uuid}"
    for attempt in range(2):
        # 2. the source guest stops (and stays, until confirm or revert)
        await through_host_restart(env, source, what, lambda: compute.prep_move(ctx, source, record, mig))
        if attempt == 0:
            await go_on(env, lambda conn: _step(conn, env, mig, action, EV_MOVE, EV_FINISH))
        if dest != source:  # the stopped guest's volumes go to the destination (a boot volume first)
            await move_volumes.carry(env, ctx, uuid, dest)
        # 3. the destination makes the guest with the new flavor, or on the same host changes
        #    the one guest's flavor
        try:
            power, note = await through_host_restart(env, dest, what, lambda: _finish(
                env, ctx, compute, {**record, "flavor": mig["new_flavor"], "host": dest}, mig))
            break
        except errors.DiskCopyFailed as exc:
            # a source compute that restarted after its prep no longer serves the disks: its prep
            # is asked again (it registers the destination again), once
            if attempt or not env.host_alive(source):
                raise
            LOG.warning("%s: copying the disks failed (%s): asking %s to prepare again", what, exc.message, source)
    if dest != source:
        await move_volumes.plug(env, ctx, record, dest)
    await go_on(env, lambda conn: _finished(conn, env, mig, action, power, note))
    LOG.info("%s of %s: %s -> %s, awaiting confirm", action, uuid, source, dest)


def disk_copy_refused(env: FlowEnv, source: str, dest: str) -> str | None:
    """Why the destination cannot copy the guest's disks from the source: a compute of the
    release before DISK_COPY_VERSION neither serves them nor asks for them. None: it can."""
    for host in (source, dest):
        have = env.service.view.pinned_rpc(compute_topic(host))
        if have is None or newer(DISK_COPY_VERSION, have):
            return f"compute {host} speaks RPC {have or '(none: not live)'}; copying needs {DISK_COPY_VERSION}"
    return None


async def _finish(env: FlowEnv, ctx: RequestContext, compute: MoveComputeAPI, instance: InstanceRecord,
                  mig: dict[str, Any]) -> tuple[int, str | None]:
    """finish_move on the destination: (power state, how the disk got there, for the event)."""
    source, dest = mig["source_host"], mig["dest_host"]
    if source == dest:  # the one guest keeps its disk
        return await compute.finish_move(ctx, dest, instance, mig), None
    refused = disk_copy_refused(env, source, dest)
    if refused is not None:  # what every move did before 1.2: whatever the guest wrote to its disk is lost
        LOG.warning("%s of %s: the disk is made again from the image on %s, not copied from %s (%s)",
                    mig["migration_type"], instance["uuid"], dest, source, refused)
        return await compute.finish_move(ctx, dest, instance, mig), f"Disk re-created from the image: {refused}"
    done = await compute.finish_move_copying(ctx, dest, instance, mig, source)
    note = f"Disk copied from {source}: {done['files']} file(s), {done['bytes']} bytes" if done["files"] \
        else f"No disk files on {source} to copy: disk made from the image"
    return done["power_state"], note


# --- confirm and revert -------------------------------------------------------------------

def _begin_end(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, which: str
               ) -> tuple[InstanceRecord, dict[str, Any]]:
    row = _instance(conn, ctx, uuid)
    check_unlocked(row.locked_by, ctx.is_admin, uuid)
    mig = migration_records.pending(conn, uuid, [FINISHED])
    if mig is None:
        raise errors.InstanceInvalidState(action=which, instance_id=uuid, attr="vm_state", state=row.vm_state)
    event = Event.CONFIRM_REQUESTED if which == "confirmResize" else Event.REVERT_REQUESTED
    state, _ = on(event, state_of(row), uuid, shown=which)
    task = str(state.task_state)
    action_records.start_action(conn, ctx, uuid, which, row.project_id)
    action_records.start_event(conn, uuid, which, EV_CONFIRM if task == CONFIRMING else EV_REVERT,
                        mig.source_host if task == CONFIRMING else mig.dest_host)
    idb.update_row(conn, uuid, {"task_state": task, "updated_at": utcnow_iso()})
    migration_records.set_migration(conn, mig.uuid, conductor_id=env.conductor_id)
    return env.record({**row._mapping, "task_state": task}), migration_records.record(mig)


def _ending(conn: Connection, env: FlowEnv, mig: dict[str, Any], task: str) -> str | None:
    return why_stop(conn, env, mig, (FINISHED,), (task,))


def _confirmed(conn: Connection, env: FlowEnv, mig: dict[str, Any]) -> str | None:
    if (reason := _ending(conn, env, mig, CONFIRMING)) is not None:
        return reason  # deleted meanwhile (the delete released both claims) or adopted
    uuid = mig["instance_uuid"]
    rekey_claim(conn, mig["uuid"], uuid)  # source claim released, destination claim is the instance's
    state = _fire(conn, uuid, Event.MOVE_CONFIRMED, back_to=mig["old_vm_state"])
    idb.update_row(conn, uuid, {**state, "old_flavor": None, "updated_at": utcnow_iso()})
    migration_records.set_migration(conn, mig["uuid"], status="confirmed")
    action_records.finish_event(conn, uuid, "confirmResize", EV_CONFIRM, action_records.SUCCESS, host=mig["source_host"])
    action_records.finish_action(conn, uuid, "confirmResize")
    return None


def _reverted(conn: Connection, env: FlowEnv, mig: dict[str, Any], power: int) -> str | None:
    if (reason := _ending(conn, env, mig, REVERTING)) is not None:
        return reason
    uuid = mig["instance_uuid"]
    claims.release_claim(conn, mig["uuid"])
    state = _fire(conn, uuid, Event.MOVE_REVERTED, observed=power, back_to=mig["old_vm_state"])
    idb.update_row(conn, uuid, {**state, "old_flavor": None, "host": mig["source_host"], "flavor": mig["old_flavor"],
                                "updated_at": utcnow_iso()})
    migration_records.set_migration(conn, mig["uuid"], status="reverted")
    action_records.finish_event(conn, uuid, "revertResize", EV_REVERT, action_records.SUCCESS, host=mig["dest_host"])
    action_records.finish_action(conn, uuid, "revertResize")
    return None


async def confirm_move(env: FlowEnv, ctx: RequestContext, uuid: str) -> InstanceRecord:
    record, mig = await env.db.write(lambda conn: _begin_end(conn, env, ctx, uuid, "confirmResize"))
    env.spawn(_confirm(env, background_ctx(ctx), record, mig))
    return record


async def _confirm(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, mig: dict[str, Any]) -> None:
    # a same-host resize has no old copy; a dead source destroys its stale copy when it comes back
    if mig["source_host"] != mig["dest_host"] and env.host_alive(mig["source_host"]):
        try:
            await MoveComputeAPI(env.service).confirm_move(ctx, mig["source_host"], record, mig)
        except errors.CellcloudError as exc:
            LOG.warning("confirm of %s: source guest on %s not removed now (%s); its reaper will",
                        record["uuid"], mig["source_host"], exc)
    await env.db.write(lambda conn: _confirmed(conn, env, mig))


async def revert_move(env: FlowEnv, ctx: RequestContext, uuid: str) -> InstanceRecord:
    record, mig = await env.db.write(lambda conn: _begin_end(conn, env, ctx, uuid, "revertResize"))
    env.spawn(_revert(env, background_ctx(ctx), record, mig))
    return record


async def _revert(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, mig: dict[str, Any]) -> None:
    compute = MoveComputeAPI(env.service)
    power = 4
    what = f"revert of {record['uuid']}"
    try:
        await through_host_restart(env, mig["dest_host"], what,
                                   lambda: compute.revert_move(ctx, mig["dest_host"], record, mig))
        if mig["source_host"] != mig["dest_host"]:  # the volumes back to the source's guest, which kept its disks
            await move_volumes.carry(env, ctx, record["uuid"], mig["source_host"])
        power = await through_host_restart(env, mig["source_host"], what, lambda: compute.finish_revert(
            ctx, mig["source_host"], {**record, "flavor": mig["old_flavor"]}, mig))
        if mig["source_host"] != mig["dest_host"]:  # a source guest made again has them plugged again
            await move_volumes.plug(env, ctx, record, mig["source_host"])
    except errors.CellcloudError as exc:
        LOG.warning("revert of %s: %s", record["uuid"], exc.message)
        message = exc.message

        def failed(conn: Connection) -> None:
            if _ending(conn, env, mig, REVERTING) is None:
                state = _fire(conn, record["uuid"], Event.REVERT_FAILED)
                idb.update_row(conn, record["uuid"], {**state, "updated_at": utcnow_iso()})
                action_records.fail_open_events(conn, record["uuid"], "revertResize", message)
        await env.db.write(failed)
        return
    reason = await env.db.write(lambda conn: _reverted(conn, env, mig, int(power)))
    if reason == DELETED and mig["source_host"] != mig["dest_host"]:
        # deleted while we started the source copy again (after the delete removed it): it goes too
        await remove_copy(env, ctx, mig["source_host"], record, mig)


# --- adoption --------------------------------------------------------------------------------

def _adopt(conn: Connection, env: FlowEnv, owners: list[str]) -> list[tuple[Row[Any], AnyRow]]:
    """Take over the moves `owners` were driving (in flight, or confirming/reverting): one
    transaction, so of several live conductors exactly one wins each."""
    taken = []
    for mig in conn.execute(select(migrations).where(migrations.c.conductor_id.in_(owners),
                                                     migrations.c.status.in_(migration_records.OPEN))).all():
        inst = idb.get_row(conn, mig.instance_uuid)
        if inst is None or (mig.status == FINISHED and inst.task_state not in (CONFIRMING, REVERTING)):
            continue  # awaiting the user's confirm or revert: nothing to drive
        migration_records.set_migration(conn, mig.uuid, conductor_id=env.conductor_id)
        action = {CONFIRMING: "confirmResize", REVERTING: "revertResize"}.get(
            inst.task_state, ACTION_OF[mig.migration_type])
        action_records.finish_event(conn, inst.uuid, action, EV_ADOPT, action_records.SUCCESS,
                             f"adopted by {env.conductor_id} from {mig.conductor_id}")
        taken.append((mig, inst))
    return taken


async def adopt(env: FlowEnv, owners: Iterable[str]) -> None:
    """Moves of conductors that left: one in flight is rolled back, a confirm or revert is
    done again (its compute steps are idempotent)."""
    taken = await env.db.write(lambda conn: _adopt(conn, env, list(owners)))
    ctx = admin_context()
    for row, inst in taken:
        mig, record = migration_records.record(row), env.record(inst)
        if row.status == FINISHED:
            LOG.warning("adopting the %s of %s from %s", inst.task_state, inst.uuid, row.conductor_id)
            env.spawn(_confirm(env, ctx, record, mig) if inst.task_state == CONFIRMING
                      else _revert(env, ctx, record, mig))
            continue
        action = ACTION_OF[row.migration_type]
        if action in MOVE_KINDS:  # accepted work ends as asked: the move goes on from its last step
            LOG.warning("adopting %s %s of %s from %s: driving it on", action, row.uuid, inst.uuid, row.conductor_id)
            env.spawn(drive(env, ctx, action, record, mig,
                            functools.partial(_move, env, ctx, action, record, mig)))
            continue
        LOG.warning("adopting %s %s of %s from %s: rolling it back", action, row.uuid, inst.uuid, row.conductor_id)
        message = f"Conductor {row.conductor_id} stopped during the {action}: rolled back by {env.conductor_id}"
        env.spawn(roll_back(env, ctx, action, record, mig, message))
