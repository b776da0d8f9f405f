"""A peer of the cluster sending malformed or oversized envelopes disturbs no other request;
a flood beyond the server's bound gets a clear busy error, not unbounded work."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from cells import errors
from cells.context import RequestContext
from cells.rpc import security, wire
from cells.rpc.client import RpcClient
from cells.rpc.principal import COMPUTE, CONDUCTOR, Principal, callers
from cells.rpc.server import RpcServer
from cells.rpc.transport import MAX_REQUEST, make_socket
from tests.conftest import free_port

SURFACE = wire.surface(wire.Method("echo", callers=callers(COMPUTE)), wire.Method("hold", callers=callers(COMPUTE)))
OWNERS = {"cell1/conductor": Principal(CONDUCTOR, "cell1/conductor", "ctl", "cell1"),
          "cell1/compute/node1": Principal(COMPUTE, "cell1/compute/node1", "node1", "cell1")}


class Handler:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.echoed: list[Any] = []

    async def echo(self, ctx: RequestContext, value: Any) -> Any:
        self.echoed.append(value)
        return value

    async def hold(self, ctx: RequestContext) -> str:
        await self.gate.wait()
        return "done"


@dataclass
class Served:
    state: Path
    address: str
    server_key: bytes
    handler: Handler
    server: RpcServer

    def client(self) -> RpcClient:
        return RpcClient(security.load_keys(self.state, "cell1/compute/node1"))

    def raw_peer(self) -> zmq.Socket[bytes]:
        """A DEALER of the cluster (a compute's key) that sends whatever bytes it likes."""
        sock = make_socket(zmq.DEALER, security.load_keys(self.state, "cell1/compute/node1"),
                           server_key=self.server_key)
        sock.connect(self.address)
        return sock

    async def echo(self, value: Any) -> Any:
        client = self.client()
        try:
            return await client.call_address(self.address, "echo", {"value": value}, RequestContext(), 5.0,
                                             server_key=self.server_key)
        finally:
            client.close()


async def _serve(tmp_path: Path, **limits: int) -> AsyncIterator[Served]:
    keys = {owner: security.ensure_keypair(tmp_path, owner) for owner in OWNERS}
    security.start_allowlist({keys[o]: p for o, p in OWNERS.items()})
    address = f"tcp://127.0.0.1:{free_port()}"
    handler = Handler()
    server = RpcServer(address, handler, SURFACE, security.load_keys(tmp_path, "cell1/conductor"), cell="cell1",
                       **limits)
    await server.start()
    try:
        yield Served(tmp_path, address, keys["cell1/conductor"].encode(), handler, server)
    finally:
        handler.gate.set()
        await server.stop()
        security.stop_allowlist()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in _serve(tmp_path):
        yield s


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in _serve(tmp_path, concurrency=1, max_waiting=1):
        yield s


def _envelope(**fields: Any) -> bytes:
    msg = {"v": 1, "id": 1, "method": "echo", "ctx": {}, "args": {"value": "bad"}, "reply": True, "key": None}
    msg.update(fields)
    return bytes(msgpack.packb(msg, use_bin_type=True))


MALFORMED = [
    msgpack.packb(["echo", 1, {}], use_bin_type=True),  # msgpack of a list
    b"\xc1 not msgpack",
    _envelope(id={"a": 1}),  # id as a map (unhashable)
    _envelope(id=[1]),
    _envelope(method=7),
    _envelope(args=[1, 2]),
    _envelope(key={"k": 1}),  # an idempotency key that is a map (unhashable)
    _envelope(key=["k"]),
    _envelope(ctx={"deadline": "tomorrow"}),
    _envelope(ctx={"roles": "admin"}),
    _envelope(ctx=[]),
    _envelope(mv=1.5),
]


async def test_malformed_envelopes_are_dropped_and_the_next_request_is_answered(served: Served) -> None:
    peer = served.raw_peer()
    try:
        for payload in MALFORMED:
            peer.send(payload)
        peer.send_multipart([b"two", b"frames"])
        assert await served.echo("after") == "after"
    finally:
        peer.close(linger=0)
    assert served.handler.echoed == ["after"]  # no malformed one reached the handler


async def test_a_frame_over_maxmsgsize_does_not_stop_other_requests(served: Served) -> None:
    """A frame over MAXMSGSIZE drops that peer's connection inside zmq: it never reaches the handler,
    and a request from another connection is still answered."""
    peer = served.raw_peer()
    try:
        peer.send(_envelope(args={"value": "x" * (MAX_REQUEST + 1024)}))
        peer.send(_envelope(args={"value": "x" * (2 * 1024 * 1024)}, id=2))  # queued behind it: lost with it
        await asyncio.sleep(0.3)
        assert await served.echo("still here") == "still here"
    finally:
        peer.close(linger=0)
    assert "x" * (MAX_REQUEST + 1024) not in served.handler.echoed


async def test_requests_beyond_the_concurrency_bound_wait_then_get_service_busy(small: Served) -> None:
    """One handler at a time, one more waiting: a third request is answered ServiceBusy at once; the
    two admitted ones finish once the handler is released."""
    client = small.client()
    try:
        def hold() -> asyncio.Task[Any]:
            return asyncio.ensure_future(client.call_address(small.address, "hold", {}, RequestContext(), 5.0,
                                                             server_key=small.server_key))
        first, second = hold(), hold()
        for _ in range(500):  # both reached the server: one runs, one waits
            if small.server.admitted == 2:
                break
            await asyncio.sleep(0.01)
        assert small.server.admitted == 2
        with pytest.raises(errors.ServiceBusy):
            await client.call_address(small.address, "hold", {}, RequestContext(), 5.0, server_key=small.server_key)
        assert not first.done() and not second.done()
        small.handler.gate.set()
        assert list(await asyncio.gather(first, second)) == ["done", "done"]
    finally:
        client.close()
