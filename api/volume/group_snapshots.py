"""/volume/v3/{project_id}/group_snapshots (3.14+) and groups/action create-from-src: Cinder's group snapshots.

A group snapshot is a snapshot of each member of a group, each made by the existing snapshot path
(api/volume/snapshots.py make_snapshot: the snapshots quota, a copy-on-write qcow2 layer on the volume's
host); the API DB keeps which snapshots it holds. Nothing half-made: when a member's snapshot is refused
(its quota, its volume's state) the snapshots already made are deleted and the group snapshot ends
`error`; when one fails later on its host, the first read that sees it does the same. Its status follows
its members while `creating` (all available: available). A snapshot of a group snapshot cannot be
deleted alone (400), nor a group that has group snapshots. create-from-src makes a group of the source's
type and volume types with a volume per member snapshot (group_snapshot_id) or per member volume
(source_group_id), each in its source's cell; a refused member deletes the volumes made and the group.
"""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, Executable, delete, insert, select, update

from api import quota
from api.db.schema import group_snapshot_members, group_snapshots, volume_group_members, volume_groups
from api.http import allowed, context, json_body, parse_bool
from api.keys import DB, ENGINE, ROUTER
from api.timeutil import iso_naive_micro, utcnow
from api.volume import cells, groups, snapshots, volumes
from api.volume.microversions import version_of
from api.volume.types import _text
from cells import errors
from cells.context import RequestContext

MIN_VERSION = (3, 14)
STATUSES = ("available", "creating", "deleting", "error", "error_deleting")
# stored while this API makes the member snapshots, shown as `creating`: only then does the status follow the
# members (an admin's reset_status to creating stays creating, as Cinder's)
MAKING = "making"
_s, _sm = group_snapshots.c, group_snapshot_members.c


def _gate(request: web.Request) -> None:
    if version_of(request) < MIN_VERSION:
        raise errors.NotFound("The resource could not be found.")


def detail_view(request: web.Request, row: Mapping[str, Any]) -> dict[str, Any]:
    view = {"id": row["id"], "group_id": row["group_id"], "name": row.get("name"),
            "description": row.get("description"), "status": "creating" if row["status"] == MAKING else row["status"],
            "created_at": iso_naive_micro(row["created_at"]), "group_type_id": row["group_type_id"]}
    if version_of(request) >= (3, 58):
        view["project_id"] = row["project_id"]
    return view


async def _members(request: web.Request, gsid: str) -> list[tuple[str, str]]:
    """(snapshot id, volume id) of each member snapshot."""
    return [(r.snapshot_id, r.volume_id) for r in await request.config_dict[DB].read(lambda conn: conn.execute(
        select(_sm.snapshot_id, _sm.volume_id).where(_sm.group_snapshot_id == gsid)).all())]


async def _execute(request: web.Request, stmt: Executable) -> None:
    """One statement in its own API DB write unit."""
    await request.config_dict[DB].write(lambda conn: conn.execute(stmt))


async def _set_status(request: web.Request, gsid: str, status: str, only_from: tuple[str, ...] = (),
                      removing: bool | None = None) -> bool:
    """Set the status (only from `only_from` when given: True when this caller's change won)."""
    values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
    if removing is not None:
        values["removing"] = removing

    def change(conn: Connection) -> bool:
        stmt = update(group_snapshots).where(_s.id == gsid)
        if only_from:
            stmt = stmt.where(_s.status.in_(only_from))
        return bool(conn.execute(stmt.values(**values)).rowcount == 1)
    return bool(await request.config_dict[DB].write(change))


async def _delete_snapshots(request: web.Request, ctx: RequestContext, snapshot_ids: list[str]) -> None:
    """Each snapshot deleted where it is (one already gone is fine)."""
    for sid in snapshot_ids:
        try:
            api, _ = await cells.find_snapshot(request.config_dict[ROUTER], ctx, sid)
            await api.snapshot_delete(ctx, sid)
        except errors.NotFound:
            continue


