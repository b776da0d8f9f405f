"""Shelve, shelveOffload and unshelve (issue 16) below the API: the pure lifecycle (where each starts, the
tasks it runs under, what it ends in, Nova's 409s and statuses) and the compute's three actions against
the real libvirt test hypervisor (shelve powers the guest off, offload removes its domain and disk,
unshelve starts it again or makes it anew from the shelve image), including the restart that finds a
shelve interrupted."""
from __future__ import annotations

from pathlib import Path

import libvirt  # type: ignore[import-untyped]
import pytest

from cells import errors
from cells.lifecycle import State, begin_action, begin_shelve, finish_action, shelve_step, status
from cells.objects.instance import PowerState, TaskState, VmState
from node.compute.manager import ComputeManager
from tests.compute_fakes import image_record
from tests.unit import test_rescue_soft_delete as rescue_tests
from tests.unit.test_compute_actions import ActionConductor, _act, _active, _libvirt_state

# the rescue tests' compute (test:///default, a fetcher with the boot image and one more): that other
# image stands for the shelve image here
SHELVE_IMAGE, SHELVE_BITS = "rescue", rescue_tests.RESCUE_BITS
compute = rescue_tests.compute


@pytest.mark.parametrize("vm_state", [VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED])
def test_shelve_runs_from_novas_states_through_the_image_tasks_to_shelved(vm_state: str) -> None:
    state = begin_shelve(State(vm_state), "i-1")
    assert state.task_state == TaskState.SHELVING_IMAGE_PENDING_UPLOAD
    state = shelve_step("uploading", state, "i-1")
    assert state.task_state == TaskState.SHELVING_IMAGE_UPLOADING
    state = shelve_step("done", state, "i-1")  # the compute's shelve takes over
    assert (state.vm_state, state.task_state) == (vm_state, TaskState.SHELVING)
    done = finish_action("shelve", state, VmState.SHELVED, None, ok=True)
    assert (done.vm_state, done.task_state, done.power_state) == (VmState.SHELVED, None, PowerState.SHUTDOWN)
    assert status(done.vm_state) == "SHELVED"


def test_a_failed_shelve_image_ends_the_task_and_keeps_the_state() -> None:
    state = shelve_step("uploading", begin_shelve(State(VmState.ACTIVE, None, PowerState.RUNNING)))
    failed = shelve_step("failed", state)
    assert failed == State(VmState.ACTIVE, None, PowerState.RUNNING)


def test_offload_and_unshelve_run_under_novas_tasks_and_statuses() -> None:
    shelved = State(VmState.SHELVED, None, PowerState.SHUTDOWN)
    offloading = begin_action("shelve_offload", shelved, "i-1")
    assert offloading.task_state == TaskState.SHELVING_OFFLOADING and status(offloading.vm_state, offloading.task_state) == "SHELVED"
    offloaded = finish_action("shelve_offload", offloading, VmState.SHELVED_OFFLOADED, None, ok=True)
    assert (offloaded.vm_state, offloaded.power_state) == (VmState.SHELVED_OFFLOADED, PowerState.NOSTATE)
    assert status(offloaded.vm_state) == "SHELVED_OFFLOADED"
    for start in (shelved, offloaded):
        unshelving = begin_action("unshelve", start, "i-1")
        assert unshelving.task_state == TaskState.UNSHELVING
        assert finish_action("unshelve", unshelving, VmState.ACTIVE, None, ok=True) == \
            State(VmState.ACTIVE, None, PowerState.RUNNING)
        assert finish_action("unshelve", unshelving, None, None, ok=False).vm_state == start.vm_state


def test_shelve_steps_refuse_the_wrong_state_with_novas_409() -> None:
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'shelve' instance i-1 while it is in "
                                                          "vm_state shelved") as exc:
        begin_shelve(State(VmState.SHELVED), "i-1")
    assert exc.value.http_status == 409
    with pytest.raises(errors.InstanceInvalidState, match="in task_state powering-off"):
        begin_shelve(State(VmState.ACTIVE, TaskState.POWERING_OFF), "i-1")
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'unshelve' instance i-1 while it is in "
                                                          "vm_state active"):
        begin_action("unshelve", State(VmState.ACTIVE), "i-1")
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'shelve_offload' instance i-1 while it is in "
                                                          "vm_state shelved_offloaded"):
        begin_action("shelve_offload", State(VmState.SHELVED_OFFLOADED), "i-1")
    # the compute's shelve only follows the image's upload: never straight from a server with no task
    with pytest.raises(errors.InstanceInvalidState, match="in task_state None"):
        begin_action("shelve", State(VmState.ACTIVE), "i-1")
    with pytest.raises(errors.UnexpectedTaskState):
        shelve_step("done", State(VmState.ACTIVE, TaskState.POWERING_OFF), "i-1")


