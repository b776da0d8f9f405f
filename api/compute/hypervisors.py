"""/compute/v2.1/os-hypervisors: Nova's hypervisors (admins only: 403 otherwise), one per compute node of
every cell, asked of all cells at once (api/scatter.py; a silent cell's hosts are left out, logged).

    GET /os-hypervisors                {"hypervisors": [{id, hypervisor_hostname, state, status}]}
    GET /os-hypervisors/detail         each with its capacity and use (up to 2.87: 2.88 dropped them)
    GET /os-hypervisors/{id}           one
    GET /os-hypervisors/statistics     the sums (gone from 2.88, as Nova: 404)
    GET /os-hypervisors/{id}/uptime    its uptime (up to 2.87; from 2.88 in the hypervisor itself)
    GET /os-hypervisors/{pattern}/servers   the hypervisors whose host name contains the pattern, with
                                       their servers (up to 2.52; from 2.53 ?with_servers=true on the
                                       list, detail and show, and ?hypervisor_hostname_pattern=)

`state` is up while the host's cell sees it alive (cells/rpc/liveness.py); `status` is disabled while its
compute service is (os-services). The id is a UUID from 2.53 and an integer before it, both
stable for a host of a cell.
"""
from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from api.compute.microversions import Microversion, version_of
from api.http import authorize, parse_bool
from api.keys import ROUTER
from api.scatter import answered, scatter
from cells import errors
from cells.context import RequestContext
from cells.objects.records import InstanceRecord
from cells.rpc.liveness import ALIVE
from cells.rpcapi.conductor import ConductorAPI

UUID_VERSION, NO_USAGE_VERSION = (2, 53), (2, 88)
SERVERS_ALWAYS_VERSION = (2, 75)  # with_servers: an empty "servers" list too, not none
CPU_INFO_OBJECT_VERSION = (2, 28)  # cpu_info is a JSON string before, an object from 2.28 on
_NAMESPACE = uuidlib.UUID("6f1f5a7e-3c2b-4b8e-9a51-2d1c0e7c4b10")  # Cellcloud's hypervisor ids
USAGE_KEYS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used", "running_vms")


class NotImplementedHere(errors.CellcloudError):
    """What Nova's driver does not implement either: 501, as Nova's."""
    code, http_status, msg = "not_implemented", 501, "Virt driver does not implement {what}."


def hypervisor_id(cell_path: str, host: str, version: tuple[int, int]) -> str | int:
    ident = uuidlib.uuid5(_NAMESPACE, f"{cell_path}/{host}")
    return str(ident) if version >= UUID_VERSION else ident.int % (2 ** 31 - 1) + 1


async def compute_nodes(request: web.Request, ctx: RequestContext) -> list[tuple[str, dict[str, Any]]]:
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
        view["uptime"] = uptime(node)
    return view


def uptime(node: dict[str, Any], now: float | None = None) -> str | None:
    """The host's uptime in the words of `uptime` (Nova's libvirt driver runs it), from when the host
    said it booted; None when it did not say (a compute of an older release). No load average: the API
    has none it could vouch for."""
    booted_at = node.get("booted_at")
    if not isinstance(booted_at, int):
        return None
    now = time.time() if now is None else now
    minutes = max(0, int(now) - booted_at) // 60
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    clock = time.strftime("%H:%M:%S", time.gmtime(now))
    return f" {clock} up {days} day{'' if days == 1 else 's'}, {hours:2d}:{mins:02d}"


