"""createImage's server side in a real cell (tests/unit/test_conductor.py's Cell): the task a snapshot
runs under, Nova's 409 for a second one, the createImage action and its event's result."""
from __future__ import annotations

import pytest

from cells import errors
from cells.context import RequestContext
from cells.objects.instance import TaskState, VmState
from tests.unit.test_conductor import USER, Cell, cell_fixture

cell = pytest.fixture(cell_fixture({"node1": "ok"}))


async def _active(cell: Cell, name: str) -> str:
    rec = await cell.boot(name)
    await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    return str(rec["uuid"])


async def test_a_snapshot_runs_under_its_tasks_and_ends_with_a_successful_action(cell: Cell) -> None:
    uuid = await _active(cell, "a")
    begun = await cell.conductor.snapshot_begin(USER, uuid)
    assert (begun["vm_state"], begun["task_state"], begun["host"]) == (VmState.ACTIVE, TaskState.IMAGE_SNAPSHOT,
                                                                       "node1")
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'createImage' instance .* in task_state "
                                                          "image_snapshot"):
        await cell.conductor.snapshot_begin(USER, uuid)
    with pytest.raises(errors.InstanceInvalidState):  # and no other action meanwhile
        await cell.conductor.instance_action(USER, uuid, "stop")
    uploading = await cell.conductor.snapshot_progress(USER, uuid, "uploading")
    assert uploading["task_state"] == TaskState.IMAGE_UPLOADING
    done = await cell.conductor.snapshot_progress(USER, uuid, "done")
    assert (done["vm_state"], done["task_state"]) == (VmState.ACTIVE, None)
    [_, snap] = await cell.conductor.instance_actions(USER, uuid)
    assert snap["action"] == "createImage" and snap["finish_time"] and snap["message"] is None
    assert [(e["event"], e["result"], e["host"]) for e in snap["events"]] == [
        ("compute_snapshot_instance", "Success", "node1")]


async def test_a_failed_snapshot_ends_the_task_and_records_why(cell: Cell) -> None:
    uuid = await _active(cell, "b")
    await cell.conductor.snapshot_begin(USER, uuid)
    failed = await cell.conductor.snapshot_progress(USER, uuid, "failed", "Snapshot failed: disk full")
    assert (failed["vm_state"], failed["task_state"]) == (VmState.ACTIVE, None)
    [_, snap] = await cell.conductor.instance_actions(USER, uuid)
    assert snap["message"] == "Error"
    assert [(e["result"], e["details"]) for e in snap["events"]] == [("Error", "Snapshot failed: disk full")]
    with pytest.raises(errors.UnexpectedTaskState):  # no snapshot in flight: nothing to move on
        await cell.conductor.snapshot_progress(USER, uuid, "done")
    with pytest.raises(errors.Invalid):
        await cell.conductor.snapshot_progress(USER, uuid, "teleported")


async def test_a_locked_server_still_snapshots_and_strangers_get_404(cell: Cell) -> None:
    uuid = await _active(cell, "c")
    await cell.conductor.instance_lock(USER, uuid, True)
    assert (await cell.conductor.snapshot_begin(USER, uuid))["task_state"] == TaskState.IMAGE_SNAPSHOT  # as Nova
    await cell.conductor.snapshot_progress(USER, uuid, "done")
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.snapshot_begin(RequestContext(project="p2", user="u2", roles=("member",)), uuid)


async def test_a_backup_runs_under_image_backup_and_is_recorded_as_createBackup(cell: Cell) -> None:
    uuid = await _active(cell, "d")
    begun = await cell.conductor.snapshot_begin(USER, uuid, "createBackup")
    assert begun["task_state"] == TaskState.IMAGE_BACKUP  # as Nova's backup
    with pytest.raises(errors.InstanceInvalidState, match="Cannot 'createImage' instance .* in task_state "
                                                          "image_backup"):
        await cell.conductor.snapshot_begin(USER, uuid)
    assert (await cell.conductor.snapshot_progress(USER, uuid, "uploading", None, "createBackup"))["task_state"] \
        == TaskState.IMAGE_UPLOADING
    await cell.conductor.snapshot_progress(USER, uuid, "done", None, "createBackup")
    [_, backup] = await cell.conductor.instance_actions(USER, uuid)
    assert backup["action"] == "createBackup" and backup["finish_time"] and backup["message"] is None
    assert [(e["event"], e["result"]) for e in backup["events"]] == [("compute_backup_instance", "Success")]
    with pytest.raises(errors.Invalid):  # only the two image actions
        await cell.conductor.snapshot_begin(USER, uuid, "shelve")
