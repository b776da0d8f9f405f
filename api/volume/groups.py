"""/volume/v3/{project_id}/groups: Cinder's generic volume groups (3.13+, issue 18/16).

A group is a project's named set of volumes of a group type, whose members may have only the volume
types it was made with. Groups are global (API DB `volume_groups`, members in `volume_group_members`,
one group per volume) while their volumes live in the cells: a member whose volume is gone is not
listed, and a group's live members are its ids among the project's volumes the cells list.
Validate -> check -> act: a create resolves the group type and every volume type and checks the
`groups` quota (413) in the write that makes the group; an update checks every volume it adds or
removes (Cinder's checks: same project, not in another group, a type of the group's, status) before
it changes any membership; a delete refuses a group that still has volumes unless `delete-volumes`,
and then checks every member can go before deleting one. Below 3.13 the routes are a 404, as Cinder's.
"""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, delete, func, insert, or_, select, update

from api import cell_choice, quota
from api.db.schema import group_snapshots, group_types, volume_group_members, volume_groups
from api.http import allowed, context, is_uuid, json_body, parse_bool
from api.keys import DB, ROUTER
from api.timeutil import iso_naive_micro, utcnow
from api.volume import cells, types
from api.volume.microversions import version_of
from api.volume.types import _text
from cells import errors
from cells.context import RequestContext

MIN_VERSION = (3, 13)
STATUSES = ("available", "creating", "deleting", "error", "in-use", "updating")
ADD_STATUSES = ("available", "in-use")  # Cinder's VALID_ADD_VOL_TO_GROUP_STATUS
REMOVE_STATUSES = ("available", "in-use", "error", "error_deleting")  # VALID_REMOVE_VOL_FROM_GROUP_STATUS
CREATE_KEYS = {"name", "description", "group_type", "volume_types", "availability_zone"}
UPDATE_KEYS = {"name", "description", "add_volumes", "remove_volumes"}
_g, _m = volume_groups.c, volume_group_members.c


class InvalidGroup(errors.Invalid):
    msg = "Invalid group: {reason}"


def gate(request: web.Request) -> None:
    if version_of(request) < MIN_VERSION:
        raise errors.NotFound("The resource could not be found.")


def _item(body: Any, key: str) -> Mapping[str, Any]:
    item = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(item, Mapping):
        raise errors.Invalid(f"Missing required element '{key}' in request body.")
    return item


# --- views -----------------------------------------------------------------------------

def group_detail(request: web.Request, row: Mapping[str, Any], volume_ids: list[str] | None = None) -> dict[str, Any]:
    """Cinder's group view at the negotiated version (3.25 volumes when asked, 3.38 replication_status,
    3.58 project_id)."""
    version = version_of(request)
    view: dict[str, Any] = {"id": row["id"], "name": row.get("name"), "description": row.get("description"),
                            "status": row["status"], "availability_zone": row["availability_zone"],
                            "created_at": iso_naive_micro(row["created_at"]), "group_type": row["group_type_id"],
                            "volume_types": list(row["volume_types"])}
    if version >= (3, 25) and volume_ids is not None:
        view["volumes"] = volume_ids
    if version >= (3, 38):
        view["replication_status"] = "disabled"
    if version >= (3, 58):
        view["project_id"] = row["project_id"]
    return view


# --- lookups -----------------------------------------------------------------------------

async def owned_row(request: web.Request, ctx: RequestContext, table: Any, row_id: str, noun: str) -> dict[str, Any]:
    """A row of `table` (a group or a group snapshot) by id, if the caller's project owns it (admins: any);
    Cinder's "<noun> <id> could not be found." (404) otherwise, the same for a malformed id."""
    missing = errors.NotFound(f"{noun} {row_id} could not be found.")
    if not is_uuid(row_id):
        raise missing
    row = await request.config_dict[DB].read(
        lambda conn: conn.execute(select(table).where(table.c.id == row_id.lower())).first())
    if row is None or (row.project_id != ctx.project and not allowed(request, "volume:get_all_tenants")):
        raise missing
    return dict(row._mapping)


