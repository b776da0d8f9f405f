"""The block storage API (/volume/v3) and the compute API's os-volume_attachments
against a cell over real ZeroMQ: a real Directory router and a conductor that keeps
the fake cell's servers in memory but runs the real volume flows over a real cell DB
with a real volume worker (file backend, local target) and a fake hypervisor."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient
from sqlalchemy import delete

from cells.conductor.flows import boot
from cells.conductor.flows.delete import delete_locally
from cells.conductor.volume_rpc import VolumeConductor
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db import volumes as vdb
from cells.db.schema import instances
from cells.objects.instance import utcnow_iso
from cells.objects.records import AttachmentRecord
from tests.unit.api_fake_cell import FakeConductor, fake_cell
from tests.unit.api_support import PUBLIC_URL, SECRETS, auth_body, make_cluster, start_client
from tests.volume_fakes import VolumeCell, volume_cell

VOLUME_KEYS_3_0 = {
    "id", "name", "description", "status", "size", "availability_zone", "created_at", "updated_at", "volume_type",
    "snapshot_id", "source_volid", "metadata", "links", "user_id", "bootable", "encrypted", "replication_status",
    "consistencygroup_id", "multiattach", "migration_status", "attachments", "os-vol-tenant-attr:tenant_id",
}
ADMIN_KEYS = {"os-vol-host-attr:host", "os-vol-mig-status-attr:migstat", "os-vol-mig-status-attr:name_id"}


class VolumeCellConductor(FakeConductor, VolumeConductor):
    """Servers in memory (FakeConductor), volumes through the real flows (the conductor's volumes
    collaborator, served by the same handler here). The flows read servers from the cell DB, so a
    server's record is written there before an attach or detach looks at it."""

    def __init__(self, cell: VolumeCell) -> None:
        FakeConductor.__init__(self, cell="cell1")
        VolumeConductor.__init__(self, cell.env)

    async def _mirror(self, uuid: str) -> None:
        rec = self.records.get(uuid)
        if rec is None:
            return
        now = utcnow_iso()
        row = {"uuid": uuid, "name": rec["name"], "project_id": rec["project_id"], "user_id": rec["user_id"],
               "host": rec.get("host"), "flavor": rec["flavor"], "image": rec.get("image") or {},
               "vm_state": rec["vm_state"], "task_state": rec.get("task_state"), "power_state": 1,
               "created_at": now, "updated_at": now, "deleted": bool(rec.get("deleted")), "metadata": {},
               "addresses": {}, "retry_hosts": [], "progress": 0}

        def write(conn: Any) -> None:
            if idb.get_row(conn, uuid) is not None:  # written by build_instances: its actions refer to it
                idb.update_row(conn, uuid, {k: row[k] for k in ("host", "vm_state", "task_state", "deleted")})
                return
            conn.execute(delete(instances).where(instances.c.uuid == uuid))
            conn.execute(idb.INSERT, row)
        await self.env.db.write(write)

    async def volume_attach(self, ctx: RequestContext, volume_id: str, instance_uuid: str,
                            device: str | None = None) -> AttachmentRecord:
        await self._mirror(instance_uuid)
        return await super().volume_attach(ctx, volume_id, instance_uuid, device)

    async def volume_detach(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> AttachmentRecord:
        await self._mirror(instance_uuid)
        return await super().volume_detach(ctx, volume_id, instance_uuid)

    async def build_instances(self, ctx: RequestContext, instances: list[dict[str, Any]],
                              request_spec: dict[str, Any]) -> list[dict[str, Any]]:
        """The real conductor's rows first (a boot from a volume reserves it there, or is refused),
        then the in-memory servers the fake cell's views serve."""
        now = utcnow_iso()
        rows = boot.validate_build(instances, request_spec, now, self.env.conductor_id)
        await self.env.db.write(lambda conn: boot._insert_build(conn, self.env, ctx, rows, now))
        return await super().build_instances(ctx, instances, request_spec)

    async def instance_delete(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        """Deleted in memory and, for a server the real conductor has a row of, in the cell DB too."""
        record = await super().instance_delete(ctx, uuid)
        if await self.env.db.read(lambda conn: idb.get_row(conn, uuid)) is not None:
            await delete_locally(self.env, uuid)
        return record


class Cloud:
    def __init__(self, client: TestClient[Any, Any], cell: VolumeCell, conductor: VolumeCellConductor) -> None:
        self.client, self.cell, self.conductor = client, cell, conductor
        self.who: dict[str, tuple[dict[str, str], str]] = {}  # user -> (headers, project id)

    async def login(self, user: str, password: str) -> None:
        resp = await self.client.post("/identity/v3/auth/tokens", json=auth_body(user, password, user))
        assert resp.status == 201
        self.who[user] = ({"X-Auth-Token": resp.headers["X-Subject-Token"]},
                          (await resp.json())["token"]["project"]["id"])

    def url(self, user: str, path: str) -> str:
        return f"/volume/v3/{self.who[user][1]}{path}"

    async def req(self, method: str, user: str, path: str, json: Any = None,
                  headers: dict[str, str] | None = None) -> tuple[int, Any]:
        url = path if path.startswith("/compute") else self.url(user, path)
        resp = await self.client.request(method, url, json=json, headers={**self.who[user][0], **(headers or {})})
        text = await resp.text()
        return resp.status, (await resp.json() if text else None)

    async def create(self, user: str = "demo", **volume: Any) -> dict[str, Any]:
        status, body = await self.req("POST", user, "/volumes", {"volume": {"size": 1, **volume}})
        assert status == 202, body
        return dict(body["volume"])

    async def wait_status(self, user: str, vid: str, wanted: str) -> dict[str, Any]:
        for _ in range(200):
            await self.cell.settle()
            status, body = await self.req("GET", user, f"/volumes/{vid}")
            assert status == 200, body
            if body["volume"]["status"] == wanted:
                return dict(body["volume"])
            await asyncio.sleep(0.01)
        raise AssertionError(f"volume {vid} stayed {body['volume']['status']}, not {wanted}")

    async def boot(self, user: str = "demo") -> str:
        headers = self.who[user][0]
        images = (await (await self.client.get("/image/v2/images", headers=headers)).json())["images"]
        body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": images[0]["id"]}}
        resp = await self.client.post("/compute/v2.1/servers", json=body, headers=headers)
        assert resp.status == 202, await resp.text()
        sid = str((await resp.json())["server"]["id"])
        self.conductor.activate(sid)
        return sid


@pytest_asyncio.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    cell = await volume_cell(tmp_path / "cell")
    conductor = VolumeCellConductor(cell)
    async with fake_cell(handler=conductor) as fake:
        client = await start_client(make_cluster(tmp_path, router=fake.router))
        try:
            c = Cloud(client, cell, conductor)
            await c.login("demo", SECRETS["demo_password"])
            await c.login("admin", SECRETS["admin_password"])
            yield c
        finally:
            await client.close()
            await cell.close()


async def test_versions_and_microversions(cloud: Cloud) -> None:
    for path in ("/volume", "/volume/", "/volume/v3/"):
        resp = await cloud.client.get(path)
        doc = (await resp.json())["versions"][0]
        assert resp.status == (200 if "v3" in path else 300)  # Cinder's root: Multiple Choices
        assert (doc["id"], doc["version"], doc["min_version"]) == ("v3.0", "3.60", "3.0")
        assert {"rel": "self", "href": f"{PUBLIC_URL}/volume/v3/"} in doc["links"]
    status, _ = await cloud.req("GET", "demo", "/volumes", headers={"OpenStack-API-Version": "volume 3.0"})
    assert status == 200
    for asked, answered in (("volume 3.60", "volume 3.60"), ("volume latest", "volume 3.60"),
                            ("compute 2.5, volume 3.27", "volume 3.27")):
        resp = await cloud.client.get(cloud.url("demo", "/volumes"), headers={**cloud.who["demo"][0],
                                                                              "OpenStack-API-Version": asked})
        assert resp.status == 200 and resp.headers["OpenStack-API-Version"] == answered
    for outside in ("volume 3.61", "volume 2.0", "volume 4.0"):
        resp = await cloud.client.get(cloud.url("demo", "/volumes"), headers={**cloud.who["demo"][0],
                                                                              "OpenStack-API-Version": outside})
        assert resp.status == 406 and resp.headers["OpenStack-API-Version"] == "volume 3.0"
        assert "Minimum is 3.0 and maximum is 3.60" in (await resp.json())["computeFault"]["message"]
    status, body = await cloud.req("GET", "demo", "/volumes", headers={"OpenStack-API-Version": "volume x"})
    assert status == 400 and body["badRequest"]["code"] == 400
    assert (await cloud.client.get(cloud.url("demo", "/volumes"))).status == 401  # no token


async def test_volume_lifecycle_in_cinder_shape(cloud: Cloud) -> None:
    made = await cloud.create(name="v1", description="data", metadata={"k": "v"})
    # a create answers without os-vol-tenant-attr:tenant_id (Cinder's extension extends show and list only)
    assert set(made) == VOLUME_KEYS_3_0 - {"os-vol-tenant-attr:tenant_id"} and made["status"] == "creating"
    project = cloud.who["demo"][1]
    assert made["size"] == 1 and made["bootable"] == "false"
    assert made["links"][0] == {"rel": "self", "href": f"{PUBLIC_URL}/volume/v3/{project}/volumes/{made['id']}"}
    shown = await cloud.wait_status("demo", made["id"], "available")
    assert shown["os-vol-tenant-attr:tenant_id"] == project
    assert shown["metadata"] == {"k": "v"} and shown["volume_type"] == "__DEFAULT__" and shown["attachments"] == []
    other = await cloud.create(name="v2", size="2")  # a string of digits is a size too, as Cinder takes it
    await cloud.wait_status("demo", other["id"], "available")

    _, brief = await cloud.req("GET", "demo", "/volumes")
    assert [set(v) for v in brief["volumes"]] == [{"id", "name", "links"}] * 2
    assert [v["name"] for v in brief["volumes"]] == ["v2", "v1"]  # newest first
    _, named = await cloud.req("GET", "demo", "/volumes/detail?name=v1")
    assert [v["id"] for v in named["volumes"]] == [made["id"]] and set(named["volumes"][0]) == VOLUME_KEYS_3_0
    _, meta = await cloud.req("GET", "demo", "/volumes/detail?metadata=%7B%27k%27%3A+%27v%27%7D")
    assert [v["id"] for v in meta["volumes"]] == [made["id"]]
    _, page = await cloud.req("GET", "demo", "/volumes?limit=1&sort=size:asc")
    assert [v["name"] for v in page["volumes"]] == ["v1"] and "marker=" in page["volumes_links"][0]["href"]
    _, rest = await cloud.req("GET", "demo", f"/volumes?limit=1&sort=size:asc&marker={made['id']}")
    assert [v["name"] for v in rest["volumes"]] == ["v2"]

    status, updated = await cloud.req("PUT", "demo", f"/volumes/{made['id']}",
                                      {"volume": {"name": "renamed", "display_description": "d2"}})
    assert status == 200 and (updated["volume"]["name"], updated["volume"]["description"]) == ("renamed", "d2")
    _, admin_view = await cloud.req("GET", "admin", f"/volumes/detail?all_tenants=1&project_id={project}")
    assert len(admin_view["volumes"]) == 2 and ADMIN_KEYS <= set(admin_view["volumes"][0])
    assert admin_view["volumes"][0]["os-vol-host-attr:host"] == "node1@file#file"  # Cinder's host@backend#pool

    status, _ = await cloud.req("DELETE", "demo", f"/volumes/{made['id']}")
    assert status == 202
    await cloud.cell.settle()
    status, body = await cloud.req("GET", "demo", f"/volumes/{made['id']}")
    assert status == 404 and body["itemNotFound"]["message"] == f"Volume {made['id']} could not be found."


async def test_bad_requests_are_400_in_cinder_shape_and_make_nothing(cloud: Cloud) -> None:
    bad: list[tuple[Any, int]] = [
        ({"volume": {"size": 0}}, 400), ({"volume": {"size": -1}}, 400), ({"volume": {"size": 10 ** 9}}, 400),
        ({"volume": {"size": "ten"}}, 400), ({"volume": {"size": True}}, 400), ({"volume": {"size": 1.5}}, 400),
        ({"volume": {"name": "no size"}}, 400), ({"size": 1}, 400), ([], 400),
        ({"volume": {"size": 1, "snapshot_id": "4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"}}, 404),
        ({"volume": {"size": 1, "snapshot_id": "not-a-uuid"}}, 400),
        ({"volume": {"snapshot_id": "4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d", "source_volid": "4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"}}, 400),
        ({"volume": {"size": 1, "imageRef": "img"}}, 400), ({"volume": {"size": 1, "multiattach": True}}, 400),
        ({"volume": {"size": 1, "colour": "red"}}, 400), ({"volume": {"size": 1, "metadata": {"a": 1}}}, 400),
        ({"volume": {"size": 1, "metadata": {"cellcloud:target": "fibre"}}}, 400),
        ({"volume": {"size": 1, "availability_zone": "mars"}}, 400),
        ({"volume": {"size": 1, "volume_type": "gold"}}, 404),
    ]
    for body, expected in bad:
        status, answer = await cloud.req("POST", "demo", "/volumes", body)
        assert status == expected, (body, answer)
        assert set(answer) == {"badRequest" if expected == 400 else "itemNotFound"}
        assert answer[next(iter(answer))]["message"]
    resp = await cloud.client.post(cloud.url("demo", "/volumes"), data=b"{nope", headers=cloud.who["demo"][0])
    assert resp.status == 400
    _, listed = await cloud.req("GET", "demo", "/volumes")
    assert listed["volumes"] == []
    vid = (await cloud.create(name="keep"))["id"]
    status, _ = await cloud.req("PUT", "demo", f"/volumes/{vid}", {"volume": {"size": 5}})
    assert status == 400
    for path in ("/volumes/not-a-uuid", "/volumes/4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"):
        assert (await cloud.req("GET", "demo", path))[0] == 404
        assert (await cloud.req("DELETE", "demo", path))[0] == 404


async def test_projects_see_their_own_volumes_only(cloud: Cloud) -> None:
    vid = (await cloud.create("admin", name="admins"))["id"]
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[0] == 404
    assert (await cloud.req("DELETE", "demo", f"/volumes/{vid}"))[0] == 404
    assert (await cloud.req("GET", "demo", "/volumes"))[1]["volumes"] == []
    # the project in the URL is the caller's: anything else is a malformed URL, as Cinder
    resp = await cloud.client.get(f"/volume/v3/{cloud.who['admin'][1]}/volumes", headers=cloud.who["demo"][0])
    assert resp.status == 400 and "Malformed request url" in (await resp.json())["badRequest"]["message"]
    assert (await cloud.req("GET", "admin", f"/volumes/{vid}"))[0] == 200


async def test_volume_quotas_and_limits(cloud: Cloud) -> None:
    demo_project = cloud.who["demo"][1]
    status, _ = await cloud.req("PUT", "demo", f"/os-quota-sets/{demo_project}", {"quota_set": {"volumes": 1}})
    assert status == 403  # only admins change quotas
    status, body = await cloud.req("PUT", "admin", f"/os-quota-sets/{demo_project}",
                                   {"quota_set": {"volumes": 2, "gigabytes": 3}})
    assert status == 200 and (body["quota_set"]["volumes"], body["quota_set"]["gigabytes"]) == (2, 3)
    await cloud.create(size=2)
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 2}})
    assert status == 413 and "gigabytes" in body["overLimit"]["message"]
    await cloud.create(size=1)
    await cloud.req("PUT", "admin", f"/os-quota-sets/{demo_project}", {"quota_set": {"gigabytes": 10}})
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1}})
    assert status == 413 and "volumes" in body["overLimit"]["message"]
    _, limits = await cloud.req("GET", "demo", "/limits")
    absolute = limits["limits"]["absolute"]
    assert (absolute["maxTotalVolumes"], absolute["totalVolumesUsed"], absolute["totalGigabytesUsed"]) == (2, 2, 3)
    _, quota = await cloud.req("GET", "demo", f"/os-quota-sets/{demo_project}?usage=True")
    assert quota["quota_set"]["gigabytes"] == {"limit": 10, "in_use": 3, "reserved": 0, "allocated": 0}
    _, defaults = await cloud.req("GET", "demo", f"/os-quota-sets/{demo_project}/defaults")
    assert defaults["quota_set"]["volumes"] == 10


