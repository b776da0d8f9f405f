"""Servers on /compute/v2.1 against a fake cell over real ZeroMQ (a real
Directory router and a fake conductor): create validation, create, list,
show, delete, project isolation, and cleanup when the conductor fails."""
from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from api.cell_router import CellRouter, Listed
from api.db.engine import make_engine
from api.db.schema import instance_mappings
from cells import errors
from cells.config import ClusterConfig
from tests.unit.api_fake_cell import FakeCell, FakeConductor, fake_cell
from tests.unit.api_support import PUBLIC_URL, SECRETS, make_cluster, start_client, token

SERVER_KEYS_2_1 = {
    "id", "name", "status", "tenant_id", "user_id", "metadata", "hostId", "image", "flavor", "created", "updated",
    "addresses", "accessIPv4", "accessIPv6", "links", "OS-DCF:diskConfig", "OS-EXT-AZ:availability_zone",
    "config_drive", "key_name", "OS-SRV-USG:launched_at", "OS-SRV-USG:terminated_at", "OS-EXT-STS:task_state",
    "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state", "os-extended-volumes:volumes_attached",
}  # + "security_groups" for a server whose ports have groups (Nova): this fake cell has no network
ADMIN_KEYS = {"OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hypervisor_hostname", "OS-EXT-SRV-ATTR:instance_name"}


class Cloud:
    def __init__(self, client: TestClient[Any, Any], cell: FakeCell, cluster: ClusterConfig,
                 admin: dict[str, str], demo: dict[str, str], image_id: str) -> None:
        self.client, self.cell, self.cluster = client, cell, cluster
        self.admin, self.demo, self.image_id = admin, demo, image_id

    async def boot(self, headers: dict[str, str], name: str = "demo1", **extra: Any) -> dict[str, Any]:
        body = {"server": {"name": name, "flavorRef": "1", "imageRef": self.image_id, **extra}}
        resp = await self.client.post("/compute/v2.1/servers", json=body, headers=headers)
        assert resp.status == 202, await resp.text()
        return dict((await resp.json())["server"])

    async def mappings(self) -> int:
        engine = make_engine(self.cluster.api.db)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(select(func.count()).select_from(instance_mappings))).scalar_one())
        finally:
            await engine.dispose()


@asynccontextmanager
async def open_cloud(tmp_path: Path, handler: FakeConductor | None = None) -> AsyncIterator[Cloud]:
    """A real API app over one fake cell (`handler`: its conductor, default api_fake_cell's), with the
    admin's and demo's tokens and the bootstrap's image."""
    async with fake_cell(handler=handler) as cell:
        cluster = make_cluster(tmp_path, router=cell.router)
        client = await start_client(cluster)
        try:
            admin = {"X-Auth-Token": await token(client, "admin", SECRETS["admin_password"], "admin")}
            demo = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
            images = (await (await client.get("/image/v2/images", headers=demo)).json())["images"]
            yield Cloud(client, cell, cluster, admin, demo, images[0]["id"])
        finally:
            await client.close()


@pytest_asyncio.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with open_cloud(tmp_path) as running:
        yield running


async def test_create_returns_nova_body_and_builds_in_the_cell(cloud: Cloud) -> None:
    user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    created = await cloud.boot(cloud.demo, metadata={"role": "web"}, user_data=user_data,
                               block_device_mapping_v2=[{"uuid": cloud.image_id, "boot_index": 0,
                                                         "source_type": "image", "destination_type": "local",
                                                         "delete_on_termination": True}], networks=[])
    assert set(created) == {"id", "links", "adminPass", "OS-DCF:diskConfig", "security_groups"}
    assert created["links"][0] == {"rel": "self", "href": f"{PUBLIC_URL}/compute/v2.1/servers/{created['id']}"}
    assert len(created["adminPass"]) >= 8
    record = cloud.cell.conductor.records[created["id"]]
    assert (record["vm_state"], record["task_state"], record["name"]) == ("building", "scheduling", "demo1")
    assert record["image"]["os_hash_algo"] == "sha512" and len(record["image"]["checksum"]) == 32
    assert record["flavor"] == {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0,
                                "swap": 0, "extra_specs": {}}
    assert record["metadata"] == {"role": "web"} and record["user_data"] == user_data
    spec = cloud.cell.conductor.builds[0]
    assert spec["instance_uuids"] == [created["id"]] and spec["flavor"]["id"] == "1"
    assert await cloud.mappings() == 1


