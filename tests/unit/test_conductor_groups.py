"""Server groups through real conductors, a real scheduler and a real cell DB (computes faked
at the process boundary, tests/unit/test_conductor_moves.py): boots into a group, a member
with no host left in ERROR with Nova's fault, a migration keeping its instance's group, a
malformed group refused before any row is written."""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cells import errors
from cells.db import claims
from cells.objects.instance import VmState
from cells.rpcapi.move_methods import MoveConductorAPI
from tests.unit.test_conductor import FLAVOR, USER, Cell
from tests.unit.test_conductor_moves import ADMIN, SMALL, moving_cell, started, wait_task

HOSTS = ("node1", "node2", "node3")


@pytest.fixture
async def cell(tmp_path: Path) -> AsyncIterator[Cell]:
    c = await started(moving_cell(tmp_path, hosts=HOSTS))
    try:
        yield c
    finally:
        await c.close()


async def boot(c: Cell, name: str, group: dict[str, str] | None = None, flavor: dict[str, Any] = FLAVOR,
               state: str = VmState.ACTIVE) -> dict[str, Any]:
    inst = {"uuid": str(uuidlib.uuid4()), "name": name, "project_id": "p1", "user_id": "u1", "flavor": flavor,
            "image": {"id": "img-1"}}
    spec: dict[str, Any] = {"flavor": flavor, "num_instances": 1, **({"group": group} if group else {})}
    [rec] = await c.conductor.build_instances(USER, [inst], spec)
    return await c.wait_state(rec["uuid"], state)


async def test_a_migration_keeps_its_instances_anti_affinity(cell: Cell) -> None:
    group = {"uuid": str(uuidlib.uuid4()), "policy": "anti-affinity"}
    filler = await boot(cell, "filler", flavor=SMALL)  # its host has the least room left
    m1, m2 = await boot(cell, "m1", group), await boot(cell, "m2", group)
    assert len({filler["host"], m1["host"], m2["host"]}) == 3
    # spreading alone would send m1 to m2's host (more free RAM than the filler's): the group forbids it
    await MoveConductorAPI(cell.api).move_instance(ADMIN, m1["uuid"], "migrate")
    moved = await wait_task(cell, m1["uuid"], None, "resized")
    assert moved["host"] == filler["host"]
    await MoveConductorAPI(cell.api).confirm_move(ADMIN, m1["uuid"])
    await wait_task(cell, m1["uuid"], None, VmState.ACTIVE)
    claim = await cell.db.read(lambda conn: cell_claim(conn, m1["uuid"]))
    assert claim == (filler["host"], group["uuid"])  # the confirmed claim is still the group's
    # m1's old host is free for the group again; after that no host is left
    m3 = await boot(cell, "m3", group)
    assert m3["host"] == m1["host"]
    m4 = await boot(cell, "m4", group, state=VmState.ERROR)
    assert m4["fault"]["message"] == "No valid host was found. There are not enough hosts available."
    assert await cell.claim(m4["uuid"]) is None


def cell_claim(conn: Any, uuid: str) -> tuple[str, str] | None:
    found = claims.claim_of(conn, uuid)
    return None if found is None else (found["host"], found["group_uuid"])


async def test_affinity_members_stack_and_a_malformed_group_makes_nothing(cell: Cell) -> None:
    group = {"uuid": str(uuidlib.uuid4()), "policy": "affinity"}
    hosts = {(await boot(cell, f"a{i}", group))["host"] for i in range(3)}
    assert len(hosts) == 1
    bad = str(uuidlib.uuid4())
    inst: dict[str, Any] = {"uuid": bad, "name": "bad", "project_id": "p1", "user_id": "u1", "flavor": FLAVOR}
    with pytest.raises(errors.Invalid, match="policy must be one of"):
        await cell.conductor.build_instances(USER, [inst], {"flavor": FLAVOR, "group": {
            "uuid": group["uuid"], "policy": "spread"}})
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_get(USER, bad)
