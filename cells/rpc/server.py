"""RpcServer: one bound ROUTER per service process, dispatching to a handler.

Only methods of the declared surface are callable. Handlers are
`async def method(self, ctx: RequestContext, **args)`. Requests past their
deadline are dropped; casts carrying an idempotency key run at most once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import zmq

from cells import errors
from cells.context import RequestContext
from cells.objects import versions
from cells.objects.base import newer
from cells.rpc import wire
from cells.rpc.transport import CurveKeys, ReaderSocket, make_socket

LOG = logging.getLogger(__name__)
SEEN_KEYS = 10_000


class RpcServer:
    def __init__(self, bind: str, handler: object, surface: dict[str, wire.Method],
                 curve: CurveKeys | None = None) -> None:
        self.bind = bind
        self.handler = handler
        self.surface = surface
        self.curve = curve
        self._sock: ReaderSocket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen_keys: OrderedDict[str, None] = OrderedDict()

    async def start(self) -> None:
        sock = make_socket(zmq.ROUTER, self.curve, server=True)
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
        self._sock = ReaderSocket(sock, self._on_frames)

    async def stop(self) -> None:
        if self._sock:
            self._sock.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            return
        peer, payload = frames
        try:
            msg = wire.unpack(payload)
            ctx = RequestContext.from_wire(msg.get("ctx") or {})
            method = str(msg["method"])
            msg_id = msg["id"]
        except Exception:  # noqa: BLE001 - a malformed envelope gets no answer: there is no id to answer to
            LOG.warning("dropping malformed RPC envelope from %r", peer)
            return
        if ctx.deadline is not None and ctx.deadline < time.time():
            LOG.info("dropping %s %s: deadline passed", method, ctx.request_id)
            return
        key = msg.get("key")
        if key:
            if key in self._seen_keys:
                return
            self._seen_keys[key] = None
            if len(self._seen_keys) > SEEN_KEYS:
                self._seen_keys.popitem(last=False)
        task = asyncio.ensure_future(self._dispatch(peer, msg_id, method, ctx, msg.get("args") or {},
                                                    bool(msg.get("reply", True)), msg.get("mv"), msg.get("ov")))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, peer: bytes, msg_id: int, method: str, ctx: RequestContext,
                        args: dict[str, Any], want_reply: bool, wanted: Any = None, reads: Any = None) -> None:
        try:
            declared = self.surface.get(method)
            if declared is None or not versions.serves(declared):  # a pinned (older) service lacks newer methods
                raise errors.UnknownMethod(method=method)
            if isinstance(wanted, str) and newer(wanted, declared.version):
                raise errors.UnsupportedVersion(peer=method, what="RPC method", have=declared.version, need=wanted)
            func = getattr(self.handler, method)
            result = await func(ctx, **versions.decode_args(method, args))
            # results in the object versions the caller reads (a caller from before versioning: plain 1.0)
            reply = wire.ok_reply(msg_id, versions.encode_result(method, result,
                                                                 reads if isinstance(reads, dict) else None))
        except errors.CellcloudError as exc:
            reply = wire.error_reply(msg_id, exc.to_wire())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            LOG.exception("RPC %s failed (%s)", method, ctx.request_id)
            reply = wire.error_reply(msg_id, {"code": "internal", "message": f"{type(exc).__name__}: {exc}",
                                              "kwargs": {}})
        if want_reply and self._sock is not None:
            try:
                self._sock.send([peer, reply])
            except zmq.ZMQError as exc:
                LOG.warning("could not reply to %s: %s", method, exc)