async def test_quota_set_shown_can_be_put_back_and_per_volume_gigabytes_caps_a_volume(cloud: Cloud) -> None:
    """A PUT of the whole set a GET showed (backups, backup_gigabytes, per_volume_gigabytes, groups included,
    as Tempest's quota tests restore it) is 200 and restores the limits; every key is kept and shown;
    per_volume_gigabytes refuses a bigger volume or extend with Cinder's 413; an unknown key is a 400 that
    changes nothing; a DELETE gives the project the defaults back."""
    project = cloud.who["demo"][1]
    _, shown = await cloud.req("GET", "admin", f"/os-quota-sets/{project}")
    status, body = await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"volumes": 1}})
    assert status == 200 and body["quota_set"]["volumes"] == 1
    restore = {k: v for k, v in shown["quota_set"].items() if k != "id"}
    assert {"backups", "backup_gigabytes", "per_volume_gigabytes", "groups"} <= set(restore)
    status, body = await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": restore})
    assert status == 200 and body["quota_set"]["volumes"] == shown["quota_set"]["volumes"], body
    status, body = await cloud.req("PUT", "admin", f"/os-quota-sets/{project}",
                                   {"quota_set": {"volumes": 3, "bananas": 5}})
    assert status == 400 and "bananas" in body["badRequest"]["message"], body
    _, after = await cloud.req("GET", "admin", f"/os-quota-sets/{project}")
    assert after["quota_set"] == shown["quota_set"]
    status, body = await cloud.req("PUT", "admin", f"/os-quota-sets/{project}",
                                   {"quota_set": {"backups": 11, "backup_gigabytes": 1009, "groups": 4,
                                                  "per_volume_gigabytes": 1}})
    assert status == 200 and {k: body["quota_set"][k] for k in ("backups", "backup_gigabytes", "groups",
                                                                "per_volume_gigabytes")} == {
        "backups": 11, "backup_gigabytes": 1009, "groups": 4, "per_volume_gigabytes": 1}, body
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 2}})
    assert status == 413 and "larger than maximum allowed limit 1G" in body["overLimit"]["message"], body
    vid = (await cloud.create(size=1))["id"]
    await cloud.wait_status("demo", vid, "available")
    status, body = await cloud.req("POST", "demo", f"/volumes/{vid}/action", {"os-extend": {"new_size": 2}})
    assert status == 413 and "maximum allowed limit 1G" in body["overLimit"]["message"], body
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["size"] == 1
    assert (await cloud.req("DELETE", "admin", f"/os-quota-sets/{project}"))[0] == 200
    _, after = await cloud.req("GET", "admin", f"/os-quota-sets/{project}")
    assert after["quota_set"]["per_volume_gigabytes"] == -1 and after["quota_set"]["backups"] == 10


