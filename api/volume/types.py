"""/volume/v3/{project_id}/types: Cinder's volume types and their extra specs (issue 18).

Types are global (API DB `volume_types`); admins make, change and delete them, everyone lists the public
ones. The one extra spec this cloud acts on is `volume_backend_name`: a volume of that type goes only
to volume hosts whose `backend_name` (cluster.yaml hosts.<name>.volume.backend_name, default the backend:
file or lvm) matches (cells/conductor/flows/volumes.py `_place`). Per-type quotas (gigabytes_<type>,
volumes_<type>, snapshots_<type>) are set through os-quota-sets and unlimited until set. The default type
`__DEFAULT__` always exists (fixed id, no extra specs) and is not stored.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from api.db.schema import volume_type_projects, volume_types
from api.http import allowed, authorize, context, is_uuid, json_body
from api.keys import DB, ROUTER
from api.timeutil import utcnow
from api.volume import cells
from api.volume.views import DEFAULT_TYPE
from cells import errors
from cells.context import RequestContext

DEFAULT_TYPE_ID = "3a1bf6ff-5f0e-4e7a-a5d4-d6d5a5c3c3a0"
BACKEND_KEY = "volume_backend_name"
PUBLIC_KEY = "os-volume-type-access:is_public"
_t, _p = volume_types.c, volume_type_projects.c


def _default() -> dict[str, Any]:
    return {"id": DEFAULT_TYPE_ID, "name": DEFAULT_TYPE, "description": "Default Volume Type", "is_public": True,
            "extra_specs": {}}


def view(vtype: Mapping[str, Any], without: tuple[str, ...] = ()) -> dict[str, Any]:
    """Cinder's type view; its create answer has no qos_specs_id, its update neither that nor PUBLIC_KEY
    (the access extension decorates show, list and create only)."""
    out = {"id": vtype["id"], "name": vtype["name"], "description": vtype.get("description"),
           "is_public": bool(vtype["is_public"]), PUBLIC_KEY: bool(vtype["is_public"]),
           "extra_specs": dict(vtype.get("extra_specs") or {}), "qos_specs_id": vtype.get("qos_specs_id")}
    return {k: v for k, v in out.items() if k not in without}


def _admin(request: web.Request, action: str) -> None:
    authorize(request, f"volume_extension:{action}")


def _text(value: Any, field: str, limit: int = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.Invalid(f"Invalid input for field/attribute {field}: a string of at most {limit} characters")
    return value


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise errors.Invalid(f"Invalid value '{value}' for {field}: true or false")


def validate_specs(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise errors.Invalid("Invalid input received: extra_specs must be a map of strings")
    for key, value in raw.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255 or not isinstance(value, str) or len(value) > 255:
            raise errors.Invalid(f"Invalid input received: extra spec {key!r} must be a string of at most 255 "
                                 "characters")
    return dict(raw)


# --- look-ups (also for the volume API) --------------------------------------------------------

def _row(conn: Connection, name_or_id: str, project: str | None = None) -> dict[str, Any] | None:
    """The type by name or id; with `project`: whether that project is on its access list too (shared)."""
    row = conn.execute(select(volume_types).where(or_(_t.id == name_or_id, _t.name == name_or_id))).first()
    if row is None:
        return None
    found = dict(row._mapping)
    found["shared"] = project is not None and conn.execute(select(_p.project_id).where(
        _p.volume_type_id == row.id, _p.project_id == project)).first() is not None
    return found


def _visible(request: web.Request, found: Mapping[str, Any]) -> bool:
    """Public, shared with the caller's project (os-volume-type-access), or seen by admins."""
    return bool(found["is_public"] or found.get("shared") or allowed(request, "volume_extension:volume_type_access"))


async def resolve(request: web.Request, ctx: RequestContext, name_or_id: str | None) -> dict[str, Any]:
    """The type a volume asks for by name or id (None: the default); 404 for an unknown or private one."""
    if name_or_id in (None, DEFAULT_TYPE, DEFAULT_TYPE_ID):
        return _default()
    found = await request.config_dict[DB].read(lambda conn: _row(conn, str(name_or_id), ctx.project))
    if found is None or not _visible(request, found):
        raise errors.NotFound(f"Volume type with name {name_or_id} could not be found.")
    return found


