"""/volume/v3/{project_id}/qos-specs: Cinder's QoS specs and their association with volume types (admin).

    POST   /qos-specs                     {"qos_specs": {"name", "consumer"?, key: value...}}
    GET    /qos-specs, /qos-specs/{id}
    PUT    /qos-specs/{id}                {"qos_specs": {key: value}}: keys set (merged)
    PUT    /qos-specs/{id}/delete_keys    {"keys": [...]}
    DELETE /qos-specs/{id}[?force=true]   400 while associated, unless force (then disassociated first)
    GET    /qos-specs/{id}/associations
    GET    /qos-specs/{id}/associate?vol_type_id=, /disassociate?vol_type_id=, /disassociate_all

Stored in the API DB and shown (a type's qos_specs_id), not enforced: no volume host throttles its I/O
by them yet. A type has one QoS spec at most (Cinder's 400 when it has another).
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from api.db.schema import qos_specs, volume_types
from api.http import context, is_uuid, json_body, parse_bool
from api.keys import DB, public_url
from api.timeutil import utcnow
from cells import errors

CONSUMERS = ("front-end", "back-end", "both")
_q, _t = qos_specs.c, volume_types.c


def _links(request: web.Request, qos_id: str) -> list[dict[str, str]]:
    base, project = public_url(request), request.match_info["project_id"]
    return [{"rel": "self", "href": f"{base}/volume/v3/{project}/qos-specs/{qos_id}"},
            {"rel": "bookmark", "href": f"{base}/volume/{project}/qos-specs/{qos_id}"}]


def view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "consumer": row["consumer"], "specs": dict(row["specs"] or {})}


def _specs(raw: Any, what: str = "qos_specs") -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and 0 < len(k) <= 255 and isinstance(v, str) and len(v) <= 255 for k, v in raw.items()):
        raise errors.Invalid(f"Invalid input received: {what} must map keys to strings of at most 255 characters")
    return dict(raw)


def _get(conn: Connection, qos_id: str) -> dict[str, Any]:
    row = conn.execute(select(qos_specs).where(_q.id == qos_id)).first() if is_uuid(qos_id) else None
    if row is None:
        raise errors.NotFound(f"QoS Specs {qos_id} could not be found.")
    return dict(row._mapping)


async def create(request: web.Request) -> web.Response:
    context(request)
    body = await json_body(request)
    item = body.get("qos_specs") if isinstance(body, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Missing required element 'qos_specs' in request body.")
    specs = _specs(item)
    name, consumer = specs.pop("name", None), specs.pop("consumer", "back-end")
    if not name or not name.strip():
        raise errors.Invalid("Invalid input received: a QoS spec needs a name")
    if consumer not in CONSUMERS:
        raise errors.Invalid(f"Invalid input received: consumer {consumer!r} (one of {', '.join(CONSUMERS)})")
    qos_id = str(uuidlib.uuid4())
    row: dict[str, Any] = {"id": qos_id, "name": name, "consumer": consumer, "specs": specs, "created_at": utcnow(),
                           "updated_at": utcnow()}
    try:
        await request.config_dict[DB].write(lambda conn: conn.execute(insert(qos_specs).values(**row)))
    except IntegrityError:
        raise errors.Conflict(f"QoS Specs {name} already exists.") from None
    return web.json_response({"qos_specs": view(row), "links": _links(request, qos_id)})


async def index(request: web.Request) -> web.Response:
    context(request)
    rows = await request.config_dict[DB].read(
        lambda conn: [dict(r._mapping) for r in conn.execute(select(qos_specs).order_by(_q.name))])
    return web.json_response({"qos_specs": [view(r) for r in rows]})


async def show(request: web.Request) -> web.Response:
    context(request)
    row = await request.config_dict[DB].read(lambda conn: _get(conn, request.match_info["qos_id"]))
    return web.json_response({"qos_specs": view(row), "links": _links(request, row["id"])})


async def set_keys(request: web.Request) -> web.Response:
    context(request)
    body = await json_body(request)
    given = _specs(body.get("qos_specs") if isinstance(body, Mapping) else None)

    def change(conn: Connection) -> None:
        row = _get(conn, request.match_info["qos_id"])
        conn.execute(update(qos_specs).where(_q.id == row["id"]).values(specs={**row["specs"], **given},
                                                                       updated_at=utcnow()))
    await request.config_dict[DB].write(change)
    return web.json_response({"qos_specs": given})


async def delete_keys(request: web.Request) -> web.Response:
    context(request)
    body = await json_body(request)
    keys = body.get("keys") if isinstance(body, Mapping) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise errors.Invalid("Invalid input received: delete_keys needs a list of keys")

    def change(conn: Connection) -> None:
        row = _get(conn, request.match_info["qos_id"])
        missing = [k for k in keys if k not in row["specs"]]
        if missing:
            raise errors.NotFound(f"QoS spec {row['id']} has no key {missing[0]}.")
        conn.execute(update(qos_specs).where(_q.id == row["id"]).values(
            specs={k: v for k, v in row["specs"].items() if k not in keys}, updated_at=utcnow()))
    await request.config_dict[DB].write(change)
    return web.Response(status=202)


async def delete_spec(request: web.Request) -> web.Response:
    context(request)
    force = parse_bool(request.query.get("force", "false"))
    if force is None:
        raise errors.Invalid(f"Invalid value for 'force': {request.query.get('force')!r} (a boolean)")

    def remove(conn: Connection) -> None:
        row = _get(conn, request.match_info["qos_id"])
        users = conn.execute(select(_t.id).where(_t.qos_specs_id == row["id"])).first()
        if users is not None and not force:
            raise errors.Invalid(f"QoS Specs {row['id']} is still associated with entities.")
        conn.execute(update(volume_types).where(_t.qos_specs_id == row["id"]).values(qos_specs_id=None))
        conn.execute(delete(qos_specs).where(_q.id == row["id"]))
    await request.config_dict[DB].write(remove)
    return web.Response(status=202)


async def associations(request: web.Request) -> web.Response:
    context(request)

    def read(conn: Connection) -> list[dict[str, Any]]:
        row = _get(conn, request.match_info["qos_id"])
        return [{"association_type": "volume_type", "id": t.id, "name": t.name}
                for t in conn.execute(select(_t.id, _t.name).where(_t.qos_specs_id == row["id"]).order_by(_t.name))]
    return web.json_response({"qos_associations": await request.config_dict[DB].read(read)})


def _type_id(request: web.Request) -> str:
    type_id = request.query.get("vol_type_id")
    if not type_id or not is_uuid(type_id):
        raise errors.NotFound(f"Volume type {type_id} could not be found.")
    return type_id.lower()


async def associate(request: web.Request) -> web.Response:
    context(request)
    type_id = _type_id(request)

    def link(conn: Connection) -> None:
        row = _get(conn, request.match_info["qos_id"])
        vtype = conn.execute(select(_t.qos_specs_id).where(_t.id == type_id)).first()
        if vtype is None:
            raise errors.NotFound(f"Volume type {type_id} could not be found.")
        if vtype.qos_specs_id not in (None, row["id"]):
            raise errors.Invalid(f"Type {type_id} is already associated with another qos specs: "
                                 f"{vtype.qos_specs_id}")
        conn.execute(update(volume_types).where(_t.id == type_id).values(qos_specs_id=row["id"], updated_at=utcnow()))
    await request.config_dict[DB].write(link)
    return web.Response(status=202)


async def disassociate(request: web.Request) -> web.Response:
    context(request)
    type_id = _type_id(request)

    def unlink(conn: Connection) -> None:
        row = _get(conn, request.match_info["qos_id"])
        if conn.execute(select(_t.id).where(_t.id == type_id)).first() is None:
            raise errors.NotFound(f"Volume type {type_id} could not be found.")
        conn.execute(update(volume_types).where(_t.id == type_id, _t.qos_specs_id == row["id"])
                     .values(qos_specs_id=None, updated_at=utcnow()))
    await request.config_dict[DB].write(unlink)
    return web.Response(status=202)


async def disassociate_all(request: web.Request) -> web.Response:
    context(request)

    def unlink(conn: Connection) -> None:
        row = _get(conn, request.match_info["qos_id"])
        conn.execute(update(volume_types).where(_t.qos_specs_id == row["id"]).values(qos_specs_id=None,
                                                                                    updated_at=utcnow()))
    await request.config_dict[DB].write(unlink)
    return web.Response(status=202)


def add_routes(app: web.Application) -> None:
    base = "/v3/{project_id}/qos-specs"
    app.router.add_post(base, create)
    app.router.add_get(base, index)
    app.router.add_get(base + "/{qos_id}", show)
    app.router.add_put(base + "/{qos_id}", set_keys)
    app.router.add_put(base + "/{qos_id}/delete_keys", delete_keys)
    app.router.add_delete(base + "/{qos_id}", delete_spec)
    app.router.add_get(base + "/{qos_id}/associations", associations)
    app.router.add_get(base + "/{qos_id}/associate", associate)
    app.router.add_get(base + "/{qos_id}/disassociate", disassociate)
    app.router.add_get(base + "/{qos_id}/disassociate_all", disassociate_all)
