"""The compute worker against the real libvirt test hypervisor and a fake
(in-memory) conductor; at the end, the move steps of a resize that stays on its host
(the one guest's vCPUs and memory changed in place and back)."""
from __future__ import annotations

import asyncio
import os
import threading
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]
import pytest

from cells import errors
from cells.context import RequestContext
from cells.lifecycle import Event
from cells.objects.instance import PowerState, TaskState, VmState
from cells.rpc.wire import Method
from node.compute import domain_xml
from node.compute.manager import INTERRUPTED, ComputeManager, interrupted_action
from node.imagecache import ImageCache
from node.locks import KeyedLocks
from tests.compute_fakes import FakeConductor, FakeFetcher, cluster_config, image_record

IMAGE = b"tiny disk image bits"
CTX = RequestContext(project="p", user="u")


@pytest.fixture
def conductor() -> FakeConductor:
    return FakeConductor()


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher({"img-1": IMAGE})


def make_manager(tmp_path: Path, fetcher: FakeFetcher) -> ComputeManager:
    cluster = cluster_config(str(tmp_path))
    spec = cluster.service("cell1/compute/node1")
    images = ImageCache(str(tmp_path / "hosts" / "node1" / "images"), fetcher)
    return ComputeManager(cluster, spec, images=images)


@pytest.fixture
async def manager(tmp_path: Path, conductor: FakeConductor, fetcher: FakeFetcher) -> AsyncIterator[ComputeManager]:
    m = make_manager(tmp_path, fetcher)
    await m.start(conductor)
    await m._sync_with_conductor()
    yield m
    for uuid in await m.driver.list_instance_uuids():  # test:///default is shared by the whole process
        await m.driver.destroy(uuid)
    await m.stop()


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def domain_names() -> list[str]:
    conn = libvirt.open("test:///default")
    try:
        return [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()


def instance_dir(tmp_path: Path, uuid: str) -> Path:
    return tmp_path / "hosts" / "node1" / "instances" / uuid


async def test_start_reports_resources(manager: ComputeManager, conductor: FakeConductor) -> None:
    assert set(conductor.nodes["node1"]) == {"vcpus", "memory_mb", "local_gb", "booted_at"}  # booted_at: uptime


async def test_build_with_image_goes_active(manager: ComputeManager, conductor: FakeConductor,
                                            fetcher: FakeFetcher, tmp_path: Path) -> None:
    rec = conductor.add(new_uuid(), image=image_record("img-1", IMAGE))
    await manager.build_and_run_instance(CTX, dict(rec))
    rec = conductor.instances[rec["uuid"]]
    assert (rec["vm_state"], rec["task_state"], rec["power_state"]) == (VmState.ACTIVE, None, PowerState.RUNNING)
    assert rec["launched_at"] and rec["launched_at"].endswith("Z")
    assert await manager.driver.power_state(rec["uuid"]) == PowerState.RUNNING
    assert fetcher.downloads == 1
    events = [c[1]["event"] for c in conductor.calls if c[0] == "instance_event"]
    assert events == [Event.SPAWNING, Event.SPAWNED]  # the build's steps, as lifecycle events
    # a second instance of the same image comes from the cache
    other = conductor.add(new_uuid(), image=image_record("img-1", IMAGE))
    await manager.build_and_run_instance(CTX, dict(other))
    assert conductor.instances[other["uuid"]]["vm_state"] == VmState.ACTIVE and fetcher.downloads == 1


async def test_guest_inventory_lists_the_hosts_guests_with_their_power(manager: ComputeManager,
                                                                        conductor: FakeConductor) -> None:
    """What the kill matrix's leak report asks each compute: its hypervisor's guests, foreign
    domains (libvirt's own `test`) left out; a destroyed guest is no longer listed."""
    running, stopped = conductor.add(new_uuid(), image={}), conductor.add(new_uuid(), image={})
    for rec in (running, stopped):
        await manager.build_and_run_instance(CTX, dict(rec))
    await manager.driver.power.power_off(stopped["uuid"])
    assert await manager.guest_inventory(CTX) == {running["uuid"]: PowerState.RUNNING,
                                                  stopped["uuid"]: PowerState.SHUTDOWN}
    await manager.driver.destroy(running["uuid"])
    assert await manager.guest_inventory(CTX) == {stopped["uuid"]: PowerState.SHUTDOWN}


async def test_build_without_image(manager: ComputeManager, conductor: FakeConductor) -> None:
    rec = conductor.add(new_uuid(), image={}, task_state=TaskState.NETWORKING)
    await manager.build_and_run_instance(CTX, dict(rec))
    assert conductor.instances[rec["uuid"]]["vm_state"] == VmState.ACTIVE


async def test_checksum_mismatch_fails_for_good(manager: ComputeManager, conductor: FakeConductor,
                                                tmp_path: Path) -> None:
    rec = conductor.add(new_uuid(), image=image_record("img-1", b"other bits"))
    await manager.build_and_run_instance(CTX, dict(rec))
    name, args = conductor.calls[-1]
    assert name == "build_failed" and args["retryable"] is False and args["host"] == "node1"
    assert "img-1" in args["fault"]["message"] and args["fault"]["code"] == 500
    assert f"cc-{rec['uuid']}" not in domain_names()
    assert not instance_dir(tmp_path, rec["uuid"]).exists()


async def test_driver_failure_is_retryable_and_cleans_up(manager: ComputeManager, conductor: FakeConductor,
                                                         tmp_path: Path) -> None:
    rec = conductor.add(new_uuid(), flavor={"vcpus": 1, "ram": 0})  # the hypervisor refuses it
    await manager.build_and_run_instance(CTX, dict(rec))
    name, args = conductor.calls[-1]
    assert name == "build_failed" and args["retryable"] is True
    assert rec["uuid"] in args["fault"]["message"]
    assert f"cc-{rec['uuid']}" not in domain_names()
    assert not instance_dir(tmp_path, rec["uuid"]).exists()


async def test_build_stops_when_delete_raced(manager: ComputeManager, conductor: FakeConductor,
                                             fetcher: FakeFetcher) -> None:
    rec = conductor.add(new_uuid(), image=image_record("img-1", IMAGE), task_state=TaskState.DELETING)
    await manager.build_and_run_instance(CTX, dict(rec))
    assert "build_failed" not in conductor.methods()
    assert f"cc-{rec['uuid']}" not in domain_names()
    assert fetcher.downloads == 0


async def test_build_of_vanished_instance_does_nothing(manager: ComputeManager, conductor: FakeConductor) -> None:
    uuid = new_uuid()
    await manager.build_and_run_instance(CTX, {"uuid": uuid, "flavor": {"vcpus": 1, "ram": 64}})
    assert f"cc-{uuid}" not in domain_names()


async def test_terminate(manager: ComputeManager, conductor: FakeConductor, tmp_path: Path) -> None:
    rec = conductor.add(new_uuid(), image=image_record("img-1", IMAGE))
    await manager.build_and_run_instance(CTX, dict(rec))
    assert instance_dir(tmp_path, rec["uuid"]).exists()
    conductor.instances[rec["uuid"]]["task_state"] = TaskState.DELETING
    await manager.terminate_instance(CTX, dict(rec))
    assert conductor.calls[-1] == ("instance_destroyed", {"uuid": rec["uuid"], "host": "node1"})
    assert f"cc-{rec['uuid']}" not in domain_names()
    assert not instance_dir(tmp_path, rec["uuid"]).exists()
    await manager.terminate_instance(CTX, dict(rec))  # idempotent: a redelivery is harmless
    assert conductor.methods().count("instance_destroyed") == 2


async def test_delete_during_build_waits_and_wins(manager: ComputeManager, conductor: FakeConductor) -> None:
    rec = conductor.add(new_uuid(), image=image_record("img-1", IMAGE))
    build = asyncio.ensure_future(manager.build_and_run_instance(CTX, dict(rec)))
    await asyncio.sleep(0)  # the build holds the instance lock now
    conductor.instances[rec["uuid"]]["task_state"] = TaskState.DELETING  # the API's delete
    await asyncio.gather(build, manager.terminate_instance(CTX, dict(rec)))
    assert rec["uuid"] not in conductor.instances
    assert f"cc-{rec['uuid']}" not in domain_names()


async def test_builds_wait_for_the_conductor(tmp_path: Path, conductor: FakeConductor, fetcher: FakeFetcher) -> None:
    conductor.available = False  # it starts after us
    m = make_manager(tmp_path, fetcher)
    await m.start(conductor)
    rec = conductor.add(new_uuid())
    bg = asyncio.ensure_future(m.background())
    build = asyncio.ensure_future(m.build_and_run_instance(CTX, dict(rec)))
    try:
        await asyncio.sleep(0.3)
        assert not build.done() and "node1" not in conductor.nodes
        conductor.available = True
        await asyncio.wait_for(build, 5)
        assert "node1" in conductor.nodes
        assert conductor.instances[rec["uuid"]]["vm_state"] == VmState.ACTIVE  # not mistaken for interrupted
    finally:
        bg.cancel()
        await asyncio.gather(bg, return_exceptions=True)
        await m.driver.destroy(rec["uuid"])
        await m.stop()


class ConductorKilledAfterApplying(FakeConductor):
    """A conductor killed right after it applied an update: the reply is lost with it (the
    caller times out) and the update is sent again to its restarted process."""

    def __init__(self, lose: set[int]) -> None:
        super().__init__()
        self.lose = lose  # which instance_event replies are lost (1: the first)
        self.updates = 0

    async def call(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        result = await super().call(topic, method, args, ctx, timeout)
        if method.name == "instance_event":
            self.updates += 1
            if self.updates in self.lose:
                raise errors.RpcTimeout(method=method.name, topic=topic, timeout=5.0)
        return result


async def test_build_goes_on_through_a_conductor_restart(tmp_path: Path, fetcher: FakeFetcher) -> None:
    """Both build reports (spawning, then active) lose their reply to a conductor kill: each is
    sent again, the resent spawning update accepts the state its first send set, and the build
    ends ACTIVE with its guest running instead of being dropped (it stayed BUILD for good)."""
    conductor = ConductorKilledAfterApplying(lose={1, 3})  # the first send of each report
    m = make_manager(tmp_path, fetcher)
    await m.start(conductor)
    await m._sync_with_conductor()
    rec = conductor.add(new_uuid())
    try:
        await asyncio.wait_for(m.build_and_run_instance(CTX, dict(rec)), 10)
        assert conductor.instances[rec["uuid"]]["vm_state"] == VmState.ACTIVE
        assert await m.driver.power_state(rec["uuid"]) == PowerState.RUNNING
        events = [a["event"] for n, a in conductor.calls if n == "instance_event"]
        assert events == [Event.SPAWNING] * 2 + [Event.SPAWNED] * 2
        assert "build_failed" not in conductor.methods()
    finally:
        await m.driver.destroy(rec["uuid"])
        await m.stop()


async def test_restart_reconciles(tmp_path: Path, conductor: FakeConductor, fetcher: FakeFetcher) -> None:
    # test:///default forgets its domains when its last connection closes: this one plays the host
    # that keeps guests running while the worker restarts
    keeper = await asyncio.to_thread(libvirt.open, "test:///default")
    first = make_manager(tmp_path, fetcher)
    await first.start(conductor)
    await first._sync_with_conductor()
    ids = {k: new_uuid() for k in ("deleting", "building", "active_gone", "stopped_gone", "active_ok", "orphan",
                                   "stale_record", "stopping_done", "stopping_not_done")}
    for key in ("deleting", "building", "active_ok", "orphan", "stopping_done", "stopping_not_done"):
        conductor.add(ids[key])
        await first.build_and_run_instance(CTX, dict(conductor.instances[ids[key]]))
    await first.stop()  # guests outlive the worker
    # what happened while it was down
    conductor.instances[ids["deleting"]].update(task_state=TaskState.DELETING)
    conductor.instances[ids["building"]].update(vm_state=VmState.BUILDING, task_state=TaskState.SPAWNING)
    # guests the hypervisor lost, definition and all (the test driver's die with the process)
    conductor.add(ids["active_gone"], vm_state=VmState.ACTIVE, task_state=None, power_state=PowerState.RUNNING)
    conductor.add(ids["stopped_gone"], vm_state=VmState.STOPPED, task_state=None, power_state=PowerState.SHUTDOWN)
    del conductor.instances[ids["orphan"]]
    conductor.add(ids["stale_record"], host="node2", vm_state=VmState.ACTIVE, task_state=None)
    # stops in flight when the worker died: one guest got as far as powering off, one did not
    await asyncio.to_thread(lambda: keeper.lookupByName(f"cc-{ids['stopping_done']}").destroy())
    for key in ("stopping_done", "stopping_not_done"):
        conductor.instances[ids[key]].update(task_state="powering-off")
    conductor.calls.clear()

    second = make_manager(tmp_path, fetcher)
    await second.start(conductor)
    try:
        await second._sync_with_conductor()
        names = domain_names()
        assert ("instance_destroyed", {"uuid": ids["deleting"], "host": "node1"}) in conductor.calls
        assert f"cc-{ids['deleting']}" not in names
        failed = [a for n, a in conductor.calls if n == "build_failed"]
        assert failed == [{"uuid": ids["building"], "host": "node1", "retryable": True,  # another host tries it
                           "fault": {"code": 500, "message": INTERRUPTED, "details": ""}}]
        assert f"cc-{ids['building']}" not in names
        gone = conductor.instances[ids["active_gone"]]
        assert (gone["vm_state"], gone["power_state"]) == (VmState.STOPPED, PowerState.SHUTDOWN)
        # both lost guests are defined again from their records, shut off: a start finds them
        for key in ("active_gone", "stopped_gone"):
            assert f"cc-{ids[key]}" in names
            assert await second.driver.power_state(ids[key]) == PowerState.SHUTDOWN
        await second.driver.power.power_on(ids["stopped_gone"])
        assert await second.driver.power_state(ids["stopped_gone"]) == PowerState.RUNNING
        assert f"cc-{ids['orphan']}" not in names and not instance_dir(tmp_path, ids["orphan"]).exists()
        assert f"cc-{ids['active_ok']}" in names
        assert conductor.instances[ids["active_ok"]]["vm_state"] == VmState.ACTIVE
        done = {uuid: (action, ok, values, fault) for uuid, action, ok, values, fault in conductor.done}
        assert done[ids["stopping_done"]] == ("stop", True, {"vm_state": VmState.STOPPED,
                                                             "power_state": PowerState.SHUTDOWN}, None)
        assert done[ids["stopping_not_done"]] == ("stop", False, {"power_state": PowerState.RUNNING}, {
            "code": 500, "message": "stop interrupted: compute service restarted", "details": ""})
        states = {k: (conductor.instances[ids[k]]["vm_state"], conductor.instances[ids[k]]["task_state"])
                  for k in ("stopping_done", "stopping_not_done")}
        assert states == {"stopping_done": (VmState.STOPPED, None), "stopping_not_done": (VmState.ACTIVE, None)}
        assert ("host_rejoined", {"host": "node1"}) in conductor.calls  # a fence (if any) is lifted
    finally:
        for uuid in await second.driver.list_instance_uuids():
            await second.driver.destroy(uuid)
        await second.stop()
        await asyncio.to_thread(keeper.close)


async def test_power_sweep_reports_differences(manager: ComputeManager, conductor: FakeConductor) -> None:
    paused, gone, busy = (conductor.add(new_uuid()) for _ in range(3))
    for rec in (paused, gone, busy):
        await manager.build_and_run_instance(CTX, dict(rec))
    conn = manager.driver.conn
    await asyncio.to_thread(lambda: conn.lookupByUUIDString(paused["uuid"]).suspend())
    await asyncio.to_thread(lambda: conn.lookupByUUIDString(gone["uuid"]).destroy())
    await asyncio.to_thread(lambda: conn.lookupByUUIDString(busy["uuid"]).destroy())
    conductor.instances[busy["uuid"]]["task_state"] = "rebooting"  # an operation in flight owns it
    await manager._sync_power_states()
    assert conductor.instances[paused["uuid"]]["power_state"] == PowerState.PAUSED
    assert conductor.instances[paused["uuid"]]["vm_state"] == VmState.ACTIVE
    assert (conductor.instances[gone["uuid"]]["vm_state"],
            conductor.instances[gone["uuid"]]["power_state"]) == (VmState.STOPPED, PowerState.SHUTDOWN)
    assert conductor.instances[busy["uuid"]]["vm_state"] == VmState.ACTIVE
    calls = len(conductor.calls)
    await manager._sync_power_states()  # nothing changed: nothing reported
    assert len(conductor.calls) == calls


async def test_a_moves_new_guest_is_no_orphan_until_the_move_is_over(manager: ComputeManager,
                                                                      conductor: FakeConductor) -> None:
    """A guest made here for a move whose record still names the source host (the conductor has
    not yet recorded the move's end) survives the power sweep; once the record names another host
    and no task, it is an orphan and goes."""
    rec = conductor.add(new_uuid())
    await manager.build_and_run_instance(CTX, dict(rec))
    conductor.instances[rec["uuid"]].update(host="node2", task_state=TaskState.RESIZE_FINISH)
    await manager._sync_power_states()
    assert f"cc-{rec['uuid']}" in domain_names()
    conductor.instances[rec["uuid"]].update(task_state=None)  # the move is over; the server is on node2
    await manager._sync_power_states()
    assert f"cc-{rec['uuid']}" not in domain_names()


async def test_domain_event_triggers_an_early_sweep(tmp_path: Path, conductor: FakeConductor,
                                                    fetcher: FakeFetcher) -> None:
    m = make_manager(tmp_path, fetcher)
    m.sync_interval = 60.0  # only an event can make it sweep within this test
    await m.start(conductor)
    rec = conductor.add(new_uuid())
    bg = asyncio.ensure_future(m.background())
    try:
        await m.build_and_run_instance(CTX, dict(rec))
        await asyncio.sleep(1.2)  # let the sweep caused by our own start pass
        await asyncio.to_thread(lambda: m.driver.conn.lookupByUUIDString(rec["uuid"]).destroy())
        for _ in range(50):
            if conductor.instances[rec["uuid"]]["vm_state"] == VmState.STOPPED:
                break
            await asyncio.sleep(0.1)
        assert conductor.instances[rec["uuid"]]["vm_state"] == VmState.STOPPED
    finally:
        bg.cancel()
        await asyncio.gather(bg, return_exceptions=True)
        await m.driver.destroy(rec["uuid"])
        await m.stop()


async def test_keyed_locks_exclude_and_forget() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def job(key: str, name: str) -> None:
        async with locks(key):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    await asyncio.gather(job("a", "1"), job("a", "2"), job("b", "3"))
    assert order.index("1-") < order.index("2+")  # same key: one at a time
    assert order.index("3+") < order.index("1-")  # other key: concurrently
    assert len(locks) == 0 and not locks.busy("a")


def test_default_paths_follow_the_cluster_layout(tmp_path: Path) -> None:
    cluster = cluster_config(str(tmp_path))
    m = ComputeManager(cluster, cluster.service("cell1/compute/node1"))
    assert m.driver.instances_dir == os.path.join(str(tmp_path), "hosts", "node1", "instances")
    assert m.images.cache_dir == os.path.join(str(tmp_path), "hosts", "node1", "images")
    assert m.driver.uri == "test:///default" and m.driver.virt_type == "test"


# --- a resize that stays on its host (the cell's allow_resize_to_same_host) ---------------------

TINY = {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1}
SMALL = {"id": "2", "name": "m1.small", "vcpus": 2, "ram": 2048, "disk": 20}


def _migration(uuid: str, old_vm_state: str = VmState.ACTIVE) -> dict[str, Any]:
    return {"uuid": new_uuid(), "instance_uuid": uuid, "migration_type": "resize", "source_host": "node1",
            "dest_host": "node1", "old_flavor": TINY, "new_flavor": SMALL, "old_vm_state": old_vm_state}


def _shape(m: ComputeManager, uuid: str) -> tuple[int, int, str | None]:
    """(vCPUs, memory MiB, recorded flavor id) of the guest's next start."""
    xml = m.driver.conn.lookupByUUIDString(uuid).XMLDesc(0)
    dom = ET.fromstring(xml)
    flavor = dom.find(f"metadata/{{{domain_xml.METADATA_NS}}}instance/{{{domain_xml.METADATA_NS}}}flavor")
    return int(dom.findtext("vcpu") or 0), int(dom.findtext("memory") or 0) // 1024, \
        None if flavor is None else flavor.get("id")


async def _active(m: ComputeManager, conductor: FakeConductor) -> dict[str, Any]:
    rec = conductor.add(new_uuid(), image=image_record("img-1", IMAGE), flavor=TINY)
    await m.build_and_run_instance(CTX, dict(rec))
    return dict(conductor.instances[rec["uuid"]])


async def test_same_host_resize_changes_the_one_guest_in_place_and_back(
        manager: ComputeManager, conductor: FakeConductor) -> None:
    rec = await _active(manager, conductor)
    uuid, mig = rec["uuid"], _migration(rec["uuid"])
    assert _shape(manager, uuid) == (1, 512, "1")
    assert await manager.prep_move(CTX, rec, mig) == PowerState.SHUTDOWN
    assert await manager.finish_move(CTX, {**rec, "flavor": SMALL}, mig) == PowerState.RUNNING
    assert _shape(manager, uuid) == (2, 2048, "2")
    assert await manager.driver.list_instance_uuids() == [uuid]  # still the one guest, same files
    assert await manager.revert_move(CTX, rec, mig) == PowerState.SHUTDOWN  # back to the old flavor, stopped
    assert _shape(manager, uuid) == (1, 512, "1")
    assert await manager.finish_revert(CTX, rec, mig) == PowerState.RUNNING
    await manager.prep_move(CTX, rec, mig)
    await manager.finish_move(CTX, {**rec, "flavor": SMALL}, mig)
    assert await manager.confirm_move(CTX, rec, mig) == PowerState.RUNNING  # nothing to remove
    assert _shape(manager, uuid) == (2, 2048, "2")


async def test_same_host_revert_never_makes_a_gone_guest_again(
        manager: ComputeManager, conductor: FakeConductor) -> None:
    rec = await _active(manager, conductor)
    uuid, mig = rec["uuid"], _migration(rec["uuid"])
    await manager.prep_move(CTX, rec, mig)
    await manager.driver.destroy(uuid)  # deleted meanwhile
    assert await manager.revert_move(CTX, rec, mig) == PowerState.NOSTATE
    assert await manager.finish_revert(CTX, rec, mig) == PowerState.NOSTATE
    assert uuid not in await manager.driver.list_instance_uuids()


async def test_a_stopped_server_stays_stopped_through_a_same_host_resize(
        manager: ComputeManager, conductor: FakeConductor) -> None:
    rec = await _active(manager, conductor)
    mig = _migration(rec["uuid"], old_vm_state=VmState.STOPPED)
    await manager.driver.power.power_off(rec["uuid"])
    assert await manager.finish_move(CTX, {**rec, "flavor": SMALL}, mig) == PowerState.SHUTDOWN
    assert _shape(manager, rec["uuid"]) == (2, 2048, "2")


@pytest.mark.parametrize("action, actual, expected", [
    ("stop", PowerState.SHUTDOWN, (True, {"vm_state": VmState.STOPPED, "power_state": PowerState.SHUTDOWN})),
    ("stop", PowerState.RUNNING, (False, {"power_state": PowerState.RUNNING})),
    ("start", PowerState.RUNNING, (True, {"vm_state": VmState.ACTIVE, "power_state": PowerState.RUNNING})),
    ("pause", PowerState.PAUSED, (True, {"vm_state": VmState.PAUSED, "power_state": PowerState.PAUSED})),
    ("rebuild", None, (False, {"vm_state": VmState.ERROR, "power_state": PowerState.NOSTATE})),
    ("reboot", PowerState.RUNNING, (True, {"vm_state": VmState.ACTIVE, "power_state": PowerState.RUNNING})),
    ("soft_delete", PowerState.SHUTDOWN,
     (True, {"vm_state": VmState.SOFT_DELETED, "power_state": PowerState.SHUTDOWN})),
    ("restore", PowerState.RUNNING, (True, {"vm_state": VmState.ACTIVE, "power_state": PowerState.RUNNING})),
    ("rescue", PowerState.RUNNING, (False, {"vm_state": VmState.ERROR, "power_state": PowerState.RUNNING})),
    ("unrescue", PowerState.RUNNING, (False, {"vm_state": VmState.ERROR, "power_state": PowerState.RUNNING})),
])
def test_interrupted_action_ends_as_the_domain_is(action: str, actual: int | None,
                                                  expected: tuple[bool, dict[str, Any]]) -> None:
    assert interrupted_action(action, actual) == expected


async def test_fenced_host_reconciles_then_rejoins(manager: ComputeManager, conductor: FakeConductor,
                                                   tmp_path: Path) -> None:
    """Declared dead while away: guests whose servers were evacuated or deleted meanwhile are
    destroyed before the host says it rejoins; its own servers keep theirs."""
    ids = {k: new_uuid() for k in ("evacuated", "deleted", "kept")}
    for uuid in ids.values():
        conductor.add(uuid)
        await manager.build_and_run_instance(CTX, dict(conductor.instances[uuid]))
    conductor.instances[ids["evacuated"]].update(host="node2")
    del conductor.instances[ids["deleted"]]
    conductor.calls.clear()
    await manager._rejoin()
    names = domain_names()
    assert f"cc-{ids['evacuated']}" not in names and f"cc-{ids['deleted']}" not in names
    assert not instance_dir(tmp_path, ids["evacuated"]).exists()
    assert f"cc-{ids['kept']}" in names
    assert conductor.methods()[-1] == "host_rejoined"


async def test_stuck_libvirt_calls_make_the_driver_unhealthy(manager: ComputeManager) -> None:
    release = threading.Event()
    assert manager.driver.health() == ""
    with pytest.raises(TimeoutError):
        await manager.driver._run(release.wait, 5.0, timeout=0.05)
    await asyncio.sleep(0.06)
    assert manager.driver.health().startswith("libvirt call wait stuck for")
    release.set()
    await asyncio.sleep(0.05)
    assert manager.driver.health() == ""
