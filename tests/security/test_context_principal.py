"""Handlers see the principal of the caller's key; a user's context (project, roles) is honoured
only from the API (and the operator), never from a host's worker."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cells import errors
from cells.context import RequestContext
from cells.rpc import security
from cells.rpc.client import RpcClient
from cells.rpc.principal import API, COMPUTE, CONDUCTOR, OPERATOR, Principal
from cells.rpc.server import RpcServer
from cells.rpcapi.conductor import SURFACE
from tests.conftest import free_port

FORGED = RequestContext(project="victim-project", user="mallory", roles=("admin", "member"))
OWNERS = {"api": Principal(API, "api"), "operator": Principal(OPERATOR, "operator"),
          "cell1/conductor": Principal(CONDUCTOR, "cell1/conductor", "ctl", "cell1"),
          "cell1/compute/node1": Principal(COMPUTE, "cell1/compute/node1", "node1", "cell1")}


class Recorder:
    """A conductor surface whose instance_by_address and project_usage say what context they were handed."""

    async def project_usage(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        return await self.instance_by_address(ctx, project_id)

    async def instance_by_address(self, ctx: RequestContext, address: str) -> dict[str, Any]:
        p = ctx.principal
        return {"project": ctx.project, "user": ctx.user, "roles": list(ctx.roles),
                "principal": None if p is None else [p.kind, p.host, p.cell]}


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    keys = {owner: security.ensure_keypair(tmp_path, owner) for owner in OWNERS}
    security.start_allowlist({keys[o]: p for o, p in OWNERS.items()})
    address = f"tcp://127.0.0.1:{free_port()}"
    srv = RpcServer(address, Recorder(), SURFACE, security.load_keys(tmp_path, "cell1/conductor"), cell="cell1")
    await srv.start()
    try:
        yield tmp_path, address, keys["cell1/conductor"].encode()
    finally:
        await srv.stop()
        security.stop_allowlist()


async def _seen_by_handler(server: Any, owner: str, method: str = "instance_by_address",
                           args: dict[str, Any] | None = None) -> dict[str, Any]:
    state, address, server_key = server
    client = RpcClient(security.load_keys(state, owner))
    try:
        seen: dict[str, Any] = await client.call_address(address, method, args or {"address": "10.0.0.5"}, FORGED, 3.0,
                                                         server_key=server_key)
        return seen
    finally:
        client.close()


async def test_roles_and_project_from_a_compute_are_not_honoured(server: Any) -> None:
    """A compute's envelope claims admin in another project: the handler sees a service acting
    for no project, and the compute's own principal."""
    assert await _seen_by_handler(server, "cell1/compute/node1") == {
        "project": None, "user": "compute@node1", "roles": ["service"], "principal": ["compute", "node1", "cell1"]}


async def test_the_operator_carries_the_users_context(server: Any) -> None:
    """The operator may call every method, with the context it sends (the API's key is refused here:
    the metadata lookup is not the API's)."""
    assert await _seen_by_handler(server, "operator") == {
        "project": "victim-project", "user": "mallory", "roles": ["admin", "member"],
        "principal": ["operator", "", None]}
    with pytest.raises(errors.RpcForbidden):
        await _seen_by_handler(server, "api")


async def test_the_api_carries_the_users_context(server: Any) -> None:
    assert await _seen_by_handler(server, "api", "project_usage", {"project_id": "victim-project"}) == {
        "project": "victim-project", "user": "mallory", "roles": ["admin", "member"], "principal": ["api", "", None]}


async def test_a_principal_outside_the_callers_is_refused_before_the_handler(server: Any) -> None:
    """instance_by_address allows computes (their metadata service): the conductor's own key is refused."""
    with pytest.raises(errors.RpcForbidden):
        await _seen_by_handler(server, "cell1/conductor")
