"""GET /compute/v2.1/os-availability-zone[/detail]: Nova's availability zones as Cellcloud has them.

Every site and every cell of cluster.yaml is a zone (a boot's availability_zone names either:
api/cell_choice.py), listed sites first, in the file's order. A zone is available while one of its
cells' routers answers. The detail (admins only, 403 otherwise, as Nova) names each compute host under
the zones it belongs to, `nova-compute` available while its cell's conductor sees it alive (the hosts'
liveness its heartbeat carries: cells/rpc/liveness.py); a member's list carries no hosts (null). Hosts are
always `active` here (os-services shows a disabled one). An aggregate's `availability_zone`
(api/compute/aggregates.py) is a zone too, listed after them: its hosts are listed under it and no longer
under their site and cell; it is available while one of its hosts' cells answers.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.cell_router import CellRouter
from api.compute import aggregates
from api.http import authorize, context
from api.keys import CLUSTER, ENGINE, ROUTER
from cells.config import CellSpec, ClusterConfig
from cells.rpc.liveness import ALIVE


def zones(cluster: ClusterConfig) -> dict[str, list[CellSpec]]:
    """zone name -> its cells: each site, then each cell (a name used twice is one zone)."""
    out: dict[str, list[CellSpec]] = {}
    for name, cell in [(c.site, c) for c in cluster.cells] + [(c.name, c) for c in cluster.cells]:
        if name and cell not in out.setdefault(name, []):
            out[name].append(cell)
    return out


def host_states(router: CellRouter, cell: CellSpec) -> dict[str, str] | None:
    """host -> alive | suspect | dead | fenced, as the cell's conductors publish them (empty when unseen);
    None for a nested cell, whose conductors only the routers above it see."""
    if cell.parent is not None:
        return None
    try:
        members = router.cell(cell.path).view.members("conductor")
    except Exception:  # noqa: BLE001 - a cell this API process cannot see answers nothing
        return {}
    states: dict[str, str] = {}
    for member in members:
        published = member.meta.get("hosts")
        if isinstance(published, dict):
            states.update({str(h): str(s) for h, s in published.items()})
    return states


def _reachable(router: CellRouter, cell: CellSpec) -> bool:
    try:
        return router.cell(cell.path).reachable()
    except Exception:  # noqa: BLE001 - not routable from here: not available
        return False


def _hosts(router: CellRouter, cluster: ClusterConfig, cells: list[CellSpec],
           only: set[str] | None, excluded: set[str]) -> dict[str, Any]:
    hosts: dict[str, Any] = {}
    for cell in cells:
        # a top cell's directory is this process's own view; a nested cell's conductors are seen only by the
        # routers above it: its hosts are as available as the cell is reachable
        states = host_states(router, cell)
        reachable = _reachable(router, cell)
        for spec in cluster.services:
            if spec.kind != "compute" or spec.cell != cell.path or spec.host in excluded \
                    or (only is not None and spec.host not in only):
                continue
            up = states.get(spec.host) == ALIVE if states is not None else reachable
            hosts[spec.host] = {"nova-compute": {"available": up, "active": True, "updated_at": None}}
    return hosts


async def _info(request: web.Request, detail: bool) -> list[dict[str, Any]]:
    router, cluster = request.config_dict[ROUTER], request.config_dict[CLUSTER]
    host_zones = await aggregates.host_zones(request.config_dict[ENGINE])
    zoned = set(host_zones)
    out = [{"zoneName": name, "zoneState": {"available": any(_reachable(router, c) for c in cells)},
            "hosts": _hosts(router, cluster, cells, None, zoned) if detail else None}
           for name, cells in zones(cluster).items()]
    cell_of = {s.host: s.cell for s in cluster.services if s.kind == "compute"}
    for zone in sorted(set(host_zones.values())):
        members = {h for h, z in host_zones.items() if z == zone}
        cells = [c for c in cluster.cells if c.path in {cell_of.get(h) for h in members}]
        out.append({"zoneName": zone, "zoneState": {"available": any(_reachable(router, c) for c in cells)},
                    "hosts": _hosts(router, cluster, cells, members, set()) if detail else None})
    return out


async def index(request: web.Request) -> web.Response:
    context(request)
    return web.json_response({"availabilityZoneInfo": await _info(request, detail=False)})


async def detail(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-availability-zone:detail")
    return web.json_response({"availabilityZoneInfo": await _info(request, detail=True)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-availability-zone", index)
    app.router.add_get("/v2.1/os-availability-zone/detail", detail)
