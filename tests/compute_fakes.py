"""Fakes for compute worker tests: an in-memory conductor (usable directly as
a `Caller` or served as a real RPC handler) and an in-memory image fetcher."""
from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from typing import Any

from cells import errors
from cells.config import ApiSpec, CellSpec, ClusterConfig, ServiceSpec
from cells.context import RequestContext
from cells.lifecycle import Action, Event, State, finish_action, on
from cells.objects.instance import PowerState, TaskState, VmState, utcnow_iso
from cells.rpc.wire import Method


class FakeConductor:
    """The conductor's compute-facing surface over a dict of instance records,
    with the same expected_task_state semantics the real one promises."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.done: list[tuple[str, str, bool, dict[str, Any], dict[str, Any] | None]] = []  # action reports
        self.connections: dict[tuple[str, str], dict[str, Any]] = {}
        self.available = True

    # Caller protocol: lets a ComputeManager talk to us without sockets
    async def call(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        if not self.available:
            raise errors.NoLiveMember(topic=topic)
        return await getattr(self, method.name)(ctx, **args)

    async def cast(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None:
        await self.call(topic, method, args, ctx)

    def add(self, uuid: str, host: str = "node1", **fields: Any) -> dict[str, Any]:
        rec: dict[str, Any] = {"uuid": uuid, "name": f"vm-{uuid[:8]}", "project_id": "p", "user_id": "u",
                               "host": host, "vm_state": VmState.BUILDING, "task_state": TaskState.SCHEDULING,
                               "power_state": PowerState.NOSTATE, "deleted": False, "fault": None,
                               "launched_at": None,
                               "flavor": {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 96, "disk": 1},
                               "image": {}}
        rec.update(fields)
        self.instances[uuid] = rec
        return rec

    def methods(self) -> list[str]:
        return [name for name, _ in self.calls]

    def _get(self, uuid: str) -> dict[str, Any]:
        rec = self.instances.get(uuid)
        if rec is None:
            raise errors.InstanceNotFound(instance_id=uuid)
        return rec

    async def compute_node_update(self, ctx: RequestContext, host: str, resources: dict[str, Any]) -> None:
        self.calls.append(("compute_node_update", {"host": host, "resources": resources}))
        self.nodes[host] = resources

    async def instance_get(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        return dict(self._get(uuid))

    async def instances_on_host(self, ctx: RequestContext, host: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.instances.values() if r["host"] == host]

    async def instance_update(self, ctx: RequestContext, uuid: str, values: dict[str, Any],
                              expected_task_state: list[str | None] | None = None) -> dict[str, Any]:
        self.calls.append(("instance_update", {"uuid": uuid, "values": values, "expected": expected_task_state}))
        rec = self._get(uuid)
        if expected_task_state is not None and rec["task_state"] not in expected_task_state:
            cls = errors.UnexpectedDeletingTaskState if rec["task_state"] == TaskState.DELETING \
                else errors.UnexpectedTaskState
            raise cls(instance_id=uuid, expected=expected_task_state, actual=rec["task_state"])
        rec.update(values)
        return dict(rec)

    async def instance_event(self, ctx: RequestContext, uuid: str, host: str, event: str,
                             power_state: int | None = None, fault: dict[str, Any] | None = None,
                             retryable: bool = False) -> dict[str, Any] | None:
        """With the real lifecycle's transitions (cells/lifecycle.py on): a refused one is a Conflict."""
        self.calls.append(("instance_event", {"uuid": uuid, "host": host, "event": event, "power_state": power_state,
                                              "fault": fault, "retryable": retryable}))
        if event == Event.SPAWN_FAILED:
            await self.build_failed(ctx, uuid, host, fault or {}, retryable)
            return None
        if event == Event.DESTROYED:
            await self.instance_destroyed(ctx, uuid, host)
            return None
        rec = self._get(uuid)
        state, actions = on(event, State(rec["vm_state"], rec["task_state"], rec["power_state"]), uuid,
                            observed=power_state)
        rec.update(vm_state=state.vm_state, task_state=state.task_state, power_state=state.power_state)
        if Action.SET_LAUNCHED_AT in actions:
            rec["launched_at"] = utcnow_iso()
        if Action.RECORD_FAULT in actions:
            rec["fault"] = fault
        return dict(rec)

    async def build_failed(self, ctx: RequestContext, uuid: str, host: str, fault: dict[str, Any],
                           retryable: bool) -> None:
        self.calls.append(("build_failed", {"uuid": uuid, "host": host, "fault": fault, "retryable": retryable}))
        rec = self._get(uuid)
        rec.update(vm_state=VmState.ERROR, task_state=None, fault=fault, host=None)

    async def instance_destroyed(self, ctx: RequestContext, uuid: str, host: str) -> None:
        self.calls.append(("instance_destroyed", {"uuid": uuid, "host": host}))
        self.instances.pop(uuid, None)

    async def instance_action_done(self, ctx: RequestContext, uuid: str, host: str, action: str, ok: bool,
                                   values: dict[str, Any], fault: dict[str, Any] | None = None) -> dict[str, Any]:
        """With the real lifecycle's checks (cells/lifecycle.py finish_action)."""
        self.done.append((uuid, action, ok, values, fault))
        rec = self._get(uuid)
        state = finish_action(action, State(rec["vm_state"], rec["task_state"], rec["power_state"]),
                              values.get("vm_state"), values.get("power_state"), ok, uuid)
        rec.update(vm_state=state.vm_state, task_state=state.task_state, power_state=state.power_state)
        return dict(rec)

    async def host_rejoined(self, ctx: RequestContext, host: str) -> dict[str, str]:
        self.calls.append(("host_rejoined", {"host": host}))
        return {"host": host, "state": "alive"}

    async def volume_connection(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> dict[str, Any]:
        """What the conductor recorded for the attachment being made (`connections`: (volume, instance) ->)."""
        self.calls.append(("volume_connection", {"volume_id": volume_id, "instance_uuid": instance_uuid}))
        info = self.connections.get((volume_id, instance_uuid))
        if info is None:
            raise errors.VolumeNotFound(volume_id=volume_id)
        return info


class FakeFetcher:
    """Image bits from memory; counts downloads."""

    def __init__(self, images: dict[str, bytes] | None = None) -> None:
        self.images = images or {}
        self.downloads = 0

    async def stream(self, image_id: str) -> AsyncGenerator[bytes, None]:
        if image_id not in self.images:
            raise errors.ImageNotFound(image_id=image_id)
        self.downloads += 1
        yield self.images[image_id]

    async def record(self, image_id: str) -> dict[str, Any]:
        if image_id not in self.images:
            raise errors.ImageNotFound(image_id=image_id)
        return image_record(image_id, self.images[image_id])

    async def close(self) -> None:
        pass


def image_record(image_id: str, data: bytes, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": image_id, "name": image_id, "disk_format": "raw", "container_format": "bare",
                           "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest(),
                           "checksum": hashlib.md5(data).hexdigest(), "size": len(data), "properties": {}}
    rec.update(over)
    return rec


def cluster_config(state_dir: str, router: str = "tcp://127.0.0.1:1", compute_bind: str = "tcp://127.0.0.1:2",
                   conductor_bind: str = "tcp://127.0.0.1:3", heartbeat: float = 1.0,
                   virt_uri: str = "test:///default") -> ClusterConfig:
    api = ApiSpec(listen="127.0.0.1:8774", public_url="http://127.0.0.1:8774", db="sqlite://", image_dir=state_dir)
    services = (
        ServiceSpec(id="cell1/router", kind="router", host="ctl", bind=router, cell="cell1"),
        ServiceSpec(id="cell1/conductor", kind="conductor", host="ctl", bind=conductor_bind, cell="cell1"),
        ServiceSpec(id="cell1/compute/node1", kind="compute", host="node1", bind=compute_bind, cell="cell1",
                    options={"virt_uri": virt_uri, "virt_type": "auto"}),
    )
    return ClusterConfig(name="test", state_dir=state_dir, api=api,
                         cells=(CellSpec(name="cell1", path="cell1", db="sqlite://", router=router),),
                         services=services, hosts=(), secrets={"image_reader_password": "pw"},
                         heartbeat_interval=heartbeat)
