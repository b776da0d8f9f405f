"""RpcClient: call / cast / fanout to the live members of a topic.

One DEALER per peer address; replies are matched to futures by message id.
Topics are resolved through a `DirectoryView` (the cell's routing table).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import Any

import zmq

from cells import errors
from cells.context import RequestContext
from cells.objects import versions as versions_
from cells.objects.base import newer
from cells.rpc import wire
from cells.rpc.directory import DirectoryView, Member
from cells.rpc.transport import CurveKeys, ReaderSocket, make_socket

LOG = logging.getLogger(__name__)
RETRY_MEMBERS = 3  # members a retry-safe call is tried on at most


def _for_member(member: Member, topic: str, method: wire.Method, args: dict[str, Any],
                view: DirectoryView) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(args as this member reads them, envelope versions). Refuses a method newer than the
    member speaks: the caller should have checked the cell's pin (DirectoryView.pinned_rpc)."""
    speaks = versions_.member_versions(member.meta)
    have = versions_.rpc_of(member.meta)
    if method.version != versions_.BASE_RPC and newer(method.version, have):
        raise errors.UnsupportedVersion(peer=member.id, what=f"RPC {topic}", have=have, need=method.version)
    pin = view.pinned_objects()  # the cell's lowest, so a record passed on stays readable
    target: dict[str, str | None] | None = None
    if speaks is not None:
        target = {name: min_version(str(v), pin.get(name)) for name, v in (speaks.get("objects") or {}).items()}
    asked = versions_.asked_objects()
    envelope = {"mv": method.version, "ov": asked} if asked is not None else None
    return versions_.encode_args(method, args, target), envelope


def min_version(a: str, b: str | None) -> str | None:
    """The older of two versions; None (a member from before versioning) is oldest."""
    if b is None:
        return None
    return b if newer(a, b) else a


def _check_kind(method: wire.Method, cast: bool) -> None:
    """A method is sent the way its declaration says: a call waits for a reply, a cast never does."""
    if method.cast != cast:
        declared, used = ("a cast", "call()") if method.cast else ("a call", "cast()")
        raise errors.RpcError(reason=f"{method.name} is declared {declared}: {used} cannot send it")


def _expire(fut: asyncio.Future[Any], method: str, topic: str, timeout: float) -> None:
    if not fut.done():  # the error is made only when a call does time out (its message costs)
        fut.set_exception(errors.RpcTimeout(method=method, topic=topic, timeout=round(timeout, 3)))


class _CallMetrics:
    def __init__(self) -> None:
        from cells.metrics import RPC_CALL_LATENCY, RPC_CALLS, RPC_CASTS
        self.calls, self.latency, self.casts = RPC_CALLS, RPC_CALL_LATENCY, RPC_CASTS


