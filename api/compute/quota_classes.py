"""/compute/v2.1/os-quota-class-sets/{id}: Nova's quota classes (admins only, 403 otherwise).

    GET /os-quota-class-sets/{id}     {"quota_class_set": {"id": id, <resource>: limit, ...}}
    PUT /os-quota-class-sets/{id}     {"quota_class_set": {<resource>: limit, ...}}: the class after, without id

As Nova, only the class named "default" means anything: its limits are the defaults of every project without
a limit of its own (api/quota.py limits_of, and os-quota-sets/{p}/defaults). Another class is stored and
shown, and limits nobody. Microversions as Nova's: up to 2.49 the network resources (fixed and floating IPs,
security groups and rules) and no server group ones; 2.50 the other way round; 2.57 drops injected files.
"""
from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from api import quota
from api.compute.microversions import Microversion, version_of
from api.compute.quotas import QUOTA_SET_RESOURCES, check_limit
from api.http import authorize, json_body
from api.keys import ENGINE
from api.validation import validate

_NETWORK = ("fixed_ips", "floating_ips", "security_group_rules", "security_groups")  # gone from 2.50
_SERVER_GROUPS = ("server_groups", "server_group_members")  # shown from 2.50
_INJECTED = ("injected_file_content_bytes", "injected_file_path_bytes", "injected_files")  # gone from 2.57
_LIMIT_VALUE = {"type": ["integer", "string"], "pattern": "^-?[0-9]+$"}


def resources_at(version: Microversion) -> tuple[str, ...]:
    """The resources of a quota class set at `version`."""
    gone = (_NETWORK if version >= (2, 50) else _SERVER_GROUPS) + (_INJECTED if version >= (2, 57) else ())
    return tuple(r for r in QUOTA_SET_RESOURCES if r not in gone)


@functools.cache
def update_schema(version: Microversion) -> dict[str, Any]:
    return {"type": "object",
            "properties": {"quota_class_set": {"type": "object",
                                               "properties": {r: _LIMIT_VALUE for r in resources_at(version)},
                                               "additionalProperties": False}},
            "required": ["quota_class_set"], "additionalProperties": False}


async def show(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-quota-class-sets:show")
    name = quota.checked_class_name(request.match_info["class_name"])
    limits = await quota.class_limits(request.config_dict[ENGINE], name)
    return web.json_response({"quota_class_set": {"id": name, **{r: limits[r]
                                                                for r in resources_at(version_of(request))}}})


async def update(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-quota-class-sets:update")
    name = quota.checked_class_name(request.match_info["class_name"])
    version = version_of(request)
    body = await json_body(request)
    validate(update_schema(version), body)
    values = {resource: check_limit(resource, raw) for resource, raw in body["quota_class_set"].items()}
    engine = request.config_dict[ENGINE]
    await quota.set_class_limits(engine, name, values)
    limits = await quota.class_limits(engine, name)
    return web.json_response({"quota_class_set": {r: limits[r] for r in resources_at(version)}})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-quota-class-sets/{class_name}", show)
    app.router.add_put("/v2.1/os-quota-class-sets/{class_name}", update)
