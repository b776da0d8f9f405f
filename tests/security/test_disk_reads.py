"""A compute serves a guest's disks (disk_info, read_disk) only to the destination of a move of
that guest from it that is in progress, as the reader's CURVE key says."""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cells import errors
from cells.config import ServiceSpec
from cells.context import RequestContext
from cells.rpc import security
from cells.rpc.client import RpcClient
from cells.rpc.principal import principals_of
from cells.rpc.server import RpcServer
from cells.rpcapi.compute import SURFACE
from node.compute.manager import ComputeManager
from tests.compute_fakes import FakeConductor, cluster_config
from tests.conftest import free_port

SMALL = {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 96, "disk": 1}


class Source:
    """node1's compute, served with CURVE, and clients holding the keys of the cell's principals."""

    def __init__(self, tmp_path: Path) -> None:
        base = cluster_config(str(tmp_path), compute_bind=f"tcp://127.0.0.1:{free_port()}")
        others = [ServiceSpec(f"cell1/compute/{h}", "compute", h, f"tcp://127.0.0.1:{free_port()}", "cell1")
                  for h in ("node2", "node3")]
        services = tuple(replace(s, public_key=security.ensure_keypair(tmp_path, s.id))
                         for s in (*base.services, *others))
        self.cluster = replace(base, services=services, curve=True)
        self.state = tmp_path
        self.spec = self.cluster.service("cell1/compute/node1")
        self.manager = ComputeManager(self.cluster, self.spec)
        self.server = RpcServer(self.spec.bind, self.manager, SURFACE,
                                security.load_keys(tmp_path, self.spec.id), cell="cell1")
        self.clients: list[RpcClient] = []

    async def call_as(self, owner: str, method: str, args: dict[str, Any]) -> Any:
        client = RpcClient(security.load_keys(self.state, owner))
        self.clients.append(client)
        return await client.call_address(self.spec.bind, method, args, RequestContext(), 5.0,
                                         server_key=self.spec.public_key.encode())


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Source]:
    src = Source(tmp_path)
    security.start_allowlist(principals_of(src.cluster))
    await src.manager.start(FakeConductor())
    background = asyncio.ensure_future(src.manager.background())  # its start-up sync lets moves in
    await src.server.start()
    try:
        yield src
    finally:
        background.cancel()
        for client in src.clients:
            client.close()
        await src.server.stop()
        await src.manager.stop()
        security.stop_allowlist()


def _move(uuid: str, dest: str) -> dict[str, Any]:
    instance = {"uuid": uuid, "name": "vm", "project_id": "p", "user_id": "u", "host": "node1", "flavor": SMALL,
                "vm_state": "active", "task_state": "resize_prep", "power_state": 4, "image": {}}
    migration = {"uuid": str(uuidlib.uuid4()), "instance_uuid": uuid, "migration_type": "resize",
                 "source_host": "node1", "dest_host": dest, "old_flavor": SMALL, "new_flavor": SMALL,
                 "old_vm_state": "active"}
    return {"instance": instance, "migration": migration}


async def test_read_disk_only_for_the_destination_of_a_move_in_progress(source: Source) -> None:
    uuid = str(uuidlib.uuid4())
    chunk = {"uuid": uuid, "name": "disk", "offset": 0, "length": 1024}
    for reader in ("cell1/compute/node2", "cell1/compute/node3"):  # no move yet: nobody reads
        with pytest.raises(errors.RpcForbidden):
            await source.call_as(reader, "read_disk", chunk)
    await source.call_as("cell1/conductor", "prep_move", _move(uuid, "node2"))
    with pytest.raises(errors.RpcForbidden):  # a host that is not the move's destination
        await source.call_as("cell1/compute/node3", "read_disk", chunk)
    with pytest.raises(errors.RpcForbidden):
        await source.call_as("cell1/compute/node3", "disk_info", {"uuid": uuid})
    # the destination gets past the check: the test hypervisor keeps no disk files to serve
    assert await source.call_as("cell1/compute/node2", "disk_info", {"uuid": uuid}) == []
    with pytest.raises(errors.CellcloudError) as answered:
        await source.call_as("cell1/compute/node2", "read_disk", chunk)
    assert not isinstance(answered.value, errors.RpcForbidden)
    await source.call_as("cell1/conductor", "confirm_move", _move(uuid, "node2"))
    with pytest.raises(errors.RpcForbidden):  # the move is over
        await source.call_as("cell1/compute/node2", "read_disk", chunk)


async def test_a_compute_cannot_drive_another_computes_moves(source: Source) -> None:
    """prep_move and the other move steps are the conductor's: a compute's key is refused."""
    with pytest.raises(errors.RpcForbidden):
        await source.call_as("cell1/compute/node2", "prep_move", _move(str(uuidlib.uuid4()), "node2"))
