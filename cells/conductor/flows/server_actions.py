"""Server actions: stop, start, reboot (soft/hard), pause, unpause, suspend, resume,
rebuild, rescue/unrescue, soft_delete/restore (a DELETE kept for the reclaim interval, from its
terminated_at; api/compute/deferred_delete.py reclaims it after), and console output.

    instance_action      validate -> lock the row -> check the state (cells/lifecycle.py
                         begin_action: 409 when it does not fit) -> task_state set, action
                         recorded -> cast compute.<host> run_instance_action
    instance_action_done the compute's report: lock -> check the task_state is still ours
                         -> final state, event and action closed, fault recorded on failure
    console_output       the compute reads the serial log (Nova's `length`: last N lines)
"""
from __future__ import annotations

import datetime
import logging
from typing import Any

from sqlalchemy import Connection

from cells import errors, lifecycle
from cells.conductor.env import FlowEnv, state_of, state_values
from cells.conductor.flows import boot_volume, shelve
from cells.conductor.flows.delete import visible
from cells.context import RequestContext
from cells.db import action_records
from cells.db import instances as idb
from cells.objects.instance import TaskState, VmState, utcnow_iso
from cells.objects.records import InstanceRecord
from cells.rpcapi.compute import ComputeAPI

LOG = logging.getLogger(__name__)
MAX_CONSOLE_LINES = 100_000
SHELVE_ACTIONS = frozenset({"shelve", "shelve_offload", "unshelve"})  # their ends: flows/shelve.py after_action


def event_name(action: str) -> str:
    """Nova's compute event names: compute_stop_instance, compute_reboot_instance, ...,
    compute_shelve_offload_instance"""
    return f"compute_{action.removesuffix('_hard')}_instance"


def record_action(action: str) -> str:
    """The instance action name users see (os-instance-actions): a hard reboot is a reboot, a soft delete
    a delete (as Nova records it)."""
    if action == "shelve_offload":
        return "shelveOffload"
    return "delete" if action == "soft_delete" else action.removesuffix("_hard")


# --- validate (pure) -----------------------------------------------------------------

def validate_args(action: str, args: Any) -> dict[str, Any]:
    lifecycle.user_action(action)
    if not isinstance(args, dict):
        raise errors.Invalid(reason="action args must be a map")
    if action not in ("rebuild", "rescue"):
        return {}
    image = args.get("image")
    if not isinstance(image, dict) or not image.get("id"):
        raise errors.Invalid(reason=f"{action} needs the image record to boot from")
    out: dict[str, Any] = {"image": dict(image)}
    if action == "rescue":  # the rescue image only: the server's own record stays as it is
        return out
    if args.get("name") is not None:
        if not isinstance(args["name"], str) or not args["name"].strip() or len(args["name"]) > 255:
            raise errors.Invalid(reason="name must be a non-empty string of at most 255 characters")
        out["name"] = args["name"]
    if args.get("metadata") is not None:
        if not isinstance(args["metadata"], dict):
            raise errors.Invalid(reason="metadata must be a map")
        out["metadata"] = dict(args["metadata"])
    # Nova 2.54: a new key pair (key_name with its public key, or both None to drop it); 2.57: new user data
    if "key_name" in args:
        if not all(args.get(k) is None or isinstance(args[k], str) for k in ("key_name", "key_data")) \
                or (args.get("key_name") is None) != (args.get("key_data") is None):
            raise errors.Invalid(reason="key_name and key_data must be strings given together, or both null")
        out["key_name"], out["key_data"] = args.get("key_name"), args.get("key_data")
    if "user_data" in args:
        if args["user_data"] is not None and not isinstance(args["user_data"], str):
            raise errors.Invalid(reason="user_data must be base64 text or null")
        out["user_data"] = args["user_data"]
    return out


