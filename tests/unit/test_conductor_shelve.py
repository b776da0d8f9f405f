"""shelve, offload and unshelve through a real cell (tests/unit/test_conductor.py's Cell: directory, conductor,
scheduler and claims on SQLite and PostgreSQL), its computes answering the three actions as a compute does:
the steps' states, the offload that gives the claim back (at once, by the sweep after shelved_offload_time,
or never), the scheduling of an unshelve (a named host, none that fits), and Nova's 409s."""
from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cells import errors
from cells.context import RequestContext, admin_context
from cells.objects.instance import TaskState, VmState
from tests.unit.test_conductor import USER, Cell, FakeCompute

RESULTS = {"shelve": VmState.SHELVED, "shelve_offload": VmState.SHELVED_OFFLOADED, "unshelve": VmState.ACTIVE}
IMAGE = {"id": "shelved-img", "properties": {}}


class ShelvingCompute(FakeCompute):
    """Answers the shelve actions as node/compute/guest_actions.py does: done, in the action's vm_state."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.actions: list[tuple[str, dict[str, Any]]] = []

    async def run_instance_action(self, ctx: RequestContext, instance: dict[str, Any], action: str,
                                  args: dict[str, Any]) -> None:
        assert self.conductor is not None
        self.actions.append((action, args))
        await self.conductor.instance_action_done(ctx, instance["uuid"], self.host, action, True,
                                                  {"vm_state": RESULTS[action]})


def shelving_cell(offload_time: int) -> Callable[[Path, str], AsyncIterator[Cell]]:
    async def fixture(tmp_path: Path, db_url: str) -> AsyncIterator[Cell]:
        c = Cell(tmp_path, {"node1": "ok", "node2": "ok"}, db_url)
        c.computes = {h: ShelvingCompute(h) for h in c.computes}
        c.cluster = dataclasses.replace(c.cluster, shelved_offload_time=offload_time)
        await c.start()
        try:
            yield c
        finally:
            await c.close()
    return fixture


cell = pytest.fixture(shelving_cell(0))
keeping_cell = pytest.fixture(shelving_cell(-1))
sweeping_cell = pytest.fixture(shelving_cell(2))


async def _shelve(cell: Cell) -> tuple[str, str]:
    """A server booted and shelved up to the compute's step; (uuid, host)."""
    rec = await cell.boot("s")
    active = await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    uuid = str(rec["uuid"])
    begun = await cell.conductor.shelve_begin(USER, uuid)
    assert begun["task_state"] == TaskState.SHELVING_IMAGE_PENDING_UPLOAD
    with pytest.raises(errors.InstanceInvalidState, match="in task_state shelving_image_pending_upload"):
        await cell.conductor.shelve_begin(USER, uuid)
    assert (await cell.conductor.shelve_progress(USER, uuid, "uploading"))["task_state"] == \
        TaskState.SHELVING_IMAGE_UPLOADING
    await cell.conductor.shelve_progress(USER, uuid, "done")
    return uuid, str(active["host"])


async def _actions(cell: Cell, uuid: str) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(a["action"], [(e["event"], e["result"]) for e in a["events"]])
            for a in await cell.conductor.instance_actions(USER, uuid)]


async def test_shelve_offloads_at_once_and_unshelve_lands_where_it_is_placed(cell: Cell) -> None:
    uuid, host = await _shelve(cell)
    offloaded = await cell.wait_state(uuid, VmState.SHELVED_OFFLOADED)
    assert offloaded["host"] is None and await cell.claim(uuid) is None  # the host's claim is back
    assert [a for a, _ in cell.computes[host].actions] == ["shelve", "shelve_offload"]  # type: ignore[attr-defined]
    other = "node2" if host == "node1" else "node1"
    record = await cell.conductor.unshelve(USER, uuid, IMAGE, {"only_hosts": [other]})
    assert (record["task_state"], record["host"]) == (TaskState.UNSHELVING, other)
    active = await cell.wait_state(uuid, VmState.ACTIVE)
    assert active["host"] == other and (await cell.claim(uuid) or {}).get("host") == other
    assert cell.computes[other].actions == [("unshelve", {"image": IMAGE})]  # type: ignore[attr-defined]
    assert (await _actions(cell, uuid))[1:] == [
        ("shelve", [("compute_shelve_instance", "Success")]),
        ("shelveOffload", [("compute_shelve_offload_instance", "Success")]),
        ("unshelve", [("compute_unshelve_instance", "Success")])]


async def test_an_unshelve_no_host_takes_leaves_it_offloaded_and_claims_nothing(cell: Cell) -> None:
    uuid, _ = await _shelve(cell)
    await cell.wait_state(uuid, VmState.SHELVED_OFFLOADED)
    with pytest.raises(errors.NoValidHost):
        await cell.conductor.unshelve(USER, uuid, IMAGE, {"only_hosts": ["nowhere"]})
    rec = await cell.wait_state(uuid, VmState.SHELVED_OFFLOADED)
    assert (rec["task_state"], rec["host"]) == (None, None) and await cell.claim(uuid) is None
    with pytest.raises(errors.Invalid, match="needs its shelve image"):
        await cell.conductor.unshelve(USER, uuid, None, None)
    with pytest.raises(errors.InstanceNotFound):  # another project's server
        await cell.conductor.unshelve(RequestContext(project="p2", roles=("member",)), uuid, IMAGE, None)


async def test_with_offload_never_the_server_keeps_its_host_until_an_admin_offloads(keeping_cell: Cell) -> None:
    cell = keeping_cell
    uuid, host = await _shelve(cell)
    shelved = await cell.wait_state(uuid, VmState.SHELVED)
    assert shelved["host"] == host and (await cell.claim(uuid) or {}).get("host") == host
    with pytest.raises(errors.Conflict, match="only be given when it is SHELVED_OFFLOADED"):
        await cell.conductor.unshelve(USER, uuid, IMAGE, {"only_hosts": [host]})
    await cell.conductor.unshelve(USER, uuid, None, None)  # where it is: the guest started
    assert (await cell.wait_state(uuid, VmState.ACTIVE))["host"] == host
    with pytest.raises(errors.Invalid, match="not a plain server action"):  # only through its own flow
        await cell.conductor.instance_action(USER, uuid, "shelve")
    uuid2, _ = await _shelve(cell)
    await cell.wait_state(uuid2, VmState.SHELVED)
    await cell.conductor.instance_action(admin_context(), uuid2, "shelve_offload")  # Nova's shelveOffload
    assert (await cell.wait_state(uuid2, VmState.SHELVED_OFFLOADED))["host"] is None
    assert await cell.claim(uuid2) is None


async def test_the_sweep_offloads_a_server_shelved_longer_than_the_offload_time(sweeping_cell: Cell) -> None:
    cell = sweeping_cell
    uuid, _ = await _shelve(cell)
    await cell.wait_state(uuid, VmState.SHELVED)
    offloaded = await cell.wait_state(uuid, VmState.SHELVED_OFFLOADED, timeout=8.0)  # 2 s, swept every 1 s
    assert offloaded["host"] is None and await cell.claim(uuid) is None
