"""`server list --flavor X --image Y`: the cell DB filters on the flavor and image
a server was built from, and the API passes Nova's `flavor` / `image` query
parameters (an image may be given by id or href)."""
from __future__ import annotations

from typing import Any

from cells.context import admin_context
from cells.objects.instance import VmState
from tests.unit.test_api_servers import Cloud, cloud
from tests.unit.test_conductor import FLAVOR, Cell, cell

__all__ = ["cell", "cloud"]  # fixtures used by name

SMALL = dict(FLAVOR, id="2", name="m1.small")  # same size: fits the fake hosts


async def test_cell_lists_by_flavor_and_image_id(cell: Cell) -> None:
    tiny = [await cell.boot(f"tiny{i}") for i in range(2)]
    small = await cell.boot("small", flavor=SMALL)
    for rec in (*tiny, small):
        await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    admin = admin_context()

    async def names(filters: dict[str, Any]) -> list[str]:
        return [r["name"] for r in await cell.conductor.instance_list(admin, filters, ["name"], ["asc"], None, None)]

    assert await names({"flavor_id": "2"}) == ["small"]
    assert await names({"flavor_id": "1"}) == ["tiny0", "tiny1"]
    assert await names({"flavor_id": "1", "name": "1$"}) == ["tiny1"]
    assert await names({"image_id": "img-1"}) == ["small", "tiny0", "tiny1"]
    assert await names({"image_id": "img-2"}) == []
    assert await names({"flavor_id": "2", "image_id": "img-1"}) == ["small"]
    # paging stays right under the filter: the page is cut after filtering, not before
    [first] = await cell.conductor.instance_list(admin, {"flavor_id": "1"}, ["name"], ["asc"], 1, None)
    rest = await cell.conductor.instance_list(admin, {"flavor_id": "1"}, ["name"], ["asc"], 1, first["uuid"])
    assert [first["name"], *(r["name"] for r in rest)] == ["tiny0", "tiny1"]


async def test_api_passes_flavor_and_image_query(cloud: Cloud) -> None:
    await cloud.boot(cloud.demo, name="tiny")
    await cloud.boot(cloud.demo, name="small", flavorRef="2")

    async def names(query: str) -> list[str]:
        resp = await cloud.client.get(f"/compute/v2.1/servers?{query}&sort_key=display_name&sort_dir=asc",
                                      headers=cloud.demo)
        assert resp.status == 200, await resp.text()
        return [s["name"] for s in (await resp.json())["servers"]]

    assert await names("flavor=2") == ["small"]
    assert await names("flavor=1") == ["tiny"]
    assert await names("flavor=99") == []
    assert await names(f"image={cloud.image_id}") == ["small", "tiny"]
    assert await names(f"image=http://cloud.test:8774/image/v2/images/{cloud.image_id}&flavor=1") == ["tiny"]
    assert await names("image=no-such-image") == []
    assert await names("flavor=") == ["small", "tiny"]  # empty: no filter, as Nova
