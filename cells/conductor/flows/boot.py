"""Boot: build_instances writes the rows and returns at once; scheduling, the
cast to compute and reschedules run in the conductor's background.

    build_instances -> rows BUILD/scheduling + 'create' action  (returned to the API)
    background      -> scheduler.select_destinations (claims)  -> host set
                    -> compute.<host> build_and_run_instance (cast)
    build_failed    -> retryable and < max_attempts (cluster.yaml, default 3): release claim, reschedule
                       without the hosts tried (a compute killed mid-build, or its host declared dead,
                       is a retryable failure: flows/hosts.py)
                    -> otherwise: ERROR + fault (naming every host tried), claim released
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, background_ctx, state_of, state_values
from cells.conductor.flows import boot_volume, network
from cells.conductor.flows.delete import complete_delete
from cells.context import RequestContext, admin_context
from cells.db import action_records, claims
from cells.db import instances as idb
from cells.db.commit_hooks import after_commit
from cells.db.fast import AnyRow
from cells.db.volumes import release_instance_volumes
from cells.lifecycle import NEW, Action, Event, carry_out, on
from cells.metrics import BOOTS
from cells.objects.instance import FIELDS, TaskState, VmState, utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpc.directory import MISSED_BEATS
from cells.rpcapi.compute import ComputeAPI
from cells.rpcapi.compute import topic as compute_topic
from cells.rpcapi.scheduler import SchedulerAPI
from cells.scheduler import groups

LOG = logging.getLogger(__name__)
SCHEDULER_WAIT = 5.0  # seconds a build waits for a live scheduler before it fails
CREATE = "create"
EV_SCHEDULE = "conductor_schedule_and_build_instances"
EV_BUILD = "compute_build_and_run_instance"
_OPTIONAL = ("user_id", "key_name", "key_data", "availability_zone", "user_data", "access_ipv4", "access_ipv6")
MAX_KEY_DATA = 16384  # an OpenSSH public key line; RSA 16384-bit is ~2.8 KB


# --- validate (pure) -------------------------------------------------------------

def _int(value: Any, what: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise errors.Invalid(reason=f"{what} must be an integer >= {minimum}, not {value!r}")
    return value


def _text(value: Any, what: str, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise errors.Invalid(reason=f"{what} must be a non-empty string of at most 255 characters")
    return value


def validate_flavor(flavor: Any) -> dict[str, Any]:
    if not isinstance(flavor, Mapping):
        raise errors.Invalid(reason="a flavor is required")
    _int(flavor.get("vcpus"), "flavor vcpus", 1)
    _int(flavor.get("ram"), "flavor ram", 1)
    for key in ("disk", "ephemeral", "swap"):
        _int(flavor.get(key) or 0, f"flavor {key}", 0)
    return dict(flavor)


def validate_build(instances: Any, request_spec: Any, now: str, conductor_id: str) -> list[dict[str, Any]]:
    """The rows to insert for a build request. The conductor owns state, host and
    times: those keys of the given records are ignored."""
    if not isinstance(instances, list) or not instances:
        raise errors.Invalid(reason="instances must be a non-empty list")
    if not isinstance(request_spec, Mapping):
        raise errors.Invalid(reason="request_spec must be a map")
    groups.from_spec(request_spec)  # a malformed server group is refused before any row is written
    state, actions = on(Event.BUILD_REQUESTED, NEW)
    # the rows are inserted first; build_instances then schedules them in the background
    carry_out(actions, {Action.SCHEDULE: lambda: None})
    rows, seen = [], set()
    for inst in instances:
        if not isinstance(inst, Mapping):
            raise errors.Invalid(reason="each instance must be a map")
        unknown = set(inst) - set(FIELDS)
        if unknown:
            raise errors.Invalid(reason=f"unknown instance field(s) {sorted(unknown)}")
        try:
            uuid = str(uuidlib.UUID(str(inst.get("uuid"))))
        except ValueError:
            raise errors.Invalid(reason=f"instance uuid {inst.get('uuid')!r} is not a UUID") from None
        if uuid in seen:
            raise errors.Invalid(reason=f"instance {uuid} appears twice")
        seen.add(uuid)
        flavor = validate_flavor(inst.get("flavor") or request_spec.get("flavor"))
        metadata = inst.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise errors.Invalid(reason="metadata must be a map")
        key_data = inst.get("key_data")
        if key_data is not None and (not isinstance(key_data, str) or len(key_data) > MAX_KEY_DATA):
            raise errors.Invalid(reason=f"key_data must be a public key of at most {MAX_KEY_DATA} characters")
        row: dict[str, Any] = {k: inst.get(k) for k in _OPTIONAL}
        row.update(
            uuid=uuid, name=_text(inst.get("name"), "name"), project_id=_text(inst.get("project_id"), "project_id"),
            flavor=flavor, image=inst.get("image") or request_spec.get("image"), metadata=dict(metadata),
            addresses=dict(inst.get("addresses") or {}), host=None, created_at=now, updated_at=now,
            launched_at=None, terminated_at=None, deleted=False, fault=None, progress=0,
            conductor_id=conductor_id, request_spec={**request_spec, "flavor": flavor}, retry_hosts=[],
            **state_values(state))
        rows.append(row)
    return rows


# --- act ---------------------------------------------------------------------------

def _insert_build(conn: Connection, env: FlowEnv, ctx: RequestContext, rows: list[dict[str, Any]],
                  now: str) -> tuple[list[InstanceRecord], list[dict[str, Any]]]:
    """(records for the caller, rows new to the DB). A retried request gets what the first one made."""
    existing = idb.get_rows(conn, [r["uuid"] for r in rows])
    for r in rows:
        old = existing.get(r["uuid"])
        if old is not None and old.project_id != r["project_id"]:
            raise errors.Conflict(reason=f"instance {r['uuid']} already exists")
    new = [r for r in rows if r["uuid"] not in existing]
    if new:
        idb.insert_rows(conn, new)
        for r in new:  # a boot from a volume reserves it (or the one it makes) with its row (flows/boot_volume.py)
            volume_id = boot_volume.root_volume_id(r["image"])
            if volume_id is not None and boot_volume.new_root(r["image"]) is None:
                boot_volume.reserve(conn, ctx, volume_id, r["uuid"], r["project_id"])
            boot_volume.insert_made_volumes(conn, r["image"], r["uuid"], r["project_id"], ctx)
        action_records.start_actions(conn, ctx, CREATE, [(r["uuid"], r["project_id"]) for r in new], EV_SCHEDULE, now)
    records = [env.record(existing[r["uuid"]]) if r["uuid"] in existing else env.record(r) for r in rows]
    return records, new


async def build_instances(env: FlowEnv, ctx: RequestContext, instances: Any, request_spec: Any) -> list[InstanceRecord]:
    now = utcnow_iso()
    rows = validate_build(instances, request_spec, now, env.conductor_id)
    # below the cell DB's free-space watermark new servers are refused first (507), so the writes of
    # servers that exist (deletes, state changes) still find room (cells/db/settings.py)
    await env.db.check_free_space(f"new servers in cell {env.cell}")
    if request_spec.get("admission"):  # the API asks: refuse now if no host here has room (it tries another cell)
        from cells.conductor.capacity import admit
        await admit(env, rows[0]["flavor"])
    # concurrent on PostgreSQL: new rows, a conditional volume reservation; the same request twice at once
    # loses on the primary key and runs again, reading what the first one made (cells/db/concurrent_writes.py)
    records, new = await env.db.write(lambda conn: _insert_build(conn, env, ctx, rows, now), concurrent=True)
    if new:
        LOG.info("building %s", ", ".join(r["uuid"] for r in new))
    # one scheduler call per distinct flavor (a multi-create normally has one)
    batches: dict[str, list[dict[str, Any]]] = {}
    for r in new:
        batches.setdefault(json.dumps(r["flavor"], sort_keys=True), []).append(r)
    for batch in batches.values():
        env.spawn(make_volumes_then_schedule(env, background_ctx(ctx), batch))
    return records


async def make_volumes_then_schedule(env: FlowEnv, ctx: RequestContext, batch: list[dict[str, Any]]) -> None:
    """The volumes the boot makes (flows/boot_volume.py make_volumes), then scheduling: a server whose
    volumes cannot be made fails its build (they are deleted) and is not scheduled."""
    uuids = []
    for r in batch:
        failure = await boot_volume.make_volumes(env, ctx, r["uuid"], r["image"])
        if failure is None:
            uuids.append(r["uuid"])
            continue
        await fail_builds(env, [r["uuid"]], action_records.make_fault(
            f"Build of instance {r['uuid']} aborted: a volume it boots with could not be made: {failure}"), ctx)
    if uuids:
        await schedule_and_build(env, ctx, uuids, batch[0]["request_spec"], [])


def _exhausted(uuid: str, tried: list[str]) -> errors.MaxRetriesExceeded:
    return errors.MaxRetriesExceeded(
        reason=f"Exhausted all hosts available for retrying build failures for instance {uuid}."
               + (f" Hosts tried: {', '.join(tried)}." if tried else ""))


async def _select(env: FlowEnv, ctx: RequestContext, uuids: list[str], request_spec: dict[str, Any],
                  exclude: list[str]) -> list[dict[str, Any]]:
    """select_destinations, waiting a little for a scheduler to appear in our directory view
    (just after start-up our table may lag the directory by a heartbeat). NoLiveMember means
    nothing was sent, so trying again is always safe."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + max(SCHEDULER_WAIT, MISSED_BEATS * env.service.view.interval)
    while True:
        try:
            return await SchedulerAPI(env.service).select_destinations(ctx, request_spec, uuids, exclude)
        except errors.NoLiveMember:
            if loop.time() >= give_up:
                raise
            await asyncio.sleep(env.service.view.interval / 4)