async def test_volume_quota_classes_set_every_projects_defaults(cloud: Cloud) -> None:
    """os-quota-class-sets (admins): the "default" class's limits are what a project without limits of its own
    gets (defaults view, quota set, and a create refused past it); a bad value is a 400 that changes nothing."""
    project = cloud.who["demo"][1]
    assert (await cloud.req("GET", "demo", "/os-quota-class-sets/default"))[0] == 403
    assert (await cloud.req("PUT", "demo", "/os-quota-class-sets/default", {"quota_class_set": {"volumes": 1}}))[0] \
        == 403
    status, body = await cloud.req("GET", "admin", "/os-quota-class-sets/default")
    assert status == 200 and body["quota_class_set"]["id"] == "default" and body["quota_class_set"]["volumes"] == 10
    bad_bodies: tuple[dict[str, Any], ...] = ({"quota_class_set": {"volumes": "many"}}, {"quota": {}},
                                              {"quota_class_set": {"volumes": -2}}, {"quota_class_set": {"x": 1}})
    for bad in bad_bodies:
        assert (await cloud.req("PUT", "admin", "/os-quota-class-sets/default", bad))[0] == 400, bad
    status, body = await cloud.req("PUT", "admin", "/os-quota-class-sets/default",
                                   {"quota_class_set": {"volumes": 1, "backups": 11}})
    assert status == 200 and "id" not in body["quota_class_set"] \
        and (body["quota_class_set"]["volumes"], body["quota_class_set"]["backups"]) == (1, 11)
    _, defaults = await cloud.req("GET", "admin", f"/os-quota-sets/{project}/defaults")
    assert (defaults["quota_set"]["volumes"], defaults["quota_set"]["backups"]) == (1, 11)
    _, shown = await cloud.req("GET", "demo", f"/os-quota-sets/{project}")
    assert shown["quota_set"]["volumes"] == 1
    await cloud.create()
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1}})
    assert status == 413 and "volumes" in body["overLimit"]["message"]
    status, body = await cloud.req("GET", "admin", "/os-quota-class-sets/other")  # another class: the defaults
    assert status == 200 and body["quota_class_set"]["volumes"] == 10