async def _remove_members(request: web.Request, ctx: RequestContext, gsid: str) -> None:
    """After a failure: delete each member snapshot that can go now (one still being made waits for a
    later read); forget those gone; done (removing false) when none is left."""
    db, router = request.config_dict[DB], request.config_dict[ROUTER]
    for sid, _ in await _members(request, gsid):
        try:
            api, snap = await cells.find_snapshot(router, ctx, sid)
        except errors.NotFound:
            await _execute(request, delete(group_snapshot_members).where(_sm.snapshot_id == sid))
            continue
        if snap["status"] in ("available", "error"):
            try:
                await api.snapshot_delete(ctx, sid)
            except errors.CellcloudError:
                continue  # changed under us: the next read tries again
    if not await _members(request, gsid):
        await db.write(lambda conn: conn.execute(update(group_snapshots).where(_s.id == gsid).values(removing=False)))


async def _settled(request: web.Request, ctx: RequestContext, row: dict[str, Any]) -> dict[str, Any]:
    """A group snapshot being made follows its members: all available, available; one in error, error and
    the others deleted (started by the read whose change wins, carried on by later reads)."""
    if row["status"] == MAKING:
        statuses = []
        for sid, _ in await _members(request, row["id"]):
            try:
                statuses.append((await cells.find_snapshot(request.config_dict[ROUTER], ctx, sid))[1]["status"])
            except errors.NotFound:
                statuses.append("error")
        if statuses and all(s == "available" for s in statuses):
            await _set_status(request, row["id"], "available", (MAKING,))
            row = {**row, "status": "available"}
        elif "error" in statuses and await _set_status(request, row["id"], "error", (MAKING,), removing=True):
            row = {**row, "status": "error", "removing": True}
    if row["removing"]:
        await _remove_members(request, ctx, row["id"])
    return row


async def find(request: web.Request, ctx: RequestContext, gsid: str) -> dict[str, Any]:
    return await _settled(request, ctx, await groups.owned_row(request, ctx, group_snapshots, gsid, "GroupSnapshot"))


# --- handlers ------------------------------------------------------------------------------

