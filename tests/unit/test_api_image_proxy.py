"""Nova's images proxy over HTTP against a real SQLite API DB and image store: the image service's images in
Nova's views, their metadata (the image's properties) changed only by the owner and within the
metadata_items quota, delete through the image service, 404 from 2.36."""
from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name

IMAGES = "/compute/v2.1/images"
VIEW_KEYS = {"id", "name", "minRam", "minDisk", "metadata", "created", "updated", "status", "progress",
             "OS-EXT-IMG-SIZE:size", "links"}


async def _image(client: TestClient[Any, Any], headers: dict[str, str], **extra: Any) -> str:
    resp = await client.post("/image/v2/images", headers=headers,
                             json={"name": "mine", "disk_format": "raw", "container_format": "bare", **extra})
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def test_images_in_novas_views(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    image_id = await _image(client, demo_headers, min_ram=64, color="blue")
    resp = await client.get(f"{IMAGES}/{image_id}", headers=demo_headers)
    assert resp.status == 200, await resp.text()
    view = (await resp.json())["image"]
    assert set(view) == VIEW_KEYS
    assert (view["name"], view["minRam"], view["status"], view["progress"]) == ("mine", 64, "SAVING", 25)
    assert view["metadata"] == {"color": "blue"} and view["created"].endswith("Z")
    assert [link["rel"] for link in view["links"]] == ["self", "bookmark", "alternate"]
    brief = (await (await client.get(IMAGES, headers=demo_headers)).json())["images"]
    assert {"id": image_id, "name": "mine", "links": view["links"]} in brief
    detail = (await (await client.get(f"{IMAGES}/detail?name=mine", headers=demo_headers)).json())["images"]
    assert [i["id"] for i in detail] == [image_id]
    saving = (await (await client.get(f"{IMAGES}/detail?status=SAVING", headers=demo_headers)).json())["images"]
    assert image_id in [i["id"] for i in saving]
    active = (await (await client.get(f"{IMAGES}/detail?status=ACTIVE", headers=demo_headers)).json())["images"]
    assert image_id not in [i["id"] for i in active] and active  # the bootstrap's image is active
    page = (await (await client.get(f"{IMAGES}?limit=1", headers=demo_headers)).json())["images"]
    assert [i["id"] for i in page] == [image_id]  # newest first
    rest = (await (await client.get(f"{IMAGES}?marker={image_id}", headers=demo_headers)).json())["images"]
    assert image_id not in [i["id"] for i in rest] and rest
    server = "5" * 8 + "-0000-0000-0000-" + "0" * 12
    snap = await _image(client, demo_headers, instance_uuid=server, image_type="snapshot")
    for query in (f"server={server}", f"server=http://cloud.test/compute/v2.1/servers/{server}", "type=snapshot"):
        found = (await (await client.get(f"{IMAGES}/detail?{query}", headers=demo_headers)).json())["images"]
        assert [i["id"] for i in found] == [snap], query
        assert found[0]["server"]["id"] == server
    assert (await (await client.get(f"{IMAGES}?type=backup", headers=demo_headers)).json())["images"] == []
    assert (await client.delete(f"{IMAGES}/{snap}", headers=demo_headers)).status == 204
    assert (await client.get(f"{IMAGES}/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=demo_headers)).status == 404
    assert (await client.get(IMAGES, headers={**demo_headers, "OpenStack-API-Version": "compute 2.36"})).status == 404

    assert (await client.delete(f"{IMAGES}/{image_id}", headers=demo_headers)).status == 204
    assert (await client.get(f"{IMAGES}/{image_id}", headers=demo_headers)).status == 404


async def test_image_metadata(client: TestClient[Any, Any], demo_headers: dict[str, str],
                              admin_headers: dict[str, str]) -> None:
    image_id = await _image(client, demo_headers, color="blue")
    meta = f"{IMAGES}/{image_id}/metadata"
    resp = await client.post(meta, json={"metadata": {"os": "linux"}}, headers=demo_headers)
    assert (resp.status, await resp.json()) == (200, {"metadata": {"color": "blue", "os": "linux"}})
    resp = await client.put(meta, json={"metadata": {"arch": "x86_64"}}, headers=demo_headers)
    assert await resp.json() == {"metadata": {"arch": "x86_64"}}
    resp = await client.put(f"{meta}/arch", json={"meta": {"arch": "arm"}}, headers=demo_headers)
    assert (resp.status, await resp.json()) == (200, {"meta": {"arch": "arm"}})
    assert await (await client.get(f"{meta}/arch", headers=demo_headers)).json() == {"meta": {"arch": "arm"}}
    assert (await client.delete(f"{meta}/arch", headers=demo_headers)).status == 204
    assert (await client.get(f"{meta}/arch", headers=demo_headers)).status == 404
    assert (await client.delete(f"{meta}/arch", headers=demo_headers)).status == 404
    assert await (await client.get(meta, headers=demo_headers)).json() == {"metadata": {}}

    bads: list[dict[str, Any]] = [{"metadata": {"k": 5}}, {"metadata": {"": "v"}}, {"metadata": {"name": "x"}},
                                  {"meta": {}}]
    for bad in bads:
        assert (await client.post(meta, json=bad, headers=demo_headers)).status == 400, bad
    resp = await client.put(f"{meta}/a", json={"meta": {"b": "c"}}, headers=demo_headers)
    assert resp.status == 400
    resp = await client.post(meta, json={"metadata": {f"k{i}": "v" for i in range(129)}}, headers=demo_headers)
    assert resp.status == 403  # past the owner's metadata_items (128)
    assert await (await client.get(meta, headers=demo_headers)).json() == {"metadata": {}}  # nothing half-made

    # another project's public image: readable, not changeable
    public = await _image(client, admin_headers, visibility="public")
    assert (await client.get(f"{IMAGES}/{public}/metadata", headers=demo_headers)).status == 200
    resp = await client.post(f"{IMAGES}/{public}/metadata", json={"metadata": {"x": "y"}}, headers=demo_headers)
    assert resp.status == 403
