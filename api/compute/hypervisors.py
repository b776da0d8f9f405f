"""/compute/v2.1/os-hypervisors: Nova's hypervisors (admins only: 403 otherwise), one per compute node of
every cell, asked of all cells at once (api/scatter.py; a silent cell's hosts are left out, logged).

    GET /os-hypervisors                {"hypervisors": [{id, hypervisor_hostname, state, status}]}
    GET /os-hypervisors/detail         each with its capacity and use (up to 2.87: 2.88 dropped them)
    GET /os-hypervisors/{id}           one
    GET /os-hypervisors/statistics     the sums (gone from 2.88, as Nova: 404)

`state` is up while the host's cell sees it alive (cells/rpc/liveness.py); `status` is disabled while its
compute service is (os-services). The id is a UUID from 2.53 and an integer before it, both
stable for a host of a cell.
"""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

from aiohttp import web

from api.compute.microversions import version_of
from api.http import authorize
from api.keys import ROUTER
from api.scatter import answered, scatter
from cells import errors
from cells.context import RequestContext
from cells.rpc.liveness import ALIVE
from cells.rpcapi.conductor import ConductorAPI

UUID_VERSION, NO_USAGE_VERSION = (2, 53), (2, 88)
CPU_INFO_OBJECT_VERSION = (2, 28)  # cpu_info is a JSON string before, an object from 2.28 on
_NAMESPACE = uuidlib.UUID("6f1f5a7e-3c2b-4b8e-9a51-2d1c0e7c4b10")  # Cellcloud's hypervisor ids
USAGE_KEYS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used", "running_vms")


def hypervisor_id(cell_path: str, host: str, version: tuple[int, int]) -> str | int:
    ident = uuidlib.uuid5(_NAMESPACE, f"{cell_path}/{host}")
    return str(ident) if version >= UUID_VERSION else ident.int % (2 ** 31 - 1) + 1


async def _nodes(request: web.Request, ctx: RequestContext) -> list[tuple[str, dict[str, Any]]]:
    router = request.config_dict[ROUTER]

    async def one(cell: Any, bounded: RequestContext) -> list[dict[str, Any]]:
        return await ConductorAPI(cell).hypervisor_list(bounded)
    found = answered(await scatter(list(router.cells.values()), ctx, router.bound, one), "the hypervisors")
    return [(cell.path, node) for cell, nodes in found for node in nodes]


def _brief(path: str, node: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    return {"id": hypervisor_id(path, node["host"], version), "hypervisor_hostname": node["host"],
            "state": "up" if node.get("state") == ALIVE else "down",
            "status": "disabled" if node.get("disabled") else "enabled"}


def _detail(path: str, node: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    view = {**_brief(path, node, version), "hypervisor_type": node.get("hypervisor_type") or "QEMU",
            "hypervisor_version": int(node.get("hypervisor_version") or 0), "host_ip": None,
            "service": {"host": node["host"], "id": hypervisor_id(path, node["host"], version),
                        "disabled_reason": node.get("disabled_reason")}}
    if version < NO_USAGE_VERSION:
        view.update({k: int(node.get(k) or 0) for k in USAGE_KEYS})
        view.update({"free_ram_mb": view["memory_mb"] - view["memory_mb_used"],
                     "free_disk_gb": view["local_gb"] - view["local_gb_used"], "current_workload": 0,
                     "disk_available_least": view["local_gb"] - view["local_gb_used"], "cpu_info": "{}" if version < CPU_INFO_OBJECT_VERSION else {}})
    else:
        view["uptime"] = None
    return view


async def index(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:list")
    version = version_of(request)
    return web.json_response({"hypervisors": [_brief(p, n, version) for p, n in await _nodes(request, ctx)]})


async def detail(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:list-detail")
    version = version_of(request)
    return web.json_response({"hypervisors": [_detail(p, n, version) for p, n in await _nodes(request, ctx)]})


async def show(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:show")
    version, wanted = version_of(request), request.match_info["hypervisor_id"]
    for path, node in await _nodes(request, ctx):
        if str(hypervisor_id(path, node["host"], version)) == wanted:
            return web.json_response({"hypervisor": _detail(path, node, version)})
    raise errors.NotFound(f"Hypervisor with ID '{wanted}' could not be found.")


async def statistics(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:statistics")
    if version_of(request) >= NO_USAGE_VERSION:
        raise errors.NotFound("The resource could not be found.")
    nodes = [_detail(p, n, (2, 1)) for p, n in await _nodes(request, ctx)]
    keys = (*USAGE_KEYS, "free_ram_mb", "free_disk_gb", "current_workload", "disk_available_least")
    stats = {k: sum(int(n[k]) for n in nodes) for k in keys}
    return web.json_response({"hypervisor_statistics": {"count": len(nodes), **stats}})


async def search(request: web.Request) -> web.Response:
    """Up to 2.52 (2.53 moved it to the list's hypervisor_hostname_pattern): the hypervisors whose host name
    contains the pattern; none is a 404, as Nova."""
    ctx = authorize(request, "os_compute_api:os-hypervisors:search")
    version, pattern = version_of(request), request.match_info["pattern"]
    if version >= UUID_VERSION:
        raise errors.NotFound("The resource could not be found.")
    found = [_brief(p, n, version) for p, n in await _nodes(request, ctx) if pattern in n["host"]]
    if not found:
        raise errors.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    return web.json_response({"hypervisors": found})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-hypervisors", index)
    app.router.add_get("/v2.1/os-hypervisors/detail", detail)
    app.router.add_get("/v2.1/os-hypervisors/statistics", statistics)
    app.router.add_get("/v2.1/os-hypervisors/{hypervisor_id}", show)
    app.router.add_get("/v2.1/os-hypervisors/{pattern}/search", search)
