"""/compute/v2.1/os-server-groups: Nova's server groups, and what a boot does with
the `group` scheduler hint.

A group lives in the API DB (global, per project) with one policy, affinity or
anti-affinity, from 2.15 soft-affinity or soft-anti-affinity (the scheduler prefers, never
refuses), from 2.64 given as `policy` with `rules` (max_server_per_host, anti-affinity only);
2.13 shows its project and user. A boot with
`os:scheduler_hints: {"group": <id>}`:

- names a group of the caller's project (else 400, as Nova: the hint is bad input);
- under the project's quota lock: the server_group_members quota is checked, the
  cell is the one the group's members live in (a group never spans cells: the
  claim that enforces its policy is a cell's), and once the cell took the boot
  the new servers are recorded as members;
- passes `group: {uuid, policy[, max_per_host]}` to the cell in the request spec: the cell's
  scheduler enforces the policy inside the claim transaction (cells/db/groups.py).

A server leaves its group when it is deleted. Like Nova, a group's members are
those that still have an instance mapping, and deleting a group leaves its
servers where they are.
"""
from __future__ import annotations

import copy
import functools
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api import quota
from api.compute.microversions import Microversion, version_of
from api.compute.schemas import NAME
from api.db.schema import instance_mappings, server_group_members, server_groups
from api.http import context, is_uuid, json_body, query_int
from api.keys import ENGINE
from api.timeutil import utcnow
from api.validation import validate
from cells import errors
from cells.context import RequestContext

POLICIES = ["anti-affinity", "affinity"]
SOFT_POLICIES = ["soft-anti-affinity", "soft-affinity"]  # 2.15
MAX_LIMIT = 1000
SERVER_GROUP_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {"server_group": {
        "type": "object",
        "properties": {"name": NAME,
                       "policies": {"type": "array", "items": {"type": "string", "enum": POLICIES},
                                    "minItems": 1, "maxItems": 1, "uniqueItems": True}},
        "required": ["name", "policies"],
        "additionalProperties": False}},
    "required": ["server_group"],
    "additionalProperties": False,
}


@functools.cache
def create_schema(version: Microversion) -> dict[str, Any]:
    """The create body at `version`: 2.15 soft policies; from 2.64 one `policy` and its `rules`."""
    if version < (2, 15):
        return SERVER_GROUP_CREATE
    schema = copy.deepcopy(SERVER_GROUP_CREATE)
    group = schema["properties"]["server_group"]
    if version < (2, 64):
        group["properties"]["policies"]["items"]["enum"] = POLICIES + SOFT_POLICIES
        return schema
    group["properties"] = {
        "name": NAME, "policy": {"type": "string", "enum": POLICIES + SOFT_POLICIES},
        "rules": {"type": "object", "properties": {"max_server_per_host": {
            "type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1}},
            "additionalProperties": False}}
    group["required"] = ["name", "policy"]
    return schema


class ServerGroupNotFound(errors.NotFound):
    code, msg = "instance_group_not_found", "Instance group {group_uuid} could not be found."


class ServerGroupLimitExceeded(errors.QuotaExceeded):
    code, msg = "server_group_limit_exceeded", "Quota exceeded, too many server groups."


class GroupMemberLimitExceeded(errors.QuotaExceeded):
    code, msg = "server_group_member_limit_exceeded", "Quota exceeded, too many servers in group"


@dataclass(frozen=True)
class ServerGroup:
    id: str
    name: str
    project_id: str
    user_id: str
    policy: str
    rules: dict[str, Any] = field(default_factory=dict)  # 2.64: {"max_server_per_host": N}, anti-affinity only


_g, _m, _im = server_groups.c, server_group_members.c, instance_mappings.c
# members are the servers that still have a mapping (Nova shows those too)
_LIVE_MEMBERS = (select(_m.group_id, _m.instance_uuid)
                 .join(instance_mappings, _im.instance_uuid == _m.instance_uuid))


def _group(row: Any) -> ServerGroup:
    return ServerGroup(row.id, row.name, row.project_id, row.user_id, row.policy, dict(row.rules or {}))


async def _find(conn: AsyncConnection, ctx: RequestContext, group_id: str) -> ServerGroup:
    """A group the caller may see; another project's is as unknown as a missing one."""
    row = None
    if is_uuid(group_id):
        row = (await conn.execute(select(server_groups).where(_g.id == group_id.lower()))).first()
    if row is None or (row.project_id != ctx.project
                       and not ctx.allows("os_compute_api:os-server-groups:show", {"project_id": row.project_id})):
        raise ServerGroupNotFound(group_uuid=group_id)
    return _group(row)


async def _members(conn: AsyncConnection, group_ids: Sequence[str]) -> dict[str, list[str]]:
    rows = (await conn.execute(_LIVE_MEMBERS.where(_m.group_id.in_(list(group_ids)))
                               .order_by(_m.created_at, _m.instance_uuid))).all()
    out: dict[str, list[str]] = {g: [] for g in group_ids}
    for r in rows:
        out[r.group_id].append(r.instance_uuid)
    return out


async def _count(conn: AsyncConnection, project_id: str) -> int:
    return int((await conn.execute(select(func.count()).select_from(server_groups)
                                   .where(_g.project_id == project_id))).scalar_one())


async def group_count(engine: AsyncEngine, project_id: str) -> int:
    """The project's server groups (its server_groups quota usage)."""
    async with engine.connect() as conn:
        return await _count(conn, project_id)


def view(group: ServerGroup, members: list[str], version: Microversion) -> dict[str, Any]:
    """Nova's body: `policies` (a list of one) and an always empty `metadata` before 2.64, one `policy`
    and its `rules` from 2.64; project_id and user_id from 2.13."""
    out: dict[str, Any] = {"id": group.id, "name": group.name, "members": members}
    if version >= (2, 64):
        out.update(policy=group.policy, rules=dict(group.rules))
    else:
        out.update(policies=[group.policy], metadata={})
    if version >= (2, 13):
        out.update(project_id=group.project_id, user_id=group.user_id)
    return out


# --- the service: functions of the API engine and the caller's context ---------------------

async def list_groups(engine: AsyncEngine, ctx: RequestContext, all_projects: bool, limit: int,
                      offset: int) -> list[tuple[ServerGroup, list[str]]]:
    """The caller's project's groups with their members; every project's when asked and the rule allows."""
    stmt = select(server_groups)
    # Nova ignores all_projects for those the rule does not allow
    if not (all_projects and ctx.allows("os_compute_api:os-server-groups:index:all_projects", {})):
        stmt = stmt.where(_g.project_id == ctx.project)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt.order_by(_g.created_at, _g.id).limit(limit).offset(offset))).all()
        groups = [_group(r) for r in rows]
        members = await _members(conn, [g.id for g in groups])
    return [(g, members[g.id]) for g in groups]


