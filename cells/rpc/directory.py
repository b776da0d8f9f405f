"""The cell's directory: topic -> live members, kept by register + heartbeat.

`Directory` is the handler of the cell's router service. `LivenessTable` is its
pure core (no I/O, tested on its own). `DirectoryView` runs inside every other
process: it heartbeats to the directory and keeps the routing table the
directory sends back, so calls go straight to their peer (no broker).
A member that misses `MISSED_BEATS` beats leaves the table: it is suspect, not
dead (cells/rpc/liveness.py: the conductor decides when a host is dead).

A restarted directory starts empty and learns every member from its next beat. So
that nobody takes that for every member leaving, its snapshots say `warming` for
the first MISSED_BEATS intervals: a view keeps the members it knew that have not
re-registered yet, and the directory's first snapshot after warming (a new version)
drops those that never came back. Versions start at a random number, so a view never
mistakes the new directory's table for the old one it holds.

A view that says so in its member's meta (DELTAS) is sent, after a change, only the members that
changed or left since the version it holds (`delta`), not the whole table: with whole tables every
change cost each of the cell's N members an N-member table, N^2 per change, and a cell of a few
hundred hosts spent its router's and its hosts' CPU on tables until beats were late (issue 21,
tools/bench/scale.py). A directory that does not know DELTAS ignores it and sends whole tables.

Many hosts served by one process (simulated hosts, tools/serve_simulated.py) beat as one message,
`heartbeats`: each host is still its own member with its own liveness (it is removed when its own
beats stop), but the router decodes, checks and answers one message per process per beat instead of
one per host, and an unchanged member costs it a dict comparison (cells/rpc/beat_group.py; measured
by tools/bench/heartbeats.py). The key that sends it speaks only for the hosts of its own process
(`Directory.beat_groups`, from cluster.json): they share a heap, so one of them holds the others'
keys anyway.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cells import errors
from cells.context import RequestContext
from cells.rpc import principal, wire

if TYPE_CHECKING:
    from cells.rpc.client import RpcClient

LOG = logging.getLogger(__name__)
MISSED_BEATS = 3
DEFAULT_INTERVAL = 1.0
DELTAS = "table_deltas"  # a member's meta: its view applies delta replies
MAX_BATCH = 1000  # members in one `heartbeats` (simulated_hosts.py: at most 250 hosts a process by default)

# members: every service of the cell (a child cell's router in its parent's directory); readers: the API too
_MEMBERS = principal.callers(principal.ROUTER, principal.CONDUCTOR, principal.SCHEDULER, principal.NETWORK,
                             principal.COMPUTE, principal.VOLUME)
SURFACE = wire.surface(
    wire.Method("heartbeat", timeout=wire.FAST, retry_safe=True, callers=_MEMBERS),
    # the hosts of one process at once: only host workers are served many to a process
    wire.Method("heartbeats", timeout=wire.FAST, retry_safe=True, callers=principal.callers(principal.COMPUTE)),
    wire.Method("leave", timeout=wire.FAST, retry_safe=True, callers=_MEMBERS),
    wire.Method("table", timeout=wire.FAST, retry_safe=True, callers=_MEMBERS | {principal.API}),
)


@dataclass(frozen=True)
class Member:
    id: str
    address: str
    topics: tuple[str, ...] = ()
    host: str = ""
    service: str = ""
    version: str = ""
    public_key: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_wire(self) -> dict[str, Any]:
        """The member as its heartbeat sends it. By hand, not dataclasses.asdict: that deep-copies `meta`,
        and a conductor's carries a verdict per host of its cell (9 ms a beat at 1,000 hosts). Shallow is
        enough: `meta` is replaced, never changed in place (MemberView.set_meta), and the dict is packed."""
        return {"id": self.id, "address": self.address, "topics": list(self.topics), "host": self.host,
                "service": self.service, "version": self.version, "public_key": self.public_key,
                "meta": self.meta}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Member:
        return cls(id=str(d["id"]), address=str(d["address"]), topics=tuple(d.get("topics") or ()),
                   host=str(d.get("host", "")), service=str(d.get("service", "")),
                   version=str(d.get("version", "")), public_key=d.get("public_key"),
                   meta=dict(d.get("meta") or {}))


class LivenessTable:
    """Members with the time each was last heard from. Pure: time is passed in."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self.members: dict[str, Member] = {}
        self.last_seen: dict[str, float] = {}
        self.version = 0
        # member id -> the version of its last change (join, update, leave), oldest change first, so a
        # delta reads back from the newest only as far as the version it is for
        self.changed: dict[str, int] = {}

    def beat(self, member: Member, now: float) -> None:
        old = self.members.get(member.id)
        if old is None or old != member or old.meta != member.meta:
            self.members[member.id] = member
            self._change(member.id)
        self.last_seen[member.id] = now

    def _change(self, member_id: str) -> None:
        self.version += 1
        self.changed.pop(member_id, None)  # re-inserted last: the dict stays in version order
        self.changed[member_id] = self.version

    def changed_since(self, version: int) -> list[str]:
        """Ids of the members that changed after `version`, newest first: as many steps as changes."""
        out = []
        for mid, changed in reversed(self.changed.items()):
            if changed <= version:
                break
            out.append(mid)
        return out

    def leave(self, member_id: str) -> bool:
        if self.members.pop(member_id, None) is None:
            return False
        self.last_seen.pop(member_id, None)
        self._change(member_id)
        return True

    def expire(self, now: float) -> list[str]:
        limit = now - MISSED_BEATS * self.interval
        dead = [mid for mid, seen in self.last_seen.items() if seen < limit]
        for mid in dead:
            self.leave(mid)
        return dead


