"""Two conductors in one cell: requests spread over both, and a build whose owner
dies mid-flow is adopted by exactly one live conductor and finished (not failed)."""
from __future__ import annotations

import dataclasses
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from cells.conductor.flows.boot import validate_build
from cells.config import ServiceSpec
from cells.context import admin_context
from cells.db import action_records
from cells.db.schema import instances
from cells.objects.instance import VmState
from tests.unit.test_conductor import FLAVOR, Cell, until_async
from tools.devcluster import free_port


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[Cell]:
    c = Cell(tmp_path, {"node1": "ok", "node2": "ok"})
    second = ServiceSpec("cell1/conductor-2", "conductor", "ctl", f"tcp://127.0.0.1:{free_port()}", "cell1")
    c.cluster = dataclasses.replace(c.cluster, services=(*c.cluster.services, second))
    await c.start()
    c.run("conductor-2")
    await until_async(lambda: _members(c, 2))
    try:
        yield c
    finally:
        await c.close()


async def _members(c: Cell, n: int) -> bool:
    return len(c.api.view.members("conductor")) == n


async def _owner(c: Cell, uuid: str) -> str | None:
    return await c.db.read(lambda conn: conn.execute(
        select(instances.c.conductor_id).where(instances.c.uuid == uuid)).scalar())


async def test_boots_spread_over_both_conductors(two: Cell) -> None:
    recs = [await two.boot(f"vm{i}") for i in range(4)]
    for r in recs:
        await two.wait_state(r["uuid"], VmState.ACTIVE)
    owners = {await _owner(two, r["uuid"]) for r in recs}
    assert owners == {"cell1/conductor", "cell1/conductor-2"}  # round-robin over the live members


async def test_build_of_a_dead_conductor_is_adopted_once_and_finished(two: Cell) -> None:
    # a build conductor-2 accepted and was scheduling when it died (no placement recorded yet)
    [row] = validate_build([{"uuid": str(uuidlib.uuid4()), "name": "orphan", "project_id": "p1", "flavor": FLAVOR}],
                           {"flavor": FLAVOR}, "2026-01-01T00:00:00.000000Z", "cell1/conductor-2")
    await two.db.write(lambda conn: conn.execute(insert(instances).values(**row)))
    await two.db.write(lambda conn: action_records.start_actions(conn, admin_context(), "create", [(row["uuid"], "p1")],
                                                          "conductor_schedule_and_build_instances"))
    await two.crash("conductor-2")  # no goodbye: the directory notices missed beats
    active = await two.wait_state(row["uuid"], VmState.ACTIVE, timeout=10)
    assert active["host"] in ("node1", "node2")
    assert await _owner(two, row["uuid"]) == "cell1/conductor"
    claim = await two.claim(row["uuid"])
    assert claim is not None and claim["host"] == active["host"]
    [create] = await two.conductor.instance_actions(admin_context(), row["uuid"])
    adopted = [e for e in create["events"] if e["event"] == "conductor_adopt_build"]
    assert len(adopted) == 1 and "from cell1/conductor-2" in adopted[0]["details"]
    assert sum(b == row["uuid"] for comp in two.computes.values() for b in comp.builds) == 1


async def test_pending_delete_of_a_dead_conductor_is_adopted_and_completed(two: Cell) -> None:
    rec = await two.boot("doomed")
    await two.wait_state(rec["uuid"], VmState.ACTIVE)
    host = (await two.claim(rec["uuid"]) or {})["host"]
    terminated: list[str] = []
    comp = two.computes[host]
    real_terminate = comp.terminate_instance

    async def counting(ctx: Any, instance: dict[str, Any]) -> None:
        terminated.append(instance["uuid"])
        await real_terminate(ctx, instance)
    comp.terminate_instance = counting  # type: ignore[method-assign]
    # conductor-2 committed the delete (deleting, its own) and died before the terminate went out
    await two.db.write(lambda conn: conn.execute(update(instances).where(instances.c.uuid == rec["uuid"]).values(
        task_state="deleting", conductor_id="cell1/conductor-2")))
    await two.crash("conductor-2")

    async def deleted() -> bool:
        return bool(await two.db.read(lambda conn: conn.execute(
            select(instances.c.deleted).where(instances.c.uuid == rec["uuid"])).scalar()))
    await until_async(deleted, timeout=10)
    assert terminated == [rec["uuid"]]  # the terminate was sent again, once
    assert await two.claim(rec["uuid"]) is None
    assert await _owner(two, rec["uuid"]) == "cell1/conductor"
