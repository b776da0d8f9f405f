"""Instance actions (who did what, when, with what result), their events, and faults.

As Nova: an action per user request ("create", "delete"), events per step
("conductor_schedule_and_build_instances", "compute_terminate_instance", ...),
results "Success" / "Error". A fault is the error a user sees on an instance
in ERROR; every fault is kept in instance_faults, the latest is on the record.
All functions are parts of the caller's unit of work (a sync Connection).
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, String, bindparam, insert, select, update

from cells.context import RequestContext
from cells.db.fast import Fast
from cells.db.schema import instance_action_events, instance_actions, instance_faults
from cells.objects.instance import utcnow_iso

SUCCESS, ERROR = "Success", "Error"

_a, _e, _f = instance_actions.c, instance_action_events.c, instance_faults.c
_INSERT_ACTION = Fast(insert(instance_actions))
_INSERT_EVENT = Fast(insert(instance_action_events))
_INSERT_FAULT = Fast(insert(instance_faults))
_CURRENT_SELECT = (select(_a.uuid).where(_a.instance_uuid == bindparam("b_uuid"), _a.action == bindparam("b_action"))
                   .order_by(_a.start_time.desc(), _a.finish_time.is_(None).desc()).limit(1))
_CURRENT = Fast(_CURRENT_SELECT)
# the hot steps of a boot name the current action by this subquery: one statement each, not a lookup and then one
_CURRENT_ID = _CURRENT_SELECT.scalar_subquery()
_FINISH_ACTION = Fast(update(instance_actions).where(_a.uuid == bindparam("b_action_id"), _a.finish_time.is_(None))
                  .values(finish_time=bindparam("b_now"), message=bindparam("b_message")))
_FINISH_CURRENT_ACTION = Fast(update(instance_actions).where(_a.uuid == _CURRENT_ID, _a.finish_time.is_(None))
                              .values(finish_time=bindparam("b_now"), message=bindparam("b_message")))
_FINISH_EVENT = Fast(update(instance_action_events)
                     .where(_e.action_id == _CURRENT_ID, _e.event == bindparam("b_event"), _e.finish_time.is_(None))
                     .values(finish_time=bindparam("b_now"), result=bindparam("b_result"),
                             details=bindparam("b_details")))
_START_EVENT = Fast(insert(instance_action_events).from_select(
    ["action_id", "event", "start_time", "host"],
    select(_a.uuid, bindparam("b_event", type_=String), bindparam("b_now", type_=String),
           bindparam("b_host", type_=String))
    .where(_a.uuid == _CURRENT_ID)))
_FAIL_EVENTS = Fast(update(instance_action_events)
                    .where(_e.action_id == bindparam("b_action_id"), _e.finish_time.is_(None))
                    .values(finish_time=bindparam("b_now"), result=ERROR, details=bindparam("b_details")))


def start_actions(conn: Connection, ctx: RequestContext, action: str, instances: Sequence[tuple[str, str | None]],
                  first_event: str | None = None, now: str | None = None) -> list[str]:
    """Start `action` on each (instance_uuid, project_id), optionally with an open first event."""
    now = now or utcnow_iso()
    ids = [str(uuidlib.uuid4()) for _ in instances]
    _INSERT_ACTION.run_many(conn, [
        {"uuid": aid, "instance_uuid": iuuid, "action": action, "request_id": ctx.request_id, "user_id": ctx.user,
         "project_id": ctx.project or project, "start_time": now, "finish_time": None, "message": None}
        for aid, (iuuid, project) in zip(ids, instances)])
    if first_event is not None:
        _INSERT_EVENT.run_many(conn, [{"action_id": aid, "event": first_event, "start_time": now, "host": None}
                                     for aid in ids])
    return ids


def start_action(conn: Connection, ctx: RequestContext, instance_uuid: str, action: str,
                 project_id: str | None = None, now: str | None = None) -> str:
    return start_actions(conn, ctx, action, [(instance_uuid, project_id)], None, now)[0]


def current_action(conn: Connection, instance_uuid: str, action: str) -> str | None:
    """The latest action of that kind on the instance (events attach to it)."""
    value = _CURRENT.scalar(conn, {"b_uuid": instance_uuid, "b_action": action})
    return None if value is None else str(value)


def finish_action(conn: Connection, instance_uuid: str, action: str, message: str | None = None) -> None:
    """Close the latest action of that kind (none: nothing to do)."""
    _FINISH_CURRENT_ACTION.run(conn, {"b_uuid": instance_uuid, "b_action": action, "b_now": utcnow_iso(),
                                          "b_message": message})


def start_event(conn: Connection, instance_uuid: str, action: str, event: str, host: str | None = None) -> None:
    """Open an event on the latest action of that kind (none: nothing to do)."""
    _START_EVENT.run(conn, {"b_uuid": instance_uuid, "b_action": action, "b_event": event,
                            "b_now": utcnow_iso(), "b_host": host})


def finish_event(conn: Connection, instance_uuid: str, action: str, event: str, result: str,
                 details: str | None = None, host: str | None = None) -> None:
    """Finish the open event of that name, or record a finished one if none is open."""
    now = utcnow_iso()
    if _FINISH_EVENT.run(conn, {"b_uuid": instance_uuid, "b_action": action, "b_event": event, "b_now": now,
                                "b_result": result, "b_details": details}):
        return
    action_id = current_action(conn, instance_uuid, action)
    if action_id is not None:
        _INSERT_EVENT.run(conn, {"action_id": action_id, "event": event, "start_time": now, "finish_time": now,
                                 "result": result, "details": details, "host": host})


def fail_open_events(conn: Connection, instance_uuid: str, action: str, details: str) -> None:
    """Close every still-open event of the action with Error, and the action itself."""
    action_id = current_action(conn, instance_uuid, action)
    if action_id is None:
        return
    now = utcnow_iso()
    _FAIL_EVENTS.run(conn, {"b_action_id": action_id, "b_now": now, "b_details": details})
    _FINISH_ACTION.run(conn, {"b_action_id": action_id, "b_now": now, "b_message": ERROR})


def make_fault(fault: Mapping[str, Any] | str, code: int = 500) -> dict[str, Any]:
    """The record's fault shape: {code, message, details, created}."""
    if isinstance(fault, str):
        fault = {"message": fault}
    return {"code": int(fault.get("code") or code), "message": str(fault.get("message") or "Unknown error"),
            "details": str(fault.get("details") or ""), "created": str(fault.get("created") or utcnow_iso())}


def add_fault(conn: Connection, instance_uuid: str, fault: Mapping[str, Any], host: str | None = None) -> None:
    _INSERT_FAULT.run(conn, {"instance_uuid": instance_uuid, "code": fault["code"], "message": fault["message"],
                             "details": fault.get("details"), "host": host, "created_at": fault["created"]})


def actions_of(conn: Connection, instance_uuid: str) -> list[dict[str, Any]]:
    """Actions of an instance, oldest first, each with its events (for os-instance-actions)."""
    acts = [dict(r._mapping) for r in conn.execute(
        select(instance_actions).where(_a.instance_uuid == instance_uuid).order_by(_a.start_time))]
    for act in acts:
        act["events"] = [dict(r._mapping) for r in conn.execute(
            select(instance_action_events).where(_e.action_id == act["uuid"]).order_by(_e.id))]
    return acts


def faults_of(conn: Connection, instance_uuid: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(
        select(instance_faults).where(_f.instance_uuid == instance_uuid).order_by(_f.id))]