def _uploaded(conductor: ActionConductor, uuid: str) -> None:
    """Where the conductor's shelve_progress(done) leaves the record before the compute's shelve."""
    conductor.instances[uuid]["task_state"] = TaskState.SHELVING_IMAGE_UPLOADING


async def test_shelve_offload_and_unshelve_elsewhere_on_the_test_hypervisor(
        compute: tuple[ComputeManager, ActionConductor]) -> None:
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    _uploaded(conductor, uuid)
    rec = await _act(manager, conductor, uuid, "shelve")
    assert (rec["vm_state"], rec["task_state"], rec["power_state"]) == (VmState.SHELVED, None, PowerState.SHUTDOWN)
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_SHUTOFF
    rec = await _act(manager, conductor, uuid, "shelve_offload")
    assert (rec["vm_state"], rec["power_state"]) == (VmState.SHELVED_OFFLOADED, PowerState.NOSTATE)
    assert uuid not in await manager.driver.list_instance_uuids()
    assert not Path(manager.driver.instance_dir(uuid)).exists()
    rec = await _act(manager, conductor, uuid, "unshelve", {"image": image_record(SHELVE_IMAGE, SHELVE_BITS)})
    assert (rec["vm_state"], rec["task_state"], rec["power_state"]) == (VmState.ACTIVE, None, PowerState.RUNNING)
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_RUNNING
    assert [d[1:3] for d in conductor.done] == [("shelve", True), ("shelve_offload", True), ("unshelve", True)]


async def test_unshelve_of_a_shelved_server_starts_its_own_guest(
        compute: tuple[ComputeManager, ActionConductor]) -> None:
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    _uploaded(conductor, uuid)
    await _act(manager, conductor, uuid, "shelve")
    rec = await _act(manager, conductor, uuid, "unshelve")
    assert (rec["vm_state"], rec["power_state"]) == (VmState.ACTIVE, PowerState.RUNNING)
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_RUNNING


async def test_an_unshelve_whose_image_cannot_be_fetched_fails_and_leaves_nothing_on_the_host(
        compute: tuple[ComputeManager, ActionConductor]) -> None:
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    _uploaded(conductor, uuid)
    await _act(manager, conductor, uuid, "shelve")
    await _act(manager, conductor, uuid, "shelve_offload")
    rec = await _act(manager, conductor, uuid, "unshelve", {"image": image_record("missing", b"nowhere")})
    assert (rec["vm_state"], rec["task_state"]) == (VmState.SHELVED_OFFLOADED, None)
    _, action, ok, _, fault = conductor.done[-1]
    assert (action, ok) == ("unshelve", False) and fault is not None
    assert uuid not in await manager.driver.list_instance_uuids()


async def test_a_restarted_compute_ends_a_shelve_its_guest_finished_as_done(
        compute: tuple[ComputeManager, ActionConductor]) -> None:
    """Killed after the power-off but before its report: the reconciliation reports the shelve done."""
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    await manager.driver.power.power_off(uuid, 1.0)
    conductor.instances[uuid]["task_state"] = TaskState.SHELVING
    await manager._reconcile()
    assert conductor.done[-1][1:3] == ("shelve", True)
    rec = conductor.instances[uuid]
    assert (rec["vm_state"], rec["task_state"]) == (VmState.SHELVED, None)


@pytest.mark.parametrize("first", ["pause", "suspend", "stop"])
async def test_a_paused_suspended_or_stopped_guest_shelves_too(
        compute: tuple[ComputeManager, ActionConductor], first: str) -> None:
    manager, conductor = compute
    uuid = await _active(manager, conductor)
    await _act(manager, conductor, uuid, first)
    _uploaded(conductor, uuid)
    rec = await _act(manager, conductor, uuid, "shelve")
    assert (rec["vm_state"], rec["task_state"]) == (VmState.SHELVED, None), conductor.done[-1]
    assert _libvirt_state(uuid) == libvirt.VIR_DOMAIN_SHUTOFF
    rec = await _act(manager, conductor, uuid, "unshelve")
    assert (rec["vm_state"], rec["power_state"]) == (VmState.ACTIVE, PowerState.RUNNING), conductor.done[-1]
