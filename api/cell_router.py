"""The API cell's view of its child cells: route one, or scatter-gather to all.

Each child cell gets a `CellClient`: an RpcClient plus a DirectoryView of that
cell's router (me=None: the API only reads the table, it serves no topic),
refreshed in the background. A CellClient is a `cells.rpcapi.Caller`, so the
API talks to a cell through the same ConductorAPI stub every service uses.

Nested cells ("site1!cell-a") are reached through their top-level cell's
router, which relays hop by hop (cells/router_service.py): a `RelayClient` is the
same Caller for such a cell. `cells` holds every cell that runs a conductor
(those hold instances), `tops` the directly connected top-level cells.

Listings ask every cell at once with a short bound and merge the sorted
answers; a cell that does not answer in time does not fail the request: its
servers come from `down_records` (the API's instance mappings) when the
caller gives it, else it is left out (and logged).

Cell choice for a boot: `candidates()` ranks the cells from the capacity
summaries they report upward on their heartbeats (api/cell_choice.py).
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict

from api import cell_choice, listing_merge
from api.scatter import Down, scatter
from cells import errors
from cells.config import CellSpec, ClusterConfig
from cells.context import RequestContext
from cells.objects.records import InstanceRecord
from cells.router_service import RELAY, fresh, subtree_summaries
from cells.rpc import wire
from cells.rpc.client import RpcClient
from cells.rpc.directory import DirectoryView
from cells.rpc.transport import CurveKeys
from cells.rpcapi.conductor import TOPIC as CONDUCTOR
from cells.rpcapi.conductor import ConductorAPI

if TYPE_CHECKING:
    from typing_extensions import TypeIs  # typing.TypeIs from Python 3.13; only mypy reads it

LOG = logging.getLogger(__name__)
DEFAULT_BOUND = 1.0  # seconds each cell has to answer a scatter-gather (cluster.yaml api.list_bound)
PAGE = 1000
OVERFETCH = 1.5  # a cell's first batch: its even share of the page times this
MIN_BATCH = 50
KEYS_BATCH = 100  # a cell's first keys at least: a multi-create burst's worth (100 servers, one created_at)


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

    def reachable(self) -> bool:
        """False once its router has been silent for 3 beats (never heard of yet: try it)."""
        return self.view.last_contact == 0 or fresh(self.view)

    async def relay(self, path: str, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                    timeout: float | None = None) -> Any:
        """Call `method` in the cell `path` below this one, through this cell's router (hop by hop)."""
        budget = timeout or method.timeout
        return await self.client.call_address(
            self.cell.router, RELAY.name,
            {"path": path, "topic": topic, "method": method.name, "args": args, "timeout": budget},
            ctx, budget, self.view.directory_key, f"{topic} in cell {path}")

    async def run(self) -> None:
        await self.view.run()

    def close(self) -> None:
        self.client.close()