def validate_length(length: Any) -> int | None:
    """Nova's os-getConsoleOutput length: an integer (or its string), -1 or absent = everything."""
    if length is None:
        return None
    if isinstance(length, bool) or not isinstance(length, (int, str)):
        raise errors.Invalid(reason=f"length must be an integer, not {length!r}")
    try:
        value = int(length)
    except ValueError:
        raise errors.Invalid(reason=f"length must be an integer, not {length!r}") from None
    if value < -1:
        raise errors.Invalid(reason="length must be -1 or more")
    return None if value == -1 else min(value, MAX_CONSOLE_LINES)


# --- act ---------------------------------------------------------------------------

def _row_for(conn: Connection, ctx: RequestContext, uuid: str, lock: bool) -> Any:
    row = idb.get_row(conn, uuid, lock=lock)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    return row


def _begin(conn: Connection, env: FlowEnv, ctx: RequestContext, uuid: str, action: str,
           args: dict[str, Any]) -> tuple[InstanceRecord, str]:
    row = _row_for(conn, ctx, uuid, lock=True)
    lifecycle.check_unlocked(row.locked_by, ctx.is_admin, uuid)
    state = lifecycle.begin_action(action, state_of(row), uuid)
    if row.host is None:  # an ERROR server that never reached a host
        raise errors.Conflict(reason=f"Instance {uuid} has no host to {record_action(action)} it on")
    if not env.host_alive(row.host):
        raise errors.Conflict(reason=f"Compute host {row.host} of instance {uuid} is not available")
    now = utcnow_iso()
    values: dict[str, Any] = {"task_state": state.task_state, "updated_at": now}
    if action in ("rebuild", "rescue"):
        boot_volume.refuse_for_root_volume(row.image, uuid, action)  # its root disk is the volume, not an image
        values.update(image=args["image"], **{k: args[k] for k in ("name", "metadata", "key_name", "key_data",
                                                                   "user_data") if k in args})
    if action.startswith("reboot") and row.task_state is not None:
        pass  # a hard reboot taking over a soft one joins its action record
    else:
        action_records.start_action(conn, ctx, uuid, record_action(action), row.project_id, now)
    action_records.start_event(conn, uuid, record_action(action), event_name(action), row.host)
    idb.update_row(conn, uuid, values)
    return env.record({**row._mapping, **values}), str(row.host)


def _revert(conn: Connection, env: FlowEnv, uuid: str, action: str, reason: str) -> None:
    row = idb.get_row(conn, uuid, lock=True)
    if row is None or row.task_state != lifecycle.user_action(action).task_state:
        return
    idb.update_row(conn, uuid, {"task_state": None, "updated_at": utcnow_iso()})
    action_records.fail_open_events(conn, uuid, record_action(action), reason)


async def instance_action(env: FlowEnv, ctx: RequestContext, uuid: str, action: Any, args: Any) -> InstanceRecord:
    if not isinstance(action, str):
        raise errors.Invalid(reason="action must be a string")
    clean = validate_args(action, args if args is not None else {})
    record, host = await env.db.write(lambda conn: _begin(conn, env, ctx, uuid, action, clean))
    try:
        await ComputeAPI(env.service).run_instance_action(ctx, host, record, action, clean)
    except errors.CellcloudError as exc:  # nothing was sent: the server is as it was
        LOG.warning("%s of %s not sent to %s: %s", action, uuid, host, exc)
        reason = exc.message
        await env.db.write(lambda conn: _revert(conn, env, uuid, action, reason))
        raise errors.Conflict(reason=f"Compute host {host} of instance {uuid} is not available") from exc
    return record


