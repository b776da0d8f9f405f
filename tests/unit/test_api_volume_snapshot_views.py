"""Cinder snapshots through the volume API as Cinder (and Tempest's schemas) answer them, with the real volume
flows of test_api_volumes' cell: create and update answer without the extended attributes that show and
detail carry, a snapshot of no volume is a 404, and the list takes Cinder's limit, sort and marker (bad ones
refused before any cell is asked); and the volume zone list."""
from __future__ import annotations

from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]

BRIEF = {"id", "created_at", "updated_at", "name", "description", "volume_id", "status", "size", "metadata"}
EXTENDED = {"os-extended-snapshot-attributes:progress", "os-extended-snapshot-attributes:project_id"}


async def test_snapshot_answers_lists_and_refusals_are_cinders(cloud: Cloud) -> None:
    status, body = await cloud.req("POST", "demo", "/snapshots", {"snapshot": {"name": "nothing"}})
    assert status == 404 and "could not be found" in body["itemNotFound"]["message"], body
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    made = []
    for name in ("b-snap", "a-snap"):
        status, body = await cloud.req("POST", "demo", "/snapshots", {"snapshot": {"volume_id": vid, "name": name}})
        assert status == 202 and set(body["snapshot"]) == BRIEF, body
        made.append(body["snapshot"]["id"])
    status, body = await cloud.req("PUT", "demo", f"/snapshots/{made[0]}", {"snapshot": {"description": "d"}})
    assert status == 200 and set(body["snapshot"]) == BRIEF and body["snapshot"]["description"] == "d", body
    _, shown = await cloud.req("GET", "demo", f"/snapshots/{made[0]}")
    assert set(shown["snapshot"]) == BRIEF | EXTENDED

    _, listed = await cloud.req("GET", "demo", "/snapshots/detail?sort_key=name&sort_dir=asc")
    assert [s["name"] for s in listed["snapshots"]] == ["a-snap", "b-snap"]
    assert all(set(s) == BRIEF | EXTENDED for s in listed["snapshots"])
    _, page = await cloud.req("GET", "demo", f"/snapshots?sort=name:asc&limit=1&marker={made[1]}")
    assert [s["id"] for s in page["snapshots"]] == [made[0]] and set(page["snapshots"][0]) == BRIEF
    for query, code in (("limit=invalid", 400), ("sort_key=invalid", 400),
                        ("marker=4c6a2e2e-7c3e-4f0e-9d5b-0a3c1e2f4b5d", 404)):
        status, body = await cloud.req("GET", "demo", f"/snapshots?{query}")
        assert status == code, (query, body)


async def test_the_volume_zone_list_names_where_volumes_may_be_made(cloud: Cloud) -> None:
    """os-availability-zone lists the default zone and the cell's site and name, each available while the cell
    answers; a volume is made in each listed zone, and one in an unlisted zone is a 400."""
    status, body = await cloud.req("GET", "demo", "/os-availability-zone")
    assert status == 200, body
    zones = body["availabilityZoneInfo"]
    assert zones[0] == {"zoneName": "nova", "zoneState": {"available": True}} and len(zones) >= 2, zones
    assert all(z["zoneState"] == {"available": True} for z in zones)
    for zone in zones:
        made = await cloud.create(availability_zone=zone["zoneName"])
        await cloud.wait_status("demo", made["id"], "available")
    status, body = await cloud.req("POST", "demo", "/volumes", {"volume": {"size": 1, "availability_zone": "nowhere"}})
    assert status == 400 and "nowhere" in body["badRequest"]["message"], body


async def test_extend_past_the_gigabytes_quota_is_413_and_leaves_the_size(cloud: Cloud) -> None:
    """os-extend counts the growth against the project's gigabytes quota as Cinder: past it a 413 and the
    volume keeps its size; within it the extend goes ahead."""
    project = cloud.who["demo"][1]
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{project}", {"quota_set": {"gigabytes": 2}}))[0] == 200
    status, body = await cloud.req("POST", "demo", f"/volumes/{vid}/action", {"os-extend": {"new_size": 3}})
    assert status == 413 and "gigabytes" in body["overLimit"]["message"], body
    assert (await cloud.wait_status("demo", vid, "available"))["size"] == 1
    status, body = await cloud.req("POST", "demo", f"/volumes/{vid}/action", {"os-extend": {"new_size": 2}})
    assert status == 202, body
    for _ in range(100):
        shown = await cloud.wait_status("demo", vid, "available")
        if shown["size"] == 2:
            break
    assert shown["size"] == 2
