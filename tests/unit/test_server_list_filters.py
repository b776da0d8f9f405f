"""`server list --flavor X --image Y`: the cell DB filters on the flavor and image
a server was built from, and the API passes Nova's `flavor` / `image` query
parameters (an image may be given by id or href)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert

from cells import errors
from cells.context import admin_context
from cells.db.engine import Database
from cells.db.instances import list_rows
from cells.db.schema import create_schema, instances
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


def _addresses(v4: str, v6: str | None = None, floating: str | None = None) -> dict[str, Any]:
    ips: list[dict[str, Any]] = [{"addr": v4, "version": 4, "OS-EXT-IPS:type": "fixed"}]
    if v6:
        ips.append({"addr": v6, "version": 6, "OS-EXT-IPS:type": "fixed"})
    if floating:
        ips.append({"addr": floating, "version": 4, "OS-EXT-IPS:type": "floating"})
    return {"private": ips}


async def test_cell_db_filters_by_fixed_ip(tmp_path: Path) -> None:
    """Nova's ip/ip6 filters: a regular expression anchored at the start of each fixed address; floating
    addresses are not matched; the page is cut after filtering."""
    url = f"sqlite+aiosqlite:///{tmp_path}/cell.db"
    await create_schema(url)
    db = Database(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [("a", _addresses("10.0.0.5", "fd00::5")), ("b", _addresses("10.0.0.15", floating="172.24.4.9")),
            ("c", _addresses("192.168.1.10")), ("d", {})]
    try:
        def fill(conn: Connection) -> None:
            for name, addresses in rows:
                conn.execute(insert(instances).values(
                    uuid=str(uuid.uuid4()), name=name, project_id="p1", flavor={"id": "1"}, vm_state="active",
                    created_at=now, updated_at=now, metadata={}, addresses=addresses, retry_hosts=[]))
        await db.write(fill)

        async def names(filters: dict[str, Any], limit: int | None = None) -> list[str]:
            got = await db.read(lambda conn: list_rows(conn, filters, ["name"], ["asc"], limit, None))
            return [r.name for r in got]

        assert await names({"ip": "10.0.0.5"}) == ["a"]  # anchored at the start, not at the end (as re.match)
        assert await names({"ip": "10.0.0.1"}) == ["b"]
        assert await names({"ip": "0.0.5"}) == []
        assert await names({"ip": r"10\.0\.0\.\d+"}) == ["a", "b"]
        assert await names({"ip": "10|192"}) == ["a", "b", "c"]
        assert await names({"ip": "172.24"}) == []  # a floating address is not a fixed one
        assert await names({"ip6": "fd00:"}) == ["a"]
        assert await names({"ip": "10", "name": "b"}) == ["b"]
        assert await names({"ip": "1"}, limit=2) == ["a", "b"]
        with pytest.raises(errors.Invalid):
            await names({"ip": "(a)\\1"})
    finally:
        await db.close()


async def test_api_filters_by_ip(cloud: Cloud) -> None:
    """The fake cell gives every server 10.0.0.5 (api_fake_cell.py); the API passes ip on and re-checks it."""
    one = await cloud.boot(cloud.demo, name="one")
    await cloud.boot(cloud.demo, name="building")  # no address yet
    cloud.cell.conductor.activate(one["id"])

    async def names(query: str) -> list[str]:
        resp = await cloud.client.get(f"/compute/v2.1/servers?{query}", headers=cloud.demo)
        assert resp.status == 200, await resp.text()
        return [s["name"] for s in (await resp.json())["servers"]]

    assert await names("ip=10.0.0.5") == ["one"]
    assert await names("ip=10%5C.0") == ["one"]
    assert await names("ip=10.0.0.6") == []
    assert await names("ip6=fd") == []
    resp = await cloud.client.get("/compute/v2.1/servers?ip=(a)%5C1", headers=cloud.demo)
    assert resp.status == 400
