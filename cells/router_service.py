"""A cell's router service: the cell's directory, plus the cell's place in the cell tree.

Cells nest (`site1!cell-a` is the child `cell-a` of `site1`). Each router:

- is its own cell's directory (register + heartbeat, cells/rpc/directory.py);
- joins its parent cell's directory as a member serving topic `cell.<name>`,
  and reports upward on that heartbeat the capacity summaries of its whole
  subtree (its own conductor's, from the conductor's heartbeat meta, plus those
  its child routers reported to it): the API reads every cell's summary from
  the top-level directories only;
- relays: `relay(path, topic, method, args)` for its own cell goes to a live
  member of `topic`; for a cell below it goes to the router of the child on
  the way (hop by hop along the routing path). The caller's deadline travels
  with every hop.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cells import errors
from cells.config import CellSpec, ClusterConfig, ServiceSpec
from cells.context import RequestContext
from cells.rpc import directory, principal, wire
from cells.rpc.directory import Directory, DirectoryView, Member

if TYPE_CHECKING:
    from cells.service_process import Service

LOG = logging.getLogger(__name__)
CELL_TOPIC = "cell."  # + child cell name: a child cell's router in its parent's directory
# from the API, and a parent cell's router passing the API's request on (hop by hop)
RELAY = wire.Method("relay", timeout=wire.NORMAL, callers=principal.callers(principal.API, principal.ROUTER))
SURFACE = {**directory.SURFACE, RELAY.name: RELAY}


def cell_topic(name: str) -> str:
    return CELL_TOPIC + name


def next_hop(here: str, target: str) -> str | None:
    """The child of `here` on the way to `target` ("a", "a!b!c" -> "b"); None when target is here."""
    if target == here:
        return None
    if not target.startswith(here + "!"):
        raise errors.RpcError(reason=f"no route to cell {target!r} from cell {here!r}")
    return target[len(here) + 1:].split("!")[0]


def subtree_summaries(members: Iterable[Member], cell: CellSpec) -> dict[str, dict[str, Any]]:
    """Capacity summaries of `cell` and every cell below it, from the members of `cell`'s
    directory: its conductor's own report (meta "capacity") and its child routers' (meta "cells")."""
    out: dict[str, dict[str, Any]] = {}
    for m in members:
        if "conductor" in m.topics and isinstance(m.meta.get("capacity"), dict):
            out[cell.path] = {**m.meta["capacity"], "path": cell.path, "site": cell.site}
        elif any(t.startswith(CELL_TOPIC) for t in m.topics) and isinstance(m.meta.get("cells"), dict):
            out.update({str(k): dict(v) for k, v in m.meta["cells"].items() if isinstance(v, dict)})
    return out


class CellRouterService(Directory):
    """Handler of a cell's router process (tools/serve.py): directory + relay + upward reports."""

    def __init__(self, cluster: ClusterConfig, spec: ServiceSpec) -> None:
        super().__init__(cluster.heartbeat_interval)
        if spec.cell is None:
            raise ValueError(f"router {spec.id} belongs to no cell")
        self.cluster = cluster
        self.spec = spec
        self.cell = cluster.cell(spec.cell)
        self.beat_groups = {s.id: (str(s.options["process"]), s.kind, s.host) for s in cluster.services
                            if s.cell == self.cell.path and s.options.get("process")}
        self.service: Service | None = None
        self.parent_view: DirectoryView | None = None
        self._rr = itertools.count()
        self._topics: tuple[int, dict[str, list[Member]]] = (-1, {})  # (table version, topic -> members)

    async def start(self, service: Service) -> None:
        self.service = service
        if self.cell.parent is not None:
            parent = self.cluster.cell(self.cell.parent)
            me = Member(id=self.spec.id, address=self.spec.bind, topics=(cell_topic(self.cell.name),),
                        host=self.spec.host, service="router", version=service.view.me.version if service.view.me
                        else "", public_key=service.view.me.public_key if service.view.me else None)
            self.parent_view = DirectoryView(service.client, parent.router, me, self.cluster.heartbeat_interval,
                                             self.cluster.router_key(parent.path))

    async def background(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(super().background())  # expire members that stopped beating
            if self.parent_view is not None:
                tg.create_task(self._report_upward(self.parent_view))
                tg.create_task(self.parent_view.run())

    async def _report_upward(self, view: DirectoryView) -> None:
        while True:
            view.set_meta(cells=self.summaries())
            await asyncio.sleep(self.liveness.interval / 2)

    def summaries(self) -> dict[str, dict[str, Any]]:
        return subtree_summaries(self.liveness.members.values(), self.cell)

    def _live(self, topic: str) -> list[Member]:
        """The topic's live members: indexed once per table version, not scanned per relay (a cell of
        thousands of hosts relays to one of them at a time)."""
        if self._topics[0] != self.liveness.version:
            index: dict[str, list[Member]] = {}
            for m in sorted(self.liveness.members.values(), key=lambda m: m.id):
                for t in m.topics:
                    index.setdefault(t, []).append(m)
            self._topics = (self.liveness.version, index)
        return self._topics[1].get(topic, [])

    async def relay(self, ctx: RequestContext, path: str, topic: str, method: str, args: dict[str, Any],
                    timeout: float) -> Any:
        """Call `method` on a live member of `topic` in cell `path` (this cell or one below it).
        Never a directory's method: the router's own key would speak for whoever asked."""
        if self.service is None:
            raise errors.RpcError(reason=f"router {self.spec.id} is not started")
        if not (isinstance(path, str) and isinstance(topic, str) and isinstance(method, str)
                and isinstance(args, dict) and isinstance(timeout, (int, float))):
            raise errors.Invalid(reason="relay takes a path, topic and method name, a map of args and a timeout")
        if method in directory.SURFACE:
            caller = ctx.principal.name if ctx.principal is not None else "a plaintext peer"
            raise errors.RpcForbidden(principal=caller, method=f"relay of {method}",
                                      reason="directories are not relayed")
        remaining = ctx.remaining()
        budget = min(timeout, remaining) if remaining is not None else timeout
        child = next_hop(self.cell.path, path)
        if child is None:
            members = self._live(topic)
            if not members:
                raise errors.NoLiveMember(topic=f"{topic} in cell {path}")
            m = members[next(self._rr) % len(members)]
            return await self.service.client.call_address(m.address, method, args, ctx, budget, m.public_key, topic)
        routers = self._live(cell_topic(child))
        if not routers:
            raise errors.RpcError(reason=f"cell {self.cell.path}!{child} is unreachable (its router is not in "
                                         f"the directory of {self.cell.path})")
        r = routers[0]
        return await self.service.client.call_address(
            r.address, RELAY.name, {"path": path, "topic": topic, "method": method, "args": args, "timeout": budget},
            ctx, budget, r.public_key, f"relay to {path}")


def fresh(view: DirectoryView, now: float | None = None) -> bool:
    """A directory we heard from within MISSED_BEATS beats (a view keeps its last table when
    the directory stops answering, so the table alone does not say the cell is up)."""
    now = time.monotonic() if now is None else now
    return view.last_contact > 0 and now - view.last_contact <= directory.MISSED_BEATS * view.interval
