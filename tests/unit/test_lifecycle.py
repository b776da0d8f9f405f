"""The instance lifecycle state machine, without I/O."""
from __future__ import annotations

import pytest

from cells import errors, lifecycle
from cells.lifecycle import NEW, Action, Event, State, on, status
from cells.objects.instance import PowerState, TaskState, VmState


def run(*events: str) -> State:
    state = NEW
    for ev in events:
        state, _ = on(ev, state)
    return state


def test_build_follows_novas_sequence() -> None:
    state, actions = on(Event.BUILD_REQUESTED, NEW)
    assert state == State(VmState.BUILDING, TaskState.SCHEDULING, PowerState.NOSTATE)
    assert actions == (Action.SCHEDULE,)
    state, actions = on(Event.SCHEDULED, state)
    assert state == State(VmState.BUILDING, TaskState.SCHEDULING)  # compute moves the task on, as Nova
    assert actions == (Action.SET_HOST, Action.CAST_BUILD)
    for ev, task in ((Event.NETWORKING, TaskState.NETWORKING),
                     (Event.BLOCK_DEVICE_MAPPING, TaskState.BLOCK_DEVICE_MAPPING),
                     (Event.SPAWNING, TaskState.SPAWNING)):
        state, _ = on(ev, state)
        assert state == State(VmState.BUILDING, task)
    state, actions = on(Event.SPAWNED, state)
    assert state == State(VmState.ACTIVE, None, PowerState.RUNNING)
    assert Action.SET_LAUNCHED_AT in actions


def test_compute_may_start_spawning_right_after_scheduling() -> None:
    assert run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING, Event.SPAWNED).vm_state == VmState.ACTIVE


def test_spawn_failed_is_final_error_and_releases_claim() -> None:
    state = run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING)
    state, actions = on(Event.BUILD_FAILED, state)
    assert (state.vm_state, state.task_state) == (VmState.ERROR, None)
    assert set(actions) == {Action.RELEASE_CLAIM, Action.RECORD_FAULT}
    with pytest.raises(errors.InstanceInvalidState):
        on(Event.SPAWNED, state)


def test_reschedule_goes_back_to_scheduling_without_host() -> None:
    state = run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING)
    state, actions = on(Event.RESCHEDULE, state)
    assert state == State(VmState.BUILDING, TaskState.SCHEDULING)
    assert {Action.RELEASE_CLAIM, Action.CLEAR_HOST, Action.SCHEDULE} <= set(actions)


def test_no_valid_host_fails_from_scheduling() -> None:
    state, _ = on(Event.BUILD_FAILED, run(Event.BUILD_REQUESTED))
    assert state.vm_state == VmState.ERROR


def test_a_build_is_rescheduled_from_spawning_and_an_active_server_is_not() -> None:
    """A host declared dead (or a compute restarted) mid-build hands the build to another
    host (cells/conductor/flows/hosts.py); a server that finished building is no build."""
    state, actions = on(Event.RESCHEDULE, run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING))
    assert (state.vm_state, state.task_state) == (VmState.BUILDING, TaskState.SCHEDULING)
    assert Action.RELEASE_CLAIM in actions and Action.CLEAR_HOST in actions
    active = run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING, Event.SPAWNED)
    with pytest.raises(errors.InstanceInvalidState) as exc:
        on(Event.RESCHEDULE, active, "i-1")
    assert exc.value.kwargs == {"action": Event.RESCHEDULE, "instance_id": "i-1", "attr": "vm_state",
                                "state": VmState.ACTIVE}


def test_delete_then_destroyed() -> None:
    active = run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING, Event.SPAWNED)
    state, actions = on(Event.DELETE_REQUESTED, active)
    assert (state.vm_state, state.task_state) == (VmState.ACTIVE, TaskState.DELETING)
    assert actions == (Action.CAST_TERMINATE,)
    again, _ = on(Event.DELETE_REQUESTED, state)  # a repeated delete re-sends the terminate
    assert again == state
    state, actions = on(Event.DESTROYED, state)
    assert state == State(VmState.DELETED, None, PowerState.NOSTATE)
    assert {Action.RELEASE_CLAIM, Action.MARK_DELETED, Action.SET_TERMINATED_AT} <= set(actions)