async def get_group(engine: AsyncEngine, ctx: RequestContext, group_id: str) -> tuple[ServerGroup, list[str]]:
    async with engine.connect() as conn:
        group = await _find(conn, ctx, group_id)
        members = await _members(conn, [group.id])
    return group, members[group.id]


async def create_group(engine: AsyncEngine, ctx: RequestContext, name: str, policy: str,
                       rules: Mapping[str, Any]) -> ServerGroup:
    """A new group of the caller's project, counted against its server_groups quota."""
    project = str(ctx.project)
    clean = {k: int(v) for k, v in rules.items()}
    if clean and policy != "anti-affinity":  # Nova: rules only for anti-affinity
        raise errors.Invalid(f"Only anti-affinity policy supports rules, not {policy}.")
    group = ServerGroup(str(uuidlib.uuid4()), name, project, str(ctx.user), policy, clean)
    # the count and the insert it admits, together
    async with quota.project_lock(project), engine.begin() as conn:
        allowed = (await quota.limits_in(conn, project))["server_groups"]
        if allowed >= 0 and await _count(conn, project) >= allowed:
            raise ServerGroupLimitExceeded(resource="server_groups", requested=1, limit=allowed)
        await conn.execute(insert(server_groups).values(
            id=group.id, name=group.name, project_id=group.project_id, user_id=group.user_id,
            policy=group.policy, rules=group.rules or None, created_at=utcnow()))
    return group


async def delete_group(engine: AsyncEngine, ctx: RequestContext, group_id: str) -> None:
    async with engine.connect() as conn:
        group = await _find(conn, ctx, group_id)
    # not while a boot of its project joins it
    async with quota.project_lock(group.project_id), engine.begin() as conn:
        await conn.execute(delete(server_group_members).where(_m.group_id == group.id))
        gone = await conn.execute(delete(server_groups).where(_g.id == group.id))
    if gone.rowcount == 0:
        raise ServerGroupNotFound(group_uuid=group.id)