class RpcClient:
    """`metrics`: count calls and casts on the process's /metrics (cells/metrics.py); a CLI that serves none
    (cellctl status) passes False and never imports prometheus_client (~55 ms of CPU in each run)."""

    def __init__(self, curve: CurveKeys | None = None, metrics: bool = True) -> None:
        self.curve = curve
        self._metrics: _CallMetrics | None = _CallMetrics() if metrics else None
        self._dealers: dict[str, ReaderSocket] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._rr: dict[str, int] = {}
        self._by_address: dict[str, set[int]] = {}  # calls awaiting a reply, per peer address

    def close(self) -> None:
        for sock in self._dealers.values():
            sock.close()
        self._dealers.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(errors.RpcError(reason="client closed"))
        self._pending.clear()

    # --- address level ---------------------------------------------------

    def _dealer(self, address: str, server_key: bytes | None) -> ReaderSocket:
        sock = self._dealers.get(address)
        if sock is None:
            raw = make_socket(zmq.DEALER, self.curve, server_key=server_key)
            raw.connect(address)
            sock = ReaderSocket(raw, self._on_reply)
            self._dealers[address] = sock
        return sock

    def forget(self, address: str) -> None:
        sock = self._dealers.pop(address, None)
        if sock is not None:
            sock.close()

    def abandon(self, address: str, member: str) -> None:
        """`member` left the directory, or came back as a new process (the old one, and the
        requests it held, are gone): its pending retry-safe calls fail now (MemberGone) and are
        sent again to a live member, the restarted one included. Other calls keep waiting: a
        member that only missed beats (a loaded machine) may still answer, and resending them
        is not safe."""
        for msg_id in self._by_address.pop(address, set()):
            fut = self._pending.get(msg_id)
            if fut is not None and not fut.done():
                fut.set_exception(errors.MemberGone(member=member, method=getattr(fut, "method", "a call")))

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            msg = wire.unpack(frames[-1])
        except Exception:  # noqa: BLE001 - a reply we cannot read answers nothing; msgpack raises many kinds
            return
        fut = self._pending.pop(msg.get("id", -1), None)
        if fut is None or fut.done():
            return
        if msg.get("ok"):
            fut.set_result(msg.get("result"))
        else:
            fut.set_exception(errors.from_wire(msg.get("error") or {}))

    async def call_address(self, address: str, method: str, args: dict[str, Any], ctx: RequestContext,
                           timeout: float, server_key: bytes | None = None, topic: str = "",
                           versions: dict[str, Any] | None = None, abandonable: bool = False) -> Any:
        ctx = ctx.with_timeout(timeout)
        remaining = ctx.remaining() or timeout
        if remaining <= 0:
            raise errors.DeadlineExpired(method=method)
        msg_id = next(self._ids)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        fut.method = method  # type: ignore[attr-defined]  # named in MemberGone
        self._pending[msg_id] = fut
        if abandonable:
            self._by_address.setdefault(address, set()).add(msg_id)
        # call_later instead of asyncio.wait_for: no extra task per call on the hot path
        timer = loop.call_later(remaining, _expire, fut, method, topic or address, timeout)
        started, outcome = time.perf_counter(), "error"
        try:
            self._dealer(address, server_key).send([wire.request(msg_id, method, ctx.to_wire(), args, True,
                                                                 versions=versions)])
            result = await fut
            outcome = "ok"
            return result
        except errors.RpcTimeout:
            outcome = "timeout"
            raise
        except zmq.Again:
            raise errors.RpcError(reason=f"send queue to {address} is full") from None
        finally:
            if self._metrics is not None:
                self._metrics.calls.labels(method, outcome).inc()
                self._metrics.latency.labels(method).observe(time.perf_counter() - started)
            timer.cancel()
            self._pending.pop(msg_id, None)
            self._by_address.get(address, set()).discard(msg_id)

    def cast_address(self, address: str, method: str, args: dict[str, Any], ctx: RequestContext,
                     key: str | None = None, server_key: bytes | None = None, timeout: float = wire.NORMAL,
                     versions: dict[str, Any] | None = None) -> None:
        ctx = ctx.with_timeout(timeout)
        msg = wire.request(next(self._ids), method, ctx.to_wire(), args, False, key or str(uuid.uuid4()),
                           versions)
        try:
            self._dealer(address, server_key).send([msg])
            if self._metrics is not None:
                self._metrics.casts.labels(method).inc()
        except zmq.Again:
            raise errors.RpcError(reason=f"send queue to {address} is full") from None

    # --- topic level -----------------------------------------------------

    async def _pick(self, view: DirectoryView, topic: str, ctx: RequestContext,
                    avoid: frozenset[str] = frozenset(), retrying: bool = False) -> Member:
        members = [m for m in view.members(topic) if m.id not in avoid] or view.members(topic)
        if not members:
            # first sync at start-up, or a member restarting: give it up to two beats; a call being
            # retried (its member died) waits for a restarted one as long as its deadline allows
            await view.wait_synced(min(1.0, ctx.remaining() or 1.0))
            wait = (ctx.remaining() or view.interval) if retrying \
                else min(2 * view.interval, ctx.remaining() or view.interval)
            members = await view.wait_for_topic(topic, wait)
        if not members:
            raise errors.NoLiveMember(topic=topic)
        n = self._rr.get(topic, 0)
        self._rr[topic] = n + 1
        return members[n % len(members)]

    async def call(self, view: DirectoryView, topic: str, method: wire.Method, args: dict[str, Any],
                   ctx: RequestContext, timeout: float | None = None) -> Any:
        """A retry-safe method whose member dies (MemberGone) or does not answer in time is sent
        again to another live member of the topic, within the same overall deadline; the only
        member of a topic that died is waited for (the supervisor restarts it) and asked again."""
        _check_kind(method, cast=False)
        budget = timeout or method.timeout
        ctx = ctx.with_timeout(budget)
        tried: set[str] = set()
        while True:
            member = await self._pick(view, topic, ctx, frozenset(tried), retrying=bool(tried))
            tried.add(member.id)
            remaining = ctx.remaining() or budget
            # a retry-safe call to a shared topic leaves time for a second member
            others = self.retry_slice(view, topic, method, tried)
            sent, versions = _for_member(member, topic, method, args, view)
            try:
                result = await self.call_address(member.address, method.name, sent, ctx,
                                                 remaining / 2 if others else remaining, member.public_key, topic,
                                                 versions, abandonable=method.retry_safe)
                return versions_.decode_result(method, result)
            except (errors.MemberGone, errors.RpcTimeout):
                if not (method.retry_safe and (ctx.remaining() or 0) > 0 and len(tried) < RETRY_MEMBERS):
                    raise
                LOG.info("%s to %s (%s) unanswered: trying another member", method.name, member.id, topic)

    @staticmethod
    def retry_slice(view: DirectoryView, topic: str, method: wire.Method, tried: set[str]) -> bool:
        return method.retry_safe and any(m.id not in tried for m in view.members(topic))

    async def cast(self, view: DirectoryView, topic: str, method: wire.Method, args: dict[str, Any],
                   ctx: RequestContext, key: str | None = None) -> None:
        _check_kind(method, cast=True)
        member = await self._pick(view, topic, ctx)
        sent, versions = _for_member(member, topic, method, args, view)
        self.cast_address(member.address, method.name, sent, ctx, key, member.public_key, method.timeout, versions)

    async def fanout(self, view: DirectoryView, topic: str, method: wire.Method, args: dict[str, Any],
                     ctx: RequestContext) -> int:
        """Cast to every live member of `topic`; returns how many were sent to."""
        _check_kind(method, cast=True)
        members = view.members(topic)
        for m in members:
            sent, versions = _for_member(m, topic, method, args, view)
            self.cast_address(m.address, method.name, sent, ctx, None, m.public_key, method.timeout, versions)
        return len(members)