async def test_attach_and_detach_through_the_compute_api(cloud: Cloud) -> None:
    sid = await cloud.boot()
    vid = (await cloud.create(name="data"))["id"]
    await cloud.wait_status("demo", vid, "available")
    base = f"/compute/v2.1/servers/{sid}/os-volume_attachments"
    status, body = await cloud.req("POST", "demo", base, {"volumeAttachment": {"volumeId": vid}})
    assert status == 200 and body == {"volumeAttachment": {"id": vid, "volumeId": vid, "serverId": sid,
                                                           "device": "/dev/vdb"}}
    attached = await cloud.wait_status("demo", vid, "in-use")
    assert [(a["server_id"], a["device"]) for a in attached["attachments"]] == [(sid, "/dev/vdb")]
    assert cloud.cell.compute.plugged[vid]["instance"] == sid
    _, server = await cloud.req("GET", "demo", f"/compute/v2.1/servers/{sid}")
    assert server["server"]["os-extended-volumes:volumes_attached"] == [{"id": vid}]
    _, servers = await cloud.req("GET", "demo", "/compute/v2.1/servers/detail")
    assert servers["servers"][0]["os-extended-volumes:volumes_attached"] == [{"id": vid}]
    _, listed = await cloud.req("GET", "demo", base)
    assert [a["volumeId"] for a in listed["volumeAttachments"]] == [vid]
    assert (await cloud.req("GET", "demo", f"{base}/{vid}"))[1]["volumeAttachment"]["serverId"] == sid

    status, body = await cloud.req("DELETE", "demo", f"/volumes/{vid}")  # in use: refused, nothing changes
    assert status == 400 and "attached" in body["badRequest"]["message"]
    other = await cloud.boot()
    status, _ = await cloud.req("POST", "demo", f"/compute/v2.1/servers/{other}/os-volume_attachments",
                                {"volumeAttachment": {"volumeId": vid}})
    assert status == 400  # attached to one server at a time
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "in-use"

    assert (await cloud.req("DELETE", "demo", f"{base}/{vid}"))[0] == 202
    await cloud.wait_status("demo", vid, "available")
    assert vid not in cloud.cell.compute.plugged
    assert (await cloud.req("GET", "demo", base))[1]["volumeAttachments"] == []
    assert (await cloud.req("DELETE", "demo", f"{base}/{vid}"))[0] == 404  # not attached any more


