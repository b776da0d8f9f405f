"""Glance v2 on /image: versions, image list/show, download of the stored
bits, visibility, and the content-addressed store."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import insert

from api.db.engine import make_engine
from api.db.schema import images
from api.image import default
from api.image.store import ImageStore
from api.timeutil import utcnow
from cells.config import ClusterConfig
from tests.unit.api_support import PUBLIC_URL, admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name


async def _images(client: TestClient[Any, Any], headers: dict[str, str], query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/image/v2/images{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _add_image(cluster: ClusterConfig, name: str, visibility: str, owner: str | None,
                     status: str = "active") -> str:
    import uuid
    image_id, now = str(uuid.uuid4()), utcnow()
    engine = make_engine(cluster.api.db)
    async with engine.begin() as conn:
        await conn.execute(insert(images).values(
            id=image_id, name=name, status=status, visibility=visibility, owner=owner, disk_format="raw",
            container_format="bare", min_disk=0, min_ram=0, protected=False, os_hidden=False,
            properties={"os_distro": "test"}, tags=[], created_at=now, updated_at=now))
    await engine.dispose()
    return image_id


async def test_versions(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/image")
    assert resp.status == 300
    current = [v for v in (await resp.json())["versions"] if v["status"] == "CURRENT"]
    assert current[0]["id"].startswith("v2.") and current[0]["links"][0]["href"] == f"{PUBLIC_URL}/image/v2/"


async def test_list_shape_and_default_image(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    body = await _images(client, demo_headers)
    assert body["first"] == "/v2/images" and body["schema"] == "/v2/schemas/images"
    (img,) = body["images"]
    assert img["name"] == "tiny-raw" and img["status"] == "active" and img["visibility"] == "public"
    data = default.tiny_raw()
    assert img["size"] == len(data) and img["checksum"] == hashlib.md5(data).hexdigest()
    assert img["os_hash_algo"] == "sha512" and img["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert img["self"] == f"/v2/images/{img['id']}" and img["file"] == f"/v2/images/{img['id']}/file"
    assert img["created_at"].endswith("Z") and img["disk_format"] == "raw" and img["container_format"] == "bare"
    shown = await (await client.get(f"/image/v2/images/{img['id']}", headers=demo_headers)).json()
    assert shown == img


async def test_download_streams_the_stored_bits(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    (img,) = (await _images(client, demo_headers))["images"]
    resp = await client.get(f"/image/v2/images/{img['id']}/file", headers=demo_headers)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/octet-stream"
    data = await resp.read()
    assert data == default.tiny_raw() and data.startswith(b"CELLCLOUD tiny-raw")
    assert resp.headers["Content-MD5"] == hashlib.md5(data).hexdigest() == img["checksum"]
    ranged = await client.get(f"/image/v2/images/{img['id']}/file",
                              headers={**demo_headers, "Range": "bytes=0-8"})
    assert ranged.status == 206 and await ranged.read() == b"CELLCLOUD"


async def test_name_or_unknown_id_is_404(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    for path in ("/image/v2/images/tiny-raw", "/image/v2/images/0b5e4a3c-1e1f-4f6c-9a55-000000000000",
                 "/image/v2/images/tiny-raw/file"):
        resp = await client.get(path, headers=demo_headers)
        assert resp.status == 404
        body = await resp.json()
        assert body["code"] == "404 Not Found" and "could not be found" in body["message"]
    assert (await _images(client, demo_headers, "?name=tiny-raw"))["images"][0]["name"] == "tiny-raw"
    assert (await _images(client, demo_headers, "?name=nope"))["images"] == []


async def test_an_images_tasks_are_none_and_an_unseen_images_a_404(
        client: TestClient[Any, Any], cluster: ClusterConfig, demo_headers: dict[str, str]) -> None:
    """GET /v2/images/{id}/tasks (Glance 2.12): an image never imported (api/image/imports.py) has no
    task, so an image the caller sees has an empty list; another project's private image and an unknown id
    are 404s."""
    (img,) = (await _images(client, demo_headers))["images"]
    resp = await client.get(f"/image/v2/images/{img['id']}/tasks", headers=demo_headers)
    assert resp.status == 200 and await resp.json() == {"tasks": []}
    hidden = await _add_image(cluster, "theirs", "private", "another-project")
    for image_id in (hidden, "0b5e4a3c-1e1f-4f6c-9a55-000000000000"):
        resp = await client.get(f"/image/v2/images/{image_id}/tasks", headers=demo_headers)
        assert resp.status == 404, await resp.text()


async def test_visibility_and_filters(client: TestClient[Any, Any], cluster: ClusterConfig,
                                      demo_headers: dict[str, str], admin_headers: dict[str, str]) -> None:
    demo_project = (await (await client.get("/identity/v3/auth/tokens", headers={
        **admin_headers, "X-Subject-Token": demo_headers["X-Auth-Token"]})).json())["token"]["project"]["id"]
    mine = await _add_image(cluster, "mine", "private", demo_project)
    secret = await _add_image(cluster, "admins-only", "private", "someone-else")
    community = await _add_image(cluster, "shared-out", "community", "someone-else")
    queued = await _add_image(cluster, "empty", "private", demo_project, status="queued")
    names = {i["name"] for i in (await _images(client, demo_headers))["images"]}
    assert names == {"tiny-raw", "mine", "empty"}
    assert (await client.get(f"/image/v2/images/{secret}", headers=demo_headers)).status == 404
    assert (await client.get(f"/image/v2/images/{community}", headers=demo_headers)).status == 200
    assert [i["id"] for i in (await _images(client, demo_headers, "?visibility=community"))["images"]] == [community]
    assert [i["id"] for i in (await _images(client, demo_headers, "?status=queued"))["images"]] == [queued]
    both = await _images(client, demo_headers, f"?id=in:{mine},{queued}&sort=name:asc")  # the SDK's id lookup
    assert [i["name"] for i in both["images"]] == ["empty", "mine"]
    assert [i["id"] for i in (await _images(client, demo_headers, '?name=in:"mine","nope"'))["images"]] == [mine]
    shown = await (await client.get(f"/image/v2/images/{mine}", headers=demo_headers)).json()
    assert shown["os_distro"] == "test"  # extra properties are flat, as Glance
    # as flat in the list's filters: a key that is no list parameter or image attribute names a property
    by_property = (await _images(client, demo_headers, "?os_distro=test&sort=name:asc"))["images"]
    assert [i["name"] for i in by_property] == ["empty", "mine"]  # not tiny-raw, which has no os_distro
    assert (await _images(client, demo_headers, "?os_distro=other"))["images"] == []
    assert (await client.get(f"/image/v2/images/{queued}/file", headers=demo_headers)).status == 204
    all_names = {i["name"] for i in (await _images(client, admin_headers))["images"]}
    assert {"admins-only", "mine"} <= all_names


async def test_sorting_and_paging(client: TestClient[Any, Any], cluster: ClusterConfig,
                                  admin_headers: dict[str, str]) -> None:
    for n in ("b", "c", "a"):
        await _add_image(cluster, n, "public", None)
    page1 = await _images(client, admin_headers, "?sort=name:asc&limit=2")
    assert [i["name"] for i in page1["images"]] == ["a", "b"]
    assert page1["next"].startswith("/v2/images?")
    page2 = await _images(client, admin_headers, page1["next"][len("/v2/images"):])
    assert [i["name"] for i in page2["images"]] == ["c", "tiny-raw"]
    legacy = await _images(client, admin_headers, "?sort_key=name&sort_dir=desc&limit=1")
    assert [i["name"] for i in legacy["images"]] == ["tiny-raw"]
    for bad in ("?sort=nope:asc", "?limit=x", "?marker=0b5e4a3c-1e1f-4f6c-9a55-000000000000"):
        resp = await client.get(f"/image/v2/images{bad}", headers=admin_headers)
        assert resp.status == 400 and (await resp.json())["code"] == "400 Bad Request", bad


async def test_schemas(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    schema = await (await client.get("/image/v2/schemas/image", headers=demo_headers)).json()
    assert schema["name"] == "image" and "checksum" in schema["properties"]
    assert (await (await client.get("/image/v2/schemas/images", headers=demo_headers)).json())["name"] == "images"


async def test_store_is_content_addressed(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    a = await store.put_bytes(b"hello")
    b = await store.put_bytes(b"hello")
    assert a == b and a.address == "sha512:" + hashlib.sha512(b"hello").hexdigest()
    assert store.path(a.address).read_bytes() == b"hello" and a.md5 == hashlib.md5(b"hello").hexdigest()
    assert list((tmp_path / "tmp").iterdir()) == []  # no temporary files left behind
    await store.delete(a.address)
    assert not await store.exists(a.address)


async def test_patch_in_the_v2_0_media_type(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    """Glance's older JSON-patch form ({"replace": "/name", "value": v}, what Tempest's client sends)
    changes an image as the RFC 6902 form does; another media type is a 415."""
    made = await client.post("/image/v2/images", headers=demo_headers, json={"name": "before"})
    image_id = (await made.json())["id"]
    v20 = {**demo_headers, "Content-Type": "application/openstack-images-v2.0-json-patch"}
    resp = await client.patch(f"/image/v2/images/{image_id}", headers=v20,
                              data='[{"replace": "/name", "value": "after"}, {"add": "/color", "value": "blue"}]')
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["name"], body["color"]) == ("after", "blue")
    resp = await client.patch(f"/image/v2/images/{image_id}", headers=v20, data='[{"remove": "/color"}]')
    assert "color" not in await resp.json()
    resp = await client.patch(f"/image/v2/images/{image_id}", headers=v20, data='[{"rename": "/name"}]')
    assert resp.status == 400
    plain = {**demo_headers, "Content-Type": "application/json"}
    assert (await client.patch(f"/image/v2/images/{image_id}", headers=plain, data="[]")).status == 415


async def test_an_admin_gives_an_image_to_another_project(client: TestClient[Any, Any], admin_headers: dict[str, str],
                                                          demo_headers: dict[str, str]) -> None:
    """Glance lets an administrator replace an image's owner; its owner may not."""
    made = await client.post("/image/v2/images", headers=demo_headers, json={"name": "handed-over"})
    image = await made.json()
    patch = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
    body = '[{"op": "replace", "path": "/owner", "value": "another-project"}]'
    resp = await client.patch(f"/image/v2/images/{image['id']}", headers={**demo_headers, **patch}, data=body)
    assert resp.status == 403 and "read-only" in (await resp.json())["message"]
    resp = await client.patch(f"/image/v2/images/{image['id']}", headers={**admin_headers, **patch}, data=body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["owner"] == "another-project"
    # no longer demo's: as unknown to it as any other project's private image
    assert (await client.get(f"/image/v2/images/{image['id']}", headers=demo_headers)).status == 404
