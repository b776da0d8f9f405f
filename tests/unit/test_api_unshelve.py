"""POST unshelve through the real API app over a fake cell (tests/unit/test_api_servers.py open_cloud): the
body each microversion takes (null before 2.77, availability_zone from 2.77, null zone and host from 2.91),
Nova's answers for a host that is not there (400), a host asked by a member (403), a zone or host for a server
that is not offloaded (409), and what the cell is asked (the shelve image, the placement, the pin)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import select, update

from api.db.engine import make_engine
from api.db.schema import instance_mappings
from cells.context import RequestContext
from cells.objects.instance import VmState
from tests.unit.api_fake_cell import FakeConductor
from tests.unit.test_api_servers import Cloud, open_cloud


class ShelvedCell(FakeConductor):
    """The fake cell, taking unshelves: what it was asked, the server ACTIVE after."""

    def __init__(self) -> None:
        super().__init__("cell1")
        self.unshelves: list[tuple[str, Any, Any]] = []

    async def unshelve(self, ctx: RequestContext, uuid: str, image: dict[str, Any] | None = None,
                       placement: dict[str, Any] | None = None) -> dict[str, Any]:
        self.unshelves.append((uuid, (image or {}).get("id"), placement))
        self.records[uuid].update(vm_state=VmState.ACTIVE)
        return dict(self.records[uuid])


@pytest_asyncio.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with open_cloud(tmp_path, ShelvedCell()) as running:
        yield running


async def _shelved(cloud: Cloud, vm_state: str) -> str:
    """A server of demo's in `vm_state` whose shelve image is the bootstrap's image."""
    sid = str((await cloud.boot(cloud.demo, "sh"))["id"])
    cloud.cell.conductor.records[sid].update(vm_state=vm_state, host=None)
    engine = make_engine(cloud.cluster.api.db)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(instance_mappings).where(instance_mappings.c.instance_uuid == sid)
                               .values(shelved_image_id=cloud.image_id, pinned_availability_zone="nova"))
    finally:
        await engine.dispose()
    return sid


async def _unshelve(cloud: Cloud, sid: str, body: Any, version: str, admin: bool = False) -> tuple[int, str]:
    resp = await cloud.client.post(f"/compute/v2.1/servers/{sid}/action", json={"unshelve": body},
                                   headers={**(cloud.admin if admin else cloud.demo),
                                            "OpenStack-API-Version": f"compute {version}"})
    return resp.status, await resp.text()


async def test_unshelve_bodies_and_refusals_follow_novas_microversions(cloud: Cloud) -> None:
    sid = await _shelved(cloud, VmState.SHELVED_OFFLOADED)
    cell = cloud.cell.conductor
    assert isinstance(cell, ShelvedCell)
    assert (await _unshelve(cloud, sid, {"availability_zone": "nova"}, "2.76"))[0] == 400  # null only
    assert (await _unshelve(cloud, sid, {"host": "node1"}, "2.77"))[0] == 400  # a host only from 2.91
    status, text = await _unshelve(cloud, sid, {"availability_zone": "atlantis"}, "2.77")
    assert status == 400 and "availability zone is not available" in text, text
    status, text = await _unshelve(cloud, sid, {"host": "node9"}, "2.91")
    assert status == 403 and "unshelve_to_host" in text, text  # a member names no host
    status, text = await _unshelve(cloud, sid, {"host": "node9"}, "2.91", admin=True)
    assert status == 400 and "Compute host node9 could not be found" in text, text
    assert cell.unshelves == []  # nothing reached the cell
    status, text = await _unshelve(cloud, sid, {"availability_zone": None}, "2.91")  # unpinned
    assert status == 202, text
    assert cell.unshelves == [(sid, cloud.image_id, {})]
    engine = make_engine(cloud.cluster.api.db)
    try:
        async with engine.connect() as conn:
            pin = (await conn.execute(select(instance_mappings.c.pinned_availability_zone)
                                      .where(instance_mappings.c.instance_uuid == sid))).scalar_one()
    finally:
        await engine.dispose()
    assert pin is None


async def test_a_zone_for_a_server_not_offloaded_is_a_409(cloud: Cloud) -> None:
    sid = await _shelved(cloud, VmState.SHELVED)
    status, text = await _unshelve(cloud, sid, {"availability_zone": "nova"}, "2.77")
    assert status == 409 and "SHELVED_OFFLOADED" in text, text
    assert (await _unshelve(cloud, sid, None, "2.77"))[0] == 202  # where it is: no image, no placement
    cell = cloud.cell.conductor
    assert isinstance(cell, ShelvedCell)
    assert cell.unshelves == [(sid, None, None)]
