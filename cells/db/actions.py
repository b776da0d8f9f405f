"""Instance actions (who did what, when, with what result), their events, and faults.

As Nova: an action per user request ("create", "delete"), events per step
("conductor_schedule_and_build_instances", "compute_terminate_instance", ...),
results "Success" / "Error". A fault is the error a user sees on an instance
in ERROR; every fault is kept in instance_faults, the latest is on the record.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cells.context import RequestContext
from cells.db.schema import instance_action_events, instance_actions, instance_faults
from cells.objects.instance import utcnow_iso

SUCCESS, ERROR = "Success", "Error"


async def start_action(conn: AsyncConnection, ctx: RequestContext, instance_uuid: str, action: str,
                       project_id: str | None = None, now: str | None = None) -> str:
    action_id = str(uuidlib.uuid4())
    await conn.execute(insert(instance_actions).values(
        uuid=action_id, instance_uuid=instance_uuid, action=action, request_id=ctx.request_id, user_id=ctx.user,
        project_id=ctx.project or project_id, start_time=now or utcnow_iso(), finish_time=None, message=None))
    return action_id


async def current_action(conn: AsyncConnection, instance_uuid: str, action: str) -> str | None:
    """The latest action of that kind on the instance (events attach to it)."""
    a = instance_actions.c
    row = (await conn.execute(select(a.uuid).where(a.instance_uuid == instance_uuid, a.action == action)
                              .order_by(a.start_time.desc()).limit(1))).first()
    return None if row is None else str(row.uuid)


async def finish_action(conn: AsyncConnection, instance_uuid: str, action: str, message: str | None = None) -> None:
    action_id = await current_action(conn, instance_uuid, action)
    if action_id is not None:
        await conn.execute(update(instance_actions)
                           .where(instance_actions.c.uuid == action_id, instance_actions.c.finish_time.is_(None))
                           .values(finish_time=utcnow_iso(), message=message))


async def start_event(conn: AsyncConnection, instance_uuid: str, action: str, event: str,
                      host: str | None = None) -> None:
    action_id = await current_action(conn, instance_uuid, action)
    if action_id is not None:
        await conn.execute(insert(instance_action_events).values(
            action_id=action_id, event=event, start_time=utcnow_iso(), host=host))


async def finish_event(conn: AsyncConnection, instance_uuid: str, action: str, event: str, result: str,
                       details: str | None = None, host: str | None = None) -> None:
    """Finish the open event of that name, or record a finished one if none is open."""
    action_id = await current_action(conn, instance_uuid, action)
    if action_id is None:
        return
    e = instance_action_events.c
    now = utcnow_iso()
    done = await conn.execute(update(instance_action_events)
                              .where(e.action_id == action_id, e.event == event, e.finish_time.is_(None))
                              .values(finish_time=now, result=result, details=details))
    if done.rowcount == 0:
        await conn.execute(insert(instance_action_events).values(
            action_id=action_id, event=event, start_time=now, finish_time=now, result=result, details=details,
            host=host))


async def fail_open_events(conn: AsyncConnection, instance_uuid: str, action: str, details: str) -> None:
    """Close every still-open event of the action with Error, and the action itself."""
    action_id = await current_action(conn, instance_uuid, action)
    if action_id is None:
        return
    e = instance_action_events.c
    now = utcnow_iso()
    await conn.execute(update(instance_action_events).where(e.action_id == action_id, e.finish_time.is_(None))
                       .values(finish_time=now, result=ERROR, details=details))
    await conn.execute(update(instance_actions)
                       .where(instance_actions.c.uuid == action_id, instance_actions.c.finish_time.is_(None))
                       .values(finish_time=now, message=ERROR))


def make_fault(fault: Mapping[str, Any] | str, code: int = 500) -> dict[str, Any]:
    """The record's fault shape: {code, message, details, created}."""
    if isinstance(fault, str):
        fault = {"message": fault}
    return {"code": int(fault.get("code") or code), "message": str(fault.get("message") or "Unknown error"),
            "details": str(fault.get("details") or ""), "created": str(fault.get("created") or utcnow_iso())}


async def add_fault(conn: AsyncConnection, instance_uuid: str, fault: Mapping[str, Any],
                    host: str | None = None) -> None:
    await conn.execute(insert(instance_faults).values(
        instance_uuid=instance_uuid, code=fault["code"], message=fault["message"], details=fault.get("details"),
        host=host, created_at=fault["created"]))


async def actions_of(conn: AsyncConnection, instance_uuid: str) -> list[dict[str, Any]]:
    """Actions of an instance, oldest first, each with its events (for os-instance-actions)."""
    a, e = instance_actions.c, instance_action_events.c
    acts = [dict(r._mapping) for r in await conn.execute(
        select(instance_actions).where(a.instance_uuid == instance_uuid).order_by(a.start_time))]
    for act in acts:
        act["events"] = [dict(r._mapping) for r in await conn.execute(
            select(instance_action_events).where(e.action_id == act["uuid"]).order_by(e.id))]
    return acts


async def faults_of(conn: AsyncConnection, instance_uuid: str) -> list[dict[str, Any]]:
    f = instance_faults.c
    return [dict(r._mapping) for r in await conn.execute(
        select(instance_faults).where(f.instance_uuid == instance_uuid).order_by(f.id))]
