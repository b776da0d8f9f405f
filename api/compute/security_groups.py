"""Security groups of servers, Nova 2.1 over the cells' network controllers (Neutron's model).

    POST /servers/{id}/action {"addSecurityGroup": {"name": G}}     202: G joins every port of the server
    POST /servers/{id}/action {"removeSecurityGroup": {"name": G}}  202: G leaves them

G is a group name or id of the server's project. As Nova with Neutron: an unknown
group, a server without ports, or (remove) a group the server does not have is a
404; (add) a group every port has already is a 400; two groups of that name are
a 409. The change and its instance action are one unit of work in the server's
cell (cells/network/instance_ports.py); that cell's controller then has the hosts
concerned re-sync their rules.

`add_group_names` fills the records' `security_groups` (names) for the server
views, with one call per cell (two reads for a network controller of an older
release: the servers' ports, then the groups they name).
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from api.cell_router import Cell, Listed, is_down
from api.scatter import answered, scatter
from cells import errors
from cells.config import ClusterConfig
from cells.context import RequestContext
from cells.objects.records import ShownInstance, shown
from cells.rpcapi.network import NetworkAPI

if TYPE_CHECKING:
    from api.compute.service import ComputeContext  # which imports this module

ACTIONS = ("addSecurityGroup", "removeSecurityGroup")
INSTANCE_OWNER = "compute:nova"  # the device_owner of a server's ports


def group_name(spec: Any) -> str:
    """The body's group, with Nova's messages for what is missing or empty."""
    if not isinstance(spec, dict):
        raise errors.Invalid("Missing parameter dict")
    if "name" not in spec:
        raise errors.Invalid("Security group not specified")
    name = spec["name"]
    if not isinstance(name, str) or not name.strip():
        raise errors.Invalid("Security group name cannot be empty")
    if len(name) > 255:
        raise errors.Invalid("Security group name must be at most 255 characters")
    return name


def cell_has_network(cluster: ClusterConfig, cell_path: str) -> bool:
    """Whether the cell runs a network controller (cluster.yaml): without one its servers have no ports."""
    return any(s.kind == "network" and s.cell == cell_path for s in cluster.services)


async def add_group_names(cc: ComputeContext, ctx: RequestContext, records: Sequence[Listed]) -> None:
    """Set each record's "security_groups" (the names of its ports' groups, each once, in port order).
    A cell that does not answer in time leaves its servers without them (logged), as servers without ports."""
    by_cell: dict[str, list[ShownInstance]] = defaultdict(list)
    for rec in records:
        if not is_down(rec) and rec["cell"] and cell_has_network(cc.cluster, rec["cell"]):
            by_cell[rec["cell"]].append(shown(rec))
    if not by_cell:
        return
    router = cc.router

    async def one(cell: Cell, bounded: RequestContext) -> dict[str, list[str]]:
        return await _names(NetworkAPI(cell), bounded, [r["uuid"] for r in by_cell[cell.path]])
    cells = [router.cells[path] for path in by_cell if path in router.cells]  # no route: nothing to ask
    for cell, names in answered(await scatter(cells, ctx, router.bound, one), "the security groups of server views"):
        for rec in by_cell[cell.path]:
            rec["security_groups"] = names.get(rec["uuid"], [])


async def _names(api: NetworkAPI, ctx: RequestContext, uuids: list[str]) -> dict[str, list[str]]:
    try:  # one call (RPC 1.3); every server show asks, so its cost is every poll's
        return await api.security_group_names(ctx, uuids)
    except errors.UnsupportedVersion:  # a network controller of an older release: its ports, then its groups
        return await _names_from_resources(api, ctx, uuids)


async def _names_from_resources(api: NetworkAPI, ctx: RequestContext, uuids: list[str]) -> dict[str, list[str]]:
    ports = await api.index(ctx, "port", {"device_id": uuids, "device_owner": INSTANCE_OWNER})
    ids = sorted({g for p in ports for g in p.get("security_groups") or []})
    found = await asyncio.gather(*(api.show(ctx, "security_group", g) for g in ids), return_exceptions=True)
    name_of = {g: str(r.get("name") or g) for g, r in zip(ids, found) if isinstance(r, dict)}
    out: dict[str, list[str]] = {}
    for p in ports:  # the port list comes oldest first: the server's first NIC's groups first
        names = out.setdefault(str(p["device_id"]), [])
        names.extend(n for n in (name_of.get(g) for g in p.get("security_groups") or []) if n and n not in names)
    return out
