"""Nova's os-volumes and os-snapshots proxies over the real volume flows of a cell (tests/unit/test_api_volumes.py's
cloud): Nova's views and request names, the same quota and lifecycle as /volume/v3, 400s that make nothing,
404 from 2.36."""
from __future__ import annotations

from typing import Any

from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]  # the fixture, used by name

VOLUME_KEYS = {"id", "status", "size", "availabilityZone", "createdAt", "displayName", "displayDescription",
               "volumeType", "snapshotId", "metadata", "attachments"}
SNAPSHOT_KEYS = {"id", "volumeId", "status", "size", "createdAt", "displayName", "displayDescription"}


async def test_os_volumes_and_os_snapshots(cloud: Cloud) -> None:
    status, body = await cloud.req("POST", "demo", "/compute/v2.1/os-volumes", {"volume": {
        "size": 1, "display_name": "v1", "display_description": "data", "metadata": {"k": "v"}}})
    assert status == 200, body
    made = body["volume"]
    assert set(made) == VOLUME_KEYS and (made["displayName"], made["size"], made["metadata"]) == ("v1", 1, {"k": "v"})
    assert made["attachments"] == [{}]  # attached nowhere, as Nova's
    await cloud.wait_status("demo", made["id"], "available")
    status, shown = await cloud.req("GET", "demo", f"/compute/v2.1/os-volumes/{made['id']}")
    assert status == 200 and shown["volume"]["status"] == "available" and shown["volume"]["displayDescription"] == "data"
    for path in ("/compute/v2.1/os-volumes", "/compute/v2.1/os-volumes/detail"):
        _, listed = await cloud.req("GET", "demo", path)
        assert [v["id"] for v in listed["volumes"]] == [made["id"]] and set(listed["volumes"][0]) == VOLUME_KEYS
    status, body = await cloud.req("POST", "demo", "/compute/v2.1/os-volumes", {"volume": {"size": 1}})
    assert status == 200, body
    second = body["volume"]["id"]
    _, page = await cloud.req("GET", "demo", "/compute/v2.1/os-volumes?limit=1")
    assert [v["id"] for v in page["volumes"]] == [second]  # newest first
    _, page = await cloud.req("GET", "demo", "/compute/v2.1/os-volumes/detail?offset=1&limit=5")
    assert [v["id"] for v in page["volumes"]] == [made["id"]]
    assert (await cloud.req("GET", "demo", "/compute/v2.1/os-volumes?limit=x"))[0] == 400
    await cloud.wait_status("demo", second, "available")
    assert (await cloud.req("DELETE", "demo", f"/compute/v2.1/os-volumes/{second}"))[0] == 202
    _, others = await cloud.req("GET", "admin", "/compute/v2.1/os-volumes")
    assert others["volumes"] == []  # another project's volumes are not the admin's own list

    status, body = await cloud.req("POST", "demo", "/compute/v2.1/os-snapshots", {"snapshot": {
        "volume_id": made["id"], "display_name": "s1", "display_description": "snap"}})
    assert status == 200, body
    snap = body["snapshot"]
    assert set(snap) == SNAPSHOT_KEYS and (snap["volumeId"], snap["displayName"], snap["size"]) == (made["id"], "s1", 1)
    for path in ("/compute/v2.1/os-snapshots", "/compute/v2.1/os-snapshots/detail"):
        _, listed = await cloud.req("GET", "demo", path)
        assert [s["id"] for s in listed["snapshots"]] == [snap["id"]]
    status, shown = await cloud.req("GET", "demo", f"/compute/v2.1/os-snapshots/{snap['id']}")
    assert status == 200 and set(shown["snapshot"]) == SNAPSHOT_KEYS
    await cloud.cell.settle()
    assert (await cloud.req("DELETE", "demo", f"/compute/v2.1/os-snapshots/{snap['id']}"))[0] == 202
    await cloud.cell.settle()
    assert (await cloud.req("GET", "demo", f"/compute/v2.1/os-snapshots/{snap['id']}"))[0] == 404
    assert (await cloud.req("DELETE", "demo", f"/compute/v2.1/os-volumes/{made['id']}"))[0] == 202
    await cloud.cell.settle()
    assert (await cloud.req("GET", "demo", f"/compute/v2.1/os-volumes/{made['id']}"))[0] == 404


async def test_volume_proxy_refusals(cloud: Cloud) -> None:
    bad_volumes: list[Any] = [{"volume": {"size": 0}}, {"volume": {"display_name": "x"}}, {"volume": {"size": "#$%"}},
                              {"volume": {"size": 1, "color": "red"}}, {"size": 1}]
    for bad in bad_volumes:
        status, body = await cloud.req("POST", "demo", "/compute/v2.1/os-volumes", bad)
        assert status == 400 and "badRequest" in body, bad
    _, listed = await cloud.req("GET", "demo", "/compute/v2.1/os-volumes")
    assert listed["volumes"] == []  # nothing made
    missing = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    for path in (f"/compute/v2.1/os-volumes/{missing}", "/compute/v2.1/os-volumes/not-an-id",
                 f"/compute/v2.1/os-snapshots/{missing}"):
        assert (await cloud.req("GET", "demo", path))[0] == 404
        assert (await cloud.req("DELETE", "demo", path))[0] == 404
    status, _ = await cloud.req("POST", "demo", "/compute/v2.1/os-snapshots", {"snapshot": {"volume_id": missing}})
    assert status == 404
    for path in ("/compute/v2.1/os-volumes", "/compute/v2.1/os-snapshots"):
        assert (await cloud.req("GET", "demo", path, headers={"OpenStack-API-Version": "compute 2.36"}))[0] == 404