async def _get(request: web.Request, ctx: RequestContext) -> dict[str, Any]:
    type_id = request.match_info["type_id"]
    if type_id == DEFAULT_TYPE_ID:
        return _default()
    found = await request.config_dict[DB].read(lambda conn: _row(conn, type_id, ctx.project)) \
        if is_uuid(type_id) else None
    if found is None or not _visible(request, found):
        raise errors.NotFound(f"Volume type {type_id} could not be found.")
    return found


def _stored(found: Mapping[str, Any]) -> None:
    if found["id"] == DEFAULT_TYPE_ID:
        raise errors.Invalid("The default volume type cannot be changed or deleted.")


# --- handlers ------------------------------------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    ctx = context(request)

    def read(conn: Connection) -> tuple[list[dict[str, Any]], set[str]]:
        rows = [dict(r._mapping) for r in conn.execute(select(volume_types).order_by(_t.name))]
        return rows, set(conn.execute(select(_p.volume_type_id).where(_p.project_id == ctx.project)).scalars())
    rows, shared = await request.config_dict[DB].read(read)
    wanted = request.query.get("is_public")
    admin = allowed(request, "volume_extension:volume_type_access")
    shown = [r for r in rows if r["is_public"] or (admin and wanted in ("None", "false", "False"))
             or (not admin and r["id"] in shared)]  # a project sees the private types shared with it
    return web.json_response({"volume_types": [view(_default())] + [view(r) for r in shown]})


async def show(request: web.Request) -> web.Response:
    return web.json_response({"volume_type": view(await _get(request, context(request)))})


