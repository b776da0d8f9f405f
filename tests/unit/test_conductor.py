"""Conductor + scheduler under cells.service_process.Service, real ZeroMQ on 127.0.0.1, a real
directory, a real SQLite cell DB, and a fake compute worker at the process boundary
(it serves cells/rpcapi/compute.py and calls the conductor back as a compute would)."""
from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from cells import errors
from cells.conductor import capacity
from cells.conductor.env import FlowEnv
from cells.conductor.flows.boot import validate_build
from cells.conductor.manager import ConductorManager
from cells.config import ApiSpec, CellSpec, ClusterConfig, HostSpec, ServiceSpec
from cells.context import RequestContext, admin_context
from cells.db import action_records, claims
from cells.db.engine import Database
from cells.db.schema import ensure_schema, instances
from cells.lifecycle import Event
from cells.objects.instance import PowerState, TaskState, VmState
from cells.objects.records import InstanceRecord
from cells.rpc import wire
from cells.rpc.client import RpcClient
from cells.rpc.directory import SURFACE as DIRECTORY
from cells.rpc.directory import Directory, DirectoryView
from cells.rpcapi.compute import SURFACE as COMPUTE
from cells.rpcapi.conductor import SURFACE as CONDUCTOR
from cells.rpcapi.conductor import ConductorAPI
from cells.rpcapi.scheduler import SURFACE as SCHEDULER
from cells.scheduler.manager import SchedulerManager
from cells.service_process import Service
from tools.devcluster import free_port

BEAT = 0.2
DEAD_AFTER = 8 * BEAT  # the cells' grace: a host silent this long is dead (suspect before)
FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0}
EPOCH = "1970-01-01T00:00:00Z"  # changes_since this lists deleted instances too
USER = RequestContext(project="p1", user="u1", roles=("member",))


