"""Snapshots (Nova's createImage and createBackup): the server's state while the API takes its disk into the
image service.

    snapshot_begin     validate -> lock the row -> check (cells/lifecycle.py begin_snapshot: a running,
                       stopped, paused or suspended server with no task, on a live host; a backup only of
                       one booted from an image: a createImage of one booted from a volume snapshots its
                       volumes, api/compute/volume_backed_images.py) -> task image_snapshot (image_backup), action createImage (createBackup) with its compute event open;
                       returns the record (the API then asks the host for the disk image and its data)
    snapshot_progress  uploading -> task image_uploading; done or failed -> the task ends (the vm_state
                       never changed), the event and action closed with the result

The API drives it (api/compute/server_snapshots.py): it owns the image record the data goes into.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from cells import errors, lifecycle
from cells.conductor.env import FlowEnv, state_of
from cells.conductor.flows.boot_volume import root_volume_id
from cells.conductor.flows.delete import visible
from cells.context import RequestContext
from cells.db import action_records
from cells.db import instances as idb
from cells.objects.instance import utcnow_iso
from cells.objects.records import InstanceRecord

# action -> its compute event, as Nova records them
EVENTS = {"createImage": "compute_snapshot_instance", "createBackup": "compute_backup_instance"}
STEPS = (lifecycle.SNAPSHOT_UPLOADING, lifecycle.SNAPSHOT_DONE, lifecycle.SNAPSHOT_FAILED)


def _row(conn: Connection, ctx: RequestContext, uuid: str) -> Any:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    return row


def _begin(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, action: str) -> InstanceRecord:
    row = _row(conn, ctx, uuid)
    state = lifecycle.begin_snapshot(state_of(row), uuid, action)
    if not (row.image or {}).get("id") and (action != "createImage" or root_volume_id(row.image) is None):
        raise errors.Invalid(reason=f"Instance {uuid} was not booted from an image: a backup of a "
                                    "volume-backed server is not supported")
    return start_on_host(conn, env, ctx, row, state.task_state, action, EVENTS[action])


def start_on_host(conn: Connection, env: FlowEnv, ctx: RequestContext, row: Any, task: str | None, action: str,
                  event: str) -> InstanceRecord:
    """The checked server's task set, its action started with the compute's event open (its host must be
    live: 409 otherwise); the record. createImage's, createBackup's and shelve's first step."""
    uuid = str(row.uuid)
    if row.host is None or not env.host_alive(row.host):
        raise errors.Conflict(reason=f"Compute host {row.host} of instance {uuid} is not available")
    now = utcnow_iso()
    action_records.start_action(conn, ctx, uuid, action, row.project_id, now)
    action_records.start_event(conn, uuid, action, event, row.host)
    values = {"task_state": task, "updated_at": now}
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values})


def _progress(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, step: str,
              message: str | None, action: str) -> InstanceRecord:
    row = _row(conn, ctx, uuid)
    state = lifecycle.snapshot_step(step, state_of(row), uuid)
    now = utcnow_iso()
    if step == lifecycle.SNAPSHOT_DONE:
        action_records.finish_event(conn, uuid, action, EVENTS[action], action_records.SUCCESS, host=row.host)
        action_records.finish_action(conn, uuid, action)
    elif step == lifecycle.SNAPSHOT_FAILED:
        action_records.finish_event(conn, uuid, action, EVENTS[action], action_records.ERROR, message, row.host)
        action_records.finish_action(conn, uuid, action, action_records.ERROR)
    values = {"task_state": state.task_state, "updated_at": now}
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values})


def _action(action: Any) -> str:
    if action not in EVENTS:
        raise errors.Invalid(reason=f"action must be one of {', '.join(EVENTS)}")
    return str(action)


async def snapshot_begin(env: FlowEnv, ctx: RequestContext, uuid: str, action: Any = "createImage") -> InstanceRecord:
    checked = _action(action)
    return await env.db.write(lambda conn: _begin(conn, env, ctx, uuid, checked))


async def snapshot_progress(env: FlowEnv, ctx: RequestContext, uuid: str, step: Any,
                            message: Any = None, action: Any = "createImage") -> InstanceRecord:
    checked = _action(action)
    if step not in STEPS:
        raise errors.Invalid(reason=f"step must be one of {', '.join(STEPS)}")
    if message is not None and (not isinstance(message, str) or len(message) > 4096):
        raise errors.Invalid(reason="message must be a string of at most 4096 characters")
    return await env.db.write(lambda conn: _progress(conn, env, ctx, uuid, str(step), message, checked))