def test_delete_while_building_and_in_error() -> None:
    for state in (run(Event.BUILD_REQUESTED), run(Event.BUILD_REQUESTED, Event.BUILD_FAILED)):
        new, _ = on(Event.DELETE_REQUESTED, state)
        assert new.task_state == TaskState.DELETING


@pytest.mark.parametrize("event,state", [
    (Event.BUILD_REQUESTED, State(VmState.ACTIVE)),
    (Event.SCHEDULED, State(VmState.BUILDING, None)),
    (Event.SPAWNING, State(VmState.BUILDING, TaskState.DELETING)),
    (Event.SPAWNED, State(VmState.BUILDING, TaskState.SCHEDULING)),
    (Event.DESTROYED, State(VmState.ACTIVE)),
    (Event.DELETE_REQUESTED, State(VmState.DELETED)),
    (Event.RESCHEDULE, State(VmState.BUILDING, TaskState.DELETING)),
    (Event.BUILD_FAILED, State(VmState.BUILDING, TaskState.DELETING)),
    ("no-such-event", State(VmState.ACTIVE)),
])
def test_invalid_transitions_raise(event: str, state: State) -> None:
    with pytest.raises(errors.InstanceInvalidState):
        on(event, state)


def test_invalid_state_is_a_conflict() -> None:
    with pytest.raises(errors.Conflict):
        on(Event.SPAWNED, State(VmState.ERROR))


@pytest.mark.parametrize("vm_state,task_state,expected", [
    (VmState.BUILDING, TaskState.SCHEDULING, "BUILD"),
    (VmState.BUILDING, TaskState.SPAWNING, "BUILD"),
    (VmState.ACTIVE, None, "ACTIVE"),
    (VmState.ACTIVE, TaskState.DELETING, "ACTIVE"),
    (VmState.ACTIVE, "rebooting", "REBOOT"),
    (VmState.ACTIVE, "rebooting_hard", "HARD_REBOOT"),
    (VmState.ACTIVE, "resize_prep", "RESIZE"),
    (VmState.ACTIVE, "rebuilding", "REBUILD"),
    (VmState.ACTIVE, "updating_password", "PASSWORD"),
    (VmState.STOPPED, None, "SHUTOFF"),
    (VmState.PAUSED, None, "PAUSED"),
    (VmState.SUSPENDED, None, "SUSPENDED"),
    (VmState.ERROR, None, "ERROR"),
    (VmState.ERROR, "rebuilding", "REBUILD"),
    (VmState.DELETED, None, "DELETED"),
    ("resized", "resize_reverting", "REVERT_RESIZE"),
    ("resized", None, "VERIFY_RESIZE"),
    ("rescued", None, "RESCUE"),
    ("soft-delete", None, "SOFT_DELETED"),
    ("shelved_offloaded", None, "SHELVED_OFFLOADED"),
    ("bogus", None, "UNKNOWN"),
])
def test_status_matches_nova(vm_state: str, task_state: str | None, expected: str) -> None:
    assert status(vm_state, task_state) == expected


def test_module_is_pure() -> None:
    # the lifecycle core must not reach for I/O: no asyncio, sockets or DB in its namespace
    names = set(vars(lifecycle))
    assert not names & {"asyncio", "sqlalchemy", "zmq", "socket"}