def may_serve(caller: principal.Principal, topic: str) -> bool:
    """The topics a principal may register for: its own service's, a host worker for its own host."""
    if caller.kind in principal.HOST_KINDS:
        return topic == f"{caller.kind}.{caller.host}"
    if caller.kind == principal.ROUTER:  # its own cell's directory, or its parent's as `cell.<its name>`
        return topic in ("router", "cell." + (caller.cell or "").rpartition("!")[2])
    return topic == caller.kind


def _check_member(ctx: RequestContext, member: Member) -> None:
    """A heartbeat registers only the member the caller's key belongs to, for its own topics."""
    caller = ctx.principal
    if caller is None or caller.kind == principal.OPERATOR:
        return
    if member.id != caller.id:
        raise errors.RpcForbidden(principal=caller.name, method="heartbeat", reason=f"{member.id!r} is not itself")
    foreign = [t for t in member.topics if not may_serve(caller, t)]
    if foreign:
        raise errors.RpcForbidden(principal=caller.name, method="heartbeat", reason=f"it does not serve {foreign}")


class Directory:
    """RPC handler of the router service."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.liveness = LivenessTable(interval)
        self.liveness.version = random.getrandbits(48)  # never one a view holds from our previous run
        self.started = time.monotonic()
        self._warm = False
        self._published = 0.0
        self._wire: tuple[int, list[dict[str, Any]]] = (-1, [])  # (version, its members as the wire has them)
        self._wire_of: dict[str, tuple[Member, dict[str, Any]]] = {}  # member id -> (member, its wire form)
        self._delta_floor = self.liveness.version  # a view holding a version below this gets the whole table
        # member id -> (its process, principal kind, host) for the hosts served many to a process
        # (cluster.json's options["process"]): who may beat for whom in `heartbeats`
        self.beat_groups: dict[str, tuple[str, str, str]] = {}

    def warming(self, now: float) -> bool:
        """Just (re)started: members are still re-registering."""
        if not self._warm and now - self.started >= MISSED_BEATS * self.liveness.interval:
            self._warm = True
            self.liveness.version += 1  # every view gets the whole, final table on its next beat
            self._delta_floor = self.liveness.version
        return not self._warm

    async def heartbeat(self, ctx: RequestContext, member: dict[str, Any], version: int) -> dict[str, Any]:
        now = time.monotonic()
        deltas = self._beat(ctx, ctx.principal, member, now)
        return self._answer(version, deltas, now)

    async def heartbeats(self, ctx: RequestContext, members: list[dict[str, Any]], version: int) -> dict[str, Any]:
        """One beat for each of `members`, the hosts of the caller's process; one answer for them all
        (they share their process's table). Checked whole before any is recorded: one member the caller
        may not speak for refuses the batch."""
        if not isinstance(members, list) or not members or len(members) > MAX_BATCH:
            raise errors.Invalid(reason=f"members is a list of 1 to {MAX_BATCH} member records")
        caller = ctx.principal
        speakers = [self._sibling(caller, m) for m in members]
        now = time.monotonic()
        deltas = False
        for record, speaker in zip(members, speakers, strict=True):
            deltas = self._beat(ctx, speaker, record, now) or deltas
        return self._answer(version, deltas, now)

    def _sibling(self, caller: principal.Principal | None, record: Any) -> principal.Principal | None:
        """The principal a batched member speaks as: the host of the caller's process it names."""
        if caller is None or caller.kind == principal.OPERATOR:
            return caller
        mid = record.get("id") if isinstance(record, dict) else None
        group = self.beat_groups.get(caller.id)
        sibling = self.beat_groups.get(mid) if isinstance(mid, str) else None
        if group is None or sibling is None or sibling[0] != group[0]:
            raise errors.RpcForbidden(principal=caller.name, method="heartbeats",
                                      reason=f"{mid!r} is not a host of its process")
        return principal.Principal(sibling[1], str(mid), sibling[2], caller.cell)

    def _beat(self, ctx: RequestContext, speaker: principal.Principal | None, record: Any, now: float) -> bool:
        """Record one member's beat, as `speaker`; whether its view takes deltas. A member the same as
        at its last beat costs a dict comparison (it was checked when it changed, and its id, so what it
        may serve, is the speaker's): most beats of a steady cell."""
        mid = record.get("id") if isinstance(record, dict) else None
        cached = self._wire_of.get(mid) if isinstance(mid, str) else None
        if (cached is not None and cached[1] == record and self.liveness.members.get(cached[0].id) is cached[0]
                and (speaker is None or speaker.kind == principal.OPERATOR or speaker.id == mid)):
            self.liveness.last_seen[cached[0].id] = now
            return bool(cached[0].meta.get(DELTAS))
        try:
            joining = Member.from_wire(record)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise errors.Invalid(reason="member is not a member record") from None
        _check_member(dataclasses.replace(ctx, principal=speaker), joining)
        self.liveness.beat(joining, now)
        self._member_wire(self.liveness.members[joining.id])
        return bool(joining.meta.get(DELTAS))

    def _answer(self, version: int, deltas: bool, now: float) -> dict[str, Any]:
        self.warming(now)  # its end bumps the version: the views drop who never came back
        if version == self.liveness.version:
            return {"version": version}
        if deltas and isinstance(version, int) and self._delta_floor <= version < self.liveness.version:
            return self._delta(version, now)
        return self._snapshot(ages=False)

    def _delta(self, since: int, now: float) -> dict[str, Any]:
        """What changed after version `since`: members joined or updated, and ids that left."""
        ids = self.liveness.changed_since(since)
        members = self.liveness.members
        return {"version": self.liveness.version, "interval": self.liveness.interval, "warming": self.warming(now),
                "delta": True, "members": [self._member_wire(members[mid]) for mid in ids if mid in members],
                "left": [mid for mid in ids if mid not in members]}

    def _member_wire(self, member: Member) -> dict[str, Any]:
        cached = self._wire_of.get(member.id)
        if cached is None or cached[0] is not member:
            cached = (member, member.to_wire())
            self._wire_of[member.id] = cached
        return cached[1]

    async def leave(self, ctx: RequestContext, member_id: str) -> bool:
        caller = ctx.principal
        if caller is not None and caller.kind != principal.OPERATOR and caller.id != member_id:
            raise errors.RpcForbidden(principal=caller.name, method="leave", reason=f"{member_id!r} is not itself")
        return self.liveness.leave(str(member_id))

    async def table(self, ctx: RequestContext) -> dict[str, Any]:
        return self._snapshot()

    def _snapshot(self, ages: bool = True) -> dict[str, Any]:
        """The table. A heartbeat's reply leaves out each member's age (views do not read it) and reuses
        the version's member list: when a version changes every member's next beat gets the whole
        table, and converting each member for each of them made the router's CPU grow with the square
        of the cell's size (tools/bench/scale.py: 200 hosts saturated a core)."""
        now = time.monotonic()
        warming = self.warming(now)
        version = self.liveness.version
        if self._wire[0] != version:
            self._wire = (version, [self._member_wire(m) for m in self.liveness.members.values()])
        members = self._wire[1]
        if ages:  # the `table` RPC (cellctl status): how long since each beat
            members = [dict(m, age=round(now - self.liveness.last_seen[m["id"]], 3)) for m in members]
        return {"version": version, "interval": self.liveness.interval, "warming": warming, "members": members}

    async def background(self) -> None:
        """Expire members that stopped beating (run by the router service)."""
        while True:
            await asyncio.sleep(self.liveness.interval / 4)
            self.warming(time.monotonic())
            for mid in self.liveness.expire(time.monotonic()):
                LOG.warning("member %s missed %d heartbeats: removed from routing (suspect)", mid, MISSED_BEATS)
            if time.monotonic() - self._published >= self.liveness.interval:  # a beat's resolution is enough
                self.publish(time.monotonic())

    def publish(self, now: float) -> None:
        """The members by service and state on this router's /metrics (alive: heard within 1.5 beats;
        late: a beat missed, not yet removed; removed members are the conductor's `suspect` hosts)."""
        self._published = now
        counts: dict[tuple[str, ...], float] = {}
        for mid, member in self.liveness.members.items():
            late = now - self.liveness.last_seen.get(mid, now) > 1.5 * self.liveness.interval
            key = (member.service or "unknown", "late" if late else "alive")
            counts[key] = counts.get(key, 0) + 1
        from cells import metrics  # here: a CLI's view (cellctl status) never publishes, nor pays prometheus_client
        metrics.set_states(metrics.DIRECTORY_MEMBERS, counts)


Listener = Callable[[set[str], set[str]], None]


def _restarted(old: Member, new: Member) -> bool:
    """`new` is another process than `old` (Service sets a fresh `incarnation` in each one's meta)."""
    was, now = old.meta.get("incarnation"), new.meta.get("incarnation")
    return was is not None and now is not None and was != now


class DirectoryView:
    """This process's copy of one directory's routing table."""

    def __init__(self, client: RpcClient, directory_address: str, me: Member | None = None,
                 interval: float = DEFAULT_INTERVAL, directory_key: bytes | None = None) -> None:
        self.client = client
        self.address = directory_address
        self.directory_key = directory_key
        self.me = replace(me, meta={**me.meta, DELTAS: 1}) if me is not None else None
        self.interval = interval
        self.version = -1
        self.by_id: dict[str, Member] = {}
        self._by_topic: dict[str, list[Member]] = {}
        self._synced = asyncio.Event()
        self._changed = asyncio.Event()  # replaced (after being set) on every table change
        self.listeners: list[Listener] = []
        self.last_contact = 0.0
        self._pin: tuple[int, dict[str, str | None]] = (-2, {})

    def members(self, topic: str) -> list[Member]:
        return self._by_topic.get(topic, [])

    def alive(self, member_id: str) -> bool:
        return member_id in self.by_id

    def pinned_rpc(self, topic: str) -> str | None:
        """The lowest RPC version a live member of `topic` speaks (None: no member): a caller
        sends a method newer than that only when it can fall back (rolling upgrades)."""
        from cells.objects import versions
        return versions.pinned_rpc(m.meta for m in self.members(topic))

    def pinned_objects(self) -> dict[str, str | None]:
        """Per object, the lowest version any live member of the cell speaks: objects are sent
        at that version, so whoever a record is passed on to can read it."""
        if self._pin[0] != self.version:
            from cells.objects import versions
            self._pin = (self.version, versions.pinned_objects(m.meta for m in self.by_id.values()))
        return self._pin[1]

    def set_meta(self, **meta: Any) -> None:
        """Attach data (capacity, version, ...) to our next heartbeat."""
        if self.me is not None:
            self.me = replace(self.me, meta={**self.me.meta, **meta})

    async def wait_for_topic(self, topic: str, timeout: float) -> list[Member]:
        """The topic's members, waiting up to `timeout` for one to (re)join:
        a restarted peer is back in our table within one heartbeat."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._by_topic.get(topic):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiter = self._changed
            try:
                await asyncio.wait_for(waiter.wait(), remaining)
            except TimeoutError:
                break
        return self._by_topic.get(topic, [])

    async def wait_synced(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def beat_once(self) -> None:
        ctx = RequestContext(user="directory-view")
        if self.me is None:
            reply = await self.client.call_address(self.address, "table", {}, ctx, self.interval,
                                                   self.directory_key, "directory")
        else:
            reply = await self.client.call_address(self.address, "heartbeat",
                                                   {"member": self.me.to_wire(), "version": self.version},
                                                   ctx, self.interval, self.directory_key, "directory")
        self.last_contact = time.monotonic()
        if "members" in reply:
            self._install(reply)
        self._synced.set()

    def _install(self, reply: dict[str, Any]) -> None:
        received = {m.id: m for m in (Member.from_wire(d) for d in reply["members"])}
        if reply.get("delta"):  # only what changed since our version: the topics it touches are rebuilt
            gone = set(reply.get("left") or ())
            new = {mid: m for mid, m in self.by_id.items() if mid not in gone} | received
            touched = set(received) | gone
            by_topic = dict(self._by_topic)
            # received members by topic, once: a scan of them per touched topic made a delta of many changes
            # (hosts flapping on a loaded box) quadratic in every view, so beats were late and more flapped
            arrived: dict[str, list[Member]] = {}
            for m in received.values():
                for t in m.topics:
                    arrived.setdefault(t, []).append(m)
            for t in {t for mid in touched for m in (self.by_id.get(mid), new.get(mid)) if m for t in m.topics}:
                kept = [m for m in by_topic.get(t, []) if m.id not in touched]
                listed = sorted(kept + arrived.get(t, []), key=lambda m: m.id)
                if listed:
                    by_topic[t] = listed
                else:
                    by_topic.pop(t, None)
        else:
            new = {**self.by_id, **received} if reply.get("warming") else received  # warming: a restarted
            touched = set(new) | set(self.by_id)  # directory; who has not re-registered yet is not gone
            by_topic = {}
            for m in sorted(new.values(), key=lambda m: m.id):
                for t in m.topics:
                    by_topic.setdefault(t, []).append(m)
        joined, left = set(new) - set(self.by_id), set(self.by_id) - set(new)
        for mid in left:  # calls waiting on a member that left will never be answered
            self._abandon(self.by_id[mid].address, mid)
        for mid in touched & set(new) & set(self.by_id):  # nor those a restarted member's previous process held
            if _restarted(self.by_id[mid], new[mid]):
                LOG.info("%s restarted: its calls in flight are abandoned", mid)
                self._abandon(self.by_id[mid].address, mid)
        self.by_id, self._by_topic, self.version = new, by_topic, int(reply["version"])
        self._changed.set()
        self._changed = asyncio.Event()
        if joined or left:
            self._tell(joined, left)

    def _abandon(self, address: str, member_id: str) -> None:
        self.client.abandon(address, member_id)

    def _tell(self, joined: set[str], left: set[str]) -> None:
        for listener in self.listeners:
            try:
                listener(joined, left)
            except Exception:
                LOG.exception("directory listener failed")

    async def run(self) -> None:
        """Heartbeat forever; keeps the last table when the directory is unreachable."""
        while True:
            started = time.monotonic()
            try:
                await self.beat_once()
            except errors.CellcloudError as exc:
                LOG.debug("directory %s unreachable: %s", self.address, exc)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def leave(self) -> None:
        if self.me is None:
            return
        try:
            await self.client.call_address(self.address, "leave", {"member_id": self.me.id},
                                           RequestContext(), min(self.interval, 0.5), self.directory_key)
        except errors.RpcError:
            pass
