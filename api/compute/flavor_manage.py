"""Flavor administration (Nova's os-flavor-manage, os-flavor-extra-specs and the
os-flavor-access list) at microversion 2.1, (its list and changes: api/compute/flavor_access.py) and 2.55's descriptions (create, PUT /flavors/{id}).

Reading extra specs is open to whoever may see the flavor; creating, deleting
and changing flavors or their extra specs is admin-only, as Nova's default
policy. Instances keep a copy of their flavor (api/compute/flavors.py
flavor_dict), so deleting a flavor never touches a running server.
"""
from __future__ import annotations

import copy
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.compute.flavors import flavor_detail, get_flavor
from api.compute.microversions import version_of
from api.compute.schemas import BOOL, NAME
from api.db.schema import flavors
from api.http import authorize, context, json_body, parse_bool
from api.keys import ENGINE, public_url
from api.timeutil import utcnow
from api.validation import ValidationError, validate
from cells import errors

_DB_MAX_INT = 2147483647
_POSITIVE = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1}
_NON_NEGATIVE = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0, "minLength": 1}
FLAVOR_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {"flavor": {"type": "object", "properties": {
        "name": NAME,
        # Nova: a flavor id is free text of these characters, or absent/null for a generated uuid
        "id": {"type": ["string", "number", "null"], "minLength": 1, "maxLength": 255,
               "pattern": r"^(?! )[a-zA-Z0-9. _-]+(?<! )$"},
        "ram": _POSITIVE, "vcpus": _POSITIVE, "disk": _NON_NEGATIVE,
        "OS-FLV-EXT-DATA:ephemeral": _NON_NEGATIVE, "swap": _NON_NEGATIVE,
        "rxtx_factor": {"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?$"},
        "os-flavor-access:is_public": BOOL,
    }, "required": ["name", "ram", "vcpus", "disk"], "additionalProperties": False}},
    "required": ["flavor"],
    "additionalProperties": False,
}
# 2.55: a description, at create and by PUT /flavors/{id} (the only thing a flavor update changes)
_DESCRIPTION = {"type": ["string", "null"], "minLength": 0, "maxLength": 65535,
                "pattern": r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"}
FLAVOR_CREATE_2_55: dict[str, Any] = copy.deepcopy(FLAVOR_CREATE)
FLAVOR_CREATE_2_55["properties"]["flavor"]["properties"]["description"] = _DESCRIPTION
FLAVOR_UPDATE: dict[str, Any] = {
    "type": "object",
    "properties": {"flavor": {"type": "object", "properties": {"description": _DESCRIPTION},
                              "required": ["description"], "additionalProperties": False}},
    "required": ["flavor"], "additionalProperties": False}
_SPEC_KEY = r"^[a-zA-Z0-9-_:. ]{1,255}$"
_SPEC_VALUE = {"type": ["string", "number", "boolean"], "minLength": 1, "maxLength": 255}
EXTRA_SPECS: dict[str, Any] = {
    "type": "object",
    "properties": {"extra_specs": {"type": "object", "patternProperties": {_SPEC_KEY: _SPEC_VALUE},
                                   "additionalProperties": False}},
    "required": ["extra_specs"],
    "additionalProperties": False,
}
EXTRA_SPEC_ONE: dict[str, Any] = {"type": "object", "patternProperties": {_SPEC_KEY: _SPEC_VALUE},
                                  "additionalProperties": False}


class FlavorExists(errors.Conflict):
    code, msg = "flavor_exists", "Flavor with name {name} already exists."


class FlavorIdExists(errors.Conflict):
    code, msg = "flavor_id_exists", "Flavor with ID {flavor_id} already exists."


class FlavorExtraSpecsNotFound(errors.NotFound):
    code, msg = "flavor_extra_specs_not_found", "Flavor {flavor_id} has no extra specs with key {key}."


def _require_admin(request: web.Request, rule: str) -> None:
    authorize(request, f"os_compute_api:{rule}")


def _int_field(body: dict[str, Any], name: str, default: int = 0) -> int:
    value = body.get(name, default)
    number = int(value)  # the schema allowed only digits
    if number > _DB_MAX_INT:
        raise ValidationError(f"Invalid input for field/attribute {name}. Value: {value}. "
                              f"{value!r} is greater than the maximum of {_DB_MAX_INT}")
    return number


def _rxtx(body: dict[str, Any]) -> float:
    value = float(body.get("rxtx_factor", 1.0))
    if not 0 < value <= 3.40282e38:
        raise ValidationError(f"Invalid input for field/attribute rxtx_factor. Value: {body['rxtx_factor']}. "
                              "It must be greater than 0")
    return value


def _spec_value(value: Any) -> str:
    """Nova stores every extra spec value as text."""
    return value if isinstance(value, str) else str(value)


async def create(request: web.Request) -> web.Response:
    _require_admin(request, "os-flavor-manage:create")
    body = await json_body(request)
    validate(FLAVOR_CREATE_2_55 if version_of(request) >= (2, 55) else FLAVOR_CREATE, body)
    spec = body["flavor"]
    is_public = True
    if "os-flavor-access:is_public" in spec:
        is_public = bool(parse_bool(str(spec["os-flavor-access:is_public"])))
    flavor_id = str(spec["id"]) if spec.get("id") is not None else str(uuid.uuid4())
    row = {"id": flavor_id, "name": spec["name"], "ram": _int_field(spec, "ram"),
           "vcpus": _int_field(spec, "vcpus"), "disk": _int_field(spec, "disk"),
           "ephemeral": _int_field(spec, "OS-FLV-EXT-DATA:ephemeral"), "swap": _int_field(spec, "swap"),
           "rxtx_factor": _rxtx(spec), "is_public": is_public, "disabled": False, "extra_specs": {},
           "created_at": utcnow(), "description": spec.get("description")}
    async with request.config_dict[ENGINE].begin() as conn:
        clash = (await conn.execute(select(flavors.c.id, flavors.c.name).where(
            or_(flavors.c.id == flavor_id, flavors.c.name == spec["name"])))).first()
        if clash is not None and clash.id == flavor_id:
            raise FlavorIdExists(flavor_id=flavor_id)
        if clash is not None:
            raise FlavorExists(name=spec["name"])
        await conn.execute(insert(flavors).values(**row))
        created = (await conn.execute(select(flavors).where(flavors.c.id == flavor_id))).one()
    return web.json_response({"flavor": flavor_detail(public_url(request), created, version_of(request))})


async def update_flavor(request: web.Request) -> web.Response:
    """PUT /flavors/{id} (2.55): a new description; 404 before 2.55, as Nova (no such route)."""
    if version_of(request) < (2, 55):
        raise errors.NotFound("The resource could not be found.")
    _require_admin(request, "os-flavor-manage:update")
    body = await json_body(request)
    validate(FLAVOR_UPDATE, body)
    flavor_id = request.match_info["flavor_id"]
    async with request.config_dict[ENGINE].begin() as conn:
        result = await conn.execute(update(flavors).where(flavors.c.id == flavor_id)
                                    .values(description=body["flavor"]["description"]))
        if result.rowcount == 0:
            raise errors.FlavorNotFound(flavor_id=flavor_id)
        row = (await conn.execute(select(flavors).where(flavors.c.id == flavor_id))).one()
    return web.json_response({"flavor": flavor_detail(public_url(request), row, version_of(request))})


async def delete_flavor(request: web.Request) -> web.Response:
    _require_admin(request, "os-flavor-manage:delete")
    flavor_id = request.match_info["flavor_id"]
    async with request.config_dict[ENGINE].begin() as conn:
        gone = await conn.execute(delete(flavors).where(flavors.c.id == flavor_id))
        if gone.rowcount == 0:
            raise errors.FlavorNotFound(flavor_id=flavor_id)
    return web.Response(status=202)


async def list_specs(request: web.Request) -> web.Response:
    row = await get_flavor(request.config_dict[ENGINE], context(request), request.match_info["flavor_id"])
    return web.json_response({"extra_specs": dict(row.extra_specs or {})})


async def show_spec(request: web.Request) -> web.Response:
    row = await get_flavor(request.config_dict[ENGINE], context(request), request.match_info["flavor_id"])
    key = request.match_info["key"]
    specs = dict(row.extra_specs or {})
    if key not in specs:
        raise FlavorExtraSpecsNotFound(flavor_id=row.id, key=key)
    return web.json_response({key: specs[key]})


async def _locked_specs(conn: AsyncConnection, flavor_id: str) -> dict[str, str]:
    """The flavor's specs inside the write transaction (SQLite's writer lock: no lost update)."""
    found = (await conn.execute(select(flavors.c.extra_specs).where(flavors.c.id == flavor_id))).first()
    if found is None:
        raise errors.FlavorNotFound(flavor_id=flavor_id)
    return dict(found.extra_specs or {})


async def _merge_specs(request: web.Request, flavor_id: str, new: dict[str, Any]) -> dict[str, str]:
    async with request.config_dict[ENGINE].begin() as conn:
        await conn.execute(update(flavors).where(flavors.c.id == flavor_id).values(id=flavors.c.id))  # take the lock
        specs = await _locked_specs(conn, flavor_id)
        specs.update({k: _spec_value(v) for k, v in new.items()})
        await conn.execute(update(flavors).where(flavors.c.id == flavor_id).values(extra_specs=specs))
    return {k: _spec_value(v) for k, v in new.items()}


async def create_specs(request: web.Request) -> web.Response:
    _require_admin(request, "os-flavor-extra-specs:create")
    body = await json_body(request)
    validate(EXTRA_SPECS, body)
    merged = await _merge_specs(request, request.match_info["flavor_id"], body["extra_specs"])
    return web.json_response({"extra_specs": merged})


async def update_spec(request: web.Request) -> web.Response:
    _require_admin(request, "os-flavor-extra-specs:update")
    key = request.match_info["key"]
    body = await json_body(request)
    if isinstance(body, dict) and len(body) > 1:
        raise errors.Invalid("Request body contains too many items")
    validate(EXTRA_SPEC_ONE, body)
    if key not in body:
        raise errors.Invalid("Request body and URI mismatch")
    return web.json_response(await _merge_specs(request, request.match_info["flavor_id"], body))


async def delete_spec(request: web.Request) -> web.Response:
    _require_admin(request, "os-flavor-extra-specs:delete")
    flavor_id, key = request.match_info["flavor_id"], request.match_info["key"]
    async with request.config_dict[ENGINE].begin() as conn:
        await conn.execute(update(flavors).where(flavors.c.id == flavor_id).values(id=flavors.c.id))  # take the lock
        specs = await _locked_specs(conn, flavor_id)
        if specs.pop(key, None) is None:
            raise FlavorExtraSpecsNotFound(flavor_id=flavor_id, key=key)
        await conn.execute(update(flavors).where(flavors.c.id == flavor_id).values(extra_specs=specs))
    return web.Response(status=200)  # Nova's (Tempest's schema: 200)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2.1/flavors", create)
    app.router.add_put("/v2.1/flavors/{flavor_id}", update_flavor)
    app.router.add_delete("/v2.1/flavors/{flavor_id}", delete_flavor)
    app.router.add_get("/v2.1/flavors/{flavor_id}/os-extra_specs", list_specs)
    app.router.add_post("/v2.1/flavors/{flavor_id}/os-extra_specs", create_specs)
    app.router.add_get("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", show_spec)
    app.router.add_put("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", update_spec)
    app.router.add_delete("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}", delete_spec)
