"""The hosts of one process beating as one message (issue 21: simulated hosts, tools/serve_simulated.py).

Each host is still its own directory member (its own id, topics, meta and liveness: the directory
removes it when its own beats stop), but the process sends one `heartbeats` message a beat for all of
its hosts and keeps one routing table for them all:
- the cell's router decodes, checks and answers one message per process instead of one per host
  (tools/bench/heartbeats.py measures its CPU per beat either way);
- a change in the cell reaches the process once, not once per host it serves, and the table of a
  cell of N members is held once per process, not once per host (N x hosts members before).
The message goes out on one host's socket, with that host's key: the directory accepts it for the
hosts of that host's process only (cells/rpc/directory.py `heartbeats`).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

from cells.context import RequestContext
from cells.rpc.directory import DirectoryView, Member

if TYPE_CHECKING:
    from cells.rpc.client import RpcClient


class GroupView(DirectoryView):
    """The routing table the hosts of one process share, and their batched heartbeat."""

    def __init__(self, directory_address: str, interval: float, directory_key: bytes | None = None) -> None:
        # no client of its own: each beat goes out on the first joined host's (its key speaks for the process)
        super().__init__(cast("RpcClient", None), directory_address, None, interval, directory_key)
        self.hosts: list[MemberView] = []

    def join(self, client: RpcClient, me: Member) -> MemberView:
        """A host of this process: its view reads this table, its beats go out with the others'."""
        view = MemberView(self, client, me)
        self.hosts.append(view)
        return view

    def drop(self, view: MemberView) -> None:
        if view in self.hosts:
            self.hosts.remove(view)

    async def beat_once(self) -> None:
        hosts = list(self.hosts)
        if not hosts:
            return
        members = [h.me.to_wire() for h in hosts if h.me is not None]
        reply = await hosts[0].client.call_address(self.address, "heartbeats",
                                                   {"members": members, "version": self.version},
                                                   RequestContext(user="directory-view"), self.interval,
                                                   self.directory_key, "directory")
        self.last_contact = time.monotonic()
        if "members" in reply:
            self._install(reply)
        self._synced.set()
        for h in hosts:
            h.last_contact = self.last_contact

    def _install(self, reply: dict[str, Any]) -> None:
        super()._install(reply)
        for h in self.hosts:  # the same table objects: a host's reads (members, alive) see this one's
            h.by_id, h._by_topic, h.version = self.by_id, self._by_topic, self.version

    def _abandon(self, address: str, member_id: str) -> None:
        for h in self.hosts:  # each host's client holds its own calls in flight
            h.client.abandon(address, member_id)

    def _tell(self, joined: set[str], left: set[str]) -> None:
        for h in self.hosts:
            h._tell(joined, left)


class MemberView(DirectoryView):
    """One host's view, reading its process's shared table (GroupView); its `me` is its own member."""

    def __init__(self, group: GroupView, client: RpcClient, me: Member) -> None:
        super().__init__(client, group.address, me, group.interval, group.directory_key)
        self.group = group
        self.by_id, self._by_topic, self.version = group.by_id, group._by_topic, group.version

    async def wait_for_topic(self, topic: str, timeout: float) -> list[Member]:
        return await self.group.wait_for_topic(topic, timeout)

    async def wait_synced(self, timeout: float) -> bool:
        return await self.group.wait_synced(timeout)

    def pinned_objects(self) -> dict[str, str | None]:
        return self.group.pinned_objects()

    async def beat_once(self) -> None:
        await self.group.beat_once()

    async def run(self) -> None:
        """The group's run beats for this host (the process runs it once for all of them)."""
        await asyncio.Event().wait()

    async def leave(self) -> None:
        self.group.drop(self)  # no more beats for it, then the directory drops it now
        await super().leave()