class FakeCompute:
    """mode: "ok" spawns, "fail" reports a retryable failure, "hang" stays spawning."""

    def __init__(self, host: str, mode: str = "ok") -> None:
        self.host, self.mode = host, mode
        self.builds: list[str] = []
        self.conductor: ConductorAPI | None = None
        self.terminate_gate = asyncio.Event()  # terminates wait for it (tests hold a delete open)
        self.terminate_gate.set()

    async def start(self, service: Service) -> None:
        self.conductor = ConductorAPI(service)

    async def background(self) -> None:
        assert self.conductor is not None
        while True:  # as a real compute: report resources until the conductor answers
            try:
                await self.conductor.compute_node_update(admin_context(), self.host,
                                                         {"vcpus": 4, "memory_mb": 2048, "local_gb": 40})
                break
            except errors.RpcError:
                await asyncio.sleep(0.05)
        await asyncio.Future()

    async def build_and_run_instance(self, ctx: RequestContext, instance: dict[str, Any]) -> None:
        assert self.conductor is not None
        uuid = instance["uuid"]
        self.builds.append(uuid)
        try:
            await self.conductor.instance_event(ctx, uuid, self.host, Event.SPAWNING)
        except (errors.Conflict, errors.NotFound):
            return
        if self.mode == "fail":
            await self.conductor.instance_event(ctx, uuid, self.host, Event.SPAWN_FAILED, retryable=True,
                                                fault={"code": 500, "message": f"boom on {self.host}"})
        elif self.mode == "ok":
            await self.conductor.instance_event(ctx, uuid, self.host, Event.SPAWNED)

    async def get_diagnostics(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        return {"state": "running", "driver": "libvirt", "num_cpus": 1}

    async def terminate_instance(self, ctx: RequestContext, instance: dict[str, Any]) -> None:
        assert self.conductor is not None
        await self.terminate_gate.wait()
        await self.conductor.instance_event(ctx, instance["uuid"], self.host, Event.DESTROYED)


class ApiCaller:
    """What the API process is to the cell: a directory reader plus an RPC client."""

    def __init__(self, router: str) -> None:
        self.client = RpcClient()
        self.view = DirectoryView(self.client, router, None, BEAT)

    async def call(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        return await self.client.call(self.view, topic, method, args, ctx, timeout)

    async def cast(self, topic: str, method: wire.Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None:
        await self.client.cast(self.view, topic, method, args, ctx, key)


class Cell:
    def __init__(self, tmp_path: Path, modes: dict[str, str], db_url: str | None = None) -> None:
        router = f"tcp://127.0.0.1:{free_port()}"
        self.db_url = db_url or f"sqlite+aiosqlite:///{tmp_path}/cell1.db"
        specs = [ServiceSpec("cell1/router", "router", "ctl", router, "cell1"),
                 ServiceSpec("cell1/conductor", "conductor", "ctl", f"tcp://127.0.0.1:{free_port()}", "cell1"),
                 ServiceSpec("cell1/scheduler", "scheduler", "ctl", f"tcp://127.0.0.1:{free_port()}", "cell1")]
        specs += [ServiceSpec(f"cell1/compute/{h}", "compute", h, f"tcp://127.0.0.1:{free_port()}", "cell1")
                  for h in modes]
        self.cluster = ClusterConfig(
            name="test", state_dir=str(tmp_path),
            api=ApiSpec(listen="127.0.0.1:0", public_url="http://127.0.0.1:0", db="sqlite://", image_dir=str(tmp_path)),
            cells=(CellSpec("cell1", "cell1", self.db_url, router),), services=tuple(specs),
            hosts=tuple(HostSpec(h, "127.0.0.1") for h in ("ctl", *modes)), heartbeat_interval=BEAT,
            dead_after=DEAD_AFTER)
        self.computes = {h: FakeCompute(h, m) for h, m in modes.items()}
        self.services: dict[str, Service] = {}
        self.stops: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.api = ApiCaller(router)
        self.conductor = ConductorAPI(self.api)
        self.db = Database(self.db_url)
        self._view_task: asyncio.Task[None] | None = None

    def _service(self, name: str) -> Service:
        spec = self.cluster.service(f"cell1/{name}")
        if spec.kind == "router":
            return Service(self.cluster, spec, Directory(BEAT), DIRECTORY, ("router",))
        if spec.kind == "conductor":
            return Service(self.cluster, spec, ConductorManager(self.cluster, spec), CONDUCTOR, ("conductor",))
        if spec.kind == "scheduler":
            return Service(self.cluster, spec, SchedulerManager(self.cluster, spec), SCHEDULER, ("scheduler",))
        return Service(self.cluster, spec, self.computes[spec.host], COMPUTE, (f"compute.{spec.host}",))

    def run(self, name: str) -> None:
        self.services[name] = svc = self._service(name)
        self.stops[name] = stop = asyncio.Event()
        self.tasks[name] = asyncio.create_task(svc.run(stop))

    async def stop(self, name: str) -> None:
        self.stops[name].set()
        await self.tasks.pop(name)

    async def crash(self, name: str) -> None:
        """Gone without a goodbye: no `leave`, so the directory must notice missed beats."""
        task = self.tasks.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def start(self) -> None:
        await ensure_schema(self.db)  # as bootstrap does; the services' own calls are then no-ops
        for name in ("router", "conductor", "scheduler", *(f"compute/{h}" for h in self.computes)):
            self.run(name)
        self._view_task = asyncio.create_task(self.api.view.run())
        sched = "scheduler"
        await until(lambda: all(self.services[sched].view.members(f"compute.{h}") for h in self.computes)
                    and bool(self.api.view.members("conductor")))
        await until_async(lambda: self._all_reported())

    async def _all_reported(self) -> bool:
        return len(await claims.load_hosts(self.db)) == len(self.computes)

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self.tasks)))
        if self._view_task:
            self._view_task.cancel()
            await asyncio.gather(self._view_task, return_exceptions=True)
        self.api.client.close()
        await self.db.close()

    async def boot(self, name: str = "vm", flavor: dict[str, Any] = FLAVOR, project: str = "p1") -> InstanceRecord:
        inst = {"uuid": str(uuidlib.uuid4()), "name": name, "project_id": project, "user_id": "u1", "flavor": flavor,
                "image": {"id": "img-1"}}
        [rec] = await self.conductor.build_instances(USER, [inst], {"flavor": flavor, "num_instances": 1})
        return rec

    async def wait_state(self, uuid: str, vm_state: str, timeout: float = 5.0) -> dict[str, Any]:
        rec: dict[str, Any] = {}

        async def reached() -> bool:
            nonlocal rec
            [found] = await self.conductor.instance_list(admin_context(), {"uuid": [uuid], "changes_since": EPOCH},
                                                        [], [], None, None)
            rec = dict(found)
            return bool(rec["vm_state"] == vm_state and (vm_state == VmState.ERROR or rec["task_state"] is None))
        await until_async(reached, timeout)
        return rec

    def conductor_env(self) -> FlowEnv:
        handler = self.services["conductor"].handler
        assert isinstance(handler, ConductorManager)
        return handler.env

    async def claim(self, uuid: str) -> dict[str, Any] | None:
        return await self.db.read(lambda conn: claims.claim_of(conn, uuid))


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def until_async(pred: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def cell_fixture(modes: dict[str, str]) -> Callable[[Path, str], AsyncIterator[Cell]]:
    """A started cell whose DB is each of the db_url fixture's (SQLite, PostgreSQL)."""
    async def fixture(tmp_path: Path, db_url: str) -> AsyncIterator[Cell]:
        c = Cell(tmp_path, modes, db_url)
        await c.start()
        try:
            yield c
        finally:
            await c.close()
    return fixture


cell = pytest.fixture(cell_fixture({"node1": "ok", "node2": "ok"}))
flaky_cell = pytest.fixture(cell_fixture({"node1": "fail", "node2": "ok"}))
failing_cell = pytest.fixture(cell_fixture({"node1": "fail", "node2": "fail"}))
hanging_cell = pytest.fixture(cell_fixture({"node1": "hang"}))
hang_then_ok_cell = pytest.fixture(cell_fixture({"node1": "hang", "node2": "ok"}))


# --- boot and delete ----------------------------------------------------------------

async def test_boot_goes_active_with_host_and_claim_then_delete_releases(cell: Cell) -> None:
    rec = await cell.boot()
    assert (rec["vm_state"], rec["task_state"], rec["host"], rec["cell"]) == (VmState.BUILDING, TaskState.SCHEDULING,
                                                                           None, "cell1")
    active = await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    assert active["host"] in ("node1", "node2") and active["launched_at"] and active["power_state"] == 1
    claim = await cell.claim(rec["uuid"])
    assert claim is not None and claim["host"] == active["host"] and claim["memory_mb"] == 512
    cap = await capacity.current(cell.conductor_env())  # what the conductor reports on its heartbeat
    assert {k: cap[k] for k in ("hosts", "hosts_alive", "vcpus_free", "memory_mb_free", "local_gb_free")} == {
        "hosts": 2, "hosts_alive": 2, "vcpus_free": 2 * 16 - 1, "memory_mb_free": 2 * 2048 - 512,
        "local_gb_free": 2 * 40 - 1}
    assert {k: cap[k] for k in cap if k.endswith(("_total", "_used"))} == {  # cellctl status: used of total
        "vcpus_total": 2 * 16, "vcpus_used": 1, "memory_mb_total": 2 * 2048, "memory_mb_used": 512,
        "local_gb_total": 2 * 40, "local_gb_used": 1}

    await cell.conductor.instance_delete(USER, rec["uuid"])
    gone = await cell.wait_state(rec["uuid"], VmState.DELETED)
    assert gone["deleted"] and gone["terminated_at"] and gone["power_state"] == 0
    assert await cell.claim(rec["uuid"]) is None
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_get(USER, rec["uuid"])
    acts = await cell.db.read(lambda conn: action_records.actions_of(conn, rec["uuid"]))
    assert [(a["action"], a["request_id"] is not None, a["finish_time"] is not None) for a in acts] == [
        ("create", True, True), ("delete", True, True)]
    assert [(e["event"], e["result"]) for e in acts[0]["events"]] == [
        ("conductor_schedule_and_build_instances", "Success"), ("compute_build_and_run_instance", "Success")]
    assert [(e["event"], e["result"]) for e in acts[1]["events"]] == [("compute_terminate_instance", "Success")]


async def test_instances_spread_over_hosts(cell: Cell) -> None:
    recs = [await cell.boot(f"vm{i}") for i in range(4)]
    hosts = [(await cell.wait_state(r["uuid"], VmState.ACTIVE))["host"] for r in recs]
    assert sorted(hosts) == ["node1", "node1", "node2", "node2"]
    on1 = await cell.conductor.instances_on_host(admin_context(), "node1")
    assert sorted(r["uuid"] for r in on1) == sorted(r["uuid"] for r, h in zip(recs, hosts) if h == "node1")


async def test_other_projects_cannot_see_or_delete(cell: Cell) -> None:
    rec = await cell.boot()
    other = RequestContext(project="p2", user="u2", roles=("member",))
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_get(other, rec["uuid"])
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_delete(other, rec["uuid"])
    assert await cell.conductor.instance_list(other, {}, [], [], None, None) == []
    assert (await cell.conductor.instance_get(USER, rec["uuid"]))["uuid"] == rec["uuid"]


async def test_build_request_is_validated_and_idempotent(cell: Cell) -> None:
    with pytest.raises(errors.Invalid, match="flavor"):
        await cell.conductor.build_instances(USER, [{"uuid": str(uuidlib.uuid4()), "name": "x", "project_id": "p1"}],
                                             {})
    with pytest.raises(errors.Invalid, match="not a UUID"):
        await cell.conductor.build_instances(USER, [{"uuid": "nope", "name": "x", "project_id": "p1"}],
                                             {"flavor": FLAVOR})
    inst = {"uuid": str(uuidlib.uuid4()), "name": "x", "project_id": "p1", "flavor": FLAVOR}
    first = await cell.conductor.build_instances(USER, [inst], {"flavor": FLAVOR})
    again = await cell.conductor.build_instances(USER, [inst], {"flavor": FLAVOR})
    assert [r["created_at"] for r in again] == [r["created_at"] for r in first]


async def test_no_valid_host_sets_error_with_novas_fault(cell: Cell) -> None:
    huge = {**FLAVOR, "ram": 10 ** 6}
    rec = await cell.boot(flavor=huge)
    err = await cell.wait_state(rec["uuid"], VmState.ERROR)
    assert err["task_state"] is None and err["host"] is None
    assert err["fault"]["code"] == 500
    assert err["fault"]["message"] == "No valid host was found. There are not enough hosts available."
    assert await cell.claim(rec["uuid"]) is None


# --- failures and reschedules ---------------------------------------------------------

async def test_retryable_spawn_failure_reschedules_to_the_other_host(flaky_cell: Cell) -> None:
    rec = await flaky_cell.boot()  # node1 is tried first (equal hosts: by name) and fails
    active = await flaky_cell.wait_state(rec["uuid"], VmState.ACTIVE)
    assert active["host"] == "node2" and active["fault"] is None
    assert flaky_cell.computes["node1"].builds == [rec["uuid"]]
    claim = await flaky_cell.claim(rec["uuid"])
    assert claim is not None and claim["host"] == "node2"
    hosts = {h.host: h for h in await claims.load_hosts(flaky_cell.db)}
    assert hosts["node1"].memory_mb_used == 0 and hosts["node2"].memory_mb_used == 512
    faults = await flaky_cell.db.read(lambda conn: action_records.faults_of(conn, rec["uuid"]))
    assert [(f["host"], f["message"]) for f in faults] == [("node1", "boom on node1")]


async def test_failing_everywhere_ends_in_error_with_fault_and_no_claim(failing_cell: Cell) -> None:
    rec = await failing_cell.boot()
    err = await failing_cell.wait_state(rec["uuid"], VmState.ERROR)
    assert err["fault"]["code"] == 500
    assert err["fault"]["message"].startswith("Exceeded maximum number of retries.")
    assert await failing_cell.claim(rec["uuid"]) is None
    assert all(h.memory_mb_used == 0 for h in await claims.load_hosts(failing_cell.db))
    assert sorted(failing_cell.computes["node1"].builds + failing_cell.computes["node2"].builds) == [rec["uuid"]] * 2
    acts = await failing_cell.db.read(lambda conn: action_records.actions_of(conn, rec["uuid"]))
    assert acts[0]["message"] == "Error" and acts[0]["finish_time"] is not None


# --- dead hosts ------------------------------------------------------------------------

async def _spawning(c: Cell) -> InstanceRecord:
    rec = await c.boot()

    async def spawning() -> bool:
        got = await c.conductor.instance_get(USER, rec["uuid"])
        return bool(got["task_state"] == TaskState.SPAWNING)
    await until_async(spawning)
    return rec


async def _gone_from_routing(c: Cell, host: str) -> None:
    await until(lambda: not c.services["conductor"].view.members(f"compute.{host}"), timeout=6 * BEAT + 1.0)


async def test_compute_gone_while_building_is_suspect_then_dead_and_out_of_hosts(hanging_cell: Cell) -> None:
    """Suspect: the build is left alone (claim kept); dead: it is retried, and with no other
    host it ends ERROR with a fault naming the host tried."""
    rec = await _spawning(hanging_cell)
    await hanging_cell.stop("compute/node1")
    await _gone_from_routing(hanging_cell, "node1")
    held = await hanging_cell.conductor.instance_get(USER, rec["uuid"])
    assert (held["vm_state"], held["task_state"], held["host"]) == (VmState.BUILDING, TaskState.SPAWNING, "node1")
    assert (await hanging_cell.claim(rec["uuid"]) or {}).get("host") == "node1"
    err = await hanging_cell.wait_state(rec["uuid"], VmState.ERROR, timeout=DEAD_AFTER + 3.0)
    assert err["fault"]["message"] == ("Exceeded maximum number of retries. Exhausted all hosts available for "
                                       f"retrying build failures for instance {rec['uuid']}. Hosts tried: node1.")
    assert await hanging_cell.claim(rec["uuid"]) is None
    faults = await hanging_cell.db.read(lambda conn: action_records.faults_of(conn, rec["uuid"]))
    assert ("node1", "Compute host node1 was declared dead while building the instance") in [
        (f["host"], f["message"]) for f in faults]


async def test_build_on_a_crashed_host_is_rescheduled_once_the_host_is_dead(hang_then_ok_cell: Cell) -> None:
    c = hang_then_ok_cell
    rec = await c.boot()  # node1 first (equal hosts: by name); it hangs in spawning
    await until_async(lambda: _task_is(c, rec["uuid"], TaskState.SPAWNING))
    await c.crash("compute/node1")  # no goodbye: missed beats, suspect, then dead
    active = await c.wait_state(rec["uuid"], VmState.ACTIVE, timeout=DEAD_AFTER + 3.0)
    assert active["host"] == "node2" and c.computes["node2"].builds == [rec["uuid"]]
    assert (await c.claim(rec["uuid"]) or {}).get("host") == "node2"
    hosts = {h.host: h for h in await claims.load_hosts(c.db)}
    assert hosts["node1"].memory_mb_used == 0 and hosts["node2"].memory_mb_used == 512


def _published_state(c: Cell, host: str) -> str | None:
    me = c.services["conductor"].view.me
    return None if me is None else me.meta.get("hosts", {}).get(host)


async def _task_is(c: Cell, uuid: str, task: str) -> bool:
    return bool((await c.conductor.instance_get(USER, uuid))["task_state"] == task)


async def test_delete_on_a_suspect_host_waits_for_it_to_come_back(hang_then_ok_cell: Cell) -> None:
    c = hang_then_ok_cell
    rec = await c.boot()
    await until_async(lambda: _task_is(c, rec["uuid"], TaskState.SPAWNING))
    await c.stop("compute/node1")
    await _gone_from_routing(c, "node1")
    deleting = await c.conductor.instance_delete(USER, rec["uuid"])  # not a local delete: it may still run
    assert deleting["task_state"] == TaskState.DELETING and not deleting["deleted"]
    assert (await c.claim(rec["uuid"]) or {}).get("host") == "node1"
    c.run("compute/node1")  # back before the grace: it gets the terminate and reports it done
    gone = await c.wait_state(rec["uuid"], VmState.DELETED)
    assert gone["deleted"] and await c.claim(rec["uuid"]) is None


async def test_operator_marks_a_host_down_and_up(hang_then_ok_cell: Cell) -> None:
    """`cellctl host down`: dead at once, although it beats (its build goes elsewhere, it is
    fenced); `host up` takes the mark back, and the host serves again only once it rejoined."""
    c = hang_then_ok_cell
    rec = await c.boot()
    await until_async(lambda: _task_is(c, rec["uuid"], TaskState.SPAWNING))
    mark = CONDUCTOR["host_mark"]
    with pytest.raises(errors.Forbidden):
        await c.api.call("conductor", mark, {"host": "node1", "down": True}, USER)
    with pytest.raises(errors.NotFound):
        await c.api.call("conductor", mark, {"host": "nodeX", "down": True}, admin_context())
    assert await c.api.call("conductor", mark, {"host": "node1", "down": True}, admin_context()) == {
        "host": "node1", "state": "dead"}
    active = await c.wait_state(rec["uuid"], VmState.ACTIVE)
    assert active["host"] == "node2"
    await until(lambda: _published_state(c, "node1") == "dead")  # on the conductor's heartbeat, for status
    up = await c.api.call("conductor", mark, {"host": "node1", "down": False}, admin_context())
    assert up == {"host": "node1", "state": "fenced"}  # it beats, but was declared dead: it reconciles first
    assert await c.conductor.host_rejoined(admin_context(), "node1") == {"host": "node1", "state": "alive"}


async def test_compute_events_drive_the_record_and_what_the_lifecycle_refuses_changes_nothing(cell: Cell) -> None:
    """A compute's report is a lifecycle event fired on the locked row: power_observed of a guest that
    went away stops the server; a failed delete ends in ERROR with the compute's fault and the delete's
    event failed. An unknown event or power state, another host's report and a transition the
    machine refuses leave the record as it was."""
    rec = await cell.boot()
    uuid = rec["uuid"]
    active = await cell.wait_state(uuid, VmState.ACTIVE)
    host = str(active["host"])
    other = ({"node1", "node2"} - {host}).pop()
    for bad in ({"event": "made_up"}, {"event": Event.POWER_OBSERVED, "power_state": 99}):
        with pytest.raises(errors.Invalid):
            await cell.conductor.instance_event(USER, uuid, host, **bad)
    with pytest.raises(errors.Conflict, match=f"not {other}"):
        await cell.conductor.instance_event(USER, uuid, other, Event.POWER_OBSERVED)
    with pytest.raises(errors.InstanceInvalidState):
        await cell.conductor.instance_event(USER, uuid, host, Event.SPAWNING)
    assert await cell.conductor.instance_get(USER, uuid) == active
    stopped = await cell.conductor.instance_event(USER, uuid, host, Event.POWER_OBSERVED)  # no domain any more
    assert stopped is not None and (stopped["vm_state"], stopped["power_state"]) == (VmState.STOPPED,
                                                                                     PowerState.SHUTDOWN)
    cell.computes[host].terminate_gate.clear()  # the terminate is held: the compute reports its failure
    await cell.conductor.instance_delete(USER, uuid)
    fault = {"code": 500, "message": "libvirtError", "details": "cannot destroy"}
    failed = await cell.conductor.instance_event(USER, uuid, host, Event.DELETE_FAILED, fault=fault)
    assert failed is not None
    assert (failed["vm_state"], failed["task_state"], failed["fault"]["message"]) == (VmState.ERROR, None,
                                                                                      "libvirtError")
    acts = await cell.db.read(lambda conn: action_records.actions_of(conn, uuid))
    assert [(e["event"], e["result"]) for e in acts[-1]["events"]] == [("compute_terminate_instance", "Error")]


async def test_delete_while_building_on_a_live_host(hanging_cell: Cell) -> None:
    rec = await _spawning(hanging_cell)
    hanging_cell.computes["node1"].terminate_gate.clear()
    deleting = await hanging_cell.conductor.instance_delete(USER, rec["uuid"])
    assert deleting["task_state"] == TaskState.DELETING
    host = str(deleting["host"])
    with pytest.raises(errors.InstanceInvalidState):  # what a compute sees if its spawn ends now
        await hanging_cell.conductor.instance_event(USER, rec["uuid"], host, Event.SPAWNED)
    again = await hanging_cell.conductor.instance_delete(USER, rec["uuid"])  # a repeated delete is harmless
    assert again["task_state"] == TaskState.DELETING
    hanging_cell.computes["node1"].terminate_gate.set()
    await hanging_cell.wait_state(rec["uuid"], VmState.DELETED)
    assert await hanging_cell.claim(rec["uuid"]) is None
    with pytest.raises(errors.InstanceNotFound):  # ... and once the delete is done
        await hanging_cell.conductor.instance_event(USER, rec["uuid"], host, Event.SPAWNED)


async def test_pending_delete_completes_when_its_host_dies(hanging_cell: Cell) -> None:
    rec = await _spawning(hanging_cell)
    hanging_cell.computes["node1"].terminate_gate.clear()  # the terminate never finishes
    deleting = await hanging_cell.conductor.instance_delete(USER, rec["uuid"])
    assert deleting["task_state"] == TaskState.DELETING
    await hanging_cell.crash("compute/node1")
    gone = await hanging_cell.wait_state(rec["uuid"], VmState.DELETED, timeout=DEAD_AFTER + 3.0)
    assert gone["deleted"] and await hanging_cell.claim(rec["uuid"]) is None


async def test_delete_on_a_dead_host_is_local(hanging_cell: Cell) -> None:
    rec = await _spawning(hanging_cell)
    await hanging_cell.stop("compute/node1")
    await hanging_cell.wait_state(rec["uuid"], VmState.ERROR, timeout=DEAD_AFTER + 3.0)
    gone = await hanging_cell.conductor.instance_delete(USER, rec["uuid"])
    assert gone["deleted"] and gone["vm_state"] == VmState.DELETED


single_cell = pytest.fixture(cell_fixture({"node1": "ok"}))


async def test_boot_during_a_compute_restart_waits_for_it(single_cell: Cell) -> None:
    await single_cell.stop("compute/node1")
    await until(lambda: not single_cell.services["scheduler"].view.members("compute.node1"))
    rec = await single_cell.boot()
    await asyncio.sleep(2 * BEAT)
    single_cell.run("compute/node1")  # the supervisor brings the worker back
    # the scheduler holds the boot up to NEW_HOST_WAIT; the build itself may then take a while on a loaded machine
    active = await single_cell.wait_state(rec["uuid"], VmState.ACTIVE, timeout=15.0)
    assert active["host"] == "node1"


async def test_conductor_restart_resumes_builds_it_owned(tmp_path: Path) -> None:
    c = Cell(tmp_path, {"node1": "ok"})
    await ensure_schema(c.db)
    [row] = validate_build([{"uuid": str(uuidlib.uuid4()), "name": "orphan", "project_id": "p1", "flavor": FLAVOR}],
                           {"flavor": FLAVOR}, "2026-01-01T00:00:00.000000Z", "cell1/conductor")
    await c.db.write(lambda conn: conn.execute(insert(instances).values(**row)))
    await c.start()
    try:  # the restarted conductor adopts the build its previous run left in scheduling, and finishes it
        active = await c.wait_state(row["uuid"], VmState.ACTIVE)
        assert active["host"] == "node1" and (await c.claim(row["uuid"]) or {}).get("host") == "node1"
    finally:
        await c.close()


# --- listing ---------------------------------------------------------------------------

async def test_list_sorting_paging_and_filters(cell: Cell) -> None:
    names = ["web-1", "db-1", "web-2", "cache", "web-3"]
    recs = [await cell.boot(n) for n in names]
    for r in recs:
        await cell.wait_state(r["uuid"], VmState.ACTIVE)
    admin = admin_context()
    newest_first = await cell.conductor.instance_list(admin, {}, [], [], None, None)
    assert [r["name"] for r in newest_first] == names[::-1]  # default: created_at desc

    pages, marker = [], None
    while True:
        page = await cell.conductor.instance_list(admin, {}, [], [], 2, marker)
        if not page:
            break
        pages.append([r["name"] for r in page])
        marker = page[-1]["uuid"]
    assert pages == [["web-3", "cache"], ["web-2", "db-1"], ["web-1"]]

    by_name = await cell.conductor.instance_list(admin, {}, ["name"], ["asc"], 3, None)
    assert [r["name"] for r in by_name] == ["cache", "db-1", "web-1"]
    rest = await cell.conductor.instance_list(admin, {}, ["name"], ["asc"], None, by_name[-1]["uuid"])
    assert [r["name"] for r in rest] == ["web-2", "web-3"]
    by_host = await cell.conductor.instance_list(admin, {}, ["host", "name"], ["desc", "asc"], None, None)
    assert [r["host"] for r in by_host] == sorted((r["host"] or "" for r in by_host), reverse=True)

    webs = await cell.conductor.instance_list(admin, {"name": "^web-[12]$"}, ["name"], ["asc"], None, None)
    assert [r["name"] for r in webs] == ["web-1", "web-2"]
    assert len(await cell.conductor.instance_list(admin, {"name": "eb"}, [], [], None, None)) == 3
    assert len(await cell.conductor.instance_list(admin, {"vm_state": [VmState.ACTIVE]}, [], [], None, None)) == 5
    assert await cell.conductor.instance_list(admin, {"project_id": "other"}, [], [], None, None) == []

    since = (await cell.conductor.instance_get(admin, recs[-1]["uuid"]))["updated_at"]
    await cell.conductor.instance_delete(admin, recs[0]["uuid"])
    await cell.wait_state(recs[0]["uuid"], VmState.DELETED)
    assert len(await cell.conductor.instance_list(admin, {}, [], [], None, None)) == 4
    changed = await cell.conductor.instance_list(admin, {"changes_since": since}, [], [], None, None)
    # the deleted one is included; the others are in exactly when updated since (a server's background
    # updates, a power sync say, may land after web-3's on a loaded machine: updated_at only grows)
    assert {"web-1", "web-3"} <= {r["name"] for r in changed} and all(r["updated_at"] >= since for r in changed)
    after = await cell.conductor.instance_list(admin, {}, [], [], None, None)
    assert not {r["name"] for r in after if r["updated_at"] < since} & {r["name"] for r in changed}
    deleted = await cell.conductor.instance_list(admin, {"deleted": True}, [], [], None, None)
    assert [r["name"] for r in deleted] == ["web-1"]

    with pytest.raises(errors.MarkerNotFound, match="Marker nope could not be found"):
        await cell.conductor.instance_list(admin, {}, [], [], None, "nope")
    with pytest.raises(errors.Invalid):
        await cell.conductor.instance_list(admin, {"bogus": 1}, [], [], None, None)
    with pytest.raises(errors.Invalid):
        await cell.conductor.instance_list(admin, {}, ["flavor"], [], None, None)