async def test_show_list_delete_lifecycle(cloud: Cloud) -> None:
    sid = (await cloud.boot(cloud.demo))["id"]
    shown = (await (await cloud.client.get(f"/compute/v2.1/servers/{sid}", headers=cloud.demo)).json())["server"]
    assert set(shown) == SERVER_KEYS_2_1 | {"progress"}
    assert shown["status"] == "BUILD" and shown["progress"] == 0 and shown["hostId"] == ""
    assert shown["image"] == {"id": cloud.image_id, "links": [
        {"rel": "bookmark", "href": f"{PUBLIC_URL}/compute/images/{cloud.image_id}"}]}
    assert shown["flavor"]["id"] == "1" and shown["created"].endswith("Z") and len(shown["created"]) == 20
    cloud.cell.conductor.activate(sid)
    shown = (await (await cloud.client.get(f"/compute/v2.1/servers/{sid}", headers=cloud.demo)).json())["server"]
    assert shown["status"] == "ACTIVE" and shown["OS-EXT-STS:power_state"] == 1
    assert len(shown["hostId"]) == 56 and shown["addresses"]["private"][0]["addr"] == "10.0.0.5"
    assert shown["OS-SRV-USG:launched_at"] is not None and not shown["OS-SRV-USG:launched_at"].endswith("Z")
    admin_view = (await (await cloud.client.get(f"/compute/v2.1/servers/{sid}",
                                                headers=cloud.admin)).json())["server"]
    assert ADMIN_KEYS <= set(admin_view) and admin_view["OS-EXT-SRV-ATTR:host"] == "node1"

    listed = (await (await cloud.client.get("/compute/v2.1/servers", headers=cloud.demo)).json())["servers"]
    assert [set(s) for s in listed] == [{"id", "name", "links"}] and listed[0]["id"] == sid
    detail = (await (await cloud.client.get("/compute/v2.1/servers/detail",
                                            headers=cloud.demo)).json())["servers"]
    assert detail[0]["status"] == "ACTIVE"

    resp = await cloud.client.delete(f"/compute/v2.1/servers/{sid}", headers=cloud.demo)
    assert resp.status == 204
    assert cloud.cell.conductor.records[sid]["task_state"] == "deleting"
    cloud.cell.conductor.destroy(sid)
    resp = await cloud.client.get(f"/compute/v2.1/servers/{sid}", headers=cloud.demo)
    assert resp.status == 404 and "itemNotFound" in await resp.json()
    assert await cloud.mappings() == 0  # a gone server's mapping is dropped


async def test_show_from_an_older_conductor_is_the_same_view(tmp_path: Path) -> None:
    # a server view is one conductor call (instance_show, RPC 1.2); a conductor that advertises 1.1 is
    # asked instance_get and the rest apart: the same document either way
    views = []
    for rpc in (None, "1.1"):
        async with fake_cell(rpc=rpc) as cell:
            client = await start_client(make_cluster(tmp_path / (rpc or "new"), router=cell.router))
            try:
                demo = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
                image = (await (await client.get("/image/v2/images", headers=demo)).json())["images"][0]["id"]
                body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": image}}
                sid = (await (await client.post("/compute/v2.1/servers", json=body, headers=demo)).json())["server"]["id"]
                cell.conductor.activate(sid)
                shown = (await (await client.get(f"/compute/v2.1/servers/{sid}", headers=demo)).json())["server"]
                per_run = ("id", "links", "created", "updated", "OS-SRV-USG:launched_at", "hostId", "image",
                           "tenant_id", "user_id")  # two clouds: their ids and times differ
                views.append((cell.conductor.show_calls, {k: v for k, v in shown.items() if k not in per_run}))
            finally:
                await client.close()
    assert [calls for calls, _ in views] == [1, 0]
    assert views[0][1] == views[1][1] and views[0][1]["status"] == "ACTIVE"


async def test_name_instead_of_id_is_404(cloud: Cloud) -> None:
    await cloud.boot(cloud.demo, name="demo1")
    for method in ("GET", "DELETE"):
        resp = await cloud.client.request(method, "/compute/v2.1/servers/demo1", headers=cloud.demo)
        assert resp.status == 404
        assert await resp.json() == {"itemNotFound": {"code": 404, "message": "Instance demo1 could not be found."}}
    # what the CLI does next: list with ?name=
    found = (await (await cloud.client.get("/compute/v2.1/servers/detail?name=demo1",
                                           headers=cloud.demo)).json())["servers"]
    assert [s["name"] for s in found] == ["demo1"]