async def test_attach_refusals(cloud: Cloud) -> None:
    sid = await cloud.boot()
    admins_server = await cloud.boot("admin")
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    attach: Callable[[str, Any], Awaitable[tuple[int, Any]]] = lambda server, body: cloud.req(
        "POST", "demo", f"/compute/v2.1/servers/{server}/os-volume_attachments", body)
    assert (await attach(admins_server, {"volumeAttachment": {"volumeId": vid}}))[0] == 404  # another project's
    assert (await attach("4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d", {"volumeAttachment": {"volumeId": vid}}))[0] == 404
    status, body = await attach(sid, {"volumeAttachment": {"volumeId": "4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"}})
    assert status == 404 and "itemNotFound" in body
    bad: dict[str, Any]
    for bad in ({"volumeAttachment": {"volumeId": "nope"}}, {"volumeAttachment": {}}, {"volumeId": vid},
                {"volumeAttachment": {"volumeId": vid, "device": "sdb!"}},
                {"volumeAttachment": {"volumeId": vid, "tag": "x"}}):
        status, body = await attach(sid, bad)
        assert status == 400 and "badRequest" in body, bad
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "available"


async def test_concurrent_attaches_of_one_volume_have_one_winner(cloud: Cloud) -> None:
    servers = [await cloud.boot() for _ in range(3)]
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    results = await asyncio.gather(*(cloud.req("POST", "demo", f"/compute/v2.1/servers/{s}/os-volume_attachments",
                                               {"volumeAttachment": {"volumeId": vid}}) for s in servers))
    assert sorted(status for status, _ in results) == [200, 400, 400]
    winner = next(body["volumeAttachment"]["serverId"] for status, body in results if status == 200)
    attached = await cloud.wait_status("demo", vid, "in-use")
    assert [a["server_id"] for a in attached["attachments"]] == [winner]


