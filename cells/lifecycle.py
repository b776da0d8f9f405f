"""The instance lifecycle as a pure state machine (no I/O).

    new_state, actions = on(event, state)

`state` is (vm_state, task_state, power_state). `actions` names the side
effects the caller must carry out in the same unit of work (release the claim,
record a fault, cast to compute, ...). Build follows Nova's sequence:

    build requested  -> building / scheduling
    scheduled        -> building / scheduling   (host set; compute takes over and,
                                                 as in Nova, moves the task on itself)
    networking       -> building / networking
    block devices    -> building / block_device_mapping
    spawning         -> building / spawning     (again while spawning: a report sent again, no change)
    spawned          -> active   / None / RUNNING
    reschedule       -> building / scheduling   (a retryable failure on one host)
    build failed     -> error    / None         (final)
    host lost        -> error    / None         (the host died while building)
    delete requested -> <vm_state> / deleting
    destroyed        -> deleted  / None / NOSTATE
    delete failed    -> error    / None         (the host could not destroy the guest)
    power observed   -> the record follows the hypervisor (a guest that went away is stopped)

Moves (resize, cold migration: cells/conductor/flows/moves.py; evacuation: evacuate.py):

    move requested      active|stopped / None  -> <vm_state> / resize_prep
    move migrating      resize_prep|migrating  -> <vm_state> / resize_migrating
    move finished       resize_migrating       -> resized / None / <observed>
    confirm requested   resized / None         -> resized / resize_confirming
    revert requested    resized / None         -> resized / resize_reverting
    move confirmed      resize_confirming      -> <back_to> / None
    move reverted       resize_reverting       -> <back_to> / None / <observed>
    revert failed       resize_reverting       -> resized / None        (confirm or revert again)
    evacuate requested  active|stopped|error / None -> <vm_state> / rebuilding
    evacuated           rebuilding             -> <back_to> / None / <observed>
    move failed         a move's task          -> <back_to> / None     (rolled back where it was)

`back_to` is the vm_state the move recorded when it began (its migration's old_vm_state).

The compute reports its steps as these events (conductor `instance_event`,
cells/conductor/flows/compute_events.py); the conductor fires them here against the
locked row and carries out the returned actions in the same unit of work.

`status(vm_state, task_state)` is the API status, as Nova's status_from_state.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from cells import errors
from cells.objects.instance import PowerState, TaskState, VmState


@dataclass(frozen=True)
class State:
    vm_state: str
    task_state: str | None = None
    power_state: int = PowerState.NOSTATE


class Event:
    BUILD_REQUESTED = "build_requested"
    SCHEDULED = "scheduled"
    NETWORKING = "networking"
    BLOCK_DEVICE_MAPPING = "block_device_mapping"
    SPAWNING = "spawning"
    SPAWNED = "spawned"
    RESCHEDULE = "reschedule"
    BUILD_FAILED = "build_failed"
    DELETE_REQUESTED = "delete_requested"
    DESTROYED = "destroyed"
    # reported by the compute (conductor instance_event)
    SPAWN_FAILED = "spawn_failed"  # -> RESCHEDULE or BUILD_FAILED: the conductor decides (attempts left)
    DELETE_FAILED = "delete_failed"
    POWER_OBSERVED = "power_observed"
    # moves, driven by the conductor
    MOVE_REQUESTED = "move_requested"
    MOVE_MIGRATING = "move_migrating"
    MOVE_FINISHED = "move_finished"
    CONFIRM_REQUESTED = "confirm_requested"
    REVERT_REQUESTED = "revert_requested"
    MOVE_CONFIRMED = "move_confirmed"
    MOVE_REVERTED = "move_reverted"
    EVACUATE_REQUESTED = "evacuate_requested"
    EVACUATED = "evacuated"
    MOVE_FAILED = "move_failed"
    REVERT_FAILED = "revert_failed"


# the events a compute reports about its instances (conductor instance_event)
COMPUTE_EVENTS = frozenset({Event.SPAWNING, Event.SPAWNED, Event.SPAWN_FAILED, Event.DESTROYED,
                            Event.DELETE_FAILED, Event.POWER_OBSERVED})


class Action:
    """Side effects the caller performs along with the new state."""
    SCHEDULE = "schedule"  # ask the scheduler for a host (it claims resources)
    SET_HOST = "set_host"
    CLEAR_HOST = "clear_host"
    CAST_BUILD = "cast_build"  # compute.<host> build_and_run_instance
    RELEASE_CLAIM = "release_claim"
    RECORD_FAULT = "record_fault"
    SET_LAUNCHED_AT = "set_launched_at"
    FINISH_BUILD = "finish_build"  # the create action's build event and the action end as a success
    CAST_TERMINATE = "cast_terminate"  # compute.<host> terminate_instance
    SET_TERMINATED_AT = "set_terminated_at"
    MARK_DELETED = "mark_deleted"
    FAIL_DELETE = "fail_delete"  # the delete action's open event ends as an error


NEW = State(vm_state="")  # the state before the row exists
RESIZED = "resized"  # Nova's vm_state of a move awaiting confirm (VERIFY_RESIZE)
MOVABLE = frozenset({VmState.ACTIVE, VmState.STOPPED})
EVACUABLE = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR})
MOVE_TASKS = frozenset({TaskState.RESIZE_PREP, TaskState.RESIZE_MIGRATING, TaskState.REBUILDING})
_BUILD_TASKS = (TaskState.SCHEDULING, None, TaskState.NETWORKING, TaskState.BLOCK_DEVICE_MAPPING,
                TaskState.SPAWNING)


def observed_power(state: State, actual: int | None) -> State:
    """The state once the hypervisor's view (`actual` None: no domain) is taken in. Pure: the
    policy of the compute's power sweep and of its reconciliation."""
    if state.vm_state == VmState.ACTIVE and actual in (None, PowerState.SHUTDOWN, PowerState.CRASHED):
        # the guest went away under us (powered off inside, crashed, host rebooted): it is stopped now
        return replace(state, vm_state=VmState.STOPPED,
                       power_state=PowerState.SHUTDOWN if actual is None else actual)
    return replace(state, power_state=PowerState.NOSTATE if actual is None else actual)


