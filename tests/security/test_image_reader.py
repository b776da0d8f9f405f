"""The credential compute hosts fetch images with (cellcloud-image-reader, role image_reader)
against the real API app (in-process): the compute's own fetcher reads any project's image
with it, and the same token is refused everything else (403): listing, creating, uploading or
deleting images, servers, networks, volumes, EC2 keys."""
from __future__ import annotations

import hashlib
from typing import Any

from aiohttp.test_utils import TestClient

from node.imagecache import HttpImageFetcher
from tests.unit.api_support import SECRETS, admin_headers, client, cluster, demo_headers, token

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
DATA = b"a private disk " * 1000


async def private_image(client: TestClient[Any, Any], headers: dict[str, str]) -> str:
    resp = await client.post("/image/v2/images", json={"name": "mine", "disk_format": "raw", "container_format": "bare",
                                                      "visibility": "private"}, headers=headers)
    image_id = str((await resp.json())["id"])
    put = await client.put(f"/image/v2/images/{image_id}/file", data=DATA,
                           headers={**headers, "Content-Type": "application/octet-stream"})
    assert put.status == 204, await put.text()
    return image_id


async def test_the_image_reader_reads_any_projects_image_with_the_computes_fetcher(
        client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    image_id = await private_image(client, demo_headers)
    login = await client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {"name": "cellcloud-image-reader", "domain": {"id": "default"},
                                                        "password": SECRETS["image_reader_password"]}}},
        "scope": {"project": {"name": "service", "domain": {"id": "default"}}}}})
    assert login.status == 201
    assert [r["name"] for r in (await login.json())["token"]["roles"]] == ["image_reader"]
    fetcher = HttpImageFetcher(str(client.make_url("")).rstrip("/"), SECRETS["image_reader_password"])
    try:
        record = await fetcher.record(image_id)
        assert record["os_hash_value"] == hashlib.sha512(DATA).hexdigest() and record["disk_format"] == "raw"
        assert b"".join([chunk async for chunk in fetcher.stream(image_id)]) == DATA
    finally:
        await fetcher.close()


async def test_the_image_reader_is_refused_everything_else(client: TestClient[Any, Any],
                                                          demo_headers: dict[str, str]) -> None:
    image_id = await private_image(client, demo_headers)
    reader = {"X-Auth-Token": await token(client, "cellcloud-image-reader", SECRETS["image_reader_password"],
                                          "service")}
    assert (await client.get(f"/image/v2/images/{image_id}", headers=reader)).status == 200
    assert (await client.head(f"/image/v2/images/{image_id}/file", headers=reader)).status == 200
    me = await (await client.get("/identity/v3/auth/tokens",
                                 headers={**reader, "X-Subject-Token": reader["X-Auth-Token"]})).json()
    user_id, project_id = me["token"]["user"]["id"], me["token"]["project"]["id"]
    refused = [
        ("GET", "/image/v2/images", None), ("POST", "/image/v2/images", {"name": "x", "disk_format": "raw",
                                                                       "container_format": "bare"}),
        ("PUT", f"/image/v2/images/{image_id}/file", b"x"), ("DELETE", f"/image/v2/images/{image_id}", None),
        ("GET", "/compute/v2.1/servers", None),
        ("POST", "/compute/v2.1/servers", {"server": {"name": "x", "flavorRef": "1", "imageRef": image_id}}),
        ("GET", "/network/v2.0/networks", None), ("GET", f"/volume/v3/{project_id}/volumes", None),
        ("POST", f"/identity/v3/users/{user_id}/credentials/OS-EC2", {"tenant_id": project_id}),
    ]
    for method, path, body in refused:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        resp = await client.request(method, path, headers=reader, **kwargs)
        assert resp.status == 403, (method, path, resp.status, await resp.text())
    shown = await (await client.get(f"/image/v2/images/{image_id}", headers=demo_headers)).json()
    assert shown["status"] == "active"  # nothing the reader tried changed it