async def test_volume_views_and_lists_by_microversion(cloud: Cloud) -> None:
    first = await cloud.create(name="a")
    await cloud.create(name="b")
    v348 = {"OpenStack-API-Version": "volume 3.48"}
    status, shown = await cloud.req("GET", "demo", f"/volumes/{first['id']}", headers=v348)
    assert status == 200
    assert (shown["volume"]["group_id"], shown["volume"]["shared_targets"], shown["volume"]["service_uuid"]) == \
        (None, False, None)
    assert "provider_id" not in shown["volume"]  # 3.21's is admin-only
    _, old = await cloud.req("GET", "demo", f"/volumes/{first['id']}")
    assert set(old["volume"]) == VOLUME_KEYS_3_0
    _, counted = await cloud.req("GET", "demo", "/volumes?with_count=true&limit=1",
                                 headers={"OpenStack-API-Version": "volume 3.45"})
    assert counted["count"] == 2 and len(counted["volumes"]) == 1
    _, uncounted = await cloud.req("GET", "demo", "/volumes?with_count=true")
    assert "count" not in uncounted  # 3.0
    created = first["created_at"]
    v360 = {"OpenStack-API-Version": "volume 3.60"}
    _, since = await cloud.req("GET", "demo", f"/volumes?created_at=gte:{created}", headers=v360)
    assert len(since["volumes"]) == 2
    _, before = await cloud.req("GET", "demo", f"/volumes?created_at=lt:{created}", headers=v360)
    assert before["volumes"] == []
    status, _ = await cloud.req("GET", "demo", "/volumes?created_at=after:yesterday", headers=v360)
    assert status == 400


async def test_boot_from_a_bootable_volume_and_the_400s_that_make_nothing(cloud: Cloud) -> None:
    """server create --volume: Nova's 400s for a volume the boot may not use (nothing reserved, no server);
    a bootable available volume is reserved for the server as its vda, the view shows image "" and
    lists the volume, and the delete gives it back."""
    vid = (await cloud.create(name="bootvol"))["id"]
    await cloud.wait_status("demo", vid, "available")
    headers = cloud.who["demo"][0]
    images = (await (await cloud.client.get("/image/v2/images", headers=headers)).json())["images"]

    def body(volume_id: str, **server: Any) -> dict[str, Any]:
        bdm = {"uuid": volume_id, "source_type": "volume", "destination_type": "volume", "boot_index": 0}
        return {"server": {"name": "bfv", "flavorRef": "1", "block_device_mapping_v2": [bdm], **server}}

    async def boot_status(b: dict[str, Any]) -> tuple[int, Any]:
        return await cloud.req("POST", "demo", "/compute/v2.1/servers", b)

    refused = [(body(vid), "is not bootable"), (body("4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"), "failed to get volume"),
               (body(vid, imageRef=images[0]["id"]), "Boot sequence"), (body(vid, max_count=2), "multiple instances")]
    for b, words in refused:
        status, answer = await boot_status(b)
        assert status == 400 and words in answer["badRequest"]["message"], answer
    assert (await cloud.req("POST", "demo", f"/volumes/{vid}/action", {"os-set_bootable": {"bootable": True}}))[0] == 200
    status, answer = await boot_status({**body(vid), "os:scheduler_hints": {"different_cell": "cell1"}})
    assert status == 400 and "not in the same availability zone" in answer["badRequest"]["message"]
    assert cloud.conductor.builds == [] and (await cloud.wait_status("demo", vid, "available"))["attachments"] == []

    status, answer = await boot_status(body(vid))
    assert status == 202, answer
    sid = answer["server"]["id"]
    assert cloud.conductor.builds[0]["image"]["root_volume_id"] == vid
    assert cloud.conductor.builds[0]["scheduler_hints"]["target_cell"] == "cell1"  # the volume's cell
    await cloud.wait_status("demo", vid, "attaching")  # in-use once its guest runs (tests/unit/test_boot_from_volume.py)
    _, attachments = await cloud.req("GET", "demo", f"/compute/v2.1/servers/{sid}/os-volume_attachments")
    assert [(a["volumeId"], a["device"]) for a in attachments["volumeAttachments"]] == [(vid, "/dev/vda")]
    status, answer = await boot_status(body(vid))  # reserved: a second boot from it is refused
    assert status == 400 and "must be 'available'" in answer["badRequest"]["message"]
    _, server = await cloud.req("GET", "demo", f"/compute/v2.1/servers/{sid}")
    assert server["server"]["image"] == "" and server["server"]["os-extended-volumes:volumes_attached"] == [{"id": vid}]
    assert (await cloud.req("DELETE", "demo", f"/compute/v2.1/servers/{sid}"))[0] == 204
    await cloud.wait_status("demo", vid, "available")


