"""/compute/v2.1/os-quota-sets and /limits: Nova's quota views (api/quota.py holds the logic).

Non-admins see their own project only; only admins change or reset limits. Microversions: 2.36 drops
the network resources (fixed and floating IPs, security groups and rules: Neutron's), 2.39 maxImageMeta,
2.57 the injected files (personality is gone), from quota sets, their updates and /limits.
"""
from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from api import quota
from api.compute import server_groups
from api.compute.microversions import Microversion, version_of
from api.http import allowed, authorize, context, json_body
from api.keys import ENGINE, ROUTER
from api.validation import validate
from cells import errors
from cells.context import RequestContext

# the resources of the 2.1 quota set, in the order Nova lists them
QUOTA_SET_RESOURCES = ("cores", "fixed_ips", "floating_ips", "injected_file_content_bytes",
                       "injected_file_path_bytes", "injected_files", "instances", "key_pairs", "metadata_items",
                       "ram", "security_group_rules", "security_groups", "server_groups", "server_group_members")
_NETWORK = ("fixed_ips", "floating_ips", "security_group_rules", "security_groups")  # gone from 2.36
_INJECTED = ("injected_file_content_bytes", "injected_file_path_bytes", "injected_files")  # gone from 2.57
_MAX = 0x7FFFFFFF
_LIMIT_VALUE = {"type": ["integer", "string"], "pattern": "^-?[0-9]+$"}


def resources_at(version: Microversion) -> tuple[str, ...]:
    """The resources of a quota set at `version`."""
    gone = (_NETWORK if version >= (2, 36) else ()) + (_INJECTED if version >= (2, 57) else ())
    return tuple(r for r in QUOTA_SET_RESOURCES if r not in gone)


@functools.cache
def update_schema(version: Microversion) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"quota_set": {
            "type": "object",
            "properties": {**{r: _LIMIT_VALUE for r in resources_at(version)},
                           "force": {"enum": [True, False, "True", "False", "true", "false"]}},
            "additionalProperties": False}},
        "required": ["quota_set"],
        "additionalProperties": False,
    }




def check_limit(resource: str, raw: int | str) -> int:
    """A limit the schema let through (digits), in Nova's range: -1 (unlimited) up to 2**31 - 1."""
    value = int(raw)
    if not -1 <= value <= _MAX:
        raise errors.Invalid(f"Quota limit {value} for {resource} must be in the range of -1 and {_MAX}.")
    return value


def _project(request: web.Request, ctx: RequestContext, action: str) -> str:
    project = request.match_info.get("project_id") or ctx.project or ""
    authorize(request, f"os_compute_api:os-quota-sets:{action}", {"project_id": project})
    return project


async def _usage(request: web.Request, ctx: RequestContext, project: str) -> dict[str, int]:
    used = await quota.compute_usage(request.config_dict[ROUTER], ctx, project)
    used["key_pairs"] = await quota.keypair_count(request.config_dict[ENGINE], str(ctx.user)) \
        if project == ctx.project else 0
    used["server_groups"] = await server_groups.group_count(request.config_dict[ENGINE], project)
    return used


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    project = _project(request, ctx, "show")
    limits = await quota.limits(request.config_dict[ENGINE], project)
    return web.json_response({"quota_set": {"id": project,
                                            **{r: limits[r] for r in resources_at(version_of(request))}}})


async def detail(request: web.Request) -> web.Response:
    ctx = context(request)
    project = _project(request, ctx, "detail")
    limits = await quota.limits(request.config_dict[ENGINE], project)
    used = await _usage(request, ctx, project)
    body: dict[str, Any] = {"id": project}
    for r in resources_at(version_of(request)):
        body[r] = {"in_use": used.get(r, 0), "limit": limits[r], "reserved": 0}
    return web.json_response({"quota_set": body})


async def defaults(request: web.Request) -> web.Response:
    """The limits of a project without overrides: the default quota class's (os-quota-class-sets)."""
    ctx = context(request)
    project = _project(request, ctx, "defaults")
    default = await quota.class_limits(request.config_dict[ENGINE])
    return web.json_response({"quota_set": {"id": project, **{r: default[r] for r in resources_at(version_of(request))}}})


def _admin(request: web.Request, action: str) -> None:
    authorize(request, f"os_compute_api:os-quota-sets:{action}", {"project_id": request.match_info.get("project_id")})


async def update(request: web.Request) -> web.Response:
    context(request)
    _admin(request, "update")
    project = request.match_info["project_id"]
    body = await json_body(request)
    version = version_of(request)
    validate(update_schema(version), body)
    values = {resource: check_limit(resource, raw) for resource, raw in body["quota_set"].items()
              if resource != "force"}
    engine = request.config_dict[ENGINE]
    await quota.set_limits(engine, project, values)
    limits = await quota.limits(engine, project)
    return web.json_response({"quota_set": {r: limits[r] for r in resources_at(version)}})


async def reset(request: web.Request) -> web.Response:
    context(request)
    _admin(request, "delete")
    await quota.reset_limits(request.config_dict[ENGINE], request.match_info["project_id"])
    return web.Response(status=202)


async def limits(request: web.Request) -> web.Response:
    """Nova 2.1's /limits: absolute limits and what the project uses; no rate limits."""
    ctx = context(request)
    project = str(ctx.project)
    if "tenant_id" in request.query and allowed(request, "os_compute_api:limits:other_project"):
        project = request.query["tenant_id"]
    lim = await quota.limits(request.config_dict[ENGINE], project)
    used = await quota.compute_usage(request.config_dict[ROUTER], ctx, project)
    absolute = {
        "maxImageMeta": lim["metadata_items"], "maxPersonality": lim["injected_files"],
        "maxPersonalitySize": lim["injected_file_content_bytes"],
        "maxSecurityGroupRules": lim["security_group_rules"], "maxSecurityGroups": lim["security_groups"],
        "maxServerMeta": lim["metadata_items"], "maxTotalCores": lim["cores"],
        "maxTotalFloatingIps": lim["floating_ips"], "maxTotalInstances": lim["instances"],
        "maxTotalKeypairs": lim["key_pairs"], "maxTotalRAMSize": lim["ram"],
        "maxServerGroups": lim["server_groups"], "maxServerGroupMembers": lim["server_group_members"],
        "totalCoresUsed": used["cores"], "totalInstancesUsed": used["instances"], "totalRAMUsed": used["ram"],
        "totalSecurityGroupsUsed": 0, "totalFloatingIpsUsed": 0,
        "totalServerGroupsUsed": await server_groups.group_count(request.config_dict[ENGINE], project),
    }
    version = version_of(request)
    gone = (["maxSecurityGroupRules", "maxSecurityGroups", "maxTotalFloatingIps", "totalSecurityGroupsUsed",
             "totalFloatingIpsUsed"] if version >= (2, 36) else []) + \
        (["maxImageMeta"] if version >= (2, 39) else []) + \
        (["maxPersonality", "maxPersonalitySize"] if version >= (2, 57) else [])
    for key in gone:
        del absolute[key]
    return web.json_response({"limits": {"rate": [], "absolute": absolute}})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/limits", limits)
    app.router.add_get("/v2.1/os-quota-sets/{project_id}", show)
    app.router.add_put("/v2.1/os-quota-sets/{project_id}", update)
    app.router.add_delete("/v2.1/os-quota-sets/{project_id}", reset)
    app.router.add_get("/v2.1/os-quota-sets/{project_id}/detail", detail)
    app.router.add_get("/v2.1/os-quota-sets/{project_id}/defaults", defaults)