async def find(request: web.Request, ctx: RequestContext, group_id: str) -> dict[str, Any]:
    """The group, if the caller's project owns it (admins: any); GroupNotFound (404) otherwise."""
    return await owned_row(request, ctx, volume_groups, group_id, "Group")


async def member_ids(request: web.Request, ctx: RequestContext, group: Mapping[str, Any]) -> list[str]:
    """The group's members whose volumes still exist (the project's volumes in every cell; strict)."""
    recorded = await request.config_dict[DB].read(lambda conn: list(conn.execute(
        select(_m.volume_id).where(_m.group_id == group["id"])).scalars()))
    if not recorded:
        return []
    listed = await cells.list_all(request.config_dict[ROUTER], ctx, {"project_id": group["project_id"]}, strict=True)
    live = {str(v["id"]) for v in listed}
    return sorted(v for v in recorded if v in live)


async def count(request: web.Request, project: str) -> int:
    """The project's groups (the `groups` quota's in_use)."""
    return int(await request.config_dict[DB].read(lambda conn: conn.execute(
        select(func.count()).select_from(volume_groups).where(_g.project_id == project)).scalar_one()))


async def groups_of(request: web.Request, volume_ids: list[str]) -> dict[str, str]:
    """volume id -> its group's id, for the volumes of a view (3.13 group_id)."""
    if not volume_ids:
        return {}
    rows = await request.config_dict[DB].read(lambda conn: conn.execute(
        select(_m.volume_id, _m.group_id).where(_m.volume_id.in_(volume_ids))).all())
    return {r.volume_id: r.group_id for r in rows}


async def join_new_volume(request: web.Request, ctx: RequestContext, group_id: str, volume_id: str,
                          volume_type_id: str) -> None:
    """A volume being created with `group_id` joins the caller's group, checked first (available, the
    volume's type among the group's): written before the volume is made, so a failed create undoes it."""
    group = await find(request, ctx, group_id)
    if group["project_id"] != ctx.project:
        raise errors.NotFound(f"Group {group_id} could not be found.")

    def join(conn: Connection) -> None:
        row = conn.execute(select(_g.status, _g.volume_types).where(_g.id == group["id"])).first()
        if row is None:
            raise errors.NotFound(f"Group {group_id} could not be found.")
        if row.status != "available":
            raise InvalidGroup(reason=f"group {group_id} is {row.status}, not available")
        if volume_type_id not in row.volume_types:
            raise errors.Invalid(f"Invalid volume type {volume_type_id}: not one of group {group_id}'s")
        conn.execute(insert(volume_group_members).values(volume_id=volume_id, group_id=group["id"]))
    await request.config_dict[DB].write(join)


async def leave(request: web.Request, volume_id: str) -> None:
    await asyncio.shield(request.config_dict[DB].write(
        lambda conn: conn.execute(delete(volume_group_members).where(_m.volume_id == volume_id))))


# --- create ------------------------------------------------------------------------------

async def _group_type_id(request: web.Request, name_or_id: Any) -> str:
    if not isinstance(name_or_id, str) or not name_or_id:
        raise errors.Invalid("Invalid input received: a group needs a group_type")
    row = await request.config_dict[DB].read(lambda conn: conn.execute(select(group_types).where(
        or_(group_types.c.id == name_or_id, group_types.c.name == name_or_id))).first())
    if row is None or not (row.is_public or allowed(request, "group:access_group_types_specs")):
        raise errors.NotFound(f"Group type with id {name_or_id} could not be found.")
    return str(row.id)


