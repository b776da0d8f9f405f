"""A real cell (router, conductor, scheduler, fake computes: tests/unit/test_conductor.py) whose
services talk CURVE with keys of their own, plus clients holding any principal's key."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cells.config import ServiceSpec
from cells.context import RequestContext
from cells.rpc import security
from cells.rpc.client import RpcClient
from cells.rpc.directory import DirectoryView
from cells.rpcapi.conductor import ConductorAPI
from tests.unit.test_conductor import BEAT, ApiCaller, Cell

CALL_TIMEOUT = 3.0


class KeyedCaller(ApiCaller):
    """The API process's side of a cell, holding the key of principal `owner`."""

    def __init__(self, state: Path, owner: str, router: str, router_key: bytes | None) -> None:
        self.client = RpcClient(security.load_keys(state, owner))
        self.view = DirectoryView(self.client, router, None, BEAT, directory_key=router_key)


class CurveCell(Cell):
    """Every service, the API and the operator with a CURVE key of its own, as `cellctl up` makes them."""

    def __init__(self, tmp_path: Path, modes: dict[str, str]) -> None:
        super().__init__(tmp_path, modes)
        self.state = tmp_path
        api = ServiceSpec("api", "api", "ctl", "127.0.0.1:0")
        services = tuple(replace(s, public_key=security.ensure_keypair(tmp_path, s.id))
                         for s in (*self.cluster.services, api))
        self.cluster = replace(self.cluster, curve=True, services=services,
                               operator_key=security.ensure_keypair(tmp_path, security.OPERATOR))
        router = self.cluster.cell("cell1").router
        self.api = KeyedCaller(tmp_path, "api", router, self.cluster.router_key("cell1"))
        self.conductor = ConductorAPI(self.api)
        self._clients: list[RpcClient] = []

    def client_of(self, owner: str) -> RpcClient:
        """An RPC client holding the key of `owner` (a service id, "api" or "operator")."""
        client = RpcClient(security.load_keys(self.state, owner))
        self._clients.append(client)
        return client

    def address(self, service_id: str) -> tuple[str, bytes]:
        """(address, server key) of a service of the cell."""
        spec = self.cluster.service(service_id)
        return spec.bind, spec.public_key.encode()

    async def call_as(self, owner: str, service_id: str, method: str, args: dict[str, Any],
                      ctx: RequestContext | None = None) -> Any:
        """Call `method` of `service_id` straight, with `owner`'s key."""
        address, key = self.address(service_id)
        return await self.client_of(owner).call_address(address, method, args, ctx or RequestContext(),
                                                        CALL_TIMEOUT, server_key=key)

    async def close(self) -> None:
        for client in self._clients:
            client.close()
        try:
            await super().close()
        finally:
            security.stop_allowlist()
