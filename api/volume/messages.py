"""/volume/v3/{project_id}/messages (3.3+): Cinder's user messages (cells/conductor/flows/messages.py).

    GET    /messages        {"messages": [...]}  the caller's project's, newest first (admins: every project's)
    GET    /messages/{id}   {"message": {...}}   404 for another project's or an expired one
    DELETE /messages/{id}   204

Each cell keeps the messages of its volumes' failures; the API asks every cell (a list) or the one that knows
the id. Below 3.3 the routes are a 404, as Cinder's.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.http import context, is_uuid
from api.keys import ROUTER, public_url
from api.timeutil import iso_naive_micro
from api.volume import cells
from api.volume.microversions import version_of
from cells import errors

MIN_VERSION = (3, 3)


def _gate(request: web.Request) -> None:
    if version_of(request) < MIN_VERSION:
        raise errors.NotFound("The resource could not be found.")


def view(request: web.Request, row: dict[str, Any]) -> dict[str, Any]:
    base = f"{public_url(request)}/volume/v3/{request.match_info['project_id']}/messages/{row['id']}"
    return {"id": row["id"], "request_id": row["request_id"], "event_id": row["event_id"],
            "message_level": row["message_level"], "user_message": row["user_message"],
            "resource_type": row["resource_type"], "resource_uuid": row["resource_uuid"],
            "created_at": iso_naive_micro(row["created_at"]), "guaranteed_until": iso_naive_micro(row["expires_at"]),
            "links": [{"rel": "self", "href": base}]}


def _id(request: web.Request) -> str:
    message_id = request.match_info["message_id"]
    if not is_uuid(message_id):
        raise errors.NotFound(f"Message {message_id} could not be found.")
    return message_id


async def index(request: web.Request) -> web.Response:
    ctx = context(request)
    _gate(request)
    rows = await cells.messages(request.config_dict[ROUTER], ctx)
    return web.json_response({"messages": [view(request, r) for r in rows]})


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    _gate(request)
    _, row = await cells.find_message(request.config_dict[ROUTER], ctx, _id(request))
    return web.json_response({"message": view(request, row)})


async def delete(request: web.Request) -> web.Response:
    ctx = context(request)
    _gate(request)
    api, row = await cells.find_message(request.config_dict[ROUTER], ctx, _id(request))
    await api.message_delete(ctx, row["id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/{project_id}/messages", index)
    app.router.add_get("/v3/{project_id}/messages/{message_id}", show)
    app.router.add_delete("/v3/{project_id}/messages/{message_id}", delete)
