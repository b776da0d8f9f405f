"""Glance's interoperable import on /image: the import methods and the store it advertises, stage
(queued -> uploading, the data inspected as an upload's) then glance-direct import (uploading -> active,
recorded as the image's task with the import's request id), and what it refuses: methods not served,
an unstaged or already active image, data that is not its disk_format, another project's image."""
from __future__ import annotations

import hashlib
from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
DATA = b"raw disk bits " * 4096


async def _create(client: TestClient[Any, Any], headers: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = await client.post("/image/v2/images", headers=headers,
                             json={"name": "imp", "disk_format": "raw", "container_format": "bare", **body})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def _show(client: TestClient[Any, Any], headers: dict[str, str], image_id: str) -> dict[str, Any]:
    resp = await client.get(f"/image/v2/images/{image_id}", headers=headers)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def _stage(client: TestClient[Any, Any], headers: dict[str, str], image_id: str, data: bytes) -> Any:
    return await client.put(f"/image/v2/images/{image_id}/stage", data=data,
                            headers={**headers, "Content-Type": "application/octet-stream"})


async def _import(client: TestClient[Any, Any], headers: dict[str, str], image_id: str, method: str) -> Any:
    return await client.post(f"/image/v2/images/{image_id}/import", headers=headers,
                             json={"method": {"name": method}})


async def test_import_and_store_info(client: TestClient[Any, Any], demo_headers: dict[str, str],
                                     admin_headers: dict[str, str]) -> None:
    info = await (await client.get("/image/v2/info/import", headers=demo_headers)).json()
    assert info["import-methods"]["value"] == ["glance-direct"]
    stores = await (await client.get("/image/v2/info/stores", headers=demo_headers)).json()
    assert [(s["id"], s["default"]) for s in stores["stores"]] == [("file", True)]
    assert (await client.get("/image/v2/info/stores/detail", headers=demo_headers)).status == 403
    detail = await (await client.get("/image/v2/info/stores/detail", headers=admin_headers)).json()
    assert detail["stores"][0]["type"] == "file"
    versions = [v["id"] for v in (await (await client.get("/image/versions")).json())["versions"]]
    assert "v2.6" in versions and "v2.8" in versions and "v2.4" not in versions  # no metadefs


async def test_stage_then_glance_direct_import(client: TestClient[Any, Any], demo_headers: dict[str, str],
                                               admin_headers: dict[str, str]) -> None:
    made = await client.post("/image/v2/images", headers=demo_headers,
                             json={"name": "imp", "disk_format": "raw", "container_format": "bare"})
    assert made.status == 201
    assert (made.headers["OpenStack-image-import-methods"], made.headers["OpenStack-image-store-ids"]) == (
        "glance-direct", "file")  # what clients decide to import or upload from
    img = await made.json()
    assert (await _import(client, demo_headers, img["id"], "glance-direct")).status == 409  # nothing staged
    resp = await _stage(client, demo_headers, img["id"], DATA)
    assert resp.status == 204, await resp.text()
    staged = await _show(client, demo_headers, img["id"])
    assert staged["status"] == "uploading" and "stores" not in staged  # staged: not yet in a store
    assert (await client.get(f"/image/v2/images/{img['id']}/file", headers=demo_headers)).status == 204  # not yet
    again = await _stage(client, demo_headers, img["id"], DATA)
    assert again.status == 409
    for method in ("web-download", "copy-image", "glance-download", "nonsense"):
        assert (await _import(client, demo_headers, img["id"], method)).status == 400, method
    bad_store = await client.post(f"/image/v2/images/{img['id']}/import", headers=demo_headers,
                                  json={"method": {"name": "glance-direct"}, "stores": ["ceph"]})
    assert bad_store.status == 400
    assert (await _show(client, demo_headers, img["id"]))["status"] == "uploading"

    done = await _import(client, demo_headers, img["id"], "glance-direct")
    assert done.status == 202, await done.text()
    shown = await _show(client, demo_headers, img["id"])
    assert (shown["status"], shown["size"], shown["stores"]) == ("active", len(DATA), "file")
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    down = await client.get(f"/image/v2/images/{img['id']}/file", headers=demo_headers)
    assert down.status == 200 and await down.read() == DATA
    tasks = (await (await client.get(f"/image/v2/images/{img['id']}/tasks", headers=demo_headers)).json())["tasks"]
    assert len(tasks) == 1
    assert (tasks[0]["type"], tasks[0]["status"], tasks[0]["request_id"]) == (
        "api_image_import", "success", done.headers["X-OpenStack-Request-ID"])
    assert tasks[0]["input"]["import_req"]["method"]["name"] == "glance-direct"
    assert (await _import(client, demo_headers, img["id"], "glance-direct")).status == 409  # active already
    assert (await _stage(client, demo_headers, img["id"], DATA)).status == 409

    # another project's private image: not seen, so neither staged nor imported (404)
    theirs = await _create(client, admin_headers, visibility="private")
    assert (await _stage(client, demo_headers, theirs["id"], DATA)).status == 404
    assert (await _import(client, demo_headers, theirs["id"], "glance-direct")).status == 404
    assert (await _show(client, admin_headers, theirs["id"]))["status"] == "queued"


async def test_staged_data_is_inspected(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    """Data that is not what the image's disk_format says is refused at stage, as at upload: the image
    stays queued with no data, so it can be staged again."""
    img = await _create(client, demo_headers, disk_format="qcow2")
    resp = await _stage(client, demo_headers, img["id"], DATA)
    assert resp.status == 400, await resp.text()
    shown = await _show(client, demo_headers, img["id"])
    assert (shown["status"], shown["size"], shown["checksum"]) == ("queued", None, None)
    empty = await _create(client, demo_headers)
    assert (await _stage(client, demo_headers, empty["id"], b"")).status == 400


async def test_glances_own_properties_are_reserved(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    """os_glance_* is Glance's namespace (an import's progress and failure): a tenant neither creates an
    image with one nor adds one (403), so no client reads a forged import failure."""
    resp = await client.post("/image/v2/images", headers=demo_headers, json={
        "name": "forged", "disk_format": "raw", "container_format": "bare", "os_glance_failed_import": "file"})
    assert resp.status == 403
    img = await _create(client, demo_headers)
    resp = await client.patch(f"/image/v2/images/{img['id']}", headers={
        **demo_headers, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "add", "path": "/os_glance_import_task", "value": "x"}])
    assert resp.status == 403
    assert "os_glance_import_task" not in await _show(client, demo_headers, img["id"])
