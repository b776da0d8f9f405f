"""The compute worker served by a real cells.service_process.Service: real ZeroMQ on
loopback, a real cell directory, libvirt's test hypervisor, and an in-memory
conductor served over RPC (the real conductor is another suite's subject)."""
from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from cells.context import RequestContext
from cells.objects.instance import PowerState, TaskState, VmState
from cells.objects.records import InstanceRecord
from cells.rpc.directory import SURFACE as DIRECTORY_SURFACE
from cells.rpc.directory import Directory
from cells.rpcapi.compute import SURFACE as COMPUTE_SURFACE
from cells.rpcapi.compute import ComputeAPI
from cells.rpcapi.conductor import SURFACE as CONDUCTOR_SURFACE
from cells.service_process import Service
from node.compute.manager import ComputeManager
from node.imagecache import ImageCache
from tests.compute_fakes import FakeConductor, FakeFetcher, cluster_config, image_record
from tests.conftest import free_port

IMAGE = b"disk bits served by the fake image store"


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_build_and_terminate_over_zeromq(tmp_path: Path) -> None:
    router, conductor_bind, compute_bind = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    cluster = cluster_config(str(tmp_path), router=router, compute_bind=compute_bind,
                             conductor_bind=conductor_bind, heartbeat=0.2)
    conductor = FakeConductor()
    spec = cluster.service("cell1/compute/node1")
    manager = ComputeManager(cluster, spec, images=ImageCache(str(tmp_path / "images"),
                                                              FakeFetcher({"img-1": IMAGE})))
    conductor_svc = Service(cluster, cluster.service("cell1/conductor"), conductor, CONDUCTOR_SURFACE,
                            ("conductor",))
    services = [
        Service(cluster, cluster.service("cell1/router"), Directory(cluster.heartbeat_interval),
                DIRECTORY_SURFACE, ("router",)),
        conductor_svc,
        Service(cluster, spec, manager, COMPUTE_SURFACE, ("compute.node1",)),
    ]
    stop = asyncio.Event()
    runs = [asyncio.ensure_future(s.run(stop)) for s in services]
    try:
        await eventually(lambda: "node1" in conductor.nodes)  # the resource report crossed the wire
        rec = conductor.add(str(uuidlib.uuid4()), image=image_record("img-1", IMAGE))
        ctx = RequestContext(project="p", user="u", roles=("member",))
        await eventually(lambda: bool(conductor_svc.view.members("compute.node1")))
        await ComputeAPI(conductor_svc).build_and_run_instance(ctx, "node1", cast(InstanceRecord, dict(rec)))  # the fake conductor holds the fields a build reads
        await eventually(lambda: conductor.instances[rec["uuid"]]["vm_state"] == VmState.ACTIVE)
        assert conductor.instances[rec["uuid"]]["power_state"] == PowerState.RUNNING
        assert await manager.driver.list_instance_uuids() == [rec["uuid"]]

        conductor.instances[rec["uuid"]]["task_state"] = TaskState.DELETING
        await ComputeAPI(conductor_svc).terminate_instance(ctx, "node1", cast(InstanceRecord, dict(rec)))
        await eventually(lambda: rec["uuid"] not in conductor.instances)
        assert await manager.driver.list_instance_uuids() == []
    finally:
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 10)
    assert [r for r in results if isinstance(r, BaseException)] == []