async def _servers(request: web.Request, ctx: RequestContext,
                   nodes: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """(cell path, host) -> the live servers on that host ({name, uuid}), asked of the cells concerned at once."""
    router = request.config_dict[ROUTER]
    hosts: dict[str, list[str]] = {}
    for path, node in nodes:
        hosts.setdefault(path, []).append(node["host"])

    async def one(cell: Any, bounded: RequestContext) -> list[InstanceRecord]:
        return await ConductorAPI(cell).instance_list(bounded, {"host": hosts[cell.path], "deleted": False},
                                                      ["host", "uuid"], ["asc", "asc"], None, None)
    cells = [router.cells[p] for p in hosts if p in router.cells]
    out: dict[tuple[str, str], list[dict[str, str]]] = {}
    for cell, records in answered(await scatter(cells, ctx, router.bound, one), "the servers of hypervisors"):
        for rec in records:
            out.setdefault((cell.path, str(rec["host"])), []).append({"name": rec["name"], "uuid": rec["uuid"]})
    return out


def _with_servers(request: web.Request) -> bool:
    """2.53's ?with_servers (a boolean; 400 otherwise); before 2.53 the query is ignored, as Nova's."""
    if version_of(request) < UUID_VERSION or "with_servers" not in request.query:
        return False
    value = parse_bool(request.query["with_servers"])
    if value is None:
        raise errors.Invalid(f"Invalid input for query parameters with_servers. Value: "
                             f"{request.query['with_servers']}.")
    return value


async def _views(request: web.Request, ctx: RequestContext, nodes: list[tuple[str, dict[str, Any]]],
                 view: Callable[[str, dict[str, Any], Microversion], dict[str, Any]],
                 servers: bool) -> list[dict[str, Any]]:
    version = version_of(request)
    found = await _servers(request, ctx, nodes) if servers else {}
    out = []
    for path, node in nodes:
        one = view(path, node, version)
        hosted = found.get((path, node["host"]), [])
        if servers and (hosted or version >= SERVERS_ALWAYS_VERSION):
            one["servers"] = hosted
        out.append(one)
    return out


def _matching(request: web.Request, nodes: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """2.53's ?hypervisor_hostname_pattern: the hosts whose name contains it; none is a 404, as Nova's."""
    pattern = request.query.get("hypervisor_hostname_pattern")
    if pattern is None or version_of(request) < UUID_VERSION:
        return nodes
    found = [(p, n) for p, n in nodes if pattern in n["host"]]
    if not found:
        raise errors.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    return found


async def index(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:list")
    nodes = _matching(request, await compute_nodes(request, ctx))
    return web.json_response({"hypervisors": await _views(request, ctx, nodes, _brief, _with_servers(request))})


async def detail(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:list-detail")
    nodes = _matching(request, await compute_nodes(request, ctx))
    return web.json_response({"hypervisors": await _views(request, ctx, nodes, _detail, _with_servers(request))})


async def _one(request: web.Request, ctx: RequestContext) -> tuple[str, dict[str, Any]]:
    version, wanted = version_of(request), request.match_info["hypervisor_id"]
    for path, node in await compute_nodes(request, ctx):
        if str(hypervisor_id(path, node["host"], version)) == wanted:
            return path, node
    raise errors.NotFound(f"Hypervisor with ID '{wanted}' could not be found.")


async def show(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:show")
    servers = _with_servers(request)
    found = await _views(request, ctx, [await _one(request, ctx)], _detail, servers)
    return web.json_response({"hypervisor": found[0]})


async def show_uptime(request: web.Request) -> web.Response:
    """Up to 2.87 (2.88 put the uptime in the hypervisor itself); 501 for a host that never said when it
    booted, as Nova's for a driver without uptime."""
    ctx = authorize(request, "os_compute_api:os-hypervisors:uptime")
    version = version_of(request)
    if version >= NO_USAGE_VERSION:
        raise errors.NotFound("The resource could not be found.")
    path, node = await _one(request, ctx)
    text = uptime(node)
    if text is None:
        raise NotImplementedHere(what="uptime function")
    return web.json_response({"hypervisor": {**_brief(path, node, version), "uptime": text}})


async def servers(request: web.Request) -> web.Response:
    """Up to 2.52: the hypervisors whose host name contains the pattern, each with its servers when it has
    some (Nova's pre-2.53 view leaves the key out); none is a 404."""
    ctx = authorize(request, "os_compute_api:os-hypervisors:servers")
    version, pattern = version_of(request), request.match_info["pattern"]
    if version >= UUID_VERSION:
        raise errors.NotFound("The resource could not be found.")
    nodes = [(p, n) for p, n in await compute_nodes(request, ctx) if pattern in n["host"]]
    if not nodes:
        raise errors.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    return web.json_response({"hypervisors": await _views(request, ctx, nodes, _brief, True)})


async def statistics(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-hypervisors:statistics")
    if version_of(request) >= NO_USAGE_VERSION:
        raise errors.NotFound("The resource could not be found.")
    nodes = [_detail(p, n, (2, 1)) for p, n in await compute_nodes(request, ctx)]
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
    found = [_brief(p, n, version) for p, n in await compute_nodes(request, ctx) if pattern in n["host"]]
    if not found:
        raise errors.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    return web.json_response({"hypervisors": found})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-hypervisors", index)
    app.router.add_get("/v2.1/os-hypervisors/detail", detail)
    app.router.add_get("/v2.1/os-hypervisors/statistics", statistics)
    app.router.add_get("/v2.1/os-hypervisors/{hypervisor_id}", show)
    app.router.add_get("/v2.1/os-hypervisors/{pattern}/search", search)
    app.router.add_get("/v2.1/os-hypervisors/{hypervisor_id}/uptime", show_uptime)
    app.router.add_get("/v2.1/os-hypervisors/{pattern}/servers", servers)