async def schedule_and_build(env: FlowEnv, ctx: RequestContext, uuids: list[str], request_spec: dict[str, Any],
                             exclude: list[str]) -> None:
    try:
        selections = await _select(env, ctx, uuids, request_spec, exclude)
    except errors.NoValidHost as exc:
        final: errors.CellcloudError = _exhausted(uuids[0], exclude) if exclude and len(uuids) == 1 else exc
        await fail_builds(env, uuids, action_records.make_fault(final.message))
        return
    except errors.CellcloudError as exc:  # scheduler down or timed out: a claim may exist, fail_builds frees it
        LOG.warning("scheduling %s failed: %s", uuids, exc)
        await fail_builds(env, uuids, action_records.make_fault(f"No valid host was found. {exc.message}"))
        return
    for sel in selections:
        await send_to_host(env, ctx, str(sel["instance_uuid"]), str(sel["host"]), request_spec)


def _set_host(conn: Connection, env: FlowEnv, uuid: str, host: str) -> InstanceRecord | None:
    row = idb.get_row(conn, uuid, lock=True)
    if row is not None and row.conductor_id not in (None, env.conductor_id):
        # another conductor adopted this build (we were taken for dead): the flow, and the claim, are its
        LOG.warning("build of %s now belongs to %s: not sending it to %s", uuid, row.conductor_id, host)
        return None
    if row is None or row.deleted or row.vm_state != VmState.BUILDING \
            or row.task_state != TaskState.SCHEDULING or row.host is not None:
        # deleted (or otherwise moved on) while the scheduler worked: give the claim back
        claims.release_claim(conn, uuid)
        LOG.info("instance %s changed during scheduling: not sending it to %s", uuid, host)
        return None
    state, actions = on(Event.SCHEDULED, state_of(row), uuid)
    values = {**state_values(state), "conductor_id": env.conductor_id, "updated_at": utcnow_iso()}
    carry_out(actions, {
        Action.SET_HOST: lambda: values.update(host=host, retry_hosts=[*(row.retry_hosts or []), host]),
        Action.CAST_BUILD: lambda: None,  # the record returned is cast by send_to_host, once its ports exist
    })
    idb.update_row(conn, uuid, values)
    action_records.finish_event(conn, uuid, CREATE, EV_SCHEDULE, action_records.SUCCESS)
    action_records.start_event(conn, uuid, CREATE, EV_BUILD, host)
    return env.record({**row._mapping, **values})