def _done(conn: Connection, env: FlowEnv, uuid: str, host: str, action: str, ok: bool, values: dict[str, Any],
          fault: dict[str, Any] | None) -> InstanceRecord:
    row = idb.reported_row(conn, uuid, host)
    power = values.get("power_state")
    state = lifecycle.finish_action(action, state_of(row), values.get("vm_state"),
                                    power if isinstance(power, int) and not isinstance(power, bool) else None,
                                    ok, uuid)
    now = utcnow_iso()
    new: dict[str, Any] = {**state_values(state), "updated_at": now}
    if ok and action in ("start", "reboot", "reboot_hard", "rebuild", "resume", "unpause", "unrescue", "restore",
                         "unshelve") \
            and state.vm_state == VmState.ACTIVE:
        new["fault"] = None  # a server that runs again shows no stale fault
    if ok and action == "rebuild":
        new["launched_at"] = now
    if ok and action in ("soft_delete", "restore"):  # when the reclaim interval starts counting (reclaim: the API)
        new["terminated_at"] = now if action == "soft_delete" else None
    name = record_action(action)
    if ok:
        action_records.finish_event(conn, uuid, name, event_name(action), action_records.SUCCESS, host=host)
        action_records.finish_action(conn, uuid, name)
    else:
        made = action_records.make_fault(fault or f"{name} failed")
        action_records.add_fault(conn, uuid, made, host)
        if state.vm_state == VmState.ERROR:
            new["fault"] = made
        action_records.finish_event(conn, uuid, name, event_name(action), action_records.ERROR, made["message"], host)
        action_records.finish_action(conn, uuid, name, action_records.ERROR)
    if action in SHELVE_ACTIONS:
        shelve.after_action(conn, env, row, action, ok, new)
    idb.update_row(conn, uuid, new)
    return env.record({**row._mapping, **new})


async def instance_action_done(env: FlowEnv, ctx: RequestContext, uuid: str, host: str, action: Any, ok: Any,
                               values: Any, fault: Any = None) -> InstanceRecord:
    if not isinstance(action, str):
        raise errors.Invalid(reason="action must be a string")
    lifecycle.user_action(action)
    if not isinstance(values, dict) or set(values) - {"vm_state", "power_state"}:
        raise errors.Invalid(reason="values must be a map of vm_state and power_state")
    return await env.db.write(lambda conn: _done(conn, env, uuid, host, action, bool(ok), values,
                                                 fault if isinstance(fault, dict) else None))


async def console_output(env: FlowEnv, ctx: RequestContext, uuid: str, length: Any) -> str:
    lines = validate_length(length)
    row = await env.db.read(lambda conn: _row_for(conn, ctx, uuid, lock=False))
    if row.host is None or row.vm_state == VmState.BUILDING and row.task_state != TaskState.SPAWNING:
        raise errors.InstanceInvalidState(action="get_console_output", instance_id=uuid, attr="vm_state",
                                          state=row.vm_state)
    if not env.host_alive(row.host):
        raise errors.Conflict(reason=f"Compute host {row.host} of instance {uuid} is not available")
    return await ComputeAPI(env.service).get_console_output(ctx, str(row.host), uuid, lines)


async def diagnostics(env: FlowEnv, ctx: RequestContext, uuid: str) -> dict[str, Any]:
    """Admin: the server's guest as its host's hypervisor sees it (Nova's standard diagnostics), with its
    uptime since it was launched; 409 while it has no guest to ask, or its host is not alive."""
    if not ctx.is_admin:
        raise errors.Forbidden("Policy doesn't allow os_compute_api:os-server-diagnostics to be performed.")
    row = await env.db.read(lambda conn: _row_for(conn, ctx, uuid, lock=False))
    if row.host is None or row.vm_state in (VmState.BUILDING, VmState.SHELVED_OFFLOADED):
        raise errors.InstanceInvalidState(action="get_diagnostics", instance_id=uuid, attr="vm_state",
                                          state=row.vm_state)
    if not env.host_alive(row.host):
        raise errors.Conflict(reason=f"Compute host {row.host} of instance {uuid} is not available")
    found = await ComputeAPI(env.service).get_diagnostics(ctx, str(row.host), uuid)
    launched = row.launched_at
    uptime = int((datetime.datetime.now(datetime.UTC) - _aware(launched)).total_seconds()) if launched else 0
    return {**found, "uptime": max(uptime, 0), "config_drive": False}


def _aware(value: Any) -> datetime.datetime:
    when = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)
