"""What a server create asks of the network: Nova's `networks` ([{"uuid"}], [{"port"}],
with an optional fixed_ip) and `security_groups` ([{"name"}]), checked against the
cells before anything is written, so a bad reference is a 400 (409 for a port in
use) and leaves nothing half-made. The result travels in the request_spec; the
cell's conductor hands it to its network controller (cells/conductor/flows/network.py).
"""
from __future__ import annotations

from typing import Any

from api.cell_router import CellRouter
from api.http import is_uuid
from api.network.cells import find_cell, network_cells
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.network import NetworkAPI


async def resolve(router: CellRouter, ctx: RequestContext, nets: list[dict[str, Any]] | str | None,
                  names: list[str]) -> dict[str, Any]:
    """{"requested_networks": [...] | None, "security_groups": [names] | None} for the request_spec,
    from a boot's `networks` (Nova's) and security group names."""
    if nets == "none":  # 2.37: no network at all (the cell's conductor allocates none)
        return {"requested_networks": None, "security_groups": None, "networks": "none"}
    if isinstance(nets, str):  # 2.37's "auto": the project's network, made when it has none (the default)
        nets = None
    requested: list[dict[str, str]] | None = None
    if nets:
        requested = []
        for item in nets:
            if item.get("port"):
                port_id = str(item["port"])
                try:
                    _, port = await find_cell(router, ctx, "port", port_id)
                except errors.NotFound:
                    raise errors.Invalid(f"Port id {port_id} could not be found.") from None
                if port.get("device_id"):
                    raise errors.Conflict(f"Port {port_id} is still in use.")
                requested.append({"port": port_id})
                continue
            net_id = str(item.get("uuid") or "")
            if not is_uuid(net_id):
                raise errors.Invalid(f"Bad networks format: network uuid is not in proper format ({net_id})")
            try:
                await find_cell(router, ctx, "network", net_id)
            except errors.NotFound:
                raise errors.Invalid(f"Network {net_id} could not be found.") from None
            entry = {"uuid": net_id}
            if item.get("fixed_ip"):
                entry["fixed_ip"] = str(item["fixed_ip"])
            requested.append(entry)
    groups = None
    if names and names != ["default"]:
        await _groups_exist(router, ctx, names)
        groups = names
    return {"requested_networks": requested, "security_groups": groups}


async def _groups_exist(router: CellRouter, ctx: RequestContext, names: list[str]) -> None:
    known: set[str] = set()
    for cell in network_cells(router):
        for group in await NetworkAPI(cell).index(ctx, "security_group", {}):
            known.update((group["name"], group["id"]))
    for name in names:
        if name not in known:
            raise errors.Invalid(f"Security group {name} not found for project {ctx.project}.")