async def validate_create(request: web.Request, ctx: RequestContext, body: Any) -> dict[str, Any]:
    item = _item(body, "group")
    unknown = sorted(set(item) - CREATE_KEYS)
    if unknown:
        raise errors.Invalid(f"Invalid input: unexpected attribute(s) {', '.join(unknown)} in group")
    wanted = item.get("volume_types")
    if not isinstance(wanted, list) or not wanted or not all(isinstance(t, str) and t for t in wanted):
        raise errors.Invalid("Invalid input received: a group needs volume_types, a list of volume type names or ids")
    type_ids: list[str] = []
    for name in wanted:
        found = await types.resolve(request, ctx, name)
        if found["id"] not in type_ids:
            type_ids.append(str(found["id"]))
    zone = _text(item.get("availability_zone"), "availability_zone")
    router = request.config_dict[ROUTER]
    if zone and zone != cell_choice.DEFAULT_ZONE and not router.zone_exists(zone):
        raise errors.Invalid(f"Availability zone '{zone}' is invalid.")
    return {"name": _text(item.get("name"), "name"), "description": _text(item.get("description"), "description"),
            "group_type_id": await _group_type_id(request, item.get("group_type")), "volume_types": type_ids,
            "availability_zone": zone or cell_choice.DEFAULT_ZONE}


def insert_within_quota(conn: Connection, row: dict[str, Any]) -> None:
    """The `groups` quota checked and the group made in one API DB write unit (413 as Cinder)."""
    project = str(row["project_id"])
    used = int(conn.execute(select(func.count()).select_from(volume_groups)
                            .where(_g.project_id == project)).scalar_one())
    limit = int(quota.limits_of(conn, project).get("groups", -1))
    if 0 <= limit <= used:
        raise quota.VolumeOverLimit(what="group", resource="groups", req=1, used=used, allowed=limit,
                                    requested=1, limit=limit)
    conn.execute(insert(volume_groups).values(**row))


async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    gate(request)
    spec = await validate_create(request, ctx, await json_body(request))
    now = utcnow()
    row = {"id": str(uuidlib.uuid4()), "project_id": ctx.project, "user_id": ctx.user, "status": "available",
           "created_at": now, "updated_at": now, **spec}
    await request.config_dict[DB].write(lambda conn: insert_within_quota(conn, row))
    return web.json_response({"group": {"id": row["id"], "name": row["name"]}}, status=202)


# --- read --------------------------------------------------------------------------------

async def _list(request: web.Request, detail: bool) -> web.Response:
    ctx = context(request)
    gate(request)
    query = request.query
    conds = []
    all_tenants = parse_bool(query.get("all_tenants", "false"))
    if not (all_tenants and allowed(request, "volume:get_all_tenants")):
        conds.append(_g.project_id == ctx.project)
    for key in ("name", "status", "group_type", "availability_zone"):
        if query.get(key):
            conds.append((_g.group_type_id if key == "group_type" else getattr(_g, key)) == query[key])
    rows = await request.config_dict[DB].read(lambda conn: [dict(r._mapping) for r in conn.execute(
        select(volume_groups).where(*conds).order_by(_g.created_at.desc(), _g.id.desc()))])
    if query.get("marker"):
        ids = [r["id"] for r in rows]
        if query["marker"] not in ids:
            raise errors.NotFound(f"Marker {query['marker']} could not be found.")
        rows = rows[ids.index(query["marker"]) + 1:]
    if query.get("limit"):
        if not query["limit"].isdigit():
            raise errors.Invalid(f"Invalid input received: limit {query['limit']!r} is not an integer")
        rows = rows[:int(query["limit"])]
    if not detail:
        return web.json_response({"groups": [{"id": r["id"], "name": r["name"]} for r in rows]})
    with_volumes = bool(parse_bool(query.get("list_volume", "false")))
    return web.json_response({"groups": [group_detail(request, r, await member_ids(request, ctx, r)
                                                      if with_volumes else None) for r in rows]})


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    gate(request)
    group = await find(request, ctx, request.match_info["group_id"])
    with_volumes = bool(parse_bool(request.query.get("list_volume", "false")))
    return web.json_response({"group": group_detail(request, group, await member_ids(request, ctx, group)
                                                    if with_volumes else None)})


# --- update ------------------------------------------------------------------------------

def _ids(raw: Any, field: str) -> list[str]:
    """Cinder's add_volumes / remove_volumes: volume ids separated by commas."""
    if raw is None or raw == "":
        return []
    if not isinstance(raw, str):
        raise errors.Invalid(f"Invalid input for field/attribute {field}: volume ids separated by commas")
    return [v.strip().lower() for v in raw.split(",") if v.strip()]


