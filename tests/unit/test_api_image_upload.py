"""Glance v2 image create, upload, download and delete on /image, with the
status transitions, hashes, ownership rules and content-addressed sharing."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from cells.config import ClusterConfig
from tests.unit.api_support import admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
DATA = b"kernel bits " * 5000


async def _create(client: TestClient[Any, Any], headers: dict[str, str], **body: Any) -> dict[str, Any]:
    body = {"name": "k1", "disk_format": "aki", "container_format": "aki", **body}
    resp = await client.post("/image/v2/images", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def _put(client: TestClient[Any, Any], headers: dict[str, str], image_id: str, data: bytes) -> Any:
    return await client.put(f"/image/v2/images/{image_id}/file", data=data,
                            headers={**headers, "Content-Type": "application/octet-stream"})


async def test_create_upload_download_delete(client: TestClient[Any, Any], demo_headers: dict[str, str],
                                             cluster: ClusterConfig) -> None:
    img = await _create(client, demo_headers, os_command_line="console=ttyS0", tags=["a"])
    assert img["status"] == "queued" and img["size"] is None and img["checksum"] is None
    assert img["visibility"] == "shared" and img["os_command_line"] == "console=ttyS0" and img["tags"] == ["a"]
    assert (await client.get(f"/image/v2/images/{img['id']}/file", headers=demo_headers)).status == 204
    resp = await _put(client, demo_headers, img["id"], DATA)
    assert resp.status == 204, await resp.text()
    shown = await (await client.get(f"/image/v2/images/{img['id']}", headers=demo_headers)).json()
    assert shown["status"] == "active" and shown["size"] == len(DATA)
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    assert (shown["os_hash_algo"], shown["os_hash_value"]) == ("sha512", hashlib.sha512(DATA).hexdigest())
    down = await client.get(f"/image/v2/images/{img['id']}/file", headers=demo_headers)
    assert down.status == 200 and await down.read() == DATA
    again = await _put(client, demo_headers, img["id"], DATA)  # active: no second upload
    assert again.status == 409 and "active to saving" in (await again.json())["message"]
    blob = Path(cluster.api.image_dir) / "sha512" / shown["os_hash_value"][:2] / shown["os_hash_value"]
    assert blob.read_bytes() == DATA
    assert (await client.delete(f"/image/v2/images/{img['id']}", headers=demo_headers)).status == 204
    assert (await client.get(f"/image/v2/images/{img['id']}", headers=demo_headers)).status == 404
    assert not blob.exists()


async def test_two_images_with_the_same_bits_share_one_blob(client: TestClient[Any, Any],
                                                           demo_headers: dict[str, str],
                                                           cluster: ClusterConfig) -> None:
    a, b = await _create(client, demo_headers, name="a"), await _create(client, demo_headers, name="b")
    for img in (a, b):
        assert (await _put(client, demo_headers, img["id"], DATA)).status == 204
    digest = hashlib.sha512(DATA).hexdigest()
    blob = Path(cluster.api.image_dir) / "sha512" / digest[:2] / digest
    assert (await client.delete(f"/image/v2/images/{a['id']}", headers=demo_headers)).status == 204
    assert blob.exists()  # b still uses it
    down = await client.get(f"/image/v2/images/{b['id']}/file", headers=demo_headers)
    assert await down.read() == DATA
    assert (await client.delete(f"/image/v2/images/{b['id']}", headers=demo_headers)).status == 204
    assert not blob.exists()


async def test_bad_creates_are_refused_and_make_nothing(client: TestClient[Any, Any],
                                                        demo_headers: dict[str, str]) -> None:
    async def post(body: dict[str, Any]) -> tuple[int, str]:
        resp = await client.post("/image/v2/images", json=body, headers=demo_headers)
        return resp.status, str((await resp.json())["message"])

    assert await post({"name": "x", "disk_format": "floppy"}) == (400, "Invalid disk format 'floppy' for image.")
    assert (await post({"name": "x", "status": "active"}))[0] == 403
    assert (await post({"name": "x", "visibility": "public"}))[0] == 403  # only admins publicize
    assert (await post({"name": "x", "hw_numbers": 5}))[0] == 400
    assert (await post({"name": "x", "id": "not-a-uuid"}))[0] == 400
    listed = await (await client.get("/image/v2/images", headers=demo_headers)).json()
    assert [i["name"] for i in listed["images"]] == ["tiny-raw"]


async def test_only_the_owner_uploads_or_deletes_and_protected_images_stay(
        client: TestClient[Any, Any], demo_headers: dict[str, str], admin_headers: dict[str, str]) -> None:
    public = await _create(client, admin_headers, name="pub", visibility="public", protected=True)
    assert (await _put(client, demo_headers, public["id"], DATA)).status == 403
    assert (await client.delete(f"/image/v2/images/{public['id']}", headers=demo_headers)).status == 403
    assert (await client.delete(f"/image/v2/images/{public['id']}", headers=admin_headers)).status == 403
    private = await _create(client, admin_headers, name="priv", visibility="private")
    assert (await _put(client, demo_headers, private["id"], DATA)).status == 404  # invisible: 404, not 403
    nothing = await _create(client, demo_headers, name="empty")
    assert (await _put(client, demo_headers, nothing["id"], b"")).status == 400
    shown = await (await client.get(f"/image/v2/images/{nothing['id']}", headers=demo_headers)).json()
    assert shown["status"] == "queued"  # a failed upload leaves the image as it was
