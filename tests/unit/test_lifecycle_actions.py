"""Server actions in the pure lifecycle: which states each action starts from, the
task state it runs under, what it may end in, and Nova's 409 wording."""
from __future__ import annotations

import pytest

from cells import errors
from cells.lifecycle import USER_ACTIONS, State, begin_action, finish_action, status
from cells.objects.instance import PowerState, VmState

ACTIVE = State(VmState.ACTIVE, None, PowerState.RUNNING)
STOPPED = State(VmState.STOPPED, None, PowerState.SHUTDOWN)


@pytest.mark.parametrize("action, start, end, shown", [
    ("stop", ACTIVE, VmState.STOPPED, "SHUTOFF"),
    ("start", STOPPED, VmState.ACTIVE, "ACTIVE"),
    ("reboot", ACTIVE, VmState.ACTIVE, "ACTIVE"),
    ("reboot_hard", STOPPED, VmState.ACTIVE, "ACTIVE"),
    ("pause", ACTIVE, VmState.PAUSED, "PAUSED"),
    ("unpause", State(VmState.PAUSED, None, PowerState.PAUSED), VmState.ACTIVE, "ACTIVE"),
    ("suspend", ACTIVE, VmState.SUSPENDED, "SUSPENDED"),
    ("resume", State(VmState.SUSPENDED, None, PowerState.SHUTDOWN), VmState.ACTIVE, "ACTIVE"),
    ("rebuild", STOPPED, VmState.STOPPED, "SHUTOFF"),
])
def test_each_action_runs_under_its_task_and_ends_where_nova_does(action: str, start: State, end: str,
                                                                  shown: str) -> None:
    running = begin_action(action, start, "i-1")
    assert running.task_state == USER_ACTIONS[action].task_state
    assert running.vm_state == start.vm_state
    done = finish_action(action, running, end, None, ok=True)
    assert done.task_state is None and done.vm_state == end
    assert status(done.vm_state, done.task_state) == shown


def test_reboot_and_rebuild_show_novas_transitional_statuses() -> None:
    assert status(*_vt(begin_action("reboot", ACTIVE))) == "REBOOT"
    assert status(*_vt(begin_action("reboot_hard", ACTIVE))) == "HARD_REBOOT"
    assert status(*_vt(begin_action("rebuild", ACTIVE))) == "REBUILD"
    assert status(*_vt(begin_action("rebuild", STOPPED))) == "REBUILD"


def _vt(state: State) -> tuple[str, str | None]:
    return state.vm_state, state.task_state


def test_actions_that_do_not_fit_name_the_state_as_nova() -> None:
    with pytest.raises(errors.InstanceInvalidState) as exc:
        begin_action("start", ACTIVE, "i-1")
    assert exc.value.message == "Cannot 'start' instance i-1 while it is in vm_state active"
    assert exc.value.http_status == 409
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'reboot' instance i-1 while it is in vm_state "
                                                          "stopped"):
        begin_action("reboot", STOPPED, "i-1")
    with pytest.raises(errors.InstanceInvalidState, match="in task_state powering-off"):
        begin_action("pause", begin_action("stop", ACTIVE), "i-1")
    with pytest.raises(errors.InstanceInvalidState):
        begin_action("stop", State(VmState.BUILDING, "scheduling"), "i-1")


def test_a_hard_reboot_may_take_over_a_soft_one_but_not_the_reverse() -> None:
    soft = begin_action("reboot", ACTIVE)
    assert begin_action("reboot_hard", soft).task_state == USER_ACTIONS["reboot_hard"].task_state
    with pytest.raises(errors.InstanceInvalidState):
        begin_action("reboot", begin_action("reboot_hard", ACTIVE))


def test_a_failed_action_ends_its_task_and_keeps_the_vm_state_unless_error() -> None:
    running = begin_action("stop", ACTIVE)
    assert finish_action("stop", running, None, PowerState.RUNNING, ok=False) == ACTIVE
    assert finish_action("rebuild", begin_action("rebuild", ACTIVE), VmState.ERROR, PowerState.NOSTATE,
                         ok=False).vm_state == VmState.ERROR
    with pytest.raises(errors.Invalid):
        finish_action("stop", running, VmState.PAUSED, None, ok=False)


def test_a_report_for_an_action_no_longer_running_is_refused() -> None:
    with pytest.raises(errors.UnexpectedTaskState):
        finish_action("stop", State(VmState.ACTIVE, "deleting"), VmState.STOPPED, None, ok=True)
    with pytest.raises(errors.Invalid):  # success must land in one of the action's results
        finish_action("stop", begin_action("stop", ACTIVE), VmState.ACTIVE, None, ok=True)
    with pytest.raises(errors.Invalid):
        begin_action("teleport", ACTIVE)
