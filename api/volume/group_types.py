"""/volume/v3/{project_id}/group_types: Cinder's group types and their group specs (3.11+, issue 18/16).

Global (API DB `group_types`), made, changed and deleted by admins (group:group_types_manage, specs
group:group_types_specs); everyone lists and shows the public ones, admins the private ones too
(`?is_public=None|false`), and only admins see group_specs (group:access_group_types_specs), as Cinder.
Groups of a type are served (api/volume/groups.py) but no spec means anything to placement: they are kept
and shown. Below 3.11 the routes are a 404, as Cinder's (the resource did not exist).
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from api.db.schema import group_types
from api.http import allowed, context, is_uuid, json_body
from api.keys import DB
from api.timeutil import utcnow
from api.volume.microversions import version_of
from api.volume.types import _bool, _text, validate_specs
from cells import errors

MIN_VERSION = (3, 11)
SORT_KEYS = ("name", "id", "description", "is_public", "created_at", "updated_at")
_g = group_types.c


def _gate(request: web.Request) -> None:
    if version_of(request) < MIN_VERSION:
        raise errors.NotFound("The resource could not be found.")


def view(request: web.Request, row: Mapping[str, Any]) -> dict[str, Any]:
    out = {"id": row["id"], "name": row["name"], "description": row.get("description"),
           "is_public": bool(row["is_public"])}
    if allowed(request, "group:access_group_types_specs"):
        out["group_specs"] = dict(row.get("group_specs") or {})
    return out


async def _get(request: web.Request) -> dict[str, Any]:
    _gate(request)
    type_id = request.match_info["group_type_id"]
    row = await request.config_dict[DB].read(
        lambda conn: conn.execute(select(group_types).where(_g.id == type_id)).first()) if is_uuid(type_id) else None
    if row is None or not (row.is_public or allowed(request, "group:access_group_types_specs")):
        raise errors.NotFound(f"Group type with id {type_id} could not be found.")
    return dict(row._mapping)


def _sort(raw: str | None) -> tuple[str, bool]:
    """Cinder's sort=key[:asc|desc] over the listed keys (default name ascending)."""
    key, _, direction = (raw or "name:asc").partition(":")
    if key not in SORT_KEYS or direction not in ("", "asc", "desc"):
        raise errors.Invalid(f"Invalid sort: {raw!r} (key:asc or key:desc, key one of {', '.join(SORT_KEYS)})")
    return key, direction == "desc"


async def index(request: web.Request) -> web.Response:
    context(request)
    _gate(request)
    key, descending = _sort(request.query.get("sort"))
    column = getattr(_g, key)
    rows = await request.config_dict[DB].read(lambda conn: [dict(r._mapping) for r in conn.execute(
        select(group_types).order_by(column.desc() if descending else column.asc(), _g.id))])
    wanted = request.query.get("is_public", "true").lower()
    if wanted not in ("true", "false", "none"):
        raise errors.Invalid(f"Invalid is_public filter [{request.query.get('is_public')}]")
    if not allowed(request, "group:access_group_types_specs"):
        wanted = "true"  # a project sees the public ones only, whatever it asked
    shown = [r for r in rows if wanted == "none" or bool(r["is_public"]) == (wanted == "true")]
    return web.json_response({"group_types": [view(request, r) for r in shown]})


async def show(request: web.Request) -> web.Response:
    context(request)
    if request.match_info["group_type_id"] == "default":
        _gate(request)
        raise errors.NotFound("Default group type could not be found.")  # none is configured here
    return web.json_response({"group_type": view(request, await _get(request))})


