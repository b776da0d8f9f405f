"""Cinder's volume transfers: /volume/v3/{project_id}/os-volume-transfer and, from 3.55, /volume-transfers.

    POST   .../os-volume-transfer                {"transfer": {"volume_id", "name"?, "no_snapshots"? (3.55)}}
                                                 202 with the auth_key, shown this once
    GET    .../os-volume-transfer[/detail]       the caller's project's open transfers (all with all_tenants, admins)
    GET    .../os-volume-transfer/{id}           one of them
    DELETE .../os-volume-transfer/{id}           202: the volume is available in its project again
    POST   .../os-volume-transfer/{id}/accept    {"accept": {"auth_key"}}: the volume (and its snapshots, unless
                                                 no_snapshots) now belong to the caller's project and user

The giving project must hold the volume, available (it is then awaiting-transfer); its snapshots, which go
with it, available. The key is kept as a salted SHA-256 in the API DB and compared in constant time; an
accept is checked against the receiving project's volumes, snapshots and gigabytes quotas (413) in the same
API DB write unit that removes the transfer, so of two accepts one wins (the other: 404). The cell's
conductor makes each state change (cells/conductor/flows/volume_states.py transfer_*).
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import secrets
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from api import quota
from api.db.schema import volume_transfers
from api.http import allowed, context, is_uuid, json_body, parse_bool
from api.keys import DB, ROUTER, public_url
from api.timeutil import iso_naive_micro, utcnow
from api.volume import cells
from api.volume.microversions import version_of
from api.volume.volumes import find as find_volume
from cells import errors
from cells.context import RequestContext, admin_context

AUTH_KEY_BYTES = 8  # Cinder's 16 hex characters
_t = volume_transfers.c


def _hash(salt: str, key: str) -> str:
    return hashlib.sha256((salt + key).encode()).hexdigest()


def _path(request: web.Request) -> str:
    return "volume-transfers" if "/volume-transfers" in request.path else "os-volume-transfer"


def view(request: web.Request, row: Mapping[str, Any], detail: bool = True) -> dict[str, Any]:
    base, project, version = public_url(request), request.match_info["project_id"], version_of(request)
    out: dict[str, Any] = {"id": row["id"], "name": row["name"], "volume_id": row["volume_id"],
                           "links": [{"rel": "self", "href": f"{base}/volume/v3/{project}/{_path(request)}/{row['id']}"},
                                     {"rel": "bookmark", "href": f"{base}/volume/{project}/{_path(request)}/{row['id']}"}]}
    if detail:
        out["created_at"] = iso_naive_micro(row["created_at"])
        if version >= (3, 55):
            out["no_snapshots"] = bool(row["no_snapshots"])
        if version >= (3, 57):
            out.update({"source_project_id": row["project_id"], "destination_project_id": None, "accepted": False})
    return out


def _create_spec(body: Any, version: tuple[int, int]) -> dict[str, Any]:
    item = body.get("transfer") if isinstance(body, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Missing required element 'transfer' in request body.")
    allowed_keys = {"volume_id", "name", *(("no_snapshots",) if version >= (3, 55) else ())}
    unknown = sorted(set(item) - allowed_keys)
    if unknown:
        raise errors.Invalid(f"Invalid input: unexpected attribute(s) {', '.join(map(str, unknown))} in transfer")
    vid, name = item.get("volume_id"), item.get("name")
    if not isinstance(vid, str) or not is_uuid(vid):
        raise errors.Invalid(f"Invalid input received: volume_id {vid!r} is not a UUID")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise errors.Invalid("Invalid input for field/attribute name: a string of at most 255 characters")
    raw = item.get("no_snapshots", False)
    no_snapshots = raw if isinstance(raw, bool) else parse_bool(raw) if isinstance(raw, str) else None
    if no_snapshots is None:
        raise errors.Invalid(f"Invalid value for 'no_snapshots': {raw!r} (true or false)")
    return {"volume_id": vid.lower(), "name": name, "no_snapshots": no_snapshots}


async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    spec = _create_spec(await json_body(request), version_of(request))
    api, volume = await find_volume(request, ctx, spec["volume_id"])
    key, salt = secrets.token_hex(AUTH_KEY_BYTES), secrets.token_hex(8)
    row = {"id": str(uuidlib.uuid4()), "volume_id": volume["id"], "project_id": volume["project_id"],
           "name": spec["name"], "salt": salt, "crypt_hash": _hash(salt, key),
           "no_snapshots": spec["no_snapshots"], "created_at": utcnow()}
    db = request.config_dict[DB]

    def insert_row(conn: Connection) -> None:
        try:
            with conn.begin_nested():
                conn.execute(insert(volume_transfers).values(**row))
        except IntegrityError:
            raise errors.VolumeInvalidState(reason=f"volume {volume['id']} is being transferred already") from None
    await db.write(insert_row)  # first: one open transfer per volume, whoever asks at once
    try:
        await api.volume_action(ctx, volume["id"], "transfer_begin", {"no_snapshots": spec["no_snapshots"]})
    except BaseException:
        await asyncio.shield(db.write(lambda conn: conn.execute(delete(volume_transfers).where(_t.id == row["id"]))))
        raise
    return web.json_response({"transfer": {**view(request, row), "auth_key": key}}, status=202)


async def _list(request: web.Request, detail: bool) -> web.Response:
    ctx = context(request)
    every = parse_bool(request.query.get("all_tenants", "false")) and allowed(request, "volume:get_all_tenants")
    query = select(volume_transfers).order_by(_t.created_at.desc(), _t.id)
    if not every:
        query = query.where(_t.project_id == ctx.project)
    rows = await request.config_dict[DB].read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])
    return web.json_response({"transfers": [view(request, r, detail) for r in rows]})


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def _own(request: web.Request, ctx: RequestContext) -> dict[str, Any]:
    """The transfer of the URL, if the caller's project gives it (admins: any); 404 otherwise."""
    tid = request.match_info["transfer_id"]
    row = None
    if is_uuid(tid):
        row = await request.config_dict[DB].read(
            lambda conn: conn.execute(select(volume_transfers).where(_t.id == tid.lower())).first())
    if row is None or (row.project_id != ctx.project and not allowed(request, "volume:get_all_tenants")):
        raise errors.NotFound(f"Transfer {tid} could not be found.")
    return dict(row._mapping)