def on(event: str, state: State, instance_id: str = "", *, observed: int | None = None,
       back_to: str | None = None, shown: str | None = None) -> tuple[State, tuple[str, ...]]:
    """Apply `event` to `state`. Raises InstanceInvalidState when it does not apply (naming
    `shown`, Nova's action name, when given). `observed`: the guest's power state (power_observed:
    None is no domain; a move's end: None keeps the recorded one); `back_to`: the vm_state a move
    ends in (its migration's old_vm_state)."""
    vm, task = state.vm_state, state.task_state

    def invalid() -> errors.InstanceInvalidState:
        attr, value = ("task_state", task) if vm == VmState.BUILDING or task else ("vm_state", vm)
        return errors.InstanceInvalidState(action=shown or event, instance_id=instance_id, attr=attr, state=value)

    if event in _MOVE_EVENTS:
        moved = _move(event, state, observed, back_to)
        if moved is None:
            raise invalid()
        return moved, ()

    building = vm == VmState.BUILDING and task in _BUILD_TASKS
    if event == Event.BUILD_REQUESTED:
        if state != NEW:
            raise invalid()
        return State(VmState.BUILDING, TaskState.SCHEDULING), (Action.SCHEDULE,)
    if event == Event.SCHEDULED:
        if not (vm == VmState.BUILDING and task == TaskState.SCHEDULING):
            raise invalid()
        return state, (Action.SET_HOST, Action.CAST_BUILD)
    if event == Event.NETWORKING:
        if not (vm == VmState.BUILDING and task in (TaskState.SCHEDULING, None)):
            raise invalid()
        return replace(state, task_state=TaskState.NETWORKING), ()
    if event == Event.BLOCK_DEVICE_MAPPING:
        if not (vm == VmState.BUILDING and task in (TaskState.SCHEDULING, None, TaskState.NETWORKING)):
            raise invalid()
        return replace(state, task_state=TaskState.BLOCK_DEVICE_MAPPING), ()
    if event == Event.SPAWNING:
        if not building:
            raise invalid()
        return replace(state, task_state=TaskState.SPAWNING), ()
    if event == Event.SPAWNED:
        if not (vm == VmState.BUILDING and task == TaskState.SPAWNING):
            raise invalid()
        return State(VmState.ACTIVE, None, PowerState.RUNNING), (Action.SET_LAUNCHED_AT, Action.FINISH_BUILD)
    if event == Event.RESCHEDULE:  # the caller checks a host was tried
        if not building:
            raise invalid()
        return (State(VmState.BUILDING, TaskState.SCHEDULING, PowerState.NOSTATE),
                (Action.RELEASE_CLAIM, Action.RECORD_FAULT, Action.CLEAR_HOST, Action.SCHEDULE))
    if event == Event.BUILD_FAILED:
        if not building:
            raise invalid()
        return replace(state, vm_state=VmState.ERROR, task_state=None), (Action.RELEASE_CLAIM, Action.RECORD_FAULT)
    if event == Event.DELETE_REQUESTED:
        # allowed from any live state, as Nova; again while deleting re-sends the terminate
        if vm in (VmState.DELETED, ""):
            raise invalid()
        return replace(state, task_state=TaskState.DELETING), (Action.CAST_TERMINATE,)
    if event == Event.DESTROYED:
        if task != TaskState.DELETING or vm == VmState.DELETED:
            raise invalid()
        return (State(VmState.DELETED, None, PowerState.NOSTATE),
                (Action.RELEASE_CLAIM, Action.SET_TERMINATED_AT, Action.MARK_DELETED))
    if event == Event.DELETE_FAILED:
        if task != TaskState.DELETING or vm == VmState.DELETED:
            raise invalid()
        return replace(state, vm_state=VmState.ERROR, task_state=None), (Action.RECORD_FAULT, Action.FAIL_DELETE)
    if event == Event.POWER_OBSERVED:  # only a server no flow holds: a flow's own steps win
        if task is not None or vm in (VmState.BUILDING, VmState.DELETED, ""):
            raise invalid()
        return observed_power(state, observed), ()
    raise invalid()


