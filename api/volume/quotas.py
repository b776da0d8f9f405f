"""/volume/v3/{project_id}/limits and os-quota-sets: Cinder's quota views (api/quota.py holds the logic).

volumes, gigabytes and snapshots come from the same quota table as the compute
quotas; backups, groups and per_volume_gigabytes are shown with Cinder's
defaults (this cloud has no backups or groups; a volume is capped by
MAX_SIZE_GB). Non-admins see their own project only; admins change limits.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from api import quota
from api.db.schema import volume_types
from api.http import allowed, authorize, context, json_body, parse_bool
from api.keys import DB, ENGINE
from api.volume.volumes import usage
from cells import errors
from cells.context import RequestContext

SETTABLE = ("volumes", "gigabytes", "snapshots")
FIXED = {"backups": 10, "backup_gigabytes": 1000, "groups": 10, "per_volume_gigabytes": -1}
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
    values: dict[str, Any] = {**{r: limits[r] for r in SETTABLE}, **FIXED, **await _per_type(request, limits)}
    if with_usage:
        used = await usage(request, ctx, project)
        values = {r: {"limit": v, "in_use": used.get(r, 0), "reserved": 0, "allocated": 0}
                  for r, v in values.items()}
    return {"id": project, **values}


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    project = _target(request, ctx)
    with_usage = parse_bool(request.query.get("usage", "false")) or False
    return web.json_response({"quota_set": await _quota_set(request, ctx, project, with_usage)})


async def defaults(request: web.Request) -> web.Response:
    ctx = context(request)
    project = _target(request, ctx)
    return web.json_response({"quota_set": {"id": project, **{r: quota.DEFAULTS[r] for r in SETTABLE}, **FIXED}})


async def update(request: web.Request) -> web.Response:
    authorize(request, "volume_extension:quotas:update", {"project_id": request.match_info["target"]})
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("quota_set"), dict):
        raise errors.Invalid("Missing required element 'quota_set' in request body.")
    values: dict[str, int] = {}
    per_type = set(await _per_type(request, {}))
    for resource, raw in body["quota_set"].items():
        if resource in ("tenant_id", "id"):
            continue
        if resource not in SETTABLE and resource not in per_type and resource not in FIXED:
            raise errors.Invalid(f"Bad key(s) in quota set: {resource} (settable: {', '.join(SETTABLE)}, and "
                                 "volumes_, gigabytes_, snapshots_ of a volume type)")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise errors.Invalid(f"Quota limit {raw!r} for {resource} is not an integer.") from None
        if isinstance(raw, bool) or not -1 <= value <= _MAX:
            raise errors.Invalid(f"Quota limit {raw} for {resource} must be in the range of -1 and {_MAX}.")
        if resource in FIXED:
            # a client putting back the set it was shown (Tempest's quota tests restore it so) may echo
            # these; changing one is refused, as nothing here would honour it
            if value != FIXED[resource]:
                raise errors.Invalid(f"Quota {resource} is fixed at {FIXED[resource]} here (this cloud has no "
                                     "backups or groups; a volume's size is capped by the service)")
            continue
        values[resource] = value
    engine = request.config_dict[ENGINE]
    await quota.set_limits(engine, request.match_info["target"], values)
    limits = await quota.limits(engine, request.match_info["target"])
    return web.json_response({"quota_set": {**{r: limits[r] for r in SETTABLE}, **FIXED,
                                            **await _per_type(request, limits)}})


async def reset(request: web.Request) -> web.Response:
    authorize(request, "volume_extension:quotas:delete", {"project_id": request.match_info["target"]})
    await quota.set_limits(request.config_dict[ENGINE], request.match_info["target"],
                           {r: quota.DEFAULTS[r] for r in SETTABLE})
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
                "maxTotalSnapshots": lim["snapshots"], "maxTotalBackups": FIXED["backups"],
                "maxTotalBackupGigabytes": FIXED["backup_gigabytes"], "totalVolumesUsed": used["volumes"],
                "totalGigabytesUsed": used["gigabytes"], "totalSnapshotsUsed": used["snapshots"], "totalBackupsUsed": 0,
                "totalBackupGigabytesUsed": 0}
    return web.json_response({"limits": {"rate": [], "absolute": absolute}})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/{project_id}/limits", limits)
    app.router.add_get("/v3/{project_id}/os-quota-sets/{target}", show)
    app.router.add_put("/v3/{project_id}/os-quota-sets/{target}", update)
    app.router.add_delete("/v3/{project_id}/os-quota-sets/{target}", reset)
    app.router.add_get("/v3/{project_id}/os-quota-sets/{target}/defaults", defaults)
