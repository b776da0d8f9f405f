"""/volume/v3/{project_id}/limits, os-quota-sets and os-quota-class-sets: Cinder's quota views (api/quota.py
holds the logic).

Every limit comes from the same quota tables as the compute quotas: a project's own, else the "default"
quota class's (os-quota-class-sets/default, admins), else Cinder's defaults. volumes, gigabytes,
snapshots and the per-type ones bind creates; per_volume_gigabytes caps one volume's size (413, as
Cinder); groups binds a group's create (api/volume/groups.py, 413); backups and backup_gigabytes are kept and
shown (nothing here makes backups, so they bind nothing). Non-admins see their own project only; admins
change limits.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from api import quota
from api.db.schema import volume_types
from api.http import allowed, authorize, context, json_body, parse_bool
from api.keys import DB, ENGINE
from api.volume import groups
from api.volume.volumes import usage
from cells import errors
from cells.context import RequestContext

SETTABLE = quota.VOLUME_RESOURCES
_MAX = 0x7FFFFFFF


def _target(request: web.Request, ctx: RequestContext) -> str:
    target = request.match_info["target"]
    authorize(request, "volume_extension:quotas:show", {"project_id": target})
    return target


async def _type_names(request: web.Request) -> list[str]:
    return list(await request.config_dict[DB].read(lambda conn: conn.execute(
        select(volume_types.c.name).order_by(volume_types.c.name)).scalars().all()))


async def _per_type(request: web.Request, limits: dict[str, int]) -> dict[str, int]:
    """volumes_<type>, gigabytes_<type>, snapshots_<type> of every type (-1: not set, unlimited)."""
    return {f"{r}_{t}": limits.get(f"{r}_{t}", -1) for t in await _type_names(request) for r in quota.VOLUME_PER_TYPE}


async def _quota_set(request: web.Request, ctx: RequestContext, project: str, with_usage: bool) -> dict[str, Any]:
    limits = await quota.limits(request.config_dict[ENGINE], project)
    values: dict[str, Any] = {**{r: limits[r] for r in SETTABLE}, **await _per_type(request, limits)}
    if with_usage:
        used = {**await usage(request, ctx, project), "groups": await groups.count(request, project)}
        values = {r: {"limit": v, "in_use": used.get(r, 0), "reserved": 0, "allocated": 0}
                  for r, v in values.items()}
    return {"id": project, **values}


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    project = _target(request, ctx)
    with_usage = parse_bool(request.query.get("usage", "false")) or False
    return web.json_response({"quota_set": await _quota_set(request, ctx, project, with_usage)})


async def defaults(request: web.Request) -> web.Response:
    """What a project without limits of its own gets: the default quota class over Cinder's defaults."""
    ctx = context(request)
    project = _target(request, ctx)
    default = await quota.class_limits(request.config_dict[ENGINE])
    return web.json_response({"quota_set": {"id": project, **{r: default[r] for r in SETTABLE},
                                            **await _per_type(request, default)}})


async def _checked_values(request: web.Request, given: Any, key: str) -> dict[str, int]:
    """A quota set's or quota class set's limits, each a known resource and an integer in [-1, 2**31-1]."""
    if not isinstance(given, dict):
        raise errors.Invalid(f"Missing required element '{key}' in request body.")
    values: dict[str, int] = {}
    per_type = set(await _per_type(request, {}))
    for resource, raw in given.items():
        if resource in ("tenant_id", "id", "class_name"):
            continue
        if resource not in SETTABLE and resource not in per_type:
            raise errors.Invalid(f"Bad key(s) in quota set: {resource} (settable: {', '.join(SETTABLE)}, and "
                                 "volumes_, gigabytes_, snapshots_ of a volume type)")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise errors.Invalid(f"Quota limit {raw!r} for {resource} is not an integer.") from None
        if isinstance(raw, bool) or not -1 <= value <= _MAX:
            raise errors.Invalid(f"Quota limit {raw} for {resource} must be in the range of -1 and {_MAX}.")
        values[resource] = value
    return values


async def update(request: web.Request) -> web.Response:
    authorize(request, "volume_extension:quotas:update", {"project_id": request.match_info["target"]})
    body = await json_body(request)
    values = await _checked_values(request, body.get("quota_set") if isinstance(body, dict) else None, "quota_set")
    engine = request.config_dict[ENGINE]
    await quota.set_limits(engine, request.match_info["target"], values)
    limits = await quota.limits(engine, request.match_info["target"])
    return web.json_response({"quota_set": {**{r: limits[r] for r in SETTABLE}, **await _per_type(request, limits)}})


async def class_show(request: web.Request) -> web.Response:
    """GET os-quota-class-sets/{name}: the class's limits (a class never set: Cinder's defaults). Only the
    "default" class means anything: every project without a limit of its own has its limits."""
    context(request)
    name = quota.checked_class_name(request.match_info["class_name"])
    limits = await quota.class_limits(request.config_dict[ENGINE], name)
    return web.json_response({"quota_class_set": {"id": name, **{r: limits[r] for r in SETTABLE},
                                                  **await _per_type(request, limits)}})


async def class_update(request: web.Request) -> web.Response:
    """PUT os-quota-class-sets/{name} {"quota_class_set": {...}}: the class after (no id), as Cinder."""
    context(request)
    name = quota.checked_class_name(request.match_info["class_name"])
    body = await json_body(request)
    values = await _checked_values(request, body.get("quota_class_set") if isinstance(body, dict) else None,
                                   "quota_class_set")
    engine = request.config_dict[ENGINE]
    await quota.set_class_limits(engine, name, values)
    limits = await quota.class_limits(engine, name)
    return web.json_response({"quota_class_set": {**{r: limits[r] for r in SETTABLE},
                                                  **await _per_type(request, limits)}})


async def reset(request: web.Request) -> web.Response:
    authorize(request, "volume_extension:quotas:delete", {"project_id": request.match_info["target"]})
    await quota.reset_limits(request.config_dict[ENGINE], request.match_info["target"], volume_only=True)
    return web.Response(status=200)


async def limits(request: web.Request) -> web.Response:
    """Absolute limits and what the project uses; no rate limits."""
    ctx = context(request)
    other = request.query.get("project_id")
    project = other if other and allowed(request, "limits_extension:used_limits", {"project_id": other}) \
        else ctx.project
    lim = await quota.limits(request.config_dict[ENGINE], str(project))
    used = await usage(request, ctx, str(project))
    absolute = {"maxTotalVolumes": lim["volumes"], "maxTotalVolumeGigabytes": lim["gigabytes"],
                "maxTotalSnapshots": lim["snapshots"], "maxTotalBackups": lim["backups"],
                "maxTotalBackupGigabytes": lim["backup_gigabytes"], "totalVolumesUsed": used["volumes"],
                "totalGigabytesUsed": used["gigabytes"], "totalSnapshotsUsed": used["snapshots"], "totalBackupsUsed": 0,
                "totalBackupGigabytesUsed": 0}
    return web.json_response({"limits": {"rate": [], "absolute": absolute}})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/{project_id}/limits", limits)
    app.router.add_get("/v3/{project_id}/os-quota-sets/{target}", show)
    app.router.add_put("/v3/{project_id}/os-quota-sets/{target}", update)
    app.router.add_delete("/v3/{project_id}/os-quota-sets/{target}", reset)
    app.router.add_get("/v3/{project_id}/os-quota-sets/{target}/defaults", defaults)
    app.router.add_get("/v3/{project_id}/os-quota-class-sets/{class_name}", class_show)
    app.router.add_put("/v3/{project_id}/os-quota-class-sets/{class_name}", class_update)
