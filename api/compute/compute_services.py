"""/compute/v2.1/os-services: Nova's compute services, admins only (403).

    GET    /os-services                       list (filters host, binary); forced_down from 2.11
    PUT    /os-services/{action}              up to 2.52: enable, disable, disable-log-reason {host, binary[,
                                              disabled_reason]}; force-down {host, binary, forced_down} from 2.11
    PUT    /os-services/{service_id}          from 2.53: {status, disabled_reason, forced_down}
    DELETE /os-services/{service_id}          forget a compute service (204)

Each cell's conductor (nova-conductor) and scheduler (nova-scheduler), zone `internal`, up while its cell's
directory lists them; each compute host (nova-compute), zone its aggregate's availability zone or its site,
up while its cell's conductor sees it alive (cells/rpc/liveness.py) and it is not forced down. A compute
service's state lives in the cell DB of its cell (cells/db/hosts.py), asked of every cell at once and
written through the host's cell conductor (cells/conductor/flows/compute_services.py); the cell's scheduler
places nothing new on a disabled or forced-down host, and a forced-down host may be evacuated at once.
Only nova-compute services are updated or deleted (a conductor or scheduler is part of its cell in
cluster.yaml: 400, as Nova's 2.53 answer for other binaries). Ids are UUIDs from 2.53, integers before,
stable for a service of a cell.
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from typing import Any

from aiohttp import web

from api.compute import aggregates
from api.compute.availability_zones import host_states
from api.compute.microversions import version_of
from api.http import authorize, json_body
from api.keys import CLUSTER, ENGINE, ROUTER
from api.scatter import answered, scatter
from api.validation import validate
from cells import errors
from cells.config import ServiceSpec
from cells.context import RequestContext
from cells.rpc.liveness import ALIVE

LOG = logging.getLogger(__name__)
UUID_VERSION, FORCED_DOWN_VERSION = (2, 53), (2, 11)
BINARIES = {"conductor": "nova-conductor", "scheduler": "nova-scheduler", "compute": "nova-compute"}
COMPUTE = "nova-compute"
_NAMESPACE = uuidlib.UUID("0b9d3c4e-58f1-4c7a-9e2b-7a61d5f0c3a2")  # Cellcloud's service ids
_REASON = {"type": "string", "minLength": 1, "maxLength": 255}
_HOST_BINARY = {"host": {"type": "string", "minLength": 1, "maxLength": 255},
                "binary": {"type": "string", "minLength": 1, "maxLength": 255}}
UPDATE_OLD = {"type": "object", "properties": {**_HOST_BINARY, "disabled_reason": _REASON},
              "required": ["host", "binary"], "additionalProperties": False}
UPDATE_211 = {"type": "object", "properties": {**_HOST_BINARY, "disabled_reason": _REASON,
                                               "forced_down": {"type": "boolean"}},
              "required": ["host", "binary"], "additionalProperties": False}
UPDATE_253 = {"type": "object", "properties": {"status": {"type": "string", "enum": ["enabled", "disabled"]},
                                               "disabled_reason": _REASON, "forced_down": {"type": "boolean"}},
              "additionalProperties": False}


def _id(service_id: str, version: tuple[int, int]) -> str | int:
    ident = uuidlib.uuid5(_NAMESPACE, service_id)
    return str(ident) if version >= UUID_VERSION else ident.int % (2 ** 31 - 1) + 1


async def _marks(request: web.Request, ctx: RequestContext) -> dict[str, dict[str, dict[str, Any]]]:
    """cell path -> host -> its compute service's marks, from every cell that answers."""
    router = request.config_dict[ROUTER]

    async def one(cell: Any, bounded: RequestContext) -> dict[str, Any]:
        marks: dict[str, Any] = await cell.conductor.compute_service_list(bounded)
        return marks
    found = answered(await scatter(list(router.cells.values()), ctx, router.bound, one), "the compute services")
    return {cell.path: marks for cell, marks in found}


def _view(request: web.Request, spec: ServiceSpec, marks: dict[str, Any], zones: dict[str, str],
          version: tuple[int, int]) -> dict[str, Any]:
    router, cluster = request.config_dict[ROUTER], request.config_dict[CLUSTER]
    cell = cluster.cell(spec.cell or "")
    if spec.kind == "compute":
        states = host_states(router, cell)
        up = (states.get(spec.host) == ALIVE if states is not None else False) and not marks.get("forced_down")
        zone = zones.get(spec.host) or cell.site or cell.name
    else:
        try:
            view = router.cell(cell.path).view
            up = cell.parent is None and any(m.id == spec.id for m in view.members(spec.kind))
        except Exception:  # noqa: BLE001 - a cell this API process cannot see: down
            up = False
        zone = "internal"
    out: dict[str, Any] = {
        "id": _id(spec.id, version), "binary": BINARIES[spec.kind], "host": spec.host, "zone": zone,
        "status": "disabled" if marks.get("disabled") else "enabled", "state": "up" if up else "down",
        "updated_at": marks.get("updated_at"), "disabled_reason": marks.get("disabled_reason")}
    if version >= FORCED_DOWN_VERSION:
        out["forced_down"] = bool(marks.get("forced_down"))
    return out