_MOVE_EVENTS = frozenset({Event.MOVE_REQUESTED, Event.MOVE_MIGRATING, Event.MOVE_FINISHED, Event.CONFIRM_REQUESTED,
                          Event.REVERT_REQUESTED, Event.MOVE_CONFIRMED, Event.MOVE_REVERTED,
                          Event.EVACUATE_REQUESTED, Event.EVACUATED, Event.MOVE_FAILED, Event.REVERT_FAILED})
_END_STATES = frozenset({VmState.ACTIVE, VmState.STOPPED})  # where a move may end (its old_vm_state)


def _move(event: str, state: State, observed: int | None, back_to: str | None) -> State | None:
    """A move's transition, or None when it does not apply."""
    vm, task = state.vm_state, state.task_state
    power = state.power_state if observed is None else observed
    if event == Event.MOVE_REQUESTED:
        return replace(state, task_state=TaskState.RESIZE_PREP) if vm in MOVABLE and task is None else None
    if event == Event.EVACUATE_REQUESTED:
        return replace(state, task_state=TaskState.REBUILDING) if vm in EVACUABLE and task is None else None
    if event == Event.MOVE_MIGRATING:
        ok = task in (TaskState.RESIZE_PREP, TaskState.RESIZE_MIGRATING)
        return replace(state, task_state=TaskState.RESIZE_MIGRATING) if ok else None
    if event == Event.MOVE_FINISHED:
        return State(RESIZED, None, power) if task == TaskState.RESIZE_MIGRATING else None
    if event in (Event.CONFIRM_REQUESTED, Event.REVERT_REQUESTED):
        if vm != RESIZED or task is not None:
            return None
        ending = TaskState.RESIZE_CONFIRMING if event == Event.CONFIRM_REQUESTED else TaskState.RESIZE_REVERTING
        return replace(state, task_state=ending)
    if event == Event.REVERT_FAILED:
        return replace(state, task_state=None) if vm == RESIZED and task == TaskState.RESIZE_REVERTING else None
    if back_to not in _END_STATES:
        return None
    ended = {Event.MOVE_CONFIRMED: task == TaskState.RESIZE_CONFIRMING,
             Event.MOVE_REVERTED: task == TaskState.RESIZE_REVERTING,
             Event.EVACUATED: task == TaskState.REBUILDING,
             Event.MOVE_FAILED: task in MOVE_TASKS}[event]
    return State(back_to, None, power) if ended else None