async def send_to_host(env: FlowEnv, ctx: RequestContext, uuid: str, host: str, request_spec: dict[str, Any]) -> None:
    # concurrent on PostgreSQL: the instance's row is locked before anything is decided
    record = await env.db.write(lambda conn: _set_host(conn, env, uuid, host), concurrent=True)
    if record is None:
        return
    record = await network.allocate_for_build(env, ctx, record, request_spec)  # ports + fixed IPs (boot step 3)
    if record is None:
        return
    try:  # a boot from a volume: its export for this host, before the compute asks for it
        await boot_volume.export_to(env, ctx, record, host)
    except errors.CellcloudError as exc:
        await build_failed(env, ctx, uuid, host, {"message": f"Could not export the root volume to {host}: "
                                                             f"{exc.message}"}, retryable=False)
        return
    try:
        await _cast_build(env, ctx, host, record)
    except errors.CellcloudError as exc:  # e.g. NoLiveMember: the host left since the scheduler saw it
        await build_failed(env, ctx, uuid, host, {"message": f"Could not reach compute host {host}: {exc.message}"},
                           retryable=True)


async def _cast_build(env: FlowEnv, ctx: RequestContext, host: str, record: InstanceRecord) -> None:
    """Send the build; a host that left the table a moment ago (a missed beat, the directory
    restarting) gets a few heartbeats to come back before the build goes elsewhere."""
    try:
        await ComputeAPI(env.service).build_and_run_instance(ctx, host, record)
    except errors.NoLiveMember:
        view = env.service.view
        if not await view.wait_for_topic(compute_topic(host), MISSED_BEATS * view.interval):
            raise
        await ComputeAPI(env.service).build_and_run_instance(ctx, host, record)