class RelayClient:
    """A nested cell, reached through its top-level cell's router: the same Caller protocol."""

    def __init__(self, cell: CellSpec, top: CellClient) -> None:
        self.cell = cell
        self.top = top
        self.conductor = ConductorAPI(self)

    @property
    def path(self) -> str:
        return self.cell.path

    @property
    def view(self) -> DirectoryView:  # the directory this API process can see on the way
        return self.top.view

    async def call(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        return await self.top.relay(self.path, topic, method, args, ctx, timeout)

    async def cast(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None:
        await self.top.relay(self.path, topic, method, args, ctx)  # relayed casts are answered: nothing lost

    def has_conductor(self) -> bool:
        return self.path in subtree_summaries(self.top.view.by_id.values(), self.top.cell)

    def reachable(self) -> bool:
        return self.top.reachable()


class Cell(Protocol):
    """What the API needs of any cell holding instances (CellClient or RelayClient)."""
    cell: CellSpec
    conductor: ConductorAPI

    @property
    def path(self) -> str: ...

    @property
    def view(self) -> DirectoryView: ...

    async def call(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any: ...

    async def cast(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None: ...

    def has_conductor(self) -> bool: ...

    def reachable(self) -> bool: ...


class DownRecord(TypedDict):
    """What the API's instance mapping knows of a server whose cell is down (api/compute/down_cells.py)."""
    uuid: str
    name: str | None
    project_id: str
    user_id: str | None
    created_at: str | None
    cell: str
    deleted: bool
    down: bool  # always True: a listing tells these apart by it (is_down)
    pinned_availability_zone: NotRequired[str | None]
    server_groups: NotRequired[list[str]]


Listed = InstanceRecord | DownRecord  # one server of a listing over every cell
DownRecords = Callable[[list[str]], Awaitable[list[DownRecord]]]


def is_down(record: Listed) -> TypeIs[DownRecord]:
    return bool(record.get("down"))


class CellRouter:
    def __init__(self, cells: Sequence[CellClient], relayed: Sequence[RelayClient] = (),
                 holding: Sequence[str] | None = None, bound: float = DEFAULT_BOUND) -> None:
        """`cells`: top-level cells, connected directly; `relayed`: nested cells reached through them;
        `holding`: the paths of the cells that hold instances (run a conductor; default: all);
        `bound`: the seconds each cell has to answer a request sent to every cell (api/scatter.py)."""
        self.bound = bound
        self.tops: dict[str, CellClient] = {c.path: c for c in cells}
        everything: list[Cell] = [*cells, *relayed]
        self.cells: dict[str, Cell] = {c.path: c for c in everything
                                       if holding is None or c.path in holding}
        self.pending = cell_choice.Pending()
        self._reported: set[str] = set()  # cells whose capacity summary we have seen
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_cluster(cls, cluster: ClusterConfig, curve: CurveKeys | None = None) -> CellRouter:
        """A client per top-level cell, and a relayed client per nested cell through its top-level cell.
        `curve`: this process's keys when the cluster runs CURVE (cells.service_process.process_keys)."""
        tops: dict[str, CellClient] = {}
        for cell in cluster.cells:
            if cell.parent is None:
                key = cluster.router_key(cell.path) if curve is not None else None
                tops[cell.path] = CellClient(cell, cluster.heartbeat_interval, curve, key)
        relayed = [RelayClient(c, tops[c.path.split("!")[0]]) for c in cluster.cells if c.parent is not None]
        holding = {s.cell for s in cluster.services if s.kind == "conductor" and s.cell}
        # a cluster that names no services (tests, tools) holds instances in every cell
        return cls(list(tops.values()), relayed, [c.path for c in cluster.cells if c.path in holding]
                   if holding else None, cluster.list_bound)

    def start(self) -> None:
        for cell in self.tops.values():
            self._tasks.append(asyncio.ensure_future(cell.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for cell in self.tops.values():
            cell.close()

    def cell(self, path: str) -> Cell:
        """The client of the cell `path` (a nested one is relayed through its top-level cell)."""
        client = self.cells.get(path)
        if client is None:
            raise errors.RpcError(reason=f"no route to cell {path!r}")
        return client

    def conductor(self, path: str) -> ConductorAPI:
        return self.cell(path).conductor

    # --- cell choice ----------------------------------------------------

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Capacity summaries of every cell we can currently hear of (all reported upward to the
        top-level directories). A top-level cell we have not heard from in 3 beats is down, subtree and all."""
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for top in self.tops.values():
            if fresh(top.view, now):
                out.update(subtree_summaries(top.view.by_id.values(), top.cell))
        self._reported.update(out)
        return out

    def zone_exists(self, zone: str) -> bool:
        return any(cell_choice.in_zone(c.cell, zone) for c in self.cells.values())

    def candidates(self, flavor: Mapping[str, Any], zone: str | None,
                   hints: Mapping[str, Any] | None = None) -> list[Cell]:
        """Cells to try for a boot, best first (api/cell_choice.py)."""
        if not self.cells:
            raise errors.NoValidHost(reason="This cloud has no cells.")
        summaries = self.summaries()
        down = set(self.unreachable())
        live = [c.cell for c in self.cells.values() if c.path not in down]
        order = cell_choice.rank(live, summaries, flavor, zone, hints or {}, self.pending)
        return [self.cells[p] for p in order]

    def unreachable(self) -> list[str]:
        """Paths of the cells a boot cannot be sent to now: a cell that reported before and no
        longer does is down (its router left its parent's directory)."""
        summaries = self.summaries()
        return [c.path for c in self.cells.values()
                if not (c.reachable() and (c.path in summaries or c.path not in self._reported))]

    # --- scatter-gather -------------------------------------------------

    async def list_instances(self, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str],
                             sort_dirs: list[str], limit: int, marker: Listed | None,
                             bound: float | None = None,
                             down_records: DownRecords | None = None,
                             views: listing_merge.ViewsOf | None = None) -> list[Listed]:
        """Instances of every cell, merge-sorted by (sort_keys, sort_dirs), after `marker` (a record).
        `views` (a detail listing): keyed cells' records come with their server views' volumes and
        security groups where their conductors can give them (listing_merge.records_of).

        Keys first (api/listing_merge.py): each cell gives the sort values of its share of the page plus a
        margin (KEYS_BATCH at least: a multi-create's worth) after the marker's (a seek in its DB, whichever
        cell holds the marker); a cell whose keys all sort inside the page gives the rest of a page of keys
        after its last; the merge picks the page and one more call per cell fetches the winners' records.
        A conductor older than KEYS_VERSION is asked for full records as before: its share of the page plus
        a margin, and while its whole batch sorts inside the page, the next batch (twice as big) after its
        own last record. A cell that fails
        or does not answer within `bound` (default: the router's) is down: `down_records(paths)` gives
        what is known of its servers without it (the API's instance mappings), merged in the same order."""
        bound = self.bound if bound is None else bound
        cells = list(self.cells.values())
        key = sort_key(sort_keys, sort_dirs)
        deadline = ctx.with_timeout(bound)
        batch = limit if len(cells) <= 1 else min(limit, max(MIN_BATCH, math.ceil(limit * OVERFETCH / len(cells))))
        keys_batch = limit if len(cells) <= 1 else min(limit, max(KEYS_BATCH, batch))
        names = listing_merge.key_names(sort_keys, sort_dirs)
        pivot = listing_merge.pivot_of(marker, names)

        async def first(cell: Cell, bounded: RequestContext) -> list[InstanceRecord] | listing_merge.Keys:
            if not cell.reachable():  # its top-level router has been silent for 3 beats: no need to wait
                raise errors.RpcError(reason=f"cell {cell.path} is unreachable")
            if limit <= listing_merge.MAX_KEYS:
                try:
                    return listing_merge.Keys(await cell.conductor.instance_keys(
                        bounded, filters, sort_keys, sort_dirs, keys_batch, None, pivot))
                except (errors.UnsupportedVersion, errors.UnknownMethod):  # an older conductor: full records
                    pass
            return await self._list_cell(cell, bounded, filters, sort_keys, sort_dirs, batch, marker)
        got: dict[str, list[Listed]] = {}
        keyed: dict[str, list[list[Any]]] = {}  # cells that answered keys: their rows of sort values
        more: set[str] = set()  # cells that filled their batch: they may hold more
        down: list[str] = []
        for cell, result in await scatter(cells, deadline, bound, first):
            if isinstance(result, Down):
                LOG.warning("cell %s is down for a listing: %s", cell.path, result.reason)
                down.append(cell.path)
            elif isinstance(result, listing_merge.Keys):
                keyed[cell.path] = result.rows
                if len(result.rows) >= keys_batch:
                    more.add(cell.path)
            else:
                got[cell.path] = list(result)
                if len(result) >= batch:
                    more.add(cell.path)
        known: list[Listed] = []
        if down and down_records is not None:
            known = sorted(await down_records(down), key=key)
            if marker is not None:
                pivot_key = key(marker)
                known = [r for r in known if key(r) > pivot_key]
            known = known[:limit]
        while True:
            streams = [*got.values(), known, *(listing_merge.key_rows(rows, names, path) for path, rows in keyed.items())]
            page: list[Mapping[str, Any]] = [r for _, r in zip(range(limit), heapq.merge(*streams, key=key))]
            cut = key(page[-1]) if len(page) == limit else None

            def last(path: str) -> tuple[Any, ...]:
                return key(got[path][-1]) if path in got else key(listing_merge.KeyRow(zip(names, keyed[path][-1])))
            # a cell whose last record is still inside the page could have more records before the cut
            needy = [self.cells[p] for p in more if (got.get(p) or keyed.get(p)) and (cut is None or last(p) < cut)]
            if not needy:
                # a fresh bound for the records (the cells asked have just answered): a silent cell that
                # used up round 1's bound must not leave the live ones no time to send the page
                return await listing_merge.records_of(self.cells, page, ctx, bound, filters, sort_keys,
                                                      sort_dirs, down_records, views)
            batch = min(limit, batch * 2)

            async def next_batch(cell: Cell, bounded: RequestContext,
                                 size: int = batch) -> list[InstanceRecord] | listing_merge.Keys:
                if cell.path in keyed:  # the rest of a page of keys after its last: never asked again
                    return listing_merge.Keys(await cell.conductor.instance_keys(
                        bounded, filters, sort_keys, sort_dirs, limit - len(keyed[cell.path]), None,
                        dict(zip(names, keyed[cell.path][-1]))))
                return await cell.conductor.instance_list(bounded, filters, sort_keys, sort_dirs, size,
                                                          got[cell.path][-1]["uuid"])
            # what is left of the listing's bound (a cell past it has had its chance)
            remaining = max(0.001, deadline.remaining() or bound)
            for cell, result in await scatter(needy, deadline, remaining, next_batch):
                if isinstance(result, Down):  # answered once, then not: keep what it gave
                    LOG.warning("cell %s is down for a listing: %s", cell.path, result.reason)
                    more.discard(cell.path)
                    continue
                if isinstance(result, listing_merge.Keys):
                    keyed[cell.path] = [*keyed[cell.path], *result.rows]
                    more.discard(cell.path)
                    continue
                got[cell.path] = [*got[cell.path], *result]
                if len(result) < batch:
                    more.discard(cell.path)

    async def _list_cell(self, cell: Cell, ctx: RequestContext, filters: dict[str, Any],
                         sort_keys: list[str], sort_dirs: list[str], limit: int,
                         marker: Listed | None) -> list[InstanceRecord]:
        if marker is None:
            return await cell.conductor.instance_list(ctx, filters, sort_keys, sort_dirs, limit, None)
        if marker.get("cell") == cell.path:
            return await cell.conductor.instance_list(ctx, filters, sort_keys, sort_dirs, limit, marker["uuid"])
        return await self._after_foreign_marker(cell, ctx, filters, sort_keys, sort_dirs, limit, marker)

    @staticmethod
    async def _after_foreign_marker(cell: Cell, ctx: RequestContext, filters: dict[str, Any],
                                    sort_keys: list[str], sort_dirs: list[str], limit: int,
                                    marker: Listed) -> list[InstanceRecord]:
        """This cell does not hold the marker: page through it (using its own records as markers)
        until past the marker's sort position, then keep `limit` records."""
        key = sort_key(sort_keys, sort_dirs)
        pivot = key(marker)
        out: list[InstanceRecord] = []
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


def sort_key(sort_keys: list[str], sort_dirs: list[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A key function ordering records like a cell DB does (NULLs first ascending, last descending)."""
    dirs = [sort_dirs[i] if i < len(sort_dirs) else (sort_dirs[-1] if sort_dirs else "asc")
            for i in range(len(sort_keys))]

    def key(record: Mapping[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = []
        for k, d in zip(sort_keys, dirs):
            v = record.get(k)
            item = (v is not None, "" if v is None else v)  # None sorts before any value
            parts.append(item if d == "asc" else _Desc(item))
        return tuple(parts)

    return key