def carry_out(actions: tuple[str, ...], carriers: Mapping[str, Callable[[], object]]) -> None:
    """Run the carrier of every action `on` returned, in its order (the dask handle_stimulus ->
    instructions pattern). An action the flow has no carrier for raises: a transition whose side
    effects a caller would silently drop is a bug, found by the first test that fires it."""
    missing = [a for a in actions if a not in carriers]
    if missing:
        raise errors.CellcloudError(f"lifecycle action(s) {missing} have no carrier in this flow")
    for action in actions:
        carriers[action]()


# --- API status (Nova's nova/api/openstack/common.py _STATE_MAP) ------------

# some task states Cellcloud does not drive yet: the status map stays complete for data written by
# later features
T = TaskState
_REBOOTING, _REBOOT_PENDING, _REBOOT_STARTED = T.REBOOTING, T.REBOOT_PENDING, T.REBOOT_STARTED
_REBOOTING_HARD, _REBOOT_PENDING_HARD, _REBOOT_STARTED_HARD = (T.REBOOTING_HARD, T.REBOOT_PENDING_HARD,
                                                              T.REBOOT_STARTED_HARD)
_UPDATING_PASSWORD, _MIGRATING = T.UPDATING_PASSWORD, T.MIGRATING
_REBUILDING, _REBUILD_BDM, _REBUILD_SPAWNING = T.REBUILDING, T.REBUILD_BLOCK_DEVICE_MAPPING, T.REBUILD_SPAWNING
_RESIZE_TASKS = (T.RESIZE_PREP, T.RESIZE_MIGRATING, T.RESIZE_MIGRATED, T.RESIZE_FINISH)
_RESIZE_REVERTING = T.RESIZE_REVERTING
_REBUILD: dict[str | None, str] = {_REBUILDING: "REBUILD", _REBUILD_BDM: "REBUILD", _REBUILD_SPAWNING: "REBUILD"}
_RESIZE: dict[str | None, str] = {t: "RESIZE" for t in _RESIZE_TASKS}

_STATE_MAP: dict[str, dict[str | None, str]] = {
    VmState.ACTIVE: {
        "default": "ACTIVE",
        _REBOOTING: "REBOOT", _REBOOT_PENDING: "REBOOT", _REBOOT_STARTED: "REBOOT",
        _REBOOTING_HARD: "HARD_REBOOT", _REBOOT_PENDING_HARD: "HARD_REBOOT", _REBOOT_STARTED_HARD: "HARD_REBOOT",
        _UPDATING_PASSWORD: "PASSWORD", _MIGRATING: "MIGRATING", **_REBUILD, **_RESIZE,
    },
    VmState.BUILDING: {"default": "BUILD"},
    VmState.STOPPED: {"default": "SHUTOFF", **_RESIZE, **_REBUILD},
    "resized": {"default": "VERIFY_RESIZE", _RESIZE_REVERTING: "REVERT_RESIZE"},
    VmState.PAUSED: {"default": "PAUSED", _MIGRATING: "MIGRATING"},
    VmState.SUSPENDED: {"default": "SUSPENDED"},
    VmState.RESCUED: {"default": "RESCUE"},
    VmState.ERROR: {"default": "ERROR", **_REBUILD},
    VmState.DELETED: {"default": "DELETED"},
    VmState.SOFT_DELETED: {"default": "SOFT_DELETED"},
    "shelved": {"default": "SHELVED"},
    "shelved_offloaded": {"default": "SHELVED_OFFLOADED"},
}


def status(vm_state: str, task_state: str | None = None) -> str:
    """Nova's API status for (vm_state, task_state); UNKNOWN for a state Nova does not know."""
    task_map = _STATE_MAP.get(vm_state, {"default": "UNKNOWN"})
    return task_map.get(task_state, task_map["default"])


# --- user actions on an existing server (Nova's compute API state checks) ---------

