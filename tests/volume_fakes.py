"""Fakes for volume tests: a fake compute hypervisor and the conductor's Service as the
volume flows use it, and a cell with the real volume flows over a real SQLite cell DB and a
real volume worker (file backend, local target) in the same process (RPC hops are direct calls)."""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows import volumes as flows
from cells.config import HostSpec, ServiceSpec
from cells.context import RequestContext, admin_context
from cells.db.engine import Database
from cells.db.schema import ensure_schema
from cells.rpc.directory import Member
from cells.rpc.wire import Method
from node.imagecache import ImageCache
from node.volume.backends.file import FileBackend
from node.volume.manager import VolumeManager
from node.volume.targets.local import LocalTarget
from tests.compute_fakes import FakeFetcher, cluster_config


class FakeCompute:
    """compute.<host>: remembers what is plugged where; `fail` makes the next hot-plug fail."""

    def __init__(self) -> None:
        self.plugged: dict[str, dict[str, Any]] = {}
        self.fail: str | None = None

    async def attach_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str,
                            connection_info: dict[str, Any], device: str | None = None) -> dict[str, Any]:
        if self.fail:
            raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid, reason=self.fail)
        self.plugged[volume_id] = {"instance": instance_uuid, "info": connection_info}
        return {"device": device}

    async def extend_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str, new_size: int) -> None:
        if self.fail:
            raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid, reason=self.fail)
        self.plugged[volume_id]["size"] = new_size

    async def detach_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str) -> None:
        if self.fail:
            raise errors.VolumeAttachFailed(volume_id=volume_id, instance_id=instance_uuid, reason=self.fail)
        self.plugged.pop(volume_id, None)


class FakeService:
    """The conductor's Service as flows use it: call() by topic, a directory view, the cluster."""

    def __init__(self, cluster: Any, handlers: dict[str, Any]) -> None:
        self.cluster = cluster
        self.handlers = handlers
        self.view = SimpleNamespace(by_id={t: Member(id=t, address="-", topics=(t,)) for t in handlers},
                                    members=lambda topic: [topic] if topic in handlers else [], interval=1.0)

    async def call(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        if topic not in self.handlers:
            raise errors.NoLiveMember(topic=topic)
        return await getattr(self.handlers[topic], method.name)(ctx, **args)

    async def cast(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None:
        """A cast delivered at once (its handler's answer dropped, as a cast's is)."""
        await self.call(topic, method, args, ctx)


@dataclass
class VolumeCell:
    env: FlowEnv
    compute: FakeCompute
    worker: VolumeManager
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def settle(self) -> None:
        """Wait for every background flow spawned so far (and those they spawn)."""
        while self.tasks:
            await self.tasks.pop(0)

    def worker_talks_to_conductor(self) -> None:
        """The worker's conductor calls go straight to the flows (no RPC hop)."""
        env = self.env
        self.worker._conductor = SimpleNamespace(  # type: ignore[assignment]
            volumes_on_host=lambda ctx, host: flows.volumes_on_host(env, ctx, host),
            volume_get=lambda ctx, vid: flows.volume_get(env, ctx, vid))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.env.db.close()


async def volume_cell(tmp_path: Path, capacity_gb: int = 5, db_url: str | None = None,
                      images: dict[str, bytes] | None = None) -> VolumeCell:
    """`db_url`: the cell DB (default a SQLite file in tmp_path); `images`: the image store's bits (by id)
    the volume worker downloads from (worker.images.fetcher)."""
    db = Database(db_url or f"sqlite+aiosqlite:///{tmp_path / 'cell.db'}")
    await ensure_schema(db)  # the volume tables come with the cell schema
    cluster = cluster_config(str(tmp_path))
    cluster = type(cluster)(**{**cluster.__dict__, "hosts": (HostSpec("node1", "127.0.0.1"),)})
    spec = ServiceSpec(id="cell1/volume/node1", kind="volume", host="node1", bind="tcp://127.0.0.1:9", cell="cell1")
    worker = VolumeManager(cluster, spec, backend=FileBackend(str(tmp_path / "vols"), "raw", capacity_gb=capacity_gb),
                           targets={"local": LocalTarget("node1")},
                           images=ImageCache(str(tmp_path / "volume-images"), FakeFetcher(images)))
    compute = FakeCompute()
    service = FakeService(cluster, {"volume.node1": worker, "compute.node1": compute})
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.ensure_future(coro))

    env = FlowEnv(db=db, service=service, cell="cell1", conductor_id="c1", spawn=spawn)  # type: ignore[arg-type]
    await worker.backend.check()
    await flows.node_update(env, admin_context(), "node1", await worker.volume_stats(admin_context()))
    cell = VolumeCell(env, compute, worker, tasks)
    cell.worker_talks_to_conductor()
    return cell