def _item(body: Any) -> Mapping[str, Any]:
    item = body.get("group_type") if isinstance(body, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Missing required element 'group_type' in request body.")
    return item


async def create(request: web.Request) -> web.Response:
    context(request)
    _gate(request)
    item = _item(await json_body(request))
    name = _text(item.get("name"), "name")
    if not name or not name.strip():
        raise errors.Invalid("Group type name can not be empty.")
    now = utcnow()
    row = {"id": str(uuidlib.uuid4()), "name": name, "description": _text(item.get("description"), "description"),
           "is_public": _bool(item.get("is_public", True), "is_public"),
           "group_specs": validate_specs(item.get("group_specs") or {}), "created_at": now, "updated_at": now}
    try:
        await request.config_dict[DB].write(lambda conn: conn.execute(insert(group_types).values(**row)))
    except IntegrityError:
        raise errors.Conflict(f"Group Type {name} already exists.") from None
    return web.json_response({"group_type": view(request, row)}, status=202)


async def update_type(request: web.Request) -> web.Response:
    context(request)
    found = await _get(request)
    item = _item(await json_body(request))
    values: dict[str, Any] = {}
    if "name" in item:
        values["name"] = _text(item["name"], "name")
        if not values["name"] or not values["name"].strip():
            raise errors.Invalid("Group type name can not be empty.")
    if "description" in item:
        values["description"] = _text(item["description"], "description")
    if "is_public" in item:
        values["is_public"] = _bool(item["is_public"], "is_public")
    if not values:
        raise errors.Invalid("Specify group type name, description or is_public to update.")
    try:
        await request.config_dict[DB].write(lambda conn: conn.execute(
            update(group_types).where(_g.id == found["id"]).values(**values, updated_at=utcnow())))
    except IntegrityError:
        raise errors.Conflict(f"Group Type {values.get('name')} already exists.") from None
    return web.json_response({"group_type": view(request, {**found, **values})})


async def delete_type(request: web.Request) -> web.Response:
    context(request)
    found = await _get(request)
    await request.config_dict[DB].write(lambda conn: conn.execute(delete(group_types).where(_g.id == found["id"])))
    return web.Response(status=202)


async def _set_specs(request: web.Request, type_id: str, specs: dict[str, str | None]) -> dict[str, str]:
    """Merge `specs` into the type's (None removes a key) in one write unit; the specs after."""
    def change(conn: Connection) -> dict[str, str]:
        row = conn.execute(select(_g.group_specs).where(_g.id == type_id)).first()
        if row is None:
            raise errors.NotFound(f"Group type with id {type_id} could not be found.")
        merged = {**dict(row.group_specs or {}), **{k: v for k, v in specs.items() if v is not None}}
        for key in [k for k, v in specs.items() if v is None]:
            if key not in merged:
                raise errors.NotFound(f"Group Type {type_id} has no specs with key {key}.")
            merged.pop(key)
        conn.execute(update(group_types).where(_g.id == type_id).values(group_specs=merged, updated_at=utcnow()))
        return merged
    return await request.config_dict[DB].write(change)


async def specs_index(request: web.Request) -> web.Response:
    context(request)
    return web.json_response({"group_specs": dict((await _get(request)).get("group_specs") or {})})


async def specs_create(request: web.Request) -> web.Response:
    """POST .../group_specs {"group_specs": {...}}: merged into the type's; answers what was given (202)."""
    context(request)
    found = await _get(request)
    body = await json_body(request)
    if not isinstance(body, Mapping) or "group_specs" not in body:
        raise errors.Invalid("Missing required element 'group_specs' in request body.")
    specs = validate_specs(body["group_specs"])
    await _set_specs(request, found["id"], dict(specs))
    return web.json_response({"group_specs": specs}, status=202)


async def spec_show(request: web.Request) -> web.Response:
    context(request)
    found, key = await _get(request), request.match_info["key"]
    specs = dict(found.get("group_specs") or {})
    if key not in specs:
        raise errors.NotFound(f"Group Type {found['id']} has no specs with key {key}.")
    return web.json_response({key: specs[key]})


async def spec_update(request: web.Request) -> web.Response:
    context(request)
    found, key = await _get(request), request.match_info["key"]
    body = await json_body(request)
    if not isinstance(body, Mapping) or set(body) != {key}:
        raise errors.Invalid("Request body and URI mismatch")
    specs = validate_specs(body)
    await _set_specs(request, found["id"], dict(specs))
    return web.json_response(specs)


async def spec_delete(request: web.Request) -> web.Response:
    context(request)
    found = await _get(request)
    await _set_specs(request, found["id"], {request.match_info["key"]: None})
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    base = "/v3/{project_id}/group_types"
    app.router.add_get(base, index)
    app.router.add_post(base, create)
    app.router.add_get(base + "/{group_type_id}", show)
    app.router.add_put(base + "/{group_type_id}", update_type)
    app.router.add_delete(base + "/{group_type_id}", delete_type)
    app.router.add_get(base + "/{group_type_id}/group_specs", specs_index)
    app.router.add_post(base + "/{group_type_id}/group_specs", specs_create)
    app.router.add_get(base + "/{group_type_id}/group_specs/{key}", spec_show)
    app.router.add_put(base + "/{group_type_id}/group_specs/{key}", spec_update)
    app.router.add_delete(base + "/{group_type_id}/group_specs/{key}", spec_delete)
