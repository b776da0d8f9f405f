"""/compute/v2.1/os-hosts: Nova's deprecated hosts API, up to 2.42 (from 2.43 a 404, as Nova); admins only.

    GET /os-hosts[?zone=Z]              every service's host: {host_name, service, zone} (os-services' view)
    GET /os-hosts/{host}                a compute host's resources: (total), (used_now), (used_max) and each
                                        project's use of it
    PUT /os-hosts/{host}                {"status": "enable"|"disable"}: its compute service enabled or disabled
                                        (as os-services does); "maintenance_mode": 501, as Nova's libvirt driver
    GET /os-hosts/{host}/startup|shutdown|reboot   501: no host power management (as Nova's libvirt driver)

An unknown host is a 404 before anything else; a request that asks for what is not served changes nothing.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import compute_services
from api.compute.hypervisors import NotImplementedHere, compute_nodes
from api.compute.microversions import version_of
from api.http import authorize, json_body
from api.keys import ROUTER
from api.scatter import answered, scatter
from api.validation import validate
from cells import errors
from cells.config import ServiceSpec
from cells.context import RequestContext
from cells.objects.records import InstanceRecord
from cells.rpcapi.conductor import ConductorAPI

REMOVED_VERSION = (2, 43)
_SWITCH = {"type": "string", "enum": ["enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE"]}
UPDATE = {"type": "object", "properties": {"status": _SWITCH, "maintenance_mode": _SWITCH},
          "additionalProperties": False}  # and one of the two at least (Nova's anyOf): update() checks
SERVICE_TOPICS = {"nova-compute": "compute", "nova-conductor": "conductor", "nova-scheduler": "scheduler"}


class ComputeHostNotFound(errors.NotFound):
    code, msg = "compute_host_not_found", "Compute host {host} could not be found."


def _check_version(request: web.Request) -> None:
    if version_of(request) >= REMOVED_VERSION:
        raise errors.NotFound("The resource could not be found.")


async def index(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hosts:list")
    _check_version(request)
    zone = request.query.get("zone")
    hosts = [{"host_name": view["host"], "service": SERVICE_TOPICS[view["binary"]], "zone": view["zone"]}
             for _, view in await compute_services.services(request, ctx)]
    if zone:  # a blank zone lists every host, as Nova's
        hosts = [h for h in hosts if h["zone"] == zone]
    return web.json_response({"hosts": hosts})


async def _compute_host(request: web.Request, ctx: RequestContext) -> ServiceSpec:
    """The compute service of the path's host; 404 for a host without one."""
    host = request.match_info["host_name"]
    for spec, _ in await compute_services.services(request, ctx):
        if spec.kind == "compute" and spec.host == host:
            return spec
    raise ComputeHostNotFound(host=host)


async def _servers_on(request: web.Request, ctx: RequestContext, spec: ServiceSpec) -> list[InstanceRecord]:
    router = request.config_dict[ROUTER]

    async def one(cell: Any, bounded: RequestContext) -> list[InstanceRecord]:
        return await ConductorAPI(cell).instance_list(bounded, {"host": spec.host, "deleted": False}, ["uuid"],
                                                      ["asc"], None, None)
    cells = [router.cells[spec.cell]] if spec.cell in router.cells else []
    return [r for _, records in answered(await scatter(cells, ctx, router.bound, one), "a host's servers")
            for r in records]


def _resource(host: str, project: str, cpu: int, memory_mb: int, disk_gb: int) -> dict[str, Any]:
    return {"resource": {"host": host, "project": project, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb}}


async def show(request: web.Request) -> web.Response:
    """Nova's view: the host's capacity, what its claims use now, what its servers' flavors add up to, and
    the same per project, in project order."""
    ctx = authorize(request, "os_compute_api:os-hosts:show")
    _check_version(request)
    spec = await _compute_host(request, ctx)
    nodes = [n for path, n in await compute_nodes(request, ctx) if path == spec.cell and n["host"] == spec.host]
    if not nodes:  # its service is listed, its compute node never reported: nothing to show
        raise ComputeHostNotFound(host=spec.host)
    node, host = nodes[0], spec.host
    per_project: dict[str, list[int]] = {}
    for record in await _servers_on(request, ctx, spec):
        flavor = record.get("flavor") or {}
        use = per_project.setdefault(str(record.get("project_id")), [0, 0, 0])
        use[0] += int(flavor.get("vcpus") or 0)
        use[1] += int(flavor.get("ram") or 0)
        use[2] += int(flavor.get("disk") or 0) + int(flavor.get("ephemeral") or 0)
    most = [sum(u[i] for u in per_project.values()) for i in range(3)]
    resources = [_resource(host, "(total)", int(node.get("vcpus") or 0), int(node.get("memory_mb") or 0),
                           int(node.get("local_gb") or 0)),
                 _resource(host, "(used_now)", int(node.get("vcpus_used") or 0),
                           int(node.get("memory_mb_used") or 0), int(node.get("local_gb_used") or 0)),
                 _resource(host, "(used_max)", *most)]
    resources += [_resource(host, project, *use) for project, use in sorted(per_project.items())]
    return web.json_response({"host": resources})


async def update(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hosts:update")
    _check_version(request)
    body = await json_body(request)
    validate(UPDATE, body)
    if "status" not in body and "maintenance_mode" not in body:
        raise errors.Invalid("'status' or 'maintenance_mode' is required.")
    spec = await _compute_host(request, ctx)
    if "maintenance_mode" in body:  # refused before the status changes: nothing half-made
        raise NotImplementedHere(what="host maintenance mode")
    enabled = str(body["status"]).lower() == "enable"
    await request.config_dict[ROUTER].conductor(spec.cell or "").compute_service_update(
        ctx, spec.host, {"disabled": not enabled, "disabled_reason": None})
    return web.json_response({"host": spec.host, "status": "enabled" if enabled else "disabled"})


def _power_action(rule: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        ctx = authorize(request, f"os_compute_api:os-hosts:{rule}")
        _check_version(request)
        await _compute_host(request, ctx)
        raise NotImplementedHere(what="host power management")
    return handler


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-hosts", index)
    app.router.add_get("/v2.1/os-hosts/{host_name}", show)
    app.router.add_put("/v2.1/os-hosts/{host_name}", update)
    for action, rule in (("startup", "start"), ("shutdown", "shutdown"), ("reboot", "reboot")):
        app.router.add_get(f"/v2.1/os-hosts/{{host_name}}/{action}", _power_action(rule))
