"""/volume/v3/{project_id}/types/{type_id}/encryption: Cinder's volume type encryption (admin), stored and
shown only.

    GET    .../encryption                      the type's encryption ({} when it has none)
    GET    .../encryption/{key}                one of its keys
    POST   .../encryption                      {"encryption": {"provider", "cipher"?, "key_size"?, "control_location"?}}
    PUT    .../encryption/{encryption_id}      {"encryption": {...}}: the keys given changed
    DELETE .../encryption/{encryption_id}      202

No volume host here encrypts (no LUKS layer in node/volume): a volume of a type with an encryption is
refused (400, api/volume/volumes.py) rather than made in the clear, and every volume shows encrypted false.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, select, update

from api.db.schema import volume_types
from api.http import context, json_body
from api.keys import DB
from api.timeutil import iso_naive_micro, utcnow
from api.volume import types
from cells import errors

CONTROL_LOCATIONS = ("front-end", "back-end")
KEYS = ("provider", "cipher", "key_size", "control_location")
_t = volume_types.c


def _validated(raw: Any, creating: bool) -> dict[str, Any]:
    item = raw.get("encryption") if isinstance(raw, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Missing required element 'encryption' in request body.")
    unknown = sorted(set(item) - set(KEYS))
    if unknown:
        raise errors.Invalid(f"Invalid input: unexpected attribute(s) {', '.join(map(str, unknown))} in encryption")
    out = dict(item)
    if creating and not out.get("provider"):
        raise errors.Invalid("Invalid input received: an encryption needs a provider")
    for key in ("provider", "cipher"):
        if out.get(key) is not None and (not isinstance(out[key], str) or len(out[key]) > 255):
            raise errors.Invalid(f"Invalid input received: {key} must be a string of at most 255 characters")
    size = out.get("key_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise errors.Invalid(f"Invalid input received: key_size {size!r} must be a positive integer")
    if creating:
        out.setdefault("control_location", "front-end")
    if "control_location" in out and out["control_location"] not in CONTROL_LOCATIONS:
        raise errors.Invalid(f"Invalid input received: control_location {out['control_location']!r} "
                             f"(front-end or back-end)")
    return out


def _view(type_id: str, enc: Mapping[str, Any]) -> dict[str, Any]:
    return {"volume_type_id": type_id, "encryption_id": enc["encryption_id"], "provider": enc.get("provider"),
            "cipher": enc.get("cipher"), "key_size": enc.get("key_size"),
            "control_location": enc.get("control_location"), "deleted": False,
            "created_at": iso_naive_micro(enc.get("created_at")), "updated_at": iso_naive_micro(enc.get("updated_at")),
            "deleted_at": None}


def _current(conn: Connection, type_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(_t.encryption).where(_t.id == type_id)).first()
    if row is None:
        raise errors.NotFound(f"Volume type {type_id} could not be found.")
    return None if row.encryption is None else dict(row.encryption)


async def show(request: web.Request) -> web.Response:
    found = await types._get(request, context(request))
    enc = await request.config_dict[DB].read(lambda conn: _current(conn, found["id"]))
    return web.json_response({} if enc is None else _view(found["id"], enc))


async def show_key(request: web.Request) -> web.Response:
    found = await types._get(request, context(request))
    key = request.match_info["key"]
    enc = await request.config_dict[DB].read(lambda conn: _current(conn, found["id"]))
    if enc is None or key not in KEYS:
        raise errors.NotFound(f"Volume type encryption for type {found['id']} has no key {key}.")
    return web.json_response({key: enc.get(key)})


async def create(request: web.Request) -> web.Response:
    found = await types._get(request, context(request))
    types._stored(found)
    given = _validated(await json_body(request), creating=True)
    now = utcnow().isoformat()
    enc = {**given, "encryption_id": str(uuidlib.uuid4()), "created_at": now, "updated_at": now}

    def store(conn: Connection) -> None:
        if _current(conn, found["id"]) is not None:
            raise errors.Invalid(f"Volume type encryption for type {found['id']} already exists.")
        conn.execute(update(volume_types).where(_t.id == found["id"]).values(encryption=enc, updated_at=utcnow()))
    await request.config_dict[DB].write(store)
    return web.json_response({"encryption": {k: v for k, v in _view(found["id"], enc).items()
                                             if k in ("volume_type_id", "encryption_id", *KEYS)}})


def _change(type_id: str, encryption_id: str, given: Mapping[str, Any] | None) -> Any:
    def change(conn: Connection) -> None:
        enc = _current(conn, type_id)
        if enc is None or enc["encryption_id"] != encryption_id:
            raise errors.NotFound(f"Volume type encryption for type {type_id} does not exist.")
        value = None if given is None else {**enc, **given, "updated_at": utcnow().isoformat()}
        conn.execute(update(volume_types).where(_t.id == type_id).values(encryption=value, updated_at=utcnow()))
    return change


async def update_encryption(request: web.Request) -> web.Response:
    found = await types._get(request, context(request))
    given = _validated(await json_body(request), creating=False)
    await request.config_dict[DB].write(_change(found["id"], request.match_info["encryption_id"], given))
    return web.json_response({"encryption": given})


async def delete_encryption(request: web.Request) -> web.Response:
    found = await types._get(request, context(request))
    await request.config_dict[DB].write(_change(found["id"], request.match_info["encryption_id"], None))
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    base = "/v3/{project_id}/types/{type_id}/encryption"
    app.router.add_get(base, show)
    app.router.add_post(base, create)
    app.router.add_get(base + "/{key}", show_key)
    app.router.add_put(base + "/{encryption_id}", update_encryption)
    app.router.add_delete(base + "/{encryption_id}", delete_encryption)
