"""Cinder's os-volume-type-access: the projects a private volume type is shared with (admin).

    GET  /volume/v3/{project_id}/types/{type_id}/os-volume-type-access
    POST /volume/v3/{project_id}/types/{type_id}/action  {"addProjectAccess": {"project"}} | {"removeProjectAccess": ...}

A project on the list sees the type in its listing and makes volumes of it (api/volume/types.py `_visible`);
a public type has no list (404, as Cinder). Adding a project twice is a 409, removing one not there a 404.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from api.db.schema import volume_type_projects
from api.http import context, json_body
from api.keys import DB
from api.volume import types
from cells import errors

ACTIONS = ("addProjectAccess", "removeProjectAccess")
_p = volume_type_projects.c


async def _private(request: web.Request) -> dict[str, Any]:
    found = await types._get(request, context(request))
    if found["is_public"]:
        raise errors.NotFound(f"Access list not available for public volume types ({found['id']}).")
    return found


async def index(request: web.Request) -> web.Response:
    found = await _private(request)
    projects = await request.config_dict[DB].read(lambda conn: list(conn.execute(
        select(_p.project_id).where(_p.volume_type_id == found["id"]).order_by(_p.project_id)).scalars()))
    return web.json_response({"volume_type_access": [{"volume_type_id": found["id"], "project_id": p}
                                                     for p in projects]})


async def action(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, Mapping) or len(body) != 1 or next(iter(body)) not in ACTIONS:
        raise errors.Invalid(f"Invalid input received: one of {', '.join(ACTIONS)}")
    name, args = next(iter(body.items()))
    project = args.get("project") if isinstance(args, Mapping) else None
    if not isinstance(project, str) or not 0 < len(project) <= 64:
        raise errors.Invalid(f"Invalid input received: {name} needs the project")
    found = await _private(request)
    types._stored(found)

    def change(conn: Connection) -> None:
        if name == "addProjectAccess":
            try:
                with conn.begin_nested():
                    conn.execute(insert(volume_type_projects).values(volume_type_id=found["id"], project_id=project))
            except IntegrityError:
                raise errors.Conflict(f"Volume type access for {found['id']}/{project} already exists.") from None
        elif conn.execute(delete(volume_type_projects).where(_p.volume_type_id == found["id"],
                                                             _p.project_id == project)).rowcount == 0:
            raise errors.NotFound(f"Volume type access not found for {found['id']}/{project}.")
    await request.config_dict[DB].write(change)
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/{project_id}/types/{type_id}/os-volume-type-access", index)
    app.router.add_post("/v3/{project_id}/types/{type_id}/action", action)
