"""The compute service layer (api/compute/service.py) driven directly, without HTTP: a typed
context and a typed request do what POST /servers does, and what it makes is what the Nova API
then shows; a request that is wrong creates nothing."""
from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from api.compute import service
from api.compute.server_create import BootRequest
from api.db.schema import queued_deletes
from api.keys import CLUSTER, DB, ENGINE, ROUTER
from cells import errors
from cells.context import RequestContext
from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]


def compute_context(cloud: Cloud) -> service.ComputeContext:
    app = cloud.client.app
    assert app is not None
    return service.ComputeContext(router=app[ROUTER], engine=app[ENGINE], db=app[DB], cluster=app[CLUSTER])


async def demo_context(cloud: Cloud) -> RequestContext:
    """The demo user's context, as the token middleware makes it."""
    resp = await cloud.client.get("/identity/v3/auth/tokens",
                                  headers={**cloud.demo, "X-Subject-Token": cloud.demo["X-Auth-Token"]})
    token = (await resp.json())["token"]
    return RequestContext(project=token["project"]["id"], user=token["user"]["id"], roles=("member",))


async def test_create_boots_a_typed_request_that_the_nova_api_then_shows(cloud: Cloud) -> None:
    cc, ctx = compute_context(cloud), await demo_context(cloud)
    uuids = await service.create(cc, ctx, BootRequest(name="typed", flavor_ref="1", image_ref=cloud.image_id,
                                                      min_count=2, metadata={"k": "v"}))
    assert len(uuids) == 2
    records = [cloud.cell.conductor.records[u] for u in uuids]
    assert sorted(r["name"] for r in records) == ["typed-1", "typed-2"]
    assert all(r["project_id"] == ctx.project and r["metadata"] == {"k": "v"} for r in records)
    assert await cloud.mappings() == 2
    shown = await cloud.client.get(f"/compute/v2.1/servers/{uuids[0]}", headers=cloud.demo)
    assert shown.status == 200 and (await shown.json())["server"]["id"] == uuids[0]


@pytest.mark.parametrize("fields", [{"name": " padded"}, {"user_data": "not base64!"}, {"key_name": ""},
                                    {"availability_zone": "x" * 256}, {"min_count": 0}])
def test_a_typed_request_with_a_bad_field_is_refused_when_made(fields: dict[str, object]) -> None:
    args: dict[str, object] = {"name": "ok", "flavor_ref": "1", "image_ref": "x", **fields}
    with pytest.raises(errors.Invalid):
        BootRequest(**args)  # type: ignore[arg-type]


async def test_create_refuses_an_unknown_reference_and_makes_nothing(cloud: Cloud) -> None:
    cc, ctx = compute_context(cloud), await demo_context(cloud)
    with pytest.raises(errors.Invalid, match="Invalid key_name provided"):
        await service.create(cc, ctx, BootRequest(name="k", flavor_ref="1", image_ref=cloud.image_id,
                                                  key_name="nokey"))
    with pytest.raises(errors.Invalid, match="Invalid flavorRef provided"):
        await service.create(cc, ctx, BootRequest(name="f", flavor_ref="999", image_ref=cloud.image_id))
    assert await cloud.mappings() == 0 and not cloud.cell.conductor.builds and not cloud.cell.conductor.records


async def test_delete_hands_the_server_to_its_cell_and_refuses_another_projects(cloud: Cloud) -> None:
    cc, ctx = compute_context(cloud), await demo_context(cloud)
    [uuid] = await service.create(cc, ctx, BootRequest(name="gone", flavor_ref="1", image_ref=cloud.image_id))
    stranger = RequestContext(project="another-project", user="someone", roles=("member",))
    with pytest.raises(errors.InstanceNotFound):
        await service.delete(cc, stranger, uuid)
    assert cloud.cell.conductor.records[uuid]["task_state"] == "scheduling"
    await service.delete(cc, ctx, uuid)
    assert (await service.get(cc, ctx, uuid))["task_state"] == "deleting"  # as its cell holds it now
    with pytest.raises(errors.InstanceNotFound):
        await service.get(cc, stranger, uuid)
    async with cc.engine.connect() as conn:  # it no longer counts against the project's quota
        queued = (await conn.execute(select(queued_deletes.c.instance_uuid))).scalars().all()
    assert list(queued) == [uuid]


async def test_list_and_show_page_through_the_callers_servers_only(cloud: Cloud) -> None:
    cc, ctx = compute_context(cloud), await demo_context(cloud)
    uuids = await service.create(cc, ctx, BootRequest(name="page", flavor_ref="1", image_ref=cloud.image_id,
                                                      min_count=3))
    mine = service.ServerQuery({"deleted": False, "project_id": ctx.project}, ["name", "uuid"], ["asc", "asc"], 2)
    first = await service.list_servers(cc, ctx, mine)
    assert [r["name"] for r in first] == ["page-1", "page-2"]
    rest = await service.list_servers(cc, ctx, replace(mine, marker=first[-1]["uuid"]))
    assert [r["name"] for r in rest] == ["page-3"]
    assert (await service.show(cc, ctx, uuids[0]))["uuid"] == uuids[0]
    stranger = RequestContext(project="another-project", user="someone", roles=("member",))
    with pytest.raises(errors.InstanceNotFound):
        await service.show(cc, stranger, uuids[0])
    with pytest.raises(errors.MarkerNotFound):
        await service.list_servers(cc, stranger, replace(mine, filters={"deleted": False,
                                                                        "project_id": stranger.project},
                                                         marker=uuids[0]))
    theirs = replace(mine, filters={"deleted": False, "project_id": stranger.project})
    assert await service.list_servers(cc, stranger, theirs) == []