async def test_project_isolation(cloud: Cloud) -> None:
    theirs = (await cloud.boot(cloud.admin, name="admin-vm"))["id"]
    ours = (await cloud.boot(cloud.demo, name="demo-vm"))["id"]
    for method in ("GET", "DELETE"):
        resp = await cloud.client.request(method, f"/compute/v2.1/servers/{theirs}", headers=cloud.demo)
        assert resp.status == 404
    assert cloud.cell.conductor.records[theirs]["task_state"] == "scheduling"  # untouched
    listed = (await (await cloud.client.get("/compute/v2.1/servers", headers=cloud.demo)).json())["servers"]
    assert [s["id"] for s in listed] == [ours]
    resp = await cloud.client.get("/compute/v2.1/servers?all_tenants=1", headers=cloud.demo)
    assert resp.status == 403
    everything = (await (await cloud.client.get("/compute/v2.1/servers?all_tenants=1",
                                                headers=cloud.admin)).json())["servers"]
    assert {s["id"] for s in everything} == {theirs, ours}
    for query, status in (("all_tenants=", 200), ("all_tenants=false", 200), ("all_tenants=maybe", 400)):
        assert (await cloud.client.get(f"/compute/v2.1/servers?{query}", headers=cloud.admin)).status == status


INVALID_BODIES: list[tuple[Any, str]] = [
    ({"server": {"flavorRef": "1"}}, "'name' is a required property"),
    ({"server": {"name": "", "flavorRef": "1"}}, "name"),
    ({"server": {"name": "   ", "flavorRef": "1"}}, "name"),
    ({"server": {"name": "x" * 256, "flavorRef": "1"}}, "too long"),
    ({"server": {"name": "ok"}}, "'flavorRef' is a required property"),
    ({"server": {"name": "ok", "flavorRef": "1", "bogus": 1}}, "Additional properties are not allowed"),
    ({"server": {"name": "ok", "flavorRef": "1", "metadata": {"k": 1}}}, "is not of type"),
    ({"server": {"name": "ok", "flavorRef": "1", "user_data": "not base64!"}}, "base64"),
    ({"server": {"name": "ok", "flavorRef": "1", "min_count": 0}}, "minimum"),
    ({"server": {"name": "ok", "flavorRef": "1", "min_count": 3, "max_count": 2}}, "min_count"),
    ({"server": {"name": "ok", "flavorRef": "99"}}, "Invalid flavorRef provided."),
    ({"server": {"name": "ok", "flavorRef": "1", "imageRef": "tiny-raw"}}, "Invalid imageRef provided."),
    ({"server": {"name": "ok", "flavorRef": "1", "imageRef": "6f1b2b34-4bd8-4d4b-a5a4-7a6f6bbf6f6f"}},
     "could not be found"),
    ({"server": {"name": "ok", "flavorRef": "1", "key_name": "nokey"}}, "Invalid key_name provided."),
    ({"server": {"name": "ok", "flavorRef": "1", "availability_zone": "mars"}}, "availability zone"),
    ({"servers": {}}, "'server' is a required property"),
    ([], "is not of type 'object'"),
]


@pytest.mark.parametrize("body,needle", INVALID_BODIES)
async def test_invalid_create_is_400_and_creates_nothing(cloud: Cloud, body: Any, needle: str) -> None:
    if isinstance(body, dict) and "server" in body and "imageRef" not in body["server"] \
            and "Invalid imageRef" not in needle:
        body["server"]["imageRef"] = cloud.image_id
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)
    assert resp.status == 400, await resp.text()
    fault = (await resp.json())["badRequest"]
    assert fault["code"] == 400 and needle in fault["message"]
    assert resp.headers["OpenStack-API-Version"] == "compute 2.1"
    assert cloud.cell.conductor.records == {} and await cloud.mappings() == 0


async def test_malformed_json_is_400(cloud: Cloud) -> None:
    resp = await cloud.client.post("/compute/v2.1/servers", data=b'{"server": ', headers=cloud.demo)
    assert resp.status == 400 and "badRequest" in await resp.json()
    assert await cloud.mappings() == 0


async def test_image_link_is_accepted_as_image_ref(cloud: Cloud) -> None:
    link = f"{PUBLIC_URL}/image/v2/images/{cloud.image_id}"
    sid = (await cloud.boot(cloud.demo, imageRef=link))["id"]
    assert cloud.cell.conductor.records[sid]["image"]["id"] == cloud.image_id