@dataclass(frozen=True)
class UserAction:
    name: str  # Nova's action name: instance actions and 409 messages use it
    from_vm_states: frozenset[str]  # vm_states it may start from
    task_state: str  # task_state while the compute works on it
    results: frozenset[str]  # vm_states the compute may report when it succeeded
    from_task_states: frozenset[str | None] = frozenset({None})


# the servers a DELETE keeps for the reclaim interval: ones a compute holds and no flow is changing (a
# rescued one is deleted at once: a restore would start its rescue guest as if it were its own)
SOFT_DELETE_FROM = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED, VmState.ERROR})
_HARD_REBOOT_FROM = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED, VmState.ERROR})
_REBOOT_TASKS = frozenset({None, _REBOOTING, _REBOOT_PENDING, _REBOOT_STARTED})
SHELVE_FROM = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED})  # Nova's
USER_ACTIONS: dict[str, UserAction] = {a.name: a for a in (
    UserAction("stop", frozenset({VmState.ACTIVE, VmState.ERROR}), TaskState.POWERING_OFF, frozenset({VmState.STOPPED})),
    UserAction("start", frozenset({VmState.STOPPED}), TaskState.POWERING_ON, frozenset({VmState.ACTIVE})),
    UserAction("reboot", frozenset({VmState.ACTIVE}), _REBOOTING, frozenset({VmState.ACTIVE})),
    # a hard reboot may take over a soft one that hangs, as Nova
    UserAction("reboot_hard", _HARD_REBOOT_FROM, _REBOOTING_HARD, frozenset({VmState.ACTIVE}),
               _REBOOT_TASKS | {_REBOOTING_HARD}),
    UserAction("pause", frozenset({VmState.ACTIVE}), TaskState.PAUSING, frozenset({VmState.PAUSED})),
    UserAction("unpause", frozenset({VmState.PAUSED}), TaskState.UNPAUSING, frozenset({VmState.ACTIVE})),
    UserAction("suspend", frozenset({VmState.ACTIVE}), TaskState.SUSPENDING, frozenset({VmState.SUSPENDED})),
    UserAction("resume", frozenset({VmState.SUSPENDED}), TaskState.RESUMING, frozenset({VmState.ACTIVE})),
    # a rebuilt server that was stopped stays stopped, as Nova
    UserAction("rebuild", frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}), _REBUILDING,
               frozenset({VmState.ACTIVE, VmState.STOPPED})),
    # rescue (Nova's: from active, stopped or error): a rescue guest boots with the server's disk second
    UserAction("rescue", frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.ERROR}), TaskState.RESCUING,
               frozenset({VmState.RESCUED})),
    UserAction("unrescue", frozenset({VmState.RESCUED}), TaskState.UNRESCUING, frozenset({VmState.ACTIVE})),
    # soft delete (a reclaim interval is set): the guest powered off and kept until restored or reclaimed
    UserAction("soft_delete", SOFT_DELETE_FROM, TaskState.SOFT_DELETING, frozenset({VmState.SOFT_DELETED})),
    UserAction("restore", frozenset({VmState.SOFT_DELETED}), TaskState.RESTORING, frozenset({VmState.ACTIVE})),
    # shelve (begin_shelve below): once its image is uploaded the compute powers the guest off; offload
    # then undefines it and the host's claim goes; unshelve starts it again (offloaded: a new guest from
    # the shelve image on the host the scheduler chose)
    UserAction("shelve", SHELVE_FROM, TaskState.SHELVING, frozenset({VmState.SHELVED}),
               frozenset({TaskState.SHELVING_IMAGE_UPLOADING})),
    UserAction("shelve_offload", frozenset({VmState.SHELVED}), TaskState.SHELVING_OFFLOADING,
               frozenset({VmState.SHELVED_OFFLOADED})),
    UserAction("unshelve", frozenset({VmState.SHELVED, VmState.SHELVED_OFFLOADED}), TaskState.UNSHELVING,
               frozenset({VmState.ACTIVE})),
)}
ACTION_TASK_STATES = frozenset(a.task_state for a in USER_ACTIONS.values())
_RESULT_POWER = {VmState.ACTIVE: PowerState.RUNNING, VmState.STOPPED: PowerState.SHUTDOWN,
                 VmState.PAUSED: PowerState.PAUSED, VmState.SUSPENDED: PowerState.SHUTDOWN,
                 VmState.RESCUED: PowerState.RUNNING, VmState.SOFT_DELETED: PowerState.SHUTDOWN,
                 VmState.SHELVED: PowerState.SHUTDOWN, VmState.SHELVED_OFFLOADED: PowerState.NOSTATE}