async def test_boot_making_its_root_volume_from_an_image_and_the_errors_that_make_nothing(cloud: Cloud) -> None:
    """server create --block-device source=image,destination=volume,volume_size=N (what --boot-from-volume N
    sends): Nova's 400s for a mapping the boot cannot use and a 403 over the volume quotas, each making no
    server and no volume; a good one hands the cell the volume to make (its row creating, reserved for the
    server at /dev/vda, counted in the volume quotas from then on), with delete_on_termination."""
    headers = cloud.who["demo"][0]
    image = (await (await cloud.client.get("/image/v2/images", headers=headers)).json())["images"][0]
    project = cloud.who["demo"][1]

    def body(size: Any = 1, image_id: str = image["id"], **server: Any) -> dict[str, Any]:
        bdm = {"uuid": image_id, "source_type": "image", "destination_type": "volume", "boot_index": 0,
               "delete_on_termination": True, **({} if size is None else {"volume_size": size})}
        return {"server": {"name": "bfi", "flavorRef": "1", "block_device_mapping_v2": [bdm], **server}}

    async def boot_status(b: dict[str, Any]) -> tuple[int, Any]:
        return await cloud.req("POST", "demo", "/compute/v2.1/servers", b)

    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"gigabytes": 2}}))[0] == 200
    refused = [(body(size=None), 400, "need to have a non-zero size"),
               (body(image_id="4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"), 400, "failed to get image"),
               (body(max_count=3), 403, "Volume resource quota exceeded"),  # 3 x 1 GiB of 2: none made
               (body(imageRef="4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"), 400, "Boot sequence"),
               (body(size=3), 403, "Volume resource quota exceeded")]
    for b, code, words in refused:
        status, answer = await boot_status(b)
        assert status == code and words in next(iter(answer.values()))["message"], answer
    patch = [{"op": "replace", "path": "/min_disk", "value": 2}]
    resp = await cloud.client.patch(f"/image/v2/images/{image['id']}", json=patch, headers={
        **cloud.who["admin"][0], "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert resp.status == 200, await resp.text()
    status, answer = await boot_status(body(size=1))
    assert status == 400 and "Volume is smaller than the minimum size" in answer["badRequest"]["message"]
    assert cloud.conductor.builds == [] and (await cloud.req("GET", "demo", "/volumes"))[1]["volumes"] == []

    status, answer = await boot_status(body(size=2))
    assert status == 202, answer
    sid = answer["server"]["id"]
    made = cloud.conductor.builds[0]["image"]
    assert made["delete_on_termination"] is True and made["new_root_volume"]["size"] == 2
    assert made["new_root_volume"]["image"]["id"] == image["id"]
    _, volumes = await cloud.req("GET", "demo", "/volumes/detail")
    [vol] = volumes["volumes"]
    assert vol["id"] == made["root_volume_id"] and vol["status"] == "creating" and vol["bootable"] == "true"
    atts = await cloud.cell.env.db.read(lambda conn: vdb.attachments_of(conn, [vol["id"]]))
    assert [(a.instance_uuid, a.device) for a in atts[vol["id"]]] == [(sid, "/dev/vda")]
    status, answer = await boot_status(body(size=2))  # 2 of 2 GiB are the first's
    assert status == 403 and "gigabytes" in answer["forbidden"]["message"], answer

    # a blank volume beside the root (source blank, destination volume): made with it, counted with it
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"gigabytes": 5}}))[0] == 200
    root = body(size=2)["server"]["block_device_mapping_v2"][0]
    blank = {"source_type": "blank", "destination_type": "volume", "boot_index": -1}
    for extra, words in (({**blank}, "need to have non-zero size"), ({**blank, "volume_size": 1, "boot_index": 0},
                                                                        "Boot sequence")):
        status, answer = await boot_status(body(block_device_mapping_v2=[root, extra]))
        assert status == 400 and words in answer["badRequest"]["message"], answer
    status, answer = await boot_status(body(block_device_mapping_v2=[root, {**blank, "volume_size": 2}]))
    assert status == 403, answer  # 2 + 2 + 2 GiB of 5: neither volume reserved
    status, answer = await boot_status(body(block_device_mapping_v2=[
        root, {**blank, "volume_size": 1, "delete_on_termination": True}]))
    assert status == 202, answer
    [extra] = cloud.conductor.builds[-1]["image"]["extra_volumes"]
    assert (extra["size"], extra["device"], extra["delete_on_termination"]) == (1, "/dev/vdb", True)
    _, volumes = await cloud.req("GET", "demo", "/volumes/detail")
    assert sorted((v["size"], v["bootable"]) for v in volumes["volumes"]) == [(1, "false"), (2, "true"), (2, "true")]


