"""Cinder's user messages (3.3, issue 18/16): what failed for a project, in words it can act on.

A failed volume create (no volume host could take it), extend or attach records one message for the
volume's project, in the same write that puts the volume in its failed state, with Cinder's event ids and
fixed texts ("VOLUME_VOLUME_001_003", "schedule allocate volume:Could not find any available weighted
backend."): never the internal reason, which may name hosts. A project lists, shows and deletes its own
(admins: every project's); a message expires MESSAGE_TTL after it was made (Cinder's
message_ttl, 30 days) and is deleted by the next list of its cell.
"""
from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select

from cells import errors
from cells.conductor.env import FlowEnv
from cells.context import RequestContext
from cells.db.volumes import messages

MESSAGE_TTL = timedelta(days=30)
ACTIONS = {"create": ("001", "schedule allocate volume"), "attach": ("002", "attach volume"),
           "extend": ("007", "extend volume")}
DETAILS = {"unknown": ("001", "An unknown error occurred."),
           "no_backend": ("003", "Could not find any available weighted backend.")}
_m = messages.c


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(conn: Connection, project_id: str, request_id: str | None, volume_id: str, action: str,
           detail: str = "unknown") -> None:
    """One ERROR message about volume `volume_id` for `project_id`, in the caller's write."""
    action_id, action_text = ACTIONS[action]
    detail_id, detail_text = DETAILS[detail]
    now = datetime.now(UTC)
    conn.execute(insert(messages).values(
        id=str(uuidlib.uuid4()), project_id=project_id, request_id=request_id or "", resource_type="VOLUME",
        resource_uuid=volume_id, event_id=f"VOLUME_VOLUME_{action_id}_{detail_id}", message_level="ERROR",
        user_message=f"{action_text}:{detail_text}", created_at=_iso(now), expires_at=_iso(now + MESSAGE_TTL)))


def _view(row: Row[Any]) -> dict[str, Any]:
    return {k: getattr(row, k) for k in ("id", "project_id", "request_id", "resource_type", "resource_uuid",
                                         "event_id", "message_level", "user_message", "created_at", "expires_at")}


def _sees_all(ctx: RequestContext) -> bool:
    return ctx.is_admin or "service" in ctx.roles


async def message_list(env: FlowEnv, ctx: RequestContext) -> list[dict[str, Any]]:
    """The caller's project's live messages, newest first (admins: every project's); the expired go."""
    def act(conn: Connection) -> list[dict[str, Any]]:
        conn.execute(delete(messages).where(_m.expires_at < _iso(datetime.now(UTC))))
        query = select(messages).order_by(_m.created_at.desc(), _m.id)
        if not _sees_all(ctx):
            query = query.where(_m.project_id == ctx.project)
        return [_view(r) for r in conn.execute(query)]
    return await env.db.write(act)


def _visible(conn: Connection, ctx: RequestContext, message_id: Any) -> Row[Any]:
    row = conn.execute(select(messages).where(_m.id == str(message_id))).first() \
        if isinstance(message_id, str) else None
    if row is None or row.expires_at < _iso(datetime.now(UTC)) \
            or not (_sees_all(ctx) or row.project_id == ctx.project):
        raise errors.NotFound(f"Message {message_id} could not be found.")
    return row


async def message_get(env: FlowEnv, ctx: RequestContext, message_id: Any) -> dict[str, Any]:
    return await env.db.read(lambda conn: _view(_visible(conn, ctx, message_id)))


async def message_delete(env: FlowEnv, ctx: RequestContext, message_id: Any) -> dict[str, Any]:
    def act(conn: Connection) -> dict[str, Any]:
        row = _visible(conn, ctx, message_id)
        conn.execute(delete(messages).where(_m.id == row.id))
        return _view(row)
    return await env.db.write(act)