def user_action(name: str) -> UserAction:
    try:
        return USER_ACTIONS[name]
    except KeyError:
        raise errors.Invalid(reason=f"unknown server action {name!r}") from None


def begin_action(name: str, state: State, instance_id: str = "") -> State:
    """The state while the compute carries out `name`; InstanceInvalidState (409) when it does not fit.
    Nova names the vm_state in the message when that is wrong, else the task_state."""
    act = user_action(name)
    shown = "reboot" if name == "reboot_hard" else name
    if state.vm_state not in act.from_vm_states:
        raise errors.InstanceInvalidState(action=shown, instance_id=instance_id, attr="vm_state",
                                          state=state.vm_state)
    if state.task_state not in act.from_task_states:
        raise errors.InstanceInvalidState(action=shown, instance_id=instance_id, attr="task_state",
                                          state=state.task_state)
    return replace(state, task_state=act.task_state)


def finish_action(name: str, state: State, vm_state: str | None, power_state: int | None, ok: bool,
                  instance_id: str = "") -> State:
    """The state after the compute reported `name` done (ok) or failed. A failure keeps the
    vm_state unless the compute says the guest is in error; the task always ends."""
    act = user_action(name)
    if state.task_state != act.task_state:
        raise errors.UnexpectedTaskState(instance_id=instance_id, expected=act.task_state, actual=state.task_state)
    if ok:
        if vm_state not in act.results:
            raise errors.Invalid(reason=f"{name} cannot end in vm_state {vm_state!r}")
        return State(vm_state, None, _RESULT_POWER[vm_state] if power_state is None else power_state)
    if vm_state not in (None, state.vm_state, VmState.ERROR):
        raise errors.Invalid(reason=f"a failed {name} cannot end in vm_state {vm_state!r}")
    return State(vm_state or state.vm_state, None, state.power_state if power_state is None else power_state)


# --- locks (Nova's lock/unlock: a locked server refuses changes by anyone but an admin) ---------

LOCKED_BY_OWNER, LOCKED_BY_ADMIN = "owner", "admin"


def locker(caller_project: str | None, owner_project: str) -> str:
    """Nova's locked_by: "owner" when the caller is of the server's project, else "admin"."""
    return LOCKED_BY_OWNER if caller_project == owner_project else LOCKED_BY_ADMIN


def check_unlocked(locked_by: str | None, is_admin: bool, instance_id: str) -> None:
    """InstanceIsLocked (409) for a change to a locked server by a non-admin (Nova's check_instance_lock)."""
    if locked_by and not is_admin:
        raise errors.InstanceIsLocked(instance_uuid=instance_id)


def may_unlock(locked_by: str | None, caller_project: str | None, owner_project: str, is_admin: bool) -> bool:
    """Nova's is_expected_locked_by and unlock_override: an owner's lock its project may lift, an
    admin's lock only an admin."""
    return is_admin or not locked_by or locked_by == locker(caller_project, owner_project)


# --- snapshots (Nova's createImage): the server keeps its vm_state; the task says how far it got ---------

SNAPSHOT_FROM = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED})
SNAPSHOT_TASKS = frozenset({TaskState.IMAGE_SNAPSHOT, TaskState.IMAGE_BACKUP, TaskState.IMAGE_PENDING_UPLOAD,
                            TaskState.IMAGE_UPLOADING})
# the two actions that take a server's disk into an image, and the task each starts under (as Nova)
SNAPSHOT_ACTIONS = {"createImage": TaskState.IMAGE_SNAPSHOT, "createBackup": TaskState.IMAGE_BACKUP}
SNAPSHOT_UPLOADING, SNAPSHOT_DONE, SNAPSHOT_FAILED = "uploading", "done", "failed"