async def _check_add(request: web.Request, ctx: RequestContext, group: Mapping[str, Any], vid: str) -> None:
    try:
        _, volume = await cells.find(request.config_dict[ROUTER], ctx, vid) if is_uuid(vid) else (None, None)
    except errors.NotFound:
        volume = None
    gid = group["id"]
    if volume is None or volume["project_id"] != group["project_id"]:
        raise InvalidGroup(reason=f"cannot add volume {vid} to group {gid}: volume cannot be found")
    if volume["status"] not in ADD_STATUSES:
        raise InvalidGroup(reason=f"cannot add volume {vid} to group {gid}: volume is {volume['status']}, "
                                  f"not one of {', '.join(ADD_STATUSES)}")
    vtype = await types.resolve(request, ctx, volume.get("volume_type"))
    if vtype["id"] not in group["volume_types"]:
        raise InvalidGroup(reason=f"cannot add volume {vid} to group {gid}: its volume type is not supported by "
                                  "the group")
    other = (await groups_of(request, [vid])).get(vid)
    if other is not None and other != gid:
        raise InvalidGroup(reason=f"cannot add volume {vid} to group {gid}: it is already in group {other}")


async def _check_remove(request: web.Request, ctx: RequestContext, group: Mapping[str, Any], vid: str,
                        members: list[str]) -> None:
    gid = group["id"]
    if vid not in members:
        raise InvalidGroup(reason=f"cannot remove volume {vid} from group {gid}: it is not in the group")
    _, volume = await cells.find(request.config_dict[ROUTER], ctx, vid)
    if volume["status"] not in REMOVE_STATUSES:
        raise InvalidGroup(reason=f"cannot remove volume {vid} from group {gid}: volume is {volume['status']}, "
                                  f"not one of {', '.join(REMOVE_STATUSES)}")


async def update_group(request: web.Request) -> web.Response:
    ctx = context(request)
    gate(request)
    item = _item(await json_body(request), "group")
    unknown = sorted(set(item) - UPDATE_KEYS)
    if unknown:
        raise errors.Invalid(f"Invalid input: cannot update {', '.join(unknown)} of a group")
    values = {k: _text(item[k], k) for k in ("name", "description") if k in item}
    add, remove = _ids(item.get("add_volumes"), "add_volumes"), _ids(item.get("remove_volumes"), "remove_volumes")
    if not values and not add and not remove:
        raise errors.Invalid("Name, description, add_volumes, and remove_volumes can not be all empty in the request "
                             "body.")
    if set(add) & set(remove):
        raise InvalidGroup(reason="a volume cannot be both added to and removed from the group")
    group = await find(request, ctx, request.match_info["group_id"])
    if (add or remove) and group["status"] != "available":
        raise InvalidGroup(reason=f"group {group['id']} is {group['status']}, not available")
    members = await member_ids(request, ctx, group) if remove else []
    for vid in add:
        await _check_add(request, ctx, group, vid)
    for vid in remove:
        await _check_remove(request, ctx, group, vid, members)

    def change(conn: Connection) -> None:
        status = conn.execute(select(_g.status).where(_g.id == group["id"])).scalar()
        if status is None:
            raise errors.NotFound(f"Group {group['id']} could not be found.")
        if (add or remove) and status != "available":
            raise InvalidGroup(reason=f"group {group['id']} is {status}, not available")
        taken = conn.execute(select(_m.volume_id, _m.group_id).where(_m.volume_id.in_(add))).all()
        if any(r.group_id != group["id"] for r in taken):  # joined another group since the check
            raise InvalidGroup(reason=f"volume {taken[0].volume_id} is already in another group")
        for vid in set(add) - {r.volume_id for r in taken}:
            conn.execute(insert(volume_group_members).values(volume_id=vid, group_id=group["id"]))
        if remove:
            conn.execute(delete(volume_group_members).where(_m.group_id == group["id"], _m.volume_id.in_(remove)))
        conn.execute(update(volume_groups).where(_g.id == group["id"]).values(**values, updated_at=utcnow()))
    await request.config_dict[DB].write(change)
    return web.Response(status=202)


