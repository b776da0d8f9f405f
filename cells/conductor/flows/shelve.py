"""Shelve, shelveOffload and unshelve (Nova's os-shelve, issue 16): the server's state while its disk goes
into an image, and its host given back.

    shelve_begin     validate -> lock the row -> check (cells/lifecycle.py begin_shelve: active, stopped,
                     paused or suspended with no task; not locked; booted from an image with no volume
                     attached, as moves: a guest made elsewhere would come up without them, or booted from
                     a volume with none being attached or detached; host alive) ->
                     task shelving_image_pending_upload, action shelve with compute_shelve_instance open;
                     returns the record (the API makes the `NAME-shelved` image and pulls the disk into it,
                     as createImage: api/compute/shelve.py)
    shelve_progress  uploading -> task shelving_image_uploading; failed -> the task ends, the event and
                     action closed with the error (the server as it was); done -> task shelving and the
                     compute's "shelve" action (the guest powered off; instance_action_done -> SHELVED)
    offloaded        server_actions._done calls `after_action`: a shelve done while shelved_offload_time
                     is 0 goes on with shelve_offload (task shelving_offloading, action shelveOffload: the
                     compute undefines the guest and removes its disk); an offload done gives the host's
                     claim back and clears the host (SHELVED_OFFLOADED); a failed unshelve of an offloaded
                     server gives back the claim its scheduling made
    unshelve         SHELVED: the compute's "unshelve" (power on). SHELVED_OFFLOADED: the scheduler claims a
                     host (the request spec's zone, or the one the API gives: 2.77 availability_zone, 2.91
                     host / unpin) -> lock -> check again -> host set, task unshelving, action unshelve ->
                     the compute makes the guest from the shelve image; a claim whose check failed or whose
                     cast found no compute is released
    volume-backed    (Nova's: no image) the API reports the shelve's image done at once: the guest is powered
                     off and offloaded whatever shelved_offload_time, its volumes staying attached; an
                     unshelve carries them (flows/move_volumes.py) to the host the scheduler chose before the
                     compute makes the guest on the root volume, then plugs the data volumes
    offload_due      the conductor's sweep: SHELVED servers older than shelved_offload_time (>0) are offloaded

Kill-safety: the compute steps are user actions, so a compute killed mid-way ends them at its restart
(node/compute/manager.py _end_interrupted_action); the conductor writes each step before its cast.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from cells import errors, lifecycle
from cells.conductor.env import FlowEnv, background_ctx, state_of
from cells.conductor.flows import boot_volume, move_volumes, server_actions, server_snapshots
from cells.conductor.flows.delete import visible
from cells.context import RequestContext, admin_context
from cells.db import action_records, claims
from cells.db import instances as idb
from cells.db.commit_hooks import after_commit
from cells.db.schema import instances
from cells.objects.instance import TaskState, VmState, utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpcapi.compute import ComputeAPI
from cells.rpcapi.scheduler import SchedulerAPI

LOG = logging.getLogger(__name__)
ACTION = "shelve"
EVENT = "compute_shelve_instance"  # server_actions.event_name("shelve"): the compute's shelve closes it
STEPS = (lifecycle.SHELVE_UPLOADING, lifecycle.SHELVE_DONE, lifecycle.SHELVE_FAILED)
PLACEMENT_KEYS = ("only_hosts", "excluded_hosts")  # what an unshelve's zone or host replaces in the spec


def _row(conn: Connection, ctx: RequestContext, uuid: str, lock: bool = True) -> Any:
    row = idb.get_row(conn, uuid, lock=lock)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    return row


# --- shelve ------------------------------------------------------------------------------

def _begin(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str) -> InstanceRecord:
    row = _row(conn, ctx, uuid)
    lifecycle.check_unlocked(row.locked_by, ctx.is_admin, uuid)
    state = lifecycle.begin_shelve(state_of(row), uuid)
    if boot_volume.root_volume_id(row.image) is not None:  # Nova: no image, its volumes stay attached (offloaded)
        move_volumes.refuse_busy(conn, uuid, ACTION)
    else:  # an image-backed guest made elsewhere would come up without its volumes (409, as moves)
        boot_volume.refuse_move_with_volumes(conn, row.image, uuid, ACTION)
    return server_snapshots.start_on_host(conn, env, ctx, row, state.task_state, ACTION, EVENT)


def _progress(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, step: str,
              message: str | None) -> InstanceRecord:
    row = _row(conn, ctx, uuid)
    state = lifecycle.shelve_step(step, state_of(row), uuid)
    if step == lifecycle.SHELVE_FAILED:
        action_records.finish_event(conn, uuid, ACTION, EVENT, action_records.ERROR, message, row.host)
        action_records.finish_action(conn, uuid, ACTION, action_records.ERROR)
    values = {"task_state": state.task_state, "updated_at": utcnow_iso()}
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values})


def _not_sent(conn: Connection, uuid: str, task: str, action: str, reason: str) -> None:
    """A compute step whose cast found no compute: the task ends where it was, its events fail."""
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.task_state != task:
        return
    idb.update_row(conn, uuid, {"task_state": None, "updated_at": utcnow_iso()})
    action_records.fail_open_events(conn, uuid, action, reason)


async def shelve_begin(env: FlowEnv, ctx: RequestContext, uuid: str) -> InstanceRecord:
    return await env.db.write(lambda conn: _begin(conn, env, ctx, uuid))


async def shelve_progress(env: FlowEnv, ctx: RequestContext, uuid: str, step: Any,
                          message: Any = None) -> InstanceRecord:
    if step not in STEPS:
        raise errors.Invalid(reason=f"step must be one of {', '.join(STEPS)}")
    if message is not None and (not isinstance(message, str) or len(message) > 4096):
        raise errors.Invalid(reason="message must be a string of at most 4096 characters")
    record = await env.db.write(lambda conn: _progress(conn, env, ctx, uuid, str(step), message))
    if step == lifecycle.SHELVE_DONE:
        await _cast(env, ctx, record, ACTION, {})
    return record


async def _cast(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, action: str,
                args: dict[str, Any]) -> None:
    host, uuid = str(record["host"]), str(record["uuid"])
    try:
        await ComputeAPI(env.service).run_instance_action(ctx, host, record, action, args)
    except errors.CellcloudError as exc:
        LOG.warning("%s of %s not sent to %s: %s", action, uuid, host, exc)
        reason = exc.message
        task = lifecycle.user_action(action).task_state
        await env.db.write(lambda conn: _not_sent(conn, uuid, task, server_actions.record_action(action), reason))
        raise errors.Conflict(reason=f"Compute host {host} of instance {uuid} is not available") from exc


# --- after the compute's report (server_actions._done, same unit of work) ---------------------

def after_action(conn: Connection, env: FlowEnv, row: Any, action: str, ok: bool, new: dict[str, Any]) -> None:
    """What a shelve step's end changes beyond the state: `new` (the row's new values) is updated here."""
    uuid = str(row.uuid)
    if action == "shelve_offload" and ok or \
            action == "unshelve" and not ok and row.vm_state == VmState.SHELVED_OFFLOADED:
        claims.release_claim(conn, uuid)  # the host is free of it: hypervisor stats and placement usage
        new["host"] = None
    volume_backed = boot_volume.root_volume_id(row.image) is not None
    if action == "shelve" and ok and (env.shelved_offload_time == 0 or volume_backed):
        _begin_offload(conn, env, row, new)  # Nova offloads a volume-backed server at once, whatever the time
    if action == "unshelve" and ok and volume_backed and row.vm_state == VmState.SHELVED_OFFLOADED:
        record = env.record({**row._mapping, **new})  # its guest was made on the root volume: the data ones now
        after_commit(conn, lambda: env.spawn(move_volumes.plug(env, admin_context(), record, str(row.host))))


def _begin_offload(conn: Connection, env: FlowEnv, row: Any, new: dict[str, Any]) -> None:
    uuid, host = str(row.uuid), str(row.host)
    state = lifecycle.begin_action("shelve_offload", lifecycle.State(VmState.SHELVED, None), uuid)
    ctx = admin_context()
    name = server_actions.record_action("shelve_offload")
    action_records.start_action(conn, ctx, uuid, name, row.project_id, new.get("updated_at"))
    action_records.start_event(conn, uuid, name, server_actions.event_name("shelve_offload"), host)
    new["task_state"] = state.task_state
    record = env.record({**row._mapping, **new})
    after_commit(conn, lambda: env.spawn(_cast_offload(env, ctx, record)))


async def _cast_offload(env: FlowEnv, ctx: RequestContext, record: InstanceRecord) -> None:
    try:
        await _cast(env, ctx, record, "shelve_offload", {})
    except errors.Conflict as exc:  # the server stays SHELVED on its host: an admin's shelveOffload or the sweep
        LOG.warning("offload of %s after its shelve: %s", record["uuid"], exc.message)


# --- unshelve ----------------------------------------------------------------------------

def validate_unshelve(image: Any, placement: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if image is not None and (not isinstance(image, dict) or not image.get("id")):
        raise errors.Invalid(reason="image must be the shelve image's record")
    if placement is None:
        return image, None
    if not isinstance(placement, dict) or set(placement) - set(PLACEMENT_KEYS):
        raise errors.Invalid(reason=f"placement may only give {', '.join(PLACEMENT_KEYS)}")
    for key, hosts in placement.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise errors.Invalid(reason=f"placement {key} must be a list of host names")
    return image, dict(placement)


def _spec(row: Any, placement: dict[str, Any] | None) -> dict[str, Any]:
    spec = {k: v for k, v in dict(row.request_spec or {}).items() if k != "admission"}
    if placement is not None:  # the unshelve's zone or host (2.77 / 2.91) replaces the boot's
        spec = {k: v for k, v in spec.items() if k not in PLACEMENT_KEYS} | placement
    return {**spec, "flavor": row.flavor, "instance_uuid": str(row.uuid)}


def _begin_unshelve(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, host: str,
                    spec: dict[str, Any]) -> InstanceRecord:
    row = _row(conn, ctx, uuid)
    lifecycle.check_unlocked(row.locked_by, ctx.is_admin, uuid)
    state = lifecycle.begin_action("unshelve", state_of(row), uuid)
    if row.vm_state != VmState.SHELVED_OFFLOADED:  # offloaded no more: a concurrent unshelve won
        raise errors.InstanceInvalidState(action="unshelve", instance_id=uuid, attr="vm_state", state=row.vm_state)
    now = utcnow_iso()
    action_records.start_action(conn, ctx, uuid, "unshelve", row.project_id, now)
    action_records.start_event(conn, uuid, "unshelve", server_actions.event_name("unshelve"), host)
    values = {"task_state": state.task_state, "host": host, "updated_at": now, "request_spec": spec}
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values})


def _unclaim(conn: Connection, uuid: str) -> None:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.host is None:  # our claim never became the server's
        claims.release_claim(conn, uuid)


def _not_sent_unshelve(conn: Connection, uuid: str, reason: str) -> None:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.task_state != TaskState.UNSHELVING:
        return
    claims.release_claim(conn, uuid)
    idb.update_row(conn, uuid, {"task_state": None, "host": None, "updated_at": utcnow_iso()})
    action_records.fail_open_events(conn, uuid, "unshelve", reason)


async def unshelve(env: FlowEnv, ctx: RequestContext, uuid: str, image: Any = None,
                   placement: Any = None) -> InstanceRecord:
    shelve_image, where = validate_unshelve(image, placement)
    row = await env.db.read(lambda conn: _row(conn, ctx, uuid, lock=False))
    lifecycle.check_unlocked(row.locked_by, ctx.is_admin, uuid)
    lifecycle.begin_action("unshelve", state_of(row), uuid)  # 409 before anything is claimed
    if row.vm_state == VmState.SHELVED:
        if where is not None:  # Nova: a zone or host only for an offloaded server
            raise errors.Conflict(reason=f"The availability_zone or host of instance {uuid} can only be given "
                                         "when it is SHELVED_OFFLOADED")
        return await server_actions.instance_action(env, ctx, uuid, "unshelve", {})
    volume_backed = boot_volume.root_volume_id(row.image) is not None
    if volume_backed:  # its guest is made on its root volume, carried to the chosen host first
        shelve_image = dict(row.image)
    elif shelve_image is None:
        raise errors.Invalid(reason=f"Instance {uuid} is offloaded: unshelve needs its shelve image")
    spec = _spec(row, where)
    [chosen] = await SchedulerAPI(env.service).select_destinations(ctx, spec, [uuid], [])
    host = str(chosen["host"])
    try:
        record = await env.db.write(lambda conn: _begin_unshelve(conn, env, ctx, uuid, host, spec))
    except BaseException:
        await env.db.write(lambda conn: _unclaim(conn, uuid))
        raise
    try:
        if volume_backed:
            await move_volumes.carry(env, ctx, uuid, host)
        await ComputeAPI(env.service).run_instance_action(ctx, host, record, "unshelve", {"image": shelve_image})
    except errors.CellcloudError as exc:
        LOG.warning("unshelve of %s not sent to %s: %s", uuid, host, exc)
        reason = exc.message
        await env.db.write(lambda conn: _not_sent_unshelve(conn, uuid, reason))
        raise errors.Conflict(reason=f"Compute host {host} of instance {uuid} is not available") from exc
    return record


# --- the offload sweep (shelved_offload_time > 0) ---------------------------------------------------

async def offload_due(env: FlowEnv) -> int:
    """Offload every SHELVED server with no task shelved longer than shelved_offload_time ago (its
    updated_at: the shelve's end); how many were sent."""
    if env.shelved_offload_time <= 0:
        return 0
    before = (datetime.now(UTC) - timedelta(seconds=env.shelved_offload_time)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = await env.db.read(lambda conn: conn.execute(select(instances.c.uuid).where(
        instances.c.vm_state == VmState.SHELVED, instances.c.task_state.is_(None), instances.c.deleted.is_(False),
        instances.c.updated_at < before)).all())
    sent = 0
    ctx = background_ctx(admin_context())
    for (uuid,) in rows:
        try:
            await server_actions.instance_action(env, ctx, str(uuid), "shelve_offload", {})
            sent += 1
        except errors.CellcloudError as exc:  # changed meanwhile, or its host is away: the next sweep
            LOG.info("offload of shelved %s not started: %s", uuid, exc.message)
    return sent