def _specs(request: web.Request) -> list[ServiceSpec]:
    cluster = request.config_dict[CLUSTER]
    paths = {c.path for c in cluster.cells}
    return [s for s in cluster.services if s.kind in BINARIES and (s.cell or "") in paths]


async def services(request: web.Request, ctx: RequestContext) -> list[tuple[ServiceSpec, dict[str, Any]]]:
    """Every service with its view, a deleted compute service left out."""
    version, marks = version_of(request), await _marks(request, ctx)
    zones = await aggregates.host_zones(request.config_dict[ENGINE])
    out = []
    for spec in _specs(request):
        mark = marks.get(spec.cell or "", {}).get(spec.host, {}) if spec.kind == "compute" else {}
        if not mark.get("deleted"):
            out.append((spec, _view(request, spec, mark, zones, version)))
    return out


async def index(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-services:list")
    out = [view for _, view in await services(request, ctx)]
    for key in ("host", "binary"):
        if request.query.get(key):
            out = [s for s in out if s[key] == request.query[key]]
    return web.json_response({"services": out})


def _only_compute(spec: ServiceSpec, doing: str) -> None:
    if spec.kind != "compute":
        raise errors.Invalid(f"{doing} a {BINARIES[spec.kind]} service is not supported. "
                             "Only nova-compute services can be updated.")


async def _by_id(request: web.Request, ctx: RequestContext, wanted: str) -> tuple[ServiceSpec, dict[str, Any]]:
    if version_of(request) >= UUID_VERSION:
        try:
            uuidlib.UUID(wanted)
        except ValueError:
            raise errors.Invalid(f"Invalid uuid {wanted}") from None
    for spec, view in await services(request, ctx):
        if str(view["id"]) == wanted:
            return spec, view
    raise errors.NotFound(f"Service {wanted} not found.")


async def _apply(request: web.Request, ctx: RequestContext, spec: ServiceSpec, values: dict[str, Any]) -> None:
    await request.config_dict[ROUTER].conductor(spec.cell or "").compute_service_update(ctx, spec.host, values)


async def _update_action(request: web.Request, ctx: RequestContext, action: str) -> web.Response:
    """Up to 2.52: the action names what to do, the body names the service by host and binary."""
    version = version_of(request)
    actions = {"enable", "disable", "disable-log-reason"} | ({"force-down"} if version >= FORCED_DOWN_VERSION
                                                             else set())
    if action not in actions:
        raise errors.NotFound("Unknown action")
    body = await json_body(request)
    validate(UPDATE_211 if version >= FORCED_DOWN_VERSION else UPDATE_OLD, body)
    matches = [s for s in _specs(request) if s.host == body["host"] and BINARIES[s.kind] == body["binary"]]
    if not matches:
        raise errors.NotFound(f"Compute host {body['host']} could not be found.")
    spec = matches[0]
    _only_compute(spec, "Updating")
    service: dict[str, Any] = {"host": spec.host, "binary": COMPUTE}
    if action == "force-down":
        if "forced_down" not in body:
            raise errors.Invalid("Missing forced_down field")
        await _apply(request, ctx, spec, {"forced_down": body["forced_down"]})
        service["forced_down"] = body["forced_down"]
    elif action == "enable":
        await _apply(request, ctx, spec, {"disabled": False})
        service["status"] = "enabled"
    else:
        reason = body.get("disabled_reason")
        if action == "disable-log-reason" and reason is None:
            raise errors.Invalid("Missing disabled reason field")
        reason = reason if action == "disable-log-reason" else None
        await _apply(request, ctx, spec, {"disabled": True, "disabled_reason": reason})
        service.update({"status": "disabled", **({"disabled_reason": reason} if reason else {})})
    return web.json_response({"service": service})


async def update(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-services:update")
    wanted = request.match_info["service_id"]
    if version_of(request) < UUID_VERSION:
        return await _update_action(request, ctx, wanted)
    body = await json_body(request)
    validate(UPDATE_253, body)
    spec, _ = await _by_id(request, ctx, wanted)
    _only_compute(spec, "Updating")
    if "status" not in body and "forced_down" not in body:
        raise errors.Invalid("No updates were requested. Fields 'status' or 'forced_down' should be specified.")
    if "disabled_reason" in body and body.get("status") != "disabled":
        raise errors.Invalid("Specifying 'disabled_reason' with status other than 'disabled' is not supported.")
    values: dict[str, Any] = {}
    if "status" in body:
        values["disabled"] = body["status"] == "disabled"
        values["disabled_reason"] = body.get("disabled_reason")
    if "forced_down" in body:
        values["forced_down"] = body["forced_down"]
    await _apply(request, ctx, spec, values)
    for found, view in await services(request, ctx):
        if found.id == spec.id:
            return web.json_response({"service": view})
    raise errors.NotFound(f"Service {wanted} not found.")


async def delete(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-services:delete")
    spec, _ = await _by_id(request, ctx, request.match_info["service_id"])
    _only_compute(spec, "Deleting")
    await request.config_dict[ROUTER].conductor(spec.cell or "").compute_service_delete(ctx, spec.host)
    await aggregates.forget_host(request.config_dict[ENGINE], spec.host)  # Nova removes it from its aggregates
    LOG.warning("compute service of host %s deleted", spec.host)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-services", index)
    app.router.add_put("/v2.1/os-services/{service_id}", update)
    app.router.add_delete("/v2.1/os-services/{service_id}", delete)