async def show(request: web.Request) -> web.Response:
    return web.json_response({"transfer": view(request, await _own(request, context(request)))})


async def delete_transfer(request: web.Request) -> web.Response:
    ctx = context(request)
    row = await _own(request, ctx)
    removed = await request.config_dict[DB].write(
        lambda conn: conn.execute(delete(volume_transfers).where(_t.id == row["id"])).rowcount)
    if removed:  # an accept may have taken it meanwhile: then the volume is no longer ours to make available
        api, volume = await cells.find(request.config_dict[ROUTER], _service(ctx), row["volume_id"])
        await api.volume_action(_service(ctx), volume["id"], "transfer_cancel", {})
    return web.Response(status=202)


def _service(ctx: RequestContext) -> RequestContext:
    """This API's own context for a step the caller's project may not see (the giver's volume), its request id."""
    return dataclasses.replace(admin_context(), request_id=ctx.request_id)


async def accept(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await json_body(request)
    item = body.get("accept") if isinstance(body, Mapping) else None
    key = item.get("auth_key") if isinstance(item, Mapping) else None
    if not isinstance(key, str) or not key:
        raise errors.Invalid("Invalid input received: accept needs the transfer's auth_key")
    tid = request.match_info["transfer_id"]
    db, router = request.config_dict[DB], request.config_dict[ROUTER]
    row = await db.read(lambda conn: conn.execute(select(volume_transfers).where(_t.id == tid.lower())).first()) \
        if is_uuid(tid) else None
    if row is None:
        raise errors.NotFound(f"Transfer {tid} could not be found.")
    if not hmac.compare_digest(_hash(row.salt, key), row.crypt_hash):
        raise errors.Invalid(f"Invalid auth key: Attempt to transfer {row.id} with invalid auth key.")
    service = _service(ctx)
    api, volume = await cells.find(router, service, row.volume_id)
    snapshots = [] if row.no_snapshots else await cells.list_snapshots(router, service, {"volume_id": volume["id"]},
                                                                       strict=True)
    project = str(ctx.project)
    listed, listed_ids, since = await cells.project_usage(router, ctx, project)

    def take(conn: Connection) -> None:
        """The receiving project's quotas, then the transfer removed: one write unit (one accept wins)."""
        for rid, size, resource in ((volume["id"], int(volume["size"]), "volume"),
                                    *((s["id"], int(s["size"]), "snapshot") for s in snapshots)):
            quota.release_volume(conn, rid)  # a create's reservation of the id, counted for the giver
            quota.reserve_volume(conn, project, rid, size, listed, listed_ids, resource, volume.get("volume_type"),
                                 since)
        if conn.execute(delete(volume_transfers).where(_t.id == row.id)).rowcount != 1:
            raise errors.NotFound(f"Transfer {row.id} could not be found.")
    await db.write(take)
    try:
        await api.volume_action(service, volume["id"], "transfer_accept",
                                {"project_id": project, "user_id": ctx.user, "no_snapshots": bool(row.no_snapshots)})
    except BaseException:  # the transfer stays open, as it was
        restored = {k: getattr(row, k) for k in row._fields}
        await asyncio.shield(db.write(lambda conn: conn.execute(insert(volume_transfers).values(**restored))))
        raise
    return web.json_response({"transfer": view(request, dict(row._mapping), detail=False)}, status=202)


def add_routes(app: web.Application) -> None:
    for path in ("os-volume-transfer", "volume-transfers"):  # the second from 3.55, the same semantics here
        base = f"/v3/{{project_id}}/{path}"
        app.router.add_post(base, create)
        app.router.add_get(base, index)
        app.router.add_get(base + "/detail", detail)
        app.router.add_get(base + "/{transfer_id}", show)
        app.router.add_delete(base + "/{transfer_id}", delete_transfer)
        app.router.add_post(base + "/{transfer_id}/accept", accept)
