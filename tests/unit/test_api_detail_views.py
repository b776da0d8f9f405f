"""GET /servers/detail's volumes in the listing's records round (conductor instance_list_views, RPC 1.8,
issue 21), against a cell over real ZeroMQ whose conductor keeps servers in memory but attaches volumes
through the real volume flows (test_api_volumes' VolumeCellConductor). The API's cell router records every
conductor method it asks, so the test sees which calls a listing made; a conductor advertising RPC 1.7
stands for one of the previous release."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from api.cell_router import CellRouter
from cells import errors
from cells.context import RequestContext
from cells.rpc.wire import Method
from cells.rpcapi.conductor import ConductorAPI
from tests.unit.api_fake_cell import fake_cell
from tests.unit.api_support import SECRETS, make_cluster, start_client
from tests.unit.test_api_volumes import Cloud, VolumeCellConductor
from tests.unit.test_listing_keys import RecordingCell
from tests.volume_fakes import volume_cell

VOLUMES = "os-extended-volumes:volumes_attached"


@pytest_asyncio.fixture(params=[None, "1.7"], ids=["this-release", "older-conductor"])
async def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Cloud, RecordingCell, bool]]:
    """(the cloud, its cell as the API's router calls it, whether the conductor speaks instance_list_views)."""
    cell = await volume_cell(tmp_path / "cell")
    conductor = VolumeCellConductor(cell)
    async with fake_cell(handler=conductor, rpc=request.param) as fake:
        cluster = make_cluster(tmp_path, router=fake.router)
        seen = RecordingCell(cluster.cells[0], cluster.heartbeat_interval)
        client = await start_client(cluster, CellRouter([seen]))
        try:
            c = Cloud(client, cell, conductor)
            for user in ("demo", "alt_demo"):
                await c.login(user, SECRETS[f"{user}_password"])
            yield c, seen, request.param is None
        finally:
            await client.close()
            await cell.close()


async def _attach_new_volume(c: Cloud, user: str, sid: str) -> str:
    vid = str((await c.create(user, name=f"{user}-data"))["id"])
    await c.wait_status(user, vid, "available")
    status, body = await c.req("POST", user, f"/compute/v2.1/servers/{sid}/os-volume_attachments",
                               {"volumeAttachment": {"volumeId": vid}})
    assert status == 200, body
    await c.wait_status(user, vid, "in-use")
    return vid


async def test_detail_listings_show_what_each_server_shows_from_the_records_round(
        cloud: tuple[Cloud, RecordingCell, bool]) -> None:
    """Each tenant's detail listing gives its servers the volumes_attached their own GETs show, and only
    its own servers and volume ids. A conductor of this release gives them with the page's records: the
    listing asks it instance_keys and instance_list_views, nothing more; an older one (RPC 1.7, never sent
    instance_list_views) is asked instance_list and then volume_attachments, as before."""
    c, seen, speaks_views = cloud
    mine, bare, theirs = await c.boot(), await c.boot(), await c.boot("alt_demo")
    attached = {"demo": await _attach_new_volume(c, "demo", mine), "alt_demo": await _attach_new_volume(c, "alt_demo", theirs)}
    expected = {"demo": {mine: [{"id": attached["demo"]}], bare: []}, "alt_demo": {theirs: [{"id": attached["alt_demo"]}]}}
    for user, servers in expected.items():
        seen.methods.clear()
        views_before = c.conductor.views_calls
        status, body = await c.req("GET", user, "/compute/v2.1/servers/detail")
        assert status == 200, body
        asked = list(seen.methods)
        listed: dict[str, Any] = {s["id"]: s[VOLUMES] for s in body["servers"]}
        assert listed == servers
        for sid in servers:
            assert (await c.req("GET", user, f"/compute/v2.1/servers/{sid}"))[1]["server"][VOLUMES] == listed[sid]
        if speaks_views:
            assert asked == ["instance_keys", "instance_list_views"]
            assert c.conductor.views_calls == views_before + 1
        else:  # the client refuses instance_list_views to a 1.7 member before sending it
            assert asked == ["instance_keys", "instance_list_views", "instance_list", "volume_attachments"]
            assert c.conductor.views_calls == 0


class _Answers:
    """A conductor's reply as a peer sent it (what ConductorAPI reads), with no transport in between."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def call(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any:
        return self.answer

    async def cast(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None:
        raise AssertionError("instance_list_views is a call")


async def test_a_peers_views_that_are_not_lists_of_strings_are_refused() -> None:
    """The stub takes a record's volumes_attached and security_groups only as lists of strings (an RpcError
    otherwise: the listing treats that cell as down), and drops group names it did not ask for."""
    ctx, order = RequestContext(project="p1"), (["created_at", "uuid"], ["desc", "desc"])
    record: dict[str, Any] = {"uuid": "u1", "project_id": "p1", "volumes_attached": ["v1"], "security_groups": ["default"]}
    got: Any = await ConductorAPI(_Answers([dict(record)])).instance_list_views(ctx, {}, *order, 10, None, True)
    assert got == [record]
    got = await ConductorAPI(_Answers([dict(record)])).instance_list_views(ctx, {}, *order, 10, None, False)
    assert got == [{"uuid": "u1", "project_id": "p1", "volumes_attached": ["v1"]}]
    for bad in ({"volumes_attached": None}, {"volumes_attached": [{"id": "v1"}]}, {"security_groups": "default"},
                {"security_groups": [7]}):
        with pytest.raises(errors.RpcError):
            await ConductorAPI(_Answers([{**record, **bad}])).instance_list_views(ctx, {}, *order, 10, None, True)