def begin_snapshot(state: State, instance_id: str = "", action: str = "createImage") -> State:
    """createImage or createBackup from a server that runs, is stopped, paused or suspended and has no task
    (409 otherwise)."""
    return _begin_idle(action, SNAPSHOT_FROM, SNAPSHOT_ACTIONS[action], state, instance_id)


def _begin_idle(action: str, from_vm_states: frozenset[str], task: str, state: State, instance_id: str) -> State:
    """`task` set on a server in one of `from_vm_states` with no task; Nova's 409 naming what is wrong."""
    if state.vm_state not in from_vm_states:
        raise errors.InstanceInvalidState(action=action, instance_id=instance_id, attr="vm_state",
                                          state=state.vm_state)
    if state.task_state is not None:
        raise errors.InstanceInvalidState(action=action, instance_id=instance_id, attr="task_state",
                                          state=state.task_state)
    return replace(state, task_state=task)


def snapshot_step(step: str, state: State, instance_id: str = "") -> State:
    """The disk image is made and its data goes to the image service (uploading), or the snapshot ended
    (done or failed: the task ends, the vm_state is as before)."""
    if state.task_state not in SNAPSHOT_TASKS:
        raise errors.UnexpectedTaskState(instance_id=instance_id, expected=TaskState.IMAGE_SNAPSHOT,
                                         actual=state.task_state)
    if step == SNAPSHOT_UPLOADING:
        return replace(state, task_state=TaskState.IMAGE_UPLOADING)
    if step in (SNAPSHOT_DONE, SNAPSHOT_FAILED):
        return replace(state, task_state=None)
    raise errors.Invalid(reason=f"unknown snapshot step {step!r}")


# --- shelve (Nova's): the disk into an image first (the API drives it, as createImage), then the user
# action "shelve" (the compute powers the guest off) -----------------------------------------------

SHELVE_IMAGE_TASKS = frozenset({TaskState.SHELVING_IMAGE_PENDING_UPLOAD, TaskState.SHELVING_IMAGE_UPLOADING})
SHELVE_UPLOADING, SHELVE_DONE, SHELVE_FAILED = SNAPSHOT_UPLOADING, SNAPSHOT_DONE, SNAPSHOT_FAILED


def begin_shelve(state: State, instance_id: str = "") -> State:
    """shelve from a server that runs, is stopped, paused or suspended and has no task (409 otherwise)."""
    return _begin_idle("shelve", SHELVE_FROM, TaskState.SHELVING_IMAGE_PENDING_UPLOAD, state, instance_id)


def shelve_step(step: str, state: State, instance_id: str = "") -> State:
    """The shelve image's data goes to the image service (uploading); it is in (done: the compute's
    "shelve" action takes over, begin_action); or it failed (the task ends, the server as it was)."""
    if state.task_state not in SHELVE_IMAGE_TASKS:
        raise errors.UnexpectedTaskState(instance_id=instance_id, expected=TaskState.SHELVING_IMAGE_UPLOADING,
                                         actual=state.task_state)
    if step == SHELVE_UPLOADING:
        return replace(state, task_state=TaskState.SHELVING_IMAGE_UPLOADING)
    if step == SHELVE_FAILED:
        return replace(state, task_state=None)
    if step == SHELVE_DONE:
        return begin_action("shelve", state, instance_id)
    raise errors.Invalid(reason=f"unknown shelve step {step!r}")


# --- resetState (admin): Nova's os-resetState sets the vm_state and clears the task, whatever they were ---

RESET_STATES = {"active": VmState.ACTIVE, "error": VmState.ERROR}


def reset_state(state: State, to: str, instance_id: str = "") -> State:
    """active or error, the task cleared (a stuck flow's server made usable again, or marked broken)."""
    if to not in RESET_STATES:
        raise errors.Invalid(reason=f"state must be one of {', '.join(sorted(RESET_STATES))}, not {to!r}")
    if state.vm_state in (VmState.DELETED, VmState.BUILDING, ""):
        raise errors.InstanceInvalidState(action="os-resetState", instance_id=instance_id, attr="vm_state",
                                          state=state.vm_state)
    return replace(state, vm_state=RESET_STATES[to], task_state=None)