def set_error(conn: Connection, env: FlowEnv, row: AnyRow, fault: dict[str, Any], event: str = Event.BUILD_FAILED) -> None:
    """building -> ERROR with `fault`, claim released, create action closed with Error (same unit of work)."""
    state, actions = on(event, state_of(row), row.uuid)
    values = {**state_values(state), "updated_at": utcnow_iso()}

    def record_fault() -> None:
        action_records.add_fault(conn, row.uuid, fault, row.host)
        values["fault"] = fault

    carry_out(actions, {Action.RELEASE_CLAIM: lambda: claims.release_claim(conn, row.uuid),
                        Action.RECORD_FAULT: record_fault})
    release_instance_volumes(conn, row.uuid)  # a boot volume is available again (its export: its host's sweep)
    boot_volume.release_boot_volumes(conn, env, row, build_failed=True)  # or deleted (delete_released, after the commit)
    idb.update_row(conn, row.uuid, values)
    action_records.fail_open_events(conn, row.uuid, CREATE, fault["message"])
    after_commit(conn, BOOTS.labels("error").inc)


def _fail_builds(conn: Connection, env: FlowEnv, uuids: list[str], fault: dict[str, Any]) -> None:
    for uuid in uuids:
        row = idb.get_row(conn, uuid, lock=True)
        if row is None or row.deleted or row.vm_state != VmState.BUILDING or row.task_state == TaskState.DELETING:
            claims.release_claim(conn, uuid)
            continue
        set_error(conn, env, row, fault)


async def fail_builds(env: FlowEnv, uuids: list[str], fault: dict[str, Any],
                      ctx: RequestContext | None = None) -> None:
    await env.db.write(lambda conn: _fail_builds(conn, env, uuids, fault))
    LOG.info("build of %s failed: %s", uuids, fault["message"])
    await boot_volume.delete_released_of(env, ctx or admin_context(), uuids)


Reschedule = tuple[dict[str, Any], list[str]]


def record_build_failure(conn: Connection, env: FlowEnv, uuid: str, host: str, reported: dict[str, Any],
                  retryable: bool) -> Reschedule | None:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None:
        raise errors.InstanceNotFound(instance_id=uuid)
    if row.deleted or row.vm_state != VmState.BUILDING or row.host != host:
        LOG.info("stale build_failed for %s from %s ignored", uuid, host)  # e.g. the host was declared lost
        return None
    if row.task_state == TaskState.DELETING:  # a delete raced the build; compute has cleaned up
        complete_delete(conn, env, row)
        return None
    tried = list(row.retry_hosts or [])
    if retryable and len(tried) < env.max_attempts:
        state, actions = on(Event.RESCHEDULE, state_of(row), uuid)
        values = {**state_values(state), "conductor_id": env.conductor_id, "updated_at": utcnow_iso()}
        again: list[Reschedule] = []
        carry_out(actions, {
            Action.RELEASE_CLAIM: lambda: claims.release_claim(conn, uuid),
            # kept in the history, not shown on the record
            Action.RECORD_FAULT: lambda: action_records.add_fault(conn, uuid, reported, host),
            Action.CLEAR_HOST: lambda: values.update(host=None),
            Action.SCHEDULE: lambda: again.append((dict(row.request_spec or {"flavor": row.flavor}), tried)),
        })
        idb.update_row(conn, uuid, values)
        action_records.finish_event(conn, uuid, CREATE, EV_BUILD, action_records.ERROR, reported["message"], host)
        action_records.start_event(conn, uuid, CREATE, EV_SCHEDULE)
        return again[0] if again else None
    if retryable:  # out of attempts: say so, as Nova
        action_records.add_fault(conn, uuid, reported, host)
        reported = action_records.make_fault(_exhausted(uuid, tried).message)
    set_error(conn, env, row, reported)
    return None


async def build_failed(env: FlowEnv, ctx: RequestContext, uuid: str, host: str, fault: Mapping[str, Any],
                       retryable: bool) -> None:
    reported = action_records.make_fault(fault)
    again = await env.db.write(lambda conn: record_build_failure(conn, env, uuid, host, reported, retryable))
    if again is None:  # ended (ERROR, or deleted meanwhile): a root volume it marked for deletion goes
        LOG.info("build of %s on %s failed, not retried: %s", uuid, host, reported["message"])
        await boot_volume.delete_released_of(env, ctx, [uuid])
    if again is not None:
        LOG.info("rescheduling %s after a failure on %s (tried %s)", uuid, host, again[1])
        env.spawn(schedule_and_build(env, background_ctx(ctx), [uuid], *again))