# --- actions: delete, reset_status ----------------------------------------------------------

async def _delete(request: web.Request, ctx: RequestContext, group: dict[str, Any], args: Any) -> web.Response:
    if not isinstance(args, Mapping):
        raise errors.Invalid("Invalid input received: delete takes {\"delete-volumes\": true|false}")
    raw = args.get("delete-volumes", False)
    with_volumes = raw if isinstance(raw, bool) else parse_bool(raw) if isinstance(raw, str) else None
    if with_volumes is None:
        raise errors.Invalid(f"Invalid value for 'delete-volumes': {raw!r} (true or false)")
    if group["status"] not in ("available", "error"):
        raise InvalidGroup(reason=f"group {group['id']} is {group['status']}: it must be available or error")
    snapshotted = await request.config_dict[DB].read(lambda conn: conn.execute(
        select(group_snapshots.c.id).where(group_snapshots.c.group_id == group["id"])).first())
    if snapshotted is not None:
        raise InvalidGroup(reason=f"group {group['id']} has group snapshots: delete them first")
    members = await member_ids(request, ctx, group)
    if members and not with_volumes:
        raise InvalidGroup(reason=f"group {group['id']} still has volumes: delete them with it (delete-volumes) or "
                                  "remove them first")
    router, found = request.config_dict[ROUTER], []
    for vid in members:  # every member checked before any goes
        api, volume = await cells.find(router, ctx, vid)
        if volume.get("attachments") and any(a.get("status") != "detached" for a in volume["attachments"]) \
                or volume["status"] not in ("available", "error", "error_deleting"):
            raise InvalidGroup(reason=f"volume {vid} is {volume['status']}: a group's volumes must be detached "
                                      "to be deleted with it")
        found.append((api, vid))
    db = request.config_dict[DB]
    await db.write(lambda conn: conn.execute(update(volume_groups).where(_g.id == group["id"])
                                             .values(status="deleting", updated_at=utcnow())))
    try:
        for api, vid in found:
            await api.volume_delete(ctx, vid)
    except BaseException:
        await asyncio.shield(db.write(lambda conn: conn.execute(
            update(volume_groups).where(_g.id == group["id"]).values(status="error", updated_at=utcnow()))))
        raise
    await db.write(lambda conn: conn.execute(delete(volume_groups).where(_g.id == group["id"])))
    return web.Response(status=202)


async def _reset_status(request: web.Request, group: dict[str, Any], args: Any) -> web.Response:
    status = args.get("status") if isinstance(args, Mapping) else None
    if status not in STATUSES:
        raise errors.Invalid(f"Invalid input received: status {status!r} must be one of {', '.join(STATUSES)}")
    await request.config_dict[DB].write(lambda conn: conn.execute(
        update(volume_groups).where(_g.id == group["id"]).values(status=status, updated_at=utcnow())))
    return web.Response(status=202)


async def action(request: web.Request) -> web.Response:
    """POST .../groups/{id}/action: delete {"delete-volumes": B} (202), reset_status {"status": S} (3.20, admin)."""
    ctx = context(request)
    gate(request)
    body = await json_body(request)
    if not isinstance(body, Mapping) or len(body) != 1:
        raise errors.Invalid("Invalid input received: one group action per request")
    name, args = next(iter(body.items()))
    if name == "reset_status" and version_of(request) < (3, 20):
        raise errors.NotFound("The resource could not be found.")
    if name not in ("delete", "reset_status"):
        raise errors.Invalid(f"Invalid input received: group action {name!r} is not supported by this cloud")
    group = await find(request, ctx, request.match_info["group_id"])
    if name == "delete":
        return await _delete(request, ctx, group, args)
    return await _reset_status(request, group, args)


def add_routes(app: web.Application) -> None:
    base = "/v3/{project_id}/groups"
    app.router.add_get(base, index)
    app.router.add_post(base, create)
    app.router.add_get(base + "/detail", detail)
    app.router.add_get(base + "/{group_id}", show)
    app.router.add_put(base + "/{group_id}", update_group)
    app.router.add_post(base + "/{group_id}/action", action)