async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    _gate(request)
    body = await json_body(request)
    item = body.get("group_snapshot") if isinstance(body, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Missing required element 'group_snapshot' in request body.")
    unknown = sorted(set(item) - {"group_id", "name", "description"})
    if unknown:
        raise errors.Invalid(f"Invalid input: unexpected attribute(s) {', '.join(unknown)} in group_snapshot")
    name, description = _text(item.get("name"), "name"), _text(item.get("description"), "description")
    group = await groups.find(request, ctx, str(item.get("group_id") or ""))
    if group["status"] != "available":
        raise groups.InvalidGroup(reason=f"group {group['id']} is {group['status']}, not available")
    members = await groups.member_ids(request, ctx, group)
    if not members:
        raise groups.InvalidGroup(reason=f"group {group['id']} has no volumes to snapshot")
    await _check_members(request, ctx, str(group["project_id"]), members)
    now = utcnow()
    row = {"id": str(uuidlib.uuid4()), "group_id": group["id"], "project_id": group["project_id"],
           "user_id": ctx.user, "name": name, "description": description, "group_type_id": group["group_type_id"],
           "status": MAKING, "removing": False, "created_at": now, "updated_at": now}
    db = request.config_dict[DB]
    await db.write(lambda conn: conn.execute(insert(group_snapshots).values(**row)))
    try:
        for vid in members:
            spec = {"volume_id": vid, "force": True, "name": f"snapshot-{vid}",
                    "description": f"of group snapshot {row['id']}", "metadata": {}}
            snap = await snapshots.make_snapshot(request.config_dict[ROUTER], db, ctx, str(group["project_id"]),
                                                 spec)
            await _execute(request, insert(group_snapshot_members).values(
                snapshot_id=str(snap["id"]), group_snapshot_id=row["id"], volume_id=vid))
    except BaseException:
        await asyncio.shield(_set_status(request, row["id"], "error", removing=True))
        await asyncio.shield(_remove_members(request, ctx, row["id"]))
        raise
    return web.json_response({"group_snapshot": {"id": row["id"], "name": name, "group_type_id":
                                                 row["group_type_id"]}}, status=202)


async def _check_members(request: web.Request, ctx: RequestContext, project: str, members: list[str]) -> None:
    """Before any snapshot is made: every member available or in-use, and the snapshots and gigabytes of all
    of them within the project's quotas (each snapshot reserves its own again as it is made)."""
    router, sizes = request.config_dict[ROUTER], []
    for vid in members:
        _, volume = await cells.find(router, ctx, vid)
        if volume["status"] not in ("available", "in-use"):
            raise errors.Invalid(f"Invalid volume: volume {vid} is {volume['status']}: a group snapshot needs "
                                 "its volumes available or in-use")
        sizes.append(int(volume["size"]))
    used = (await cells.project_usage(router, ctx, project))[0]
    quota.check_volumes(await quota.limits(request.config_dict[ENGINE], project), used, len(sizes), sum(sizes),
                        count="snapshots")


async def _list(request: web.Request, detail: bool) -> web.Response:
    ctx = context(request)
    _gate(request)
    conds = []
    if not (parse_bool(request.query.get("all_tenants", "false")) and allowed(request, "volume:get_all_tenants")):
        conds.append(_s.project_id == ctx.project)
    for key in ("name", "group_id"):
        if request.query.get(key):
            conds.append(getattr(_s, key) == request.query[key])
    if request.query.get("status"):
        wanted = request.query["status"]
        conds.append(_s.status.in_([wanted, MAKING] if wanted == "creating" else [wanted]))
    rows = await request.config_dict[DB].read(lambda conn: [dict(r._mapping) for r in conn.execute(
        select(group_snapshots).where(*conds).order_by(_s.created_at.desc(), _s.id.desc()))])
    rows = [await _settled(request, ctx, r) for r in rows]
    if detail:
        return web.json_response({"group_snapshots": [detail_view(request, r) for r in rows]})
    return web.json_response({"group_snapshots": [{"id": r["id"], "name": r["name"]} for r in rows]})


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    _gate(request)
    return web.json_response({"group_snapshot": detail_view(request, await find(
        request, ctx, request.match_info["group_snapshot_id"]))})


async def delete_group_snapshot(request: web.Request) -> web.Response:
    ctx = context(request)
    _gate(request)
    row = await find(request, ctx, request.match_info["group_snapshot_id"])
    if row["status"] not in ("available", "error"):
        raise errors.Invalid(f"Invalid group snapshot: {row['id']} is {row['status']}, not available or error")
    await _set_status(request, row["id"], "deleting")
    try:
        await _delete_snapshots(request, ctx, [sid for sid, _ in await _members(request, row["id"])])
    except BaseException:
        await asyncio.shield(_set_status(request, row["id"], "error_deleting"))
        raise
    await request.config_dict[DB].write(lambda conn: conn.execute(delete(group_snapshots).where(_s.id == row["id"])))
    return web.Response(status=202)


async def action(request: web.Request) -> web.Response:
    """POST .../group_snapshots/{id}/action: reset_status {"status": S} (3.19, admin)."""
    ctx = context(request)
    _gate(request)
    body = await json_body(request)
    args = body.get("reset_status") if isinstance(body, Mapping) and len(body) == 1 else None
    if args is None:
        raise errors.Invalid("Invalid input received: the group snapshot action is reset_status")
    if version_of(request) < (3, 19):
        raise errors.NotFound("The resource could not be found.")
    status = args.get("status") if isinstance(args, Mapping) else None
    if status not in STATUSES:
        raise errors.Invalid(f"Invalid input received: status {status!r} must be one of {', '.join(STATUSES)}")
    row = await find(request, ctx, request.match_info["group_snapshot_id"])
    await _set_status(request, row["id"], str(status))
    return web.Response(status=202)


# --- groups/action create-from-src -------------------------------------------------------------

async def create_from_src(request: web.Request) -> web.Response:
    """POST .../groups/action {"create-from-src": {group_snapshot_id | source_group_id, name, description}}."""
    ctx = context(request)
    groups.gate(request)
    body = await json_body(request)
    item = body.get("create-from-src") if isinstance(body, Mapping) and len(body) == 1 else None
    if not isinstance(item, Mapping):
        raise errors.Invalid("Invalid input received: the groups action is create-from-src")
    unknown = sorted(set(item) - {"group_snapshot_id", "source_group_id", "name", "description"})
    if unknown:
        raise errors.Invalid(f"Invalid input: unexpected attribute(s) {', '.join(unknown)} in create-from-src")
    if bool(item.get("group_snapshot_id")) == bool(item.get("source_group_id")):
        raise errors.Invalid("Invalid input received: give one of group_snapshot_id and source_group_id")
    name, description = _text(item.get("name"), "name"), _text(item.get("description"), "description")
    if item.get("group_snapshot_id"):
        source = await find(request, ctx, str(item["group_snapshot_id"]))
        if source["status"] != "available":
            raise errors.Invalid(f"Invalid group snapshot: {source['id']} is {source['status']}, not available")
        group = await groups.find(request, ctx, str(source["group_id"]))
        sources = [{"snapshot_id": sid, "volume_id": vid} for sid, vid in await _members(request, source["id"])]
    else:
        group = await groups.find(request, ctx, str(item["source_group_id"]))
        if group["status"] != "available":
            raise groups.InvalidGroup(reason=f"group {group['id']} is {group['status']}, not available")
        sources = [{"source_volid": vid, "volume_id": vid} for vid in await groups.member_ids(request, ctx, group)]
    project = request.match_info["project_id"]  # the caller's (api/volume/routes.py own_project)
    if group["project_id"] != project:
        raise errors.NotFound(f"Group {group['id']} could not be found.")
    await _check_volume_quota(request, ctx, project, sources)
    now = utcnow()
    row = {"id": str(uuidlib.uuid4()), "project_id": project, "user_id": ctx.user, "name": name,
           "description": description, "group_type_id": group["group_type_id"],
           "volume_types": list(group["volume_types"]), "availability_zone": group["availability_zone"],
           "status": "available", "created_at": now, "updated_at": now}
    db = request.config_dict[DB]
    await db.write(lambda conn: groups.insert_within_quota(conn, row))
    made: list[str] = []
    try:
        for src in sources:
            _, volume = await cells.find(request.config_dict[ROUTER], ctx, src["volume_id"])
            spec = {"size": None, **{k: v for k, v in src.items() if k != "volume_id"}, "group_id": row["id"],
                    "name": None, "volume_type": volume.get("volume_type"), "availability_zone": None,
                    "metadata": {}}
            made.append(str((await volumes.create_volume(request, ctx, project, spec))["id"]))
    except BaseException:
        await asyncio.shield(_undo_group(request, ctx, row["id"], made))
        raise
    return web.json_response({"group": {"id": row["id"], "name": name}}, status=202)


async def _check_volume_quota(request: web.Request, ctx: RequestContext, project: str,
                              sources: list[dict[str, str]]) -> None:
    """The volumes and gigabytes of every member together checked before any is made (each create reserves
    its own again): a group the quota cannot hold is a 413 that made nothing."""
    router = request.config_dict[ROUTER]
    used = (await cells.project_usage(router, ctx, project))[0]
    sizes = [int((await cells.find(router, ctx, src["volume_id"]))[1]["size"]) for src in sources]
    limits = await quota.limits(request.config_dict[ENGINE], project)
    quota.check_volumes(limits, used, len(sizes), sum(sizes))


async def _undo_group(request: web.Request, ctx: RequestContext, gid: str, made: list[str]) -> None:
    for vid in made:
        try:
            api, _ = await cells.find(request.config_dict[ROUTER], ctx, vid)
            await api.volume_delete(ctx, vid)
        except errors.CellcloudError:
            continue  # a volume still creating is left to its own flow; it is no member of anything
    def forget(conn: Connection) -> None:
        conn.execute(delete(volume_group_members).where(volume_group_members.c.group_id == gid))
        conn.execute(delete(volume_groups).where(volume_groups.c.id == gid))
    await request.config_dict[DB].write(forget)


def add_routes(app: web.Application) -> None:
    base = "/v3/{project_id}/group_snapshots"
    app.router.add_get(base, index)
    app.router.add_post(base, create)
    app.router.add_get(base + "/detail", detail)
    app.router.add_get(base + "/{group_snapshot_id}", show)
    app.router.add_delete(base + "/{group_snapshot_id}", delete_group_snapshot)
    app.router.add_post(base + "/{group_snapshot_id}/action", action)
    app.router.add_post("/v3/{project_id}/groups/action", create_from_src)