async def create(request: web.Request) -> web.Response:
    context(request)
    _admin(request, "types_manage")
    body = await json_body(request)
    item = body.get("volume_type") if isinstance(body, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Missing required element 'volume_type' in request body.")
    name = _text(item.get("name"), "name")
    if not name or not name.strip() or name in (DEFAULT_TYPE, DEFAULT_TYPE_ID):
        raise errors.Invalid("Volume type name can not be empty.")
    row = {"id": str(uuidlib.uuid4()), "name": name, "description": _text(item.get("description"), "description"),
           "is_public": _bool(item.get(PUBLIC_KEY, item.get("is_public", True)), PUBLIC_KEY),
           "extra_specs": validate_specs(item.get("extra_specs") or {}), "created_at": utcnow(), "updated_at": utcnow()}
    try:
        await request.config_dict[DB].write(lambda conn: conn.execute(insert(volume_types).values(**row)))
    except IntegrityError:
        raise errors.Conflict(f"Volume Type {name} already exists.") from None
    return web.json_response({"volume_type": view(row, without=("qos_specs_id",))})


async def update_type(request: web.Request) -> web.Response:
    ctx = context(request)
    _admin(request, "types_manage")
    found = await _get(request, ctx)
    _stored(found)
    body = await json_body(request)
    item = body.get("volume_type") if isinstance(body, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Missing required element 'volume_type' in request body.")
    values: dict[str, Any] = {}
    if "name" in item:
        values["name"] = _text(item["name"], "name")
        if not values["name"]:
            raise errors.Invalid("Volume type name can not be empty.")
    if "description" in item:
        values["description"] = _text(item["description"], "description")
    if "is_public" in item:
        values["is_public"] = _bool(item["is_public"], "is_public")
    if values:
        try:
            await request.config_dict[DB].write(lambda conn: conn.execute(
                update(volume_types).where(_t.id == found["id"]).values(**values, updated_at=utcnow())))
        except IntegrityError:
            raise errors.Conflict(f"Volume Type {values.get('name')} already exists.") from None
    return web.json_response({"volume_type": view({**found, **values}, without=("qos_specs_id", PUBLIC_KEY))})


async def delete_type(request: web.Request) -> web.Response:
    """202; 400 while a volume of any project has the type (Cinder's VolumeTypeInUse)."""
    ctx = context(request)
    _admin(request, "types_manage")
    found = await _get(request, ctx)
    _stored(found)
    records = await cells.list_all(request.config_dict[ROUTER], ctx, {}, strict=True)
    if any(r.get("volume_type") == found["name"] for r in records):
        raise errors.Invalid(f"Unable to delete encrypted or in-use volume type {found['id']}: volumes are "
                             "present with this volume type.")
    def remove(conn: Connection) -> None:
        conn.execute(delete(volume_type_projects).where(_p.volume_type_id == found["id"]))
        conn.execute(delete(volume_types).where(_t.id == found["id"]))
    await request.config_dict[DB].write(remove)
    return web.Response(status=202)


async def _set_specs(request: web.Request, found: Mapping[str, Any], specs: dict[str, str | None]) -> dict[str, str]:
    """Merge `specs` into the type's (None removes a key), in one write unit; the type's specs after."""
    def change(conn: Connection) -> dict[str, str]:
        row = conn.execute(select(_t.extra_specs).where(_t.id == found["id"])).first()
        if row is None:
            raise errors.NotFound(f"Volume type {found['id']} could not be found.")
        merged = {**dict(row.extra_specs or {}), **{k: v for k, v in specs.items() if v is not None}}
        for key in [k for k, v in specs.items() if v is None]:
            if key not in merged:
                raise errors.NotFound(f"Volume Type {found['id']} has no extra specs with key {key}.")
            merged.pop(key)
        conn.execute(update(volume_types).where(_t.id == found["id"]).values(extra_specs=merged, updated_at=utcnow()))
        return merged
    return await request.config_dict[DB].write(change)


async def specs_index(request: web.Request) -> web.Response:
    found = await _get(request, context(request))
    return web.json_response({"extra_specs": dict(found.get("extra_specs") or {})})


async def specs_create(request: web.Request) -> web.Response:
    ctx = context(request)
    _admin(request, "types_extra_specs:create")
    found = await _get(request, ctx)
    _stored(found)
    body = await json_body(request)
    if not isinstance(body, Mapping) or "extra_specs" not in body:
        raise errors.Invalid("Missing required element 'extra_specs' in request body.")
    specs = validate_specs(body["extra_specs"])
    await _set_specs(request, found, dict(specs))
    return web.json_response({"extra_specs": specs})


async def spec_show(request: web.Request) -> web.Response:
    found = await _get(request, context(request))
    key = request.match_info["key"]
    specs = dict(found.get("extra_specs") or {})
    if key not in specs:
        raise errors.NotFound(f"Volume Type {found['id']} has no extra specs with key {key}.")
    return web.json_response({key: specs[key]})


async def spec_update(request: web.Request) -> web.Response:
    ctx = context(request)
    _admin(request, "types_extra_specs:update")
    found = await _get(request, ctx)
    _stored(found)
    key = request.match_info["key"]
    body = await json_body(request)
    if not isinstance(body, Mapping) or set(body) != {key}:
        raise errors.Invalid("Request body and URI mismatch")
    specs = validate_specs(body)
    await _set_specs(request, found, dict(specs))
    return web.json_response(specs)


async def spec_delete(request: web.Request) -> web.Response:
    ctx = context(request)
    _admin(request, "types_extra_specs:delete")
    found = await _get(request, ctx)
    _stored(found)
    await _set_specs(request, found, {request.match_info["key"]: None})
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    base = "/v3/{project_id}/types"
    app.router.add_get(base, index)
    app.router.add_post(base, create)
    app.router.add_get(base + "/{type_id}", show)
    app.router.add_put(base + "/{type_id}", update_type)
    app.router.add_delete(base + "/{type_id}", delete_type)
    app.router.add_get(base + "/{type_id}/extra_specs", specs_index)
    app.router.add_post(base + "/{type_id}/extra_specs", specs_create)
    app.router.add_get(base + "/{type_id}/extra_specs/{key}", spec_show)
    app.router.add_put(base + "/{type_id}/extra_specs/{key}", spec_update)
    app.router.add_delete(base + "/{type_id}/extra_specs/{key}", spec_delete)