@pytest.mark.parametrize("vm_state, recorded, actual, expected", [
    (VmState.ACTIVE, PowerState.RUNNING, PowerState.RUNNING, {}),
    (VmState.ACTIVE, PowerState.RUNNING, PowerState.PAUSED, {"power_state": PowerState.PAUSED}),
    (VmState.ACTIVE, PowerState.RUNNING, None, {"vm_state": VmState.STOPPED, "power_state": PowerState.SHUTDOWN}),
    (VmState.ACTIVE, PowerState.RUNNING, PowerState.CRASHED,
     {"vm_state": VmState.STOPPED, "power_state": PowerState.CRASHED}),
    (VmState.STOPPED, PowerState.SHUTDOWN, PowerState.SHUTDOWN, {}),
    (VmState.STOPPED, PowerState.SHUTDOWN, None, {"power_state": PowerState.NOSTATE}),
    (VmState.ERROR, PowerState.NOSTATE, None, {}),
    (VmState.STOPPED, PowerState.SHUTDOWN, PowerState.RUNNING, {"power_state": PowerState.RUNNING}),
])
def test_power_observed_follows_the_hypervisor(vm_state: str, recorded: int, actual: int | None,
                                               expected: dict[str, object]) -> None:
    """The compute's power sweep reports what it sees (None: no domain); the record follows it,
    and an active server whose guest went away is stopped."""
    before = State(vm_state, None, recorded)
    after, actions = on(Event.POWER_OBSERVED, before, observed=actual)
    assert (after.vm_state, after.power_state) == (expected.get("vm_state", vm_state),
                                                   expected.get("power_state", recorded))
    assert after.task_state is None and actions == ()


@pytest.mark.parametrize("state", [State(VmState.BUILDING, TaskState.SPAWNING), State(VmState.ACTIVE, TaskState.DELETING),
                                   State(VmState.ACTIVE, TaskState.POWERING_OFF), State(VmState.DELETED)])
def test_power_observed_leaves_a_server_in_a_flow_to_that_flow(state: State) -> None:
    with pytest.raises(errors.InstanceInvalidState):
        on(Event.POWER_OBSERVED, state, observed=PowerState.SHUTDOWN)


def test_spawning_sent_again_keeps_the_state() -> None:
    """A compute resends `spawning` when the reply to its first send was lost: no change, no action."""
    spawning = run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING)
    assert on(Event.SPAWNING, spawning) == (spawning, ())


def test_spawned_finishes_the_build() -> None:
    _, actions = on(Event.SPAWNED, run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING))
    assert actions == (Action.SET_LAUNCHED_AT, Action.FINISH_BUILD)


def test_delete_failed_ends_in_error_with_a_fault() -> None:
    deleting, _ = on(Event.DELETE_REQUESTED, run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING,
                                                 Event.SPAWNED))
    state, actions = on(Event.DELETE_FAILED, deleting)
    assert (state.vm_state, state.task_state) == (VmState.ERROR, None)
    assert actions == (Action.RECORD_FAULT, Action.FAIL_DELETE)
    with pytest.raises(errors.InstanceInvalidState):  # only a delete can fail as a delete
        on(Event.DELETE_FAILED, state)


def test_carry_out_runs_every_action_in_order_and_refuses_one_without_a_carrier() -> None:
    """A flow carries out what the machine returned; an action it has no carrier for is an error,
    never silently dropped."""
    _, actions = on(Event.RESCHEDULE, run(Event.BUILD_REQUESTED, Event.SCHEDULED, Event.SPAWNING))
    done: list[str] = []
    lifecycle.carry_out(actions, {a: (lambda a=a: done.append(a)) for a in actions})  # type: ignore[misc]
    assert done == list(actions)
    partial = {a: (lambda: None) for a in actions if a != Action.SCHEDULE}
    with pytest.raises(errors.CellcloudError, match="schedule"):
        lifecycle.carry_out(actions, partial)


