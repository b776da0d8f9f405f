"""Lock and unlock in a real cell (tests/unit/test_conductor.py's Cell): a locked server refuses
members' actions, deletes and moves with Nova's 409, an admin's lock only an admin lifts, and
admins act on a locked server."""
from __future__ import annotations

import pytest

from cells import errors
from cells.context import RequestContext, admin_context
from cells.objects.instance import VmState
from cells.rpcapi.move_methods import MoveConductorAPI
from tests.unit.test_conductor import FLAVOR, USER, Cell, cell_fixture

cell = pytest.fixture(cell_fixture({"node1": "ok"}))
ADMIN_OF_OTHER_PROJECT = RequestContext(project="ops", user="root", roles=("admin",))


async def test_owner_lock_refuses_members_changes_until_the_owner_unlocks(cell: Cell) -> None:
    rec = await cell.boot("a")
    uuid = rec["uuid"]
    await cell.wait_state(uuid, VmState.ACTIVE)
    locked = await cell.conductor.instance_lock(USER, uuid, True, "keep it")
    assert (locked["locked_by"], locked["locked_reason"]) == ("owner", "keep it")
    for attempt in (cell.conductor.instance_action(USER, uuid, "stop"), cell.conductor.instance_delete(USER, uuid)):
        with pytest.raises(errors.InstanceIsLocked) as exc:
            await attempt
        assert exc.value.message == f"Instance {uuid} is locked" and exc.value.http_status == 409
    shown = await cell.conductor.instance_get(USER, uuid)
    assert (shown["vm_state"], shown["task_state"], shown["locked_by"]) == (VmState.ACTIVE, None, "owner")
    unlocked = await cell.conductor.instance_lock(USER, uuid, False)
    assert (unlocked["locked_by"], unlocked["locked_reason"]) == (None, None)
    acts = [a["action"] for a in await cell.conductor.instance_actions(USER, uuid)]
    assert acts == ["create", "lock", "unlock"]
    await cell.conductor.instance_delete(USER, uuid)
    await cell.wait_state(uuid, VmState.DELETED)


async def test_an_admins_lock_only_an_admin_lifts_and_admins_act_on_locked_servers(cell: Cell) -> None:
    rec = await cell.boot("b")
    uuid = rec["uuid"]
    await cell.wait_state(uuid, VmState.ACTIVE)
    assert (await cell.conductor.instance_lock(ADMIN_OF_OTHER_PROJECT, uuid, True))["locked_by"] == "admin"
    with pytest.raises(errors.Forbidden, match="unlock_override"):
        await cell.conductor.instance_lock(USER, uuid, False)
    assert (await cell.conductor.instance_get(USER, uuid))["locked_by"] == "admin"  # the refused unlock changed nothing
    with pytest.raises(errors.InstanceIsLocked):
        await MoveConductorAPI(cell.api).move_instance(USER, uuid, "resize", dict(FLAVOR, id="2", vcpus=2))
    await cell.conductor.instance_delete(admin_context(), uuid)  # an admin is not held by the lock, as Nova
    await cell.wait_state(uuid, VmState.DELETED)


async def test_lock_arguments_are_checked_and_other_projects_get_404(cell: Cell) -> None:
    rec = await cell.boot("c")
    with pytest.raises(errors.Invalid):
        await cell.conductor.instance_lock(USER, rec["uuid"], "yes")  # type: ignore[arg-type]
    with pytest.raises(errors.Invalid):
        await cell.conductor.instance_lock(USER, rec["uuid"], True, "x" * 256)
    with pytest.raises(errors.Invalid):
        await cell.conductor.instance_lock(USER, rec["uuid"], False, "a reason without a lock")
    stranger = RequestContext(project="p2", user="u2", roles=("member",))
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_lock(stranger, rec["uuid"], True)
    assert (await cell.conductor.instance_get(USER, rec["uuid"]))["locked_by"] is None


async def test_reset_state_is_admin_only_and_clears_a_stuck_task(cell: Cell) -> None:
    rec = await cell.boot("d")
    uuid = rec["uuid"]
    await cell.wait_state(uuid, VmState.ACTIVE)
    await cell.conductor.snapshot_begin(USER, uuid)  # a snapshot whose API process died: its task stays
    with pytest.raises(errors.Forbidden, match="reset_state"):
        await cell.conductor.instance_reset_state(USER, uuid, "active")
    assert (await cell.conductor.instance_get(USER, uuid))["task_state"] == "image_snapshot"
    reset = await cell.conductor.instance_reset_state(admin_context(), uuid, "active")
    assert (reset["vm_state"], reset["task_state"]) == (VmState.ACTIVE, None)
    errored = await cell.conductor.instance_reset_state(admin_context(), uuid, "error")
    assert (errored["vm_state"], errored["task_state"]) == (VmState.ERROR, None)
    with pytest.raises(errors.Invalid):
        await cell.conductor.instance_reset_state(admin_context(), uuid, "paused")
    assert [a["action"] for a in await cell.conductor.instance_actions(USER, uuid)][-2:] == ["resetState"] * 2


async def test_diagnostics_ask_the_servers_host_for_admins_only(cell: Cell) -> None:
    """The conductor asks the server's host (its fake compute answers) and adds the uptime since launch."""
    rec = await cell.boot("d")
    await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    found = await cell.conductor.instance_diagnostics(admin_context(), rec["uuid"])
    assert (found["state"], found["num_cpus"], found["config_drive"]) == ("running", 1, False)
    assert 0 <= found["uptime"] < 60
    with pytest.raises(errors.Forbidden, match="os-server-diagnostics"):
        await cell.conductor.instance_diagnostics(USER, rec["uuid"])
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_diagnostics(admin_context(), "0" * 8 + "-0000-0000-0000-" + "0" * 12)