async def test_conductor_failure_leaves_no_half_made_server(cloud: Cloud) -> None:
    cloud.cell.conductor.fail_next_build = errors.NoValidHost(reason="cell is full")
    body = {"server": {"name": "doomed", "flavorRef": "1", "imageRef": cloud.image_id}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)
    assert resp.status == 500
    fault = (await resp.json())["computeFault"]
    assert "No valid host" in fault["message"] and "Traceback" not in fault["message"]
    assert await cloud.mappings() == 0


async def test_multiple_create_names_and_count(cloud: Cloud) -> None:
    await cloud.boot(cloud.demo, name="many", min_count=2, max_count=3)
    names = sorted(r["name"] for r in cloud.cell.conductor.records.values())
    assert names == ["many-1", "many-2", "many-3"] and await cloud.mappings() == 3


async def test_list_sorting_paging_and_filters(cloud: Cloud) -> None:
    ids = [(await cloud.boot(cloud.demo, name=f"vm{i}"))["id"] for i in range(5)]
    cloud.cell.conductor.activate(ids[1])

    async def names(query: str) -> list[str]:
        resp = await cloud.client.get(f"/compute/v2.1/servers/detail?{query}", headers=cloud.demo)
        assert resp.status == 200, await resp.text()
        return [s["name"] for s in (await resp.json())["servers"]]

    assert await names("sort_key=display_name&sort_dir=asc") == ["vm0", "vm1", "vm2", "vm3", "vm4"]
    assert await names("sort_key=display_name&sort_dir=desc&limit=2") == ["vm4", "vm3"]
    marker = ids[3]
    assert await names(f"sort_key=display_name&sort_dir=desc&limit=2&marker={marker}") == ["vm2", "vm1"]
    assert await names("status=ACTIVE") == ["vm1"]
    assert sorted(await names("status=BUILD")) == ["vm0", "vm2", "vm3", "vm4"]
    assert await names("status=NO_SUCH_STATUS") == []
    assert await names("name=^vm[34]$&sort_key=display_name&sort_dir=asc&whatever=1") == ["vm3", "vm4"]
    resp = await cloud.client.get("/compute/v2.1/servers?limit=2", headers=cloud.demo)
    assert (await resp.json())["servers_links"][0]["rel"] == "next"
    for bad in ("sort_key=nope", "limit=x", "marker=not-a-server", "sort_dir=sideways"):
        resp = await cloud.client.get(f"/compute/v2.1/servers?{bad}", headers=cloud.demo)
        assert resp.status == 400, bad
    # 2.75: a key Nova's list schema does not name is a 400 (ignored before, as "whatever" above)
    for version, query, status in (("2.75", "whatever=1", 400), ("2.74", "whatever=1", 200),
                                   ("2.75", "locked=true&tags=a&changes-before=2020-01-01T00:00:00Z&limit=1", 200),
                                   ("latest", "name=vm1&sort_key=uuid", 200)):
        resp = await cloud.client.get(f"/compute/v2.1/servers?{query}", headers={
            **cloud.demo, "OpenStack-API-Version": f"compute {version}"})
        assert resp.status == status, (version, query, await resp.text())
    refused = await cloud.client.get("/compute/v2.1/servers/detail?whatever=1",
                                     headers={**cloud.demo, "OpenStack-API-Version": "compute 2.75"})
    assert "'whatever' was unexpected" in await refused.text()


class _BrokenRouter(CellRouter):
    """A router whose listing fails in an unexpected way (a bug, not a cell error)."""

    async def list_instances(self, *args: Any, **kwargs: Any) -> list[Listed]:
        raise RuntimeError("secret internals /etc/cellcloud")


async def test_unexpected_errors_are_500_without_internals(tmp_path: Path) -> None:
    client = await start_client(make_cluster(tmp_path), router=_BrokenRouter([]))
    try:
        demo = {"X-Auth-Token": await token(client, "demo", SECRETS["demo_password"], "demo")}
        resp = await client.get("/compute/v2.1/servers", headers=demo)
        assert resp.status == 500
        fault = (await resp.json())["computeFault"]
        assert fault["code"] == 500 and fault["message"].startswith("Unexpected error, request id req-")
        assert "secret" not in await resp.text() and "Traceback" not in await resp.text()
        assert resp.headers["X-Compute-Request-Id"] in fault["message"]  # the log line to look for
        assert resp.headers["OpenStack-API-Version"] == "compute 2.1"
    finally:
        await client.close()