def test_a_resize_walks_the_machine_and_ends_where_it_began() -> None:
    """Every step a resize takes is a transition: prep, migrating (again on a resent step),
    finished (VERIFY_RESIZE with the destination's power), then confirmed back to the old vm_state."""
    stopped = State(VmState.STOPPED, None, PowerState.SHUTDOWN)
    state, actions = on(Event.MOVE_REQUESTED, stopped)
    assert (state.task_state, actions) == (TaskState.RESIZE_PREP, ())
    for _ in range(2):
        state, _ = on(Event.MOVE_MIGRATING, state)
        assert state.task_state == TaskState.RESIZE_MIGRATING
    state, _ = on(Event.MOVE_FINISHED, state, observed=PowerState.SHUTDOWN)
    assert state == State(lifecycle.RESIZED, None, PowerState.SHUTDOWN) and status(state.vm_state) == "VERIFY_RESIZE"
    confirming, _ = on(Event.CONFIRM_REQUESTED, state)
    assert status(confirming.vm_state, confirming.task_state) == "VERIFY_RESIZE"
    done, _ = on(Event.MOVE_CONFIRMED, confirming, back_to=VmState.STOPPED)
    assert done == State(VmState.STOPPED, None, PowerState.SHUTDOWN)


def test_a_revert_that_fails_waits_for_another_confirm_or_revert() -> None:
    resized = State(lifecycle.RESIZED, None, PowerState.RUNNING)
    reverting, _ = on(Event.REVERT_REQUESTED, resized)
    assert status(reverting.vm_state, reverting.task_state) == "REVERT_RESIZE"
    assert on(Event.REVERT_FAILED, reverting)[0] == resized
    back, _ = on(Event.MOVE_REVERTED, reverting, observed=PowerState.RUNNING, back_to=VmState.ACTIVE)
    assert back == State(VmState.ACTIVE, None, PowerState.RUNNING)


def test_an_evacuation_and_a_failed_move_end_in_the_recorded_vm_state() -> None:
    rebuilding, _ = on(Event.EVACUATE_REQUESTED, State(VmState.ERROR, None, PowerState.NOSTATE))
    assert rebuilding.task_state == TaskState.REBUILDING
    assert on(Event.EVACUATED, rebuilding, observed=PowerState.RUNNING, back_to=VmState.ACTIVE)[0] == State(
        VmState.ACTIVE, None, PowerState.RUNNING)
    prep, _ = on(Event.MOVE_REQUESTED, State(VmState.ACTIVE, None, PowerState.RUNNING))
    assert on(Event.MOVE_FAILED, prep, back_to=VmState.ACTIVE)[0] == State(VmState.ACTIVE, None, PowerState.RUNNING)


@pytest.mark.parametrize("event,state,kw", [
    (Event.MOVE_REQUESTED, State(VmState.ERROR), {}),  # an errored server is evacuated, never resized
    (Event.MOVE_REQUESTED, State(VmState.ACTIVE, TaskState.POWERING_OFF), {}),
    (Event.EVACUATE_REQUESTED, State(VmState.ACTIVE, TaskState.DELETING), {}),
    (Event.MOVE_FINISHED, State(VmState.ACTIVE, TaskState.RESIZE_PREP), {}),
    (Event.CONFIRM_REQUESTED, State(VmState.ACTIVE), {}),
    (Event.MOVE_CONFIRMED, State(lifecycle.RESIZED, TaskState.RESIZE_CONFIRMING), {"back_to": "resized"}),
    (Event.MOVE_FAILED, State(VmState.ACTIVE, TaskState.DELETING), {"back_to": VmState.ACTIVE}),
    (Event.REVERT_FAILED, State(lifecycle.RESIZED, TaskState.RESIZE_CONFIRMING), {}),
])
def test_a_move_step_the_machine_does_not_allow_is_a_conflict(event: str, state: State, kw: dict[str, str]) -> None:
    with pytest.raises(errors.InstanceInvalidState):
        on(event, state, **kw)  # type: ignore[arg-type]


def test_a_refused_move_names_novas_action() -> None:
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'resize' instance i1 while it is in task_state"):
        on(Event.MOVE_REQUESTED, State(VmState.ACTIVE, TaskState.REBOOTING), "i1", shown="resize")