async def test_boot_with_snapshot_and_volume_mappings_beside_the_root(cloud: Cloud) -> None:
    """server create with --block-device source=snapshot|volume,destination=volume beside an image root: the
    API resolves the snapshot as the project sees it (its size when volume_size is not given; Nova's 400 for
    one it cannot get), hands the cell an existing volume to reserve and counts only the volume it makes;
    multi-create with a volume mapping is Nova's 400."""
    headers = cloud.who["demo"][0]
    image = (await (await cloud.client.get("/image/v2/images", headers=headers)).json())["images"][0]
    data = await cloud.create(size=1)
    await cloud.wait_status("demo", data["id"], "available")
    status, made = await cloud.req("POST", "demo", "/snapshots", {"snapshot": {"volume_id": data["id"], "name": "s"}})
    assert status == 202, made
    sid = made["snapshot"]["id"]
    for _ in range(200):
        await cloud.cell.settle()
        if (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[1]["snapshot"]["status"] == "available":
            break
        await asyncio.sleep(0.01)

    def body(*extras: dict[str, Any], **server: Any) -> dict[str, Any]:
        return {"server": {"name": "bdm", "flavorRef": "1", "imageRef": image["id"],
                           "block_device_mapping_v2": list(extras), **server}}

    snap = {"uuid": sid, "source_type": "snapshot", "destination_type": "volume", "delete_on_termination": True}
    vol = {"uuid": data["id"], "source_type": "volume", "destination_type": "volume", "boot_index": -1}
    refused = [(body({**snap, "uuid": "4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d"}), "failed to get snapshot"),
               (body(vol, max_count=2), "Cannot attach one or more volumes to multiple instances"),
               (body({**snap, "boot_index": 0}), "Boot sequence")]
    for b, words in refused:
        status, answer = await cloud.req("POST", "demo", "/compute/v2.1/servers", b)
        assert status == 400 and words in answer["badRequest"]["message"], answer
    assert cloud.conductor.builds == []
    status, answer = await cloud.req("POST", "demo", "/compute/v2.1/servers", body(snap, vol))
    assert status == 202, answer
    from_snap, existing = cloud.conductor.builds[-1]["image"]["extra_volumes"]
    assert (from_snap["snapshot_id"], from_snap["size"], from_snap["device"]) == (sid, 1, "/dev/vdb")
    assert existing == {"id": data["id"], "existing": True, "device": "/dev/vdc", "delete_on_termination": False}
    shown = await cloud.wait_status("demo", data["id"], "attaching")  # reserved with the server's row
    assert shown["id"] == data["id"]


async def test_multi_create_makes_each_server_its_own_root_volume_from_the_image(cloud: Cloud) -> None:
    """server create --block-device source=image,destination=volume,... --min 2 --max 2: each server's record
    names its own root volume (the ids the quotas reserved), each made for and attached to its server only."""
    headers = cloud.who["demo"][0]
    image = (await (await cloud.client.get("/image/v2/images", headers=headers)).json())["images"][0]
    bdm = {"uuid": image["id"], "source_type": "image", "destination_type": "volume", "boot_index": 0,
           "volume_size": 1, "delete_on_termination": True}
    status, answer = await cloud.req("POST", "demo", "/compute/v2.1/servers", {"server": {
        "name": "many", "flavorRef": "1", "block_device_mapping_v2": [bdm], "min_count": 2, "max_count": 2}})
    assert status == 202, answer
    uuids = cloud.conductor.builds[-1]["instance_uuids"]
    roots = {u: cloud.conductor.records[u]["image"]["root_volume_id"] for u in uuids}
    assert len(set(roots.values())) == 2
    _, volumes = await cloud.req("GET", "demo", "/volumes/detail")
    assert sorted(v["id"] for v in volumes["volumes"]) == sorted(roots.values())
    atts = await cloud.cell.env.db.read(lambda conn: vdb.attachments_of(conn, list(roots.values())))
    assert {a.volume_id: a.instance_uuid for v in atts.values() for a in v} == {v: u for u, v in roots.items()}
