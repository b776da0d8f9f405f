"""The API cell's view of its child cells: route one, or scatter-gather to all.

Each child cell gets a `CellClient`: an RpcClient plus a DirectoryView of that
cell's router (me=None: the API only reads the table, it serves no topic),
refreshed in the background. A CellClient is a `cells.rpcapi.Caller`, so the
API talks to a cell through the same ConductorAPI stub every service uses.

Listings ask every cell at once with a short bound and merge the sorted
answers; a cell that does not answer in time is left out of the list (and
logged) rather than failing the whole request.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Sequence
from typing import Any

from cells import errors
from cells.config import CellSpec, ClusterConfig
from cells.context import RequestContext
from cells.rpc import wire
from cells.rpc.client import RpcClient
from cells.rpc.directory import DirectoryView
from cells.rpc.transport import CurveKeys
from cells.rpcapi.conductor import TOPIC as CONDUCTOR
from cells.rpcapi.conductor import ConductorAPI

LOG = logging.getLogger(__name__)
LIST_BOUND = 1.0  # seconds each cell has to answer a listing
PAGE = 1000


class CellClient:
    """One child cell, speaking the Caller protocol of cells/rpcapi."""

    def __init__(self, cell: CellSpec, interval: float, curve: CurveKeys | None = None,
                 router_key: bytes | None = None) -> None:
        self.cell = cell
        self.client = RpcClient(curve)
        self.view = DirectoryView(self.client, cell.router, me=None, interval=interval, directory_key=router_key)
        self.conductor = ConductorAPI(self)

    @property
    def path(self) -> str:
        return self.cell.path

    async def call(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        return await self.client.call(self.view, topic, method, args, ctx, timeout)

    async def cast(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None:
        await self.client.cast(self.view, topic, method, args, ctx, key)

    def has_conductor(self) -> bool:
        return bool(self.view.members(CONDUCTOR))

    async def run(self) -> None:
        await self.view.run()

    def close(self) -> None:
        self.client.close()


class CellRouter:
    def __init__(self, cells: Sequence[CellClient]) -> None:
        self.cells: dict[str, CellClient] = {c.path: c for c in cells}
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_cluster(cls, cluster: ClusterConfig, curve: CurveKeys | None = None) -> CellRouter:
        """A client per child cell of the API cell (cells whose parent is the top).
        `curve`: this process's keys when the cluster runs CURVE (cells.service.process_keys)."""
        clients = []
        for cell in cluster.cells:
            if cell.parent is None:
                key = cluster.router_key(cell.path) if curve is not None else None
                clients.append(CellClient(cell, cluster.heartbeat_interval, curve, key))
        return cls(clients)

    def start(self) -> None:
        for cell in self.cells.values():
            self._tasks.append(asyncio.ensure_future(cell.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for cell in self.cells.values():
            cell.close()

    def cell(self, path: str) -> CellClient:
        """The client that reaches `path`: the cell itself, or the child cell on its way ("a!b" via "a")."""
        client = self.cells.get(path) or self.cells.get(path.split("!")[0])
        if client is None:
            raise errors.RpcError(reason=f"no route to cell {path!r}")
        return client

    def conductor(self, path: str) -> ConductorAPI:
        return self.cell(path).conductor

    def pick_cell(self) -> CellClient:
        """Where a new server goes: the first cell with a live conductor (capacity-aware choice comes later)."""
        if not self.cells:
            raise errors.NoValidHost(reason="This cloud has no cells.")
        for cell in self.cells.values():
            if cell.has_conductor():
                return cell
        return next(iter(self.cells.values()))  # not synced yet: the call itself waits for the table

    # --- scatter-gather -------------------------------------------------

    async def list_instances(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                             sort_dirs: list[str], limit: int, marker: dict[str, Any] | None,
                             bound: float = LIST_BOUND) -> list[dict[str, Any]]:
        """Instances of every cell, merge-sorted by (sort_keys, sort_dirs), after `marker` (a record)."""
        results = await asyncio.gather(*(
            self._list_cell(cell, ctx.with_timeout(bound), filters, sort_keys, sort_dirs, limit, marker, bound)
            for cell in self.cells.values()), return_exceptions=True)
        lists: list[list[dict[str, Any]]] = []
        for cell, result in zip(self.cells.values(), results):
            if isinstance(result, BaseException):
                if not isinstance(result, (errors.CellcloudError, asyncio.TimeoutError)):
                    raise result
                LOG.warning("cell %s left out of a listing: %s", cell.path, result)
                continue
            lists.append(result)
        key = sort_key(sort_keys, sort_dirs)
        merged = heapq.merge(*lists, key=key)
        return [r for _, r in zip(range(limit), merged)]

    async def _list_cell(self, cell: CellClient, ctx: RequestContext, filters: dict[str, Any],
                         sort_keys: list[str], sort_dirs: list[str], limit: int, marker: dict[str, Any] | None,
                         bound: float) -> list[dict[str, Any]]:
        async with asyncio.timeout(bound):
            if marker is None:
                return await cell.conductor.instance_list(ctx, filters, sort_keys, sort_dirs, limit, None)
            if marker.get("cell") == cell.path:
                return await cell.conductor.instance_list(ctx, filters, sort_keys, sort_dirs, limit,
                                                          marker["uuid"])
            return await self._after_foreign_marker(cell, ctx, filters, sort_keys, sort_dirs, limit, marker)

    @staticmethod
    async def _after_foreign_marker(cell: CellClient, ctx: RequestContext, filters: dict[str, Any],
                                    sort_keys: list[str], sort_dirs: list[str], limit: int,
                                    marker: dict[str, Any]) -> list[dict[str, Any]]:
        """This cell does not hold the marker: page through it (using its own records as markers)
        until past the marker's sort position, then keep `limit` records."""
        key = sort_key(sort_keys, sort_dirs)
        pivot = key(marker)
        out: list[dict[str, Any]] = []
        local_marker: str | None = None
        while len(out) < limit:
            page = await cell.conductor.instance_list(ctx, filters, sort_keys, sort_dirs, PAGE, local_marker)
            out.extend(r for r in page if key(r) > pivot)
            if len(page) < PAGE:
                break
            local_marker = page[-1]["uuid"]
        return out[:limit]


class _Desc:
    """Inverts the order of a value, for descending keys in a mixed-direction sort."""
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __gt__(self, other: _Desc) -> bool:
        return bool(other.v > self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.v == other.v)


def sort_key(sort_keys: list[str], sort_dirs: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A key function ordering records like a cell DB does (NULLs first ascending, last descending)."""
    dirs = [sort_dirs[i] if i < len(sort_dirs) else (sort_dirs[-1] if sort_dirs else "asc")
            for i in range(len(sort_keys))]

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for k, d in zip(sort_keys, dirs):
            v = record.get(k)
            item = (v is not None, "" if v is None else v)  # None sorts before any value
            parts.append(item if d == "asc" else _Desc(item))
        return tuple(parts)

    return key