# --- handlers ----------------------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    query = request.query
    limit = min(query_int(query, "limit", MAX_LIMIT) or 0, MAX_LIMIT)
    offset = query_int(query, "offset", 0) or 0
    listed = await list_groups(request.config_dict[ENGINE], context(request), "all_projects" in query, limit, offset)
    version = version_of(request)
    return web.json_response({"server_groups": [view(g, members, version) for g, members in listed]})


async def show(request: web.Request) -> web.Response:
    group, members = await get_group(request.config_dict[ENGINE], context(request), request.match_info["group_id"])
    return web.json_response({"server_group": view(group, members, version_of(request))})


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    version = version_of(request)
    validate(create_schema(version), body)
    spec = body["server_group"]
    policy = spec["policy"] if version >= (2, 64) else spec["policies"][0]
    group = await create_group(request.config_dict[ENGINE], context(request), spec["name"], policy,
                               spec.get("rules") or {})
    return web.json_response({"server_group": view(group, [], version)})  # 200, as Nova


async def delete_handler(request: web.Request) -> web.Response:
    await delete_group(request.config_dict[ENGINE], context(request), request.match_info["group_id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-server-groups", index)
    app.router.add_post("/v2.1/os-server-groups", create)
    app.router.add_get("/v2.1/os-server-groups/{group_id}", show)
    app.router.add_delete("/v2.1/os-server-groups/{group_id}", delete_handler)


# --- boots -------------------------------------------------------------------------

async def for_boot(conn: AsyncConnection, ctx: RequestContext, hints: Mapping[str, Any]) -> ServerGroup | None:
    """The group a boot's `group` hint names (400 when there is none of the caller's)."""
    hint = hints.get("group")
    if hint is None:
        return None
    try:
        group = await _find(conn, ctx, str(hint))
    except ServerGroupNotFound as exc:
        raise errors.Invalid(exc.message) from None
    if group.project_id != ctx.project:  # an admin too boots into groups of the project it is scoped to
        raise errors.Invalid(ServerGroupNotFound(group_uuid=hint).message)
    return group


async def admit(engine: AsyncEngine, group: ServerGroup | None, count: int, limits: Mapping[str, int],
                hints: dict[str, Any]) -> dict[str, Any]:
    """Under the project's quota lock, before the boot: the members quota, and the hints the
    cell choice takes (the cell of the group's members, when it has any)."""
    if group is None:
        return hints
    async with engine.connect() as conn:
        if (await conn.execute(select(_g.id).where(_g.id == group.id))).first() is None:  # deleted meanwhile
            raise errors.Invalid(ServerGroupNotFound(group_uuid=group.id).message)
        members = (await _members(conn, [group.id]))[group.id]
        cells = (await conn.execute(select(_im.cell_path).distinct()
                                    .where(_im.instance_uuid.in_(members)))).scalars().all() if members else []
    allowed = limits.get("server_group_members", -1)
    if allowed >= 0 and len(members) + count > allowed:
        raise GroupMemberLimitExceeded(resource="server_group_members", requested=count, limit=allowed)
    if not cells:
        return hints
    # the members' cell, whatever a target_cell hint said: the policy holds within one cell only
    return {**hints, "target_cell": min(cells)}


def spec_part(group: ServerGroup | None) -> dict[str, Any]:
    """What the cell's request spec carries of the group (cells/scheduler/groups.py)."""
    if group is None:
        return {}
    part: dict[str, Any] = {"uuid": group.id, "policy": group.policy}
    if group.rules.get("max_server_per_host"):  # only then: a scheduler from before 2.64's rules refuses it
        part["max_per_host"] = int(group.rules["max_server_per_host"])
    return {"group": part}


async def add_members(engine: AsyncEngine, group: ServerGroup | None, uuids: Sequence[str]) -> None:
    if group is None or not uuids:
        return
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(insert(server_group_members),
                           [{"instance_uuid": u, "group_id": group.id, "created_at": now} for u in uuids])


async def remove_members(engine: AsyncEngine, uuids: Sequence[str]) -> None:
    """Deleted servers leave their group."""
    async with engine.begin() as conn:
        await conn.execute(delete(server_group_members).where(_m.instance_uuid.in_(list(uuids))))


async def groups_of(engine: AsyncEngine, uuids: Sequence[str]) -> dict[str, str]:
    """instance uuid -> the id of its server group, for the servers of `uuids` that are in one."""
    m = server_group_members.c
    async with engine.connect() as conn:
        rows = (await conn.execute(select(m.instance_uuid, m.group_id).where(m.instance_uuid.in_(list(uuids))))).all()
    return {row.instance_uuid: row.group_id for row in rows}
