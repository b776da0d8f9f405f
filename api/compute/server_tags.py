"""/compute/v2.1/servers/{server_id}/tags[/{tag}]: Nova's server tags (microversion 2.26; 404 before it).

    GET    .../tags          200 {"tags": [...]}
    PUT    .../tags          200 {"tags": [...]}  replaces them all (at most 50)
    DELETE .../tags          204
    GET    .../tags/{tag}    204, or 404 when the server does not have it
    PUT    .../tags/{tag}    201 (Location: the tag) when added, 204 when it was there
    DELETE .../tags/{tag}    204, or 404

A tag is 1 to 60 characters, neither "/" nor ","; a change needs the server active, paused, suspended,
stopped or shelved (409 otherwise, as Nova). Tags live on the instance mapping in the API DB (only the API
reads them: server views show them from 2.26, api/compute/views.py), each change one write unit.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, select, update

from api.compute import mappings, service
from api.db.schema import instance_mappings
from api.http import context, json_body
from api.keys import public_url
from api.validation import validate
from cells import errors
from cells.objects.instance import VmState

TAGS_VERSION = (2, 26)
MAX_TAGS = 50
TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}
TAGS_BODY = {"type": "object", "required": ["tags"], "additionalProperties": False,
             "properties": {"tags": {"type": "array", "items": TAG, "maxItems": MAX_TAGS}}}
CHANGEABLE = frozenset({VmState.ACTIVE, VmState.PAUSED, VmState.SUSPENDED, VmState.STOPPED, "shelved",
                        "shelved_offloaded"})


async def _server(request: web.Request, change: str | None = None) -> tuple[service.ComputeContext, str]:
    """(the compute context, the server's uuid); 404 before 2.26 or for a server the caller may not see,
    409 for a change (`change`: Nova's action name) while the server's state does not allow one."""
    cc = service.ComputeContext.of(request)
    if not cc.at_least(*TAGS_VERSION):
        raise errors.NotFound("The resource could not be found.")
    ctx = context(request)
    if change is None:
        mapping = await mappings.get(cc.db, ctx, request.match_info["server_id"])
        return cc, str(mapping.instance_uuid)
    record = await service.show(cc, ctx, request.match_info["server_id"])
    if record.get("vm_state") not in CHANGEABLE:
        raise errors.InstanceInvalidState(action=change, instance_id=record["uuid"], attr="vm_state",
                                          state=record.get("vm_state"))
    return cc, str(record["uuid"])


def _checked_tag(tag: str) -> str:
    validate(TAG, tag, "tag")
    return tag


async def _change(cc: service.ComputeContext, uuid: str,
                  how: Callable[[list[str]], list[str]]) -> tuple[list[str], list[str]]:
    """(tags before, tags after) of one read-modify-write in one API DB write unit."""
    def write(conn: Connection) -> tuple[list[str], list[str]]:
        m = instance_mappings.c
        before = list(conn.execute(select(m.tags).where(m.instance_uuid == uuid)).scalar() or [])
        after = how(list(before))
        if len(after) > MAX_TAGS:
            raise errors.Invalid(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
        conn.execute(update(instance_mappings).where(m.instance_uuid == uuid).values(tags=after))
        return before, after
    return await cc.db.write(write)


async def _tags(cc: service.ComputeContext, uuid: str) -> list[str]:
    m = instance_mappings.c
    return list(await cc.db.read(lambda conn: conn.execute(select(m.tags).where(m.instance_uuid == uuid)).scalar())
                or [])


async def index(request: web.Request) -> web.Response:
    cc, uuid = await _server(request)
    return web.json_response({"tags": await _tags(cc, uuid)})


async def replace_all(request: web.Request) -> web.Response:
    body: Any = await json_body(request)
    cc, uuid = await _server(request, "update tags")
    validate(TAGS_BODY, body, "tags")
    tags = list(dict.fromkeys(body["tags"]))  # Nova keeps each tag once
    _, after = await _change(cc, uuid, lambda _old: tags)
    return web.json_response({"tags": after})


async def delete_all(request: web.Request) -> web.Response:
    cc, uuid = await _server(request, "delete tags")
    await _change(cc, uuid, lambda _old: [])
    return web.Response(status=204)


async def show(request: web.Request) -> web.Response:
    cc, uuid = await _server(request)
    if request.match_info["tag"] not in await _tags(cc, uuid):
        raise errors.NotFound(f"Tag {request.match_info['tag']} could not be found.")
    return web.Response(status=204)


async def add(request: web.Request) -> web.Response:
    cc, uuid = await _server(request, "update tag")
    tag = _checked_tag(request.match_info["tag"])
    before, _ = await _change(cc, uuid, lambda old: old if tag in old else [*old, tag])
    if tag in before:
        return web.Response(status=204)
    location = f"{public_url(request)}/compute/v2.1/servers/{uuid}/tags/{tag}"
    return web.Response(status=201, headers={"Location": location})


async def remove(request: web.Request) -> web.Response:
    cc, uuid = await _server(request, "delete tag")
    tag = request.match_info["tag"]
    before, _ = await _change(cc, uuid, lambda old: [t for t in old if t != tag])
    if tag not in before:
        raise errors.NotFound(f"Tag {tag} could not be found.")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers/{server_id}/tags", index)
    app.router.add_put("/v2.1/servers/{server_id}/tags", replace_all)
    app.router.add_delete("/v2.1/servers/{server_id}/tags", delete_all)
    app.router.add_get("/v2.1/servers/{server_id}/tags/{tag}", show)
    app.router.add_put("/v2.1/servers/{server_id}/tags/{tag}", add)
    app.router.add_delete("/v2.1/servers/{server_id}/tags/{tag}", remove)
