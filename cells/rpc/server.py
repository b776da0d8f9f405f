"""RpcServer: one bound ROUTER per service process, dispatching to a handler.

Only methods of the declared surface are callable, and only by the principals
each declares (`Method.callers`): the caller's principal comes from its CURVE
key (zmq's ZAP User-Id on each message, cells/rpc/security.py), never from the
envelope. Handlers are `async def method(self, ctx: RequestContext, **args)`;
`ctx.principal` is the caller. Requests past their deadline are dropped; casts
carrying an idempotency key run at most once. A malformed envelope is dropped
alone; at most `concurrency` handlers run at once, `max_waiting` more wait, and
past that a request is answered ServiceBusy.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import zmq

from cells import errors, logtrail
from cells.context import RequestContext
from cells.objects import versions
from cells.objects.base import newer
from cells.rpc import security, wire
from cells.rpc.principal import Principal, effective_context, may_call
from cells.rpc.transport import MAX_REQUEST, CurveKeys, ReaderSocket, make_socket

LOG = logging.getLogger(__name__)
SEEN_KEYS = 10_000
# Handlers running at once per server, and requests waiting beyond them. High, because a handler may
# wait on a peer that calls back into this server (a conductor's flow waits on a compute that reports
# to the conductor): a bound that low would wait until those calls time out.
MAX_CONCURRENT = 512
MAX_WAITING = 4096


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    ctx: RequestContext
    args: dict[str, Any]
    reply: bool
    key: str | None
    wanted: str | None  # "mv": the method version the caller means
    reads: dict[str, Any] | None  # "ov": the object versions it reads results in


def _optional(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TypeError(f"{what} has the wrong type")
    return value


def parse_request(data: Any) -> Request:
    """A request envelope, every field of the type it must have; TypeError (ValueError: not msgpack) otherwise."""
    msg = wire.unpack(data)
    msg_id, method = msg.get("id"), msg.get("method")
    args = {} if msg.get("args") is None else msg["args"]
    raw_ctx = {} if msg.get("ctx") is None else msg["ctx"]
    if not isinstance(msg_id, int) or isinstance(msg_id, bool):
        raise TypeError("id is not an integer")
    if not isinstance(method, str) or not method:
        raise TypeError("method is not a name")
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise TypeError("args is not a map of names")
    if not isinstance(raw_ctx, dict):
        raise TypeError("ctx is not a map")
    roles = raw_ctx.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TypeError("ctx.roles is not a list of names")
    for name in ("request_id", "project", "user"):
        _optional(raw_ctx.get(name), str, f"ctx.{name}")
    _optional(raw_ctx.get("deadline"), (int, float), "ctx.deadline")
    for flag in ("is_admin_project", "system_scope"):
        if raw_ctx.get(flag) is not None and not isinstance(raw_ctx[flag], bool):
            raise TypeError(f"ctx.{flag} has the wrong type")
    ov = _optional(msg.get("ov"), dict, "ov")
    return Request(msg_id, method, RequestContext.from_wire(raw_ctx), args, bool(msg.get("reply", True)),
                   _optional(msg.get("key"), str, "key"), _optional(msg.get("mv"), str, "mv"), ov)


class RpcServer:
    def __init__(self, bind: str, handler: object, surface: dict[str, wire.Method],
                 curve: CurveKeys | None = None, cell: str | None = None, concurrency: int = MAX_CONCURRENT,
                 max_waiting: int = MAX_WAITING, max_message: int = MAX_REQUEST) -> None:
        """`cell`: the cell this server belongs to (a cell's principals call only their own cell's servers)."""
        self.bind = bind
        self.handler = handler
        self.surface = surface
        self.curve = curve
        self.cell = cell
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.max_message = max_message
        self._slots = asyncio.Semaphore(concurrency)
        self._admitted = 0  # requests running or waiting for a slot
        self._sock: ReaderSocket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen_keys: OrderedDict[str, None] = OrderedDict()

    @property
    def admitted(self) -> int:
        """Requests running or waiting for a handler slot."""
        return self._admitted

    async def start(self) -> None:
        if self.curve is None:
            LOG.warning("%s: PLAINTEXT DEV MODE (security.curve: false): callers are not authenticated, every "
                        "peer may call every method with any context. Never run a cluster this way outside a "
                        "developer's machine.", self.bind)
        sock = make_socket(zmq.ROUTER, self.curve, server=True, max_message=self.max_message)
        # a socket closed a moment ago (same process, or a restarted service) may
        # still hold the port while zmq's I/O thread tears it down: retry briefly
        for attempt in range(40):
            try:
                sock.bind(self.bind)
                break
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or attempt == 39:
                    sock.close(linger=0)
                    raise
                await asyncio.sleep(0.05)
        self._sock = ReaderSocket(sock, self._on_frames, copy=False)

    async def stop(self) -> None:
        if self._sock:
            self._sock.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _principal(self, frame: zmq.Frame) -> Principal | None:
        user_id = frame.get("User-Id")  # set by our ZAP handler for the connection's key
        return security.principal_of(user_id) if isinstance(user_id, str) else None

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            return
        peer, payload = frames[0].bytes, frames[1]
        principal = None
        if self.curve is not None:
            principal = self._principal(payload)
            if principal is None:  # a key the ZAP handler accepted but no longer knows (keys reloaded)
                LOG.warning("dropping a request from a peer of no known principal")
                return
        try:
            req = parse_request(payload.buffer)
        except Exception as exc:  # noqa: BLE001  # malformed: no answer, there may be no id to answer to
            LOG.warning("dropping malformed RPC envelope from %s: %s", principal.name if principal else repr(peer),
                        str(exc)[:200] or type(exc).__name__)
            return
        ctx = req.ctx
        if ctx.deadline is not None and ctx.deadline < time.time():
            LOG.info("dropping %s %s: deadline passed", req.method, ctx.request_id)
            return
        if req.key:
            if req.key in self._seen_keys:
                return
            self._seen_keys[req.key] = None
            if len(self._seen_keys) > SEEN_KEYS:
                self._seen_keys.popitem(last=False)
        task = asyncio.ensure_future(self._dispatch(peer, req, principal))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _authorize(self, principal: Principal | None, declared: wire.Method) -> None:
        if principal is None:  # plaintext dev mode: trusted (said loudly at start)
            return
        if not may_call(principal, declared.callers, self.cell):
            LOG.warning("refused %s from %s (%s): not among its callers (%s)", declared.name, principal.name,
                        principal.id, ", ".join(sorted(declared.callers)) or "none")
            raise errors.RpcForbidden(principal=principal.name, method=declared.name,
                                      reason="not among the principals it allows")

    async def _dispatch(self, peer: bytes, req: Request, principal: Principal | None) -> None:
        # this task's log lines, and those of every task the handler starts, carry the request id
        logtrail.bind_request(req.ctx.request_id)
        method, msg_id = req.method, req.id
        try:
            declared = self.surface.get(method)
            if declared is None or not versions.serves(declared):  # a pinned (older) service lacks newer methods
                raise errors.UnknownMethod(method=method)
            self._authorize(principal, declared)
            if isinstance(req.wanted, str) and newer(req.wanted, declared.version):
                raise errors.UnsupportedVersion(peer=method, what="RPC method", have=declared.version,
                                                need=req.wanted)
            if self._admitted >= self.concurrency + self.max_waiting:
                raise errors.ServiceBusy(service=self.bind, waiting=self._admitted - self.concurrency)
            func = getattr(self.handler, method)
            ctx = effective_context(req.ctx, principal)
            self._admitted += 1
            try:
                async with self._slots:
                    result = await func(ctx, **versions.decode_args(declared, req.args))
            finally:
                self._admitted -= 1
            # results in the object versions the caller reads (a caller from before versioning: plain 1.0)
            reply = wire.ok_reply(msg_id, versions.encode_result(declared, result, req.reads))
        except errors.CellcloudError as exc:
            reply = wire.error_reply(msg_id, exc.to_wire())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            LOG.exception("RPC %s failed (%s)", method, req.ctx.request_id)
            reply = wire.error_reply(msg_id, {"code": "internal", "message": f"{type(exc).__name__}: {exc}",
                                              "kwargs": {}})
        if req.reply and self._sock is not None:
            try:
                self._sock.send([peer, reply])
            except zmq.ZMQError as exc:
                LOG.warning("could not reply to %s: %s", method, exc)
