"""Which cells serve the network API, and which one holds a network resource.

Shared by the Neutron handlers (api/network/routes.py, quotas.py) and the compute
code that checks what a boot names (api/network/boot_networks.py): they take the CellRouter,
not an HTTP request. A listing asks every cell at once within the router's bound
(api/scatter.py) and leaves out a cell that does not answer (logged); a look-up asks
the cells one after another until one holds the id.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from api.cell_router import Cell, CellRouter
from api.scatter import answered, scatter
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.network import TOPIC, NetworkAPI

T = TypeVar("T")


def network_cells(router: CellRouter) -> list[Cell]:
    """The cells with a live network controller (none seen yet, at start-up: the first cell, whose
    call then waits for a member)."""
    cells = list(router.cells.values())
    if not cells:
        raise errors.NoLiveMember(topic=TOPIC)
    live = [c for c in cells if c.view.members(TOPIC)]
    return live or cells[:1]


async def each_cell(router: CellRouter, ctx: RequestContext,
                    fn: Callable[[NetworkAPI, RequestContext], Awaitable[T]]) -> list[T]:
    """fn on every network cell at once; a cell that fails or does not answer in time is left out (logged)."""
    async def one(cell: Cell, bounded: RequestContext) -> T:
        return await fn(NetworkAPI(cell), bounded)
    results = await scatter(network_cells(router), ctx, router.bound, one)
    return [result for _, result in answered(results, "a network listing")]


async def find_cell(router: CellRouter, ctx: RequestContext, resource: str, id: str) -> tuple[NetworkAPI, Any]:
    """(the API of the cell holding `id`, its record); the resource's NotFound when no cell has it."""
    last: errors.CellcloudError | None = None
    for cell in network_cells(router):
        api = NetworkAPI(cell)
        try:
            return api, await api.show(ctx, resource, id)
        except errors.NotFound as exc:
            last = exc
    raise last or errors.NotFound()
