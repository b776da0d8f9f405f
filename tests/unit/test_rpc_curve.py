"""CURVE on every socket: members of the cluster talk, a foreign key or a
plaintext peer gets no answer at all."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cells import errors
from cells.context import RequestContext
from cells.rpc import security, wire
from cells.rpc.client import RpcClient
from cells.rpc.principal import COMPUTE, CONDUCTOR, Principal, callers
from cells.rpc.server import RpcServer
from tests.conftest import free_port

SURFACE = wire.surface(wire.Method("echo", callers=callers(COMPUTE)))


class Echo:
    async def echo(self, ctx: RequestContext, value: Any) -> Any:
        return value


async def test_only_cluster_keys_get_answers(tmp_path: Path) -> None:
    server_pub = security.ensure_keypair(tmp_path, "cell1/conductor")
    member_pub = security.ensure_keypair(tmp_path, "cell1/compute/node1")
    security.ensure_keypair(tmp_path / "elsewhere", "intruder")
    assert security.ensure_keypair(tmp_path, "cell1/conductor") == server_pub  # made once, then reused
    assert (security.key_path(tmp_path, "cell1/conductor").stat().st_mode & 0o777) == 0o600

    security.start_allowlist({server_pub: Principal(CONDUCTOR, "cell1/conductor", "ctl", "cell1"),
                              member_pub: Principal(COMPUTE, "cell1/compute/node1", "node1", "cell1")})
    address = f"tcp://127.0.0.1:{free_port()}"
    server = RpcServer(address, Echo(), SURFACE, security.load_keys(tmp_path, "cell1/conductor"))
    await server.start()
    member = RpcClient(security.load_keys(tmp_path, "cell1/compute/node1"))
    intruder = RpcClient(security.load_keys(tmp_path / "elsewhere", "intruder"))
    plaintext = RpcClient()
    try:
        assert await member.call_address(address, "echo", {"value": 7}, RequestContext(), 2.0,
                                         server_key=server_pub.encode()) == 7
        # A refused handshake tears the connection down: a send before that is never answered
        # (RpcTimeout), one after finds no peer and is refused at once (RpcError); never an answer.
        with pytest.raises(errors.RpcError):
            await intruder.call_address(address, "echo", {"value": 7}, RequestContext(), 0.5,
                                        server_key=server_pub.encode())
        with pytest.raises(errors.RpcError):
            await plaintext.call_address(address, "echo", {"value": 7}, RequestContext(), 0.5)
    finally:
        for c in (member, intruder, plaintext):
            c.close()
        await server.stop()
        security.stop_allowlist()
