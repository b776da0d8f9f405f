"""Volume flows in the conductor against a real cell DB (SQLite) and a real volume
worker (file backend, local target) in the same process; the compute side is a
fake hypervisor that can be told to fail. The RPC hop is a direct call."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows import volumes as flows
from cells.config import HostSpec, ServiceSpec
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db import volumes as vdb
from cells.db.engine import Database
from cells.db.schema import ensure_schema
from cells.objects.instance import utcnow_iso
from cells.rpc.directory import Member
from cells.rpc.wire import Method
from node.volume.backends.file import FileBackend
from node.volume.manager import VolumeManager
from node.volume.targets.local import LocalTarget
from tests.compute_fakes import cluster_config

DEMO = RequestContext(project="demo", user="u", roles=("member",))
OTHER = RequestContext(project="other", user="o", roles=("member",))


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


class Env:
    def __init__(self, env: FlowEnv, tasks: list[asyncio.Task[None]], compute: FakeCompute,
                 worker: VolumeManager) -> None:
        self.env, self.tasks, self.compute, self.worker = env, tasks, compute, worker

    async def settle(self) -> None:
        while self.tasks:
            await self.tasks.pop(0)

    async def status(self, vid: str) -> str:
        return str((await flows.volume_get(self.env, DEMO, vid))["status"])


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cell.db'}")
    await ensure_schema(db)
    await vdb.ensure_volume_schema(db)
    cluster = cluster_config(str(tmp_path))
    cluster = type(cluster)(**{**cluster.__dict__, "hosts": (HostSpec("node1", "127.0.0.1"),)})
    spec = ServiceSpec(id="cell1/volume/node1", kind="volume", host="node1", bind="tcp://127.0.0.1:9", cell="cell1")
    worker = VolumeManager(cluster, spec, backend=FileBackend(str(tmp_path / "vols"), "raw", capacity_gb=5),
                           targets={"local": LocalTarget("node1")})
    compute = FakeCompute()
    service = FakeService(cluster, {"volume.node1": worker, "compute.node1": compute})
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.ensure_future(coro))

    flow_env = FlowEnv(db=db, service=service, cell="cell1", conductor_id="c1", spawn=spawn)  # type: ignore[arg-type]
    await worker.backend.check()
    await flows.node_update(flow_env, DEMO, "node1", await worker.volume_stats(DEMO))
    yield Env(flow_env, tasks, compute, worker)
    for t in tasks:
        t.cancel()
    await db.close()


async def add_instance(env: Env, project: str = "demo", vm_state: str = "active") -> str:
    uid = str(uuid.uuid4())
    now = utcnow_iso()
    row = {"uuid": uid, "name": "vm", "project_id": project, "user_id": "u", "host": "node1", "flavor": {},
           "image": {}, "vm_state": vm_state, "task_state": None, "power_state": 1, "created_at": now,
           "updated_at": now, "deleted": False, "metadata": {}, "addresses": {}, "retry_hosts": [], "progress": 0}
    await env.env.db.write(lambda conn: conn.execute(idb.INSERT, row))
    return uid


async def create(env: Env, size: int = 1, name: str = "v1") -> str:
    vid = str(uuid.uuid4())
    rec = await flows.volume_create(env.env, DEMO, {"id": vid, "project_id": "demo", "size": size, "name": name})
    assert rec["status"] == "creating"
    await env.settle()
    return vid


async def test_create_attach_detach_delete_cycle(env: Env) -> None:
    vid = await create(env)
    assert await env.status(vid) == "available"
    uid = await add_instance(env)
    att = await flows.volume_attach(env.env, DEMO, vid, uid)
    assert att["device"] == "/dev/vdb" and await env.status(vid) == "attaching"
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "in-use" and vol["attachments"][0]["instance_uuid"] == uid
    assert env.compute.plugged[vid]["info"]["driver_volume_type"] == "local"
    with pytest.raises(errors.VolumeInvalidState):  # in use: delete refused, nothing changes
        await flows.volume_delete(env.env, DEMO, vid)
    assert await env.status(vid) == "in-use"
    await flows.volume_detach(env.env, DEMO, vid, uid)
    await env.settle()
    assert await env.status(vid) == "available" and vid not in env.compute.plugged
    await flows.volume_delete(env.env, DEMO, vid)
    await env.settle()
    with pytest.raises(errors.VolumeNotFound):
        await flows.volume_get(env.env, DEMO, vid)
    with pytest.raises(errors.VolumeNotFound):
        await env.worker.backend.locate(vid)


async def test_concurrent_attaches_have_exactly_one_winner(env: Env) -> None:
    vid = await create(env)
    a, b = await add_instance(env), await add_instance(env)
    results = await asyncio.gather(*(flows.volume_attach(env.env, DEMO, vid, u) for u in (a, b, a, b)),
                                   return_exceptions=True)
    wins = [r for r in results if isinstance(r, dict)]
    assert len(wins) == 1
    assert all(isinstance(r, errors.VolumeInvalidState) and r.http_status == 400 for r in results if r not in wins)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "in-use" and len(vol["attachments"]) == 1


async def test_failed_hot_plug_rolls_back_to_available_with_the_reason(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    env.compute.fail = "boom in libvirt"
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "available" and vol["attachments"] == []
    assert "boom in libvirt" in vol["error"]
    assert await env.worker.targets["local"].exported() == set()  # the export was taken down too


async def test_failed_unplug_leaves_the_volume_in_use(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    env.compute.fail = "guest holds the disk"
    await flows.volume_detach(env.env, DEMO, vid, uid)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "in-use" and "guest holds the disk" in vol["error"]


async def test_bad_requests_change_nothing(env: Env) -> None:
    for size in (0, -1, 10 ** 9, "1", True):
        with pytest.raises(errors.Invalid):
            await flows.volume_create(env.env, DEMO, {"id": str(uuid.uuid4()), "project_id": "demo", "size": size})
    assert await flows.volume_list(env.env, DEMO, {}, None) == []
    vid = await create(env)
    other_server = await add_instance(env, project="other")
    with pytest.raises(errors.InstanceNotFound):  # another project's server is a 404
        await flows.volume_attach(env.env, DEMO, vid, other_server)
    with pytest.raises(errors.InstanceNotFound):
        await flows.volume_attach(env.env, DEMO, vid, str(uuid.uuid4()))
    with pytest.raises(errors.VolumeNotFound):  # and another project's volume too
        await flows.volume_get(env.env, OTHER, vid)
    assert await env.status(vid) == "available"


async def test_no_room_puts_the_volume_in_error(env: Env) -> None:
    vid = await create(env, size=6)  # the host has 5 GiB
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "error" and "No valid backend" in vol["error"]
    await flows.volume_delete(env.env, DEMO, vid)  # an error volume can be deleted
    assert await flows.volume_list(env.env, DEMO, {}, None) == []


async def test_capacity_is_taken_and_given_back(env: Env) -> None:
    first = await create(env, size=3)
    second = await create(env, size=3)
    assert await env.status(first) == "available" and await env.status(second) == "error"
    await flows.volume_delete(env.env, DEMO, first)
    await env.settle()
    third = await create(env, size=3)
    assert await env.status(third) == "available"


async def test_restarted_worker_reexports_in_use_volumes(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    target = env.worker.targets["local"]
    await target.stop()  # a restart: exports are torn down with the worker...
    assert await target.exported() == set()
    env.worker._conductor = SimpleNamespace(  # type: ignore[assignment]
        volumes_on_host=lambda ctx, host: flows.volumes_on_host(env.env, ctx, host))
    await env.worker.reestablish_exports()  # ...and come back from the conductor's records
    assert await target.exported() == {vid}
