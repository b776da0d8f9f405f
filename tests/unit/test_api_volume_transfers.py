"""Cinder's volume transfers through the volume API (api/volume/transfers.py) with test_api_volumes' cell:
a project offers a volume (awaiting-transfer), another accepts it with the auth key and gets it with its
snapshots; a wrong key, a second accept, a receiving project over its quota are refused and change nothing;
a cancelled transfer leaves the volume available where it was; 3.55's volume-transfers route and views."""
from __future__ import annotations

from tests.unit.api_support import SECRETS
from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]


async def _available_volume_with_snapshot(cloud: Cloud) -> tuple[str, str]:
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    status, body = await cloud.req("POST", "demo", "/snapshots", {"snapshot": {"volume_id": vid}})
    assert status == 202, body
    sid = body["snapshot"]["id"]
    for _ in range(200):
        await cloud.cell.settle()
        if (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[1]["snapshot"]["status"] == "available":
            return vid, sid
    raise AssertionError("the snapshot never became available")


async def test_a_transfer_moves_a_volume_and_its_snapshots_to_the_accepting_project(cloud: Cloud) -> None:
    await cloud.login("alt_demo", SECRETS["alt_demo_password"])
    vid, sid = await _available_volume_with_snapshot(cloud)
    status, body = await cloud.req("POST", "demo", "/os-volume-transfer", {"transfer": {"volume_id": vid, "name": "t"}})
    assert status == 202, body
    transfer = body["transfer"]
    assert set(transfer) == {"id", "name", "volume_id", "links", "created_at", "auth_key"} and len(transfer["auth_key"]) == 16
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "awaiting-transfer"
    status, _ = await cloud.req("POST", "demo", "/os-volume-transfer", {"transfer": {"volume_id": vid}})
    assert status == 400  # one open transfer per volume
    assert (await cloud.req("DELETE", "demo", f"/volumes/{vid}"))[0] == 400  # not while it is offered
    _, listed = await cloud.req("GET", "demo", "/os-volume-transfer/detail")
    assert [t["volume_id"] for t in listed["transfers"]] == [vid] and "auth_key" not in listed["transfers"][0]
    assert (await cloud.req("GET", "alt_demo", f"/os-volume-transfer/{transfer['id']}"))[0] == 404  # not the giver
    assert (await cloud.req("GET", "alt_demo", "/os-volume-transfer"))[1] == {"transfers": []}

    url = f"/os-volume-transfer/{transfer['id']}/accept"
    status, body = await cloud.req("POST", "alt_demo", url, {"accept": {"auth_key": "0" * 16}})
    assert status == 400 and "auth key" in str(body)
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]["status"] == "awaiting-transfer"
    alt_project = cloud.who["alt_demo"][1]
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{alt_project}", {"quota_set": {"snapshots": 0}}))[0] == 200
    status, body = await cloud.req("POST", "alt_demo", url, {"accept": {"auth_key": transfer["auth_key"]}})
    assert status == 413 and "snapshot" in str(body)  # its snapshot would take the receiver past its quota
    assert (await cloud.req("GET", "demo", f"/os-volume-transfer/{transfer['id']}"))[0] == 200  # still open
    assert (await cloud.req("PUT", "admin", f"/os-quota-sets/{alt_project}", {"quota_set": {"snapshots": 10}}))[0] == 200

    status, body = await cloud.req("POST", "alt_demo", url, {"accept": {"auth_key": transfer["auth_key"]}})
    assert status == 202 and body["transfer"]["volume_id"] == vid, body
    assert (await cloud.req("POST", "alt_demo", url, {"accept": {"auth_key": transfer["auth_key"]}}))[0] == 404
    assert (await cloud.req("GET", "demo", f"/volumes/{vid}"))[0] == 404
    assert (await cloud.req("GET", "demo", f"/snapshots/{sid}"))[0] == 404
    _, moved = await cloud.req("GET", "alt_demo", f"/volumes/{vid}")
    assert moved["volume"]["status"] == "available"
    assert moved["volume"]["os-vol-tenant-attr:tenant_id"] == alt_project
    assert (await cloud.req("GET", "alt_demo", f"/snapshots/{sid}"))[1]["snapshot"]["status"] == "available"
    _, limits = await cloud.req("GET", "alt_demo", "/limits")
    assert limits["limits"]["absolute"]["totalVolumesUsed"] == 1


async def test_a_cancelled_transfer_leaves_the_volume_where_it_was_and_355_shows_no_snapshots(cloud: Cloud) -> None:
    vid = (await cloud.create())["id"]
    await cloud.wait_status("demo", vid, "available")
    v355 = {"OpenStack-API-Version": "volume 3.57"}
    status, body = await cloud.req("POST", "demo", "/volume-transfers",
                                   {"transfer": {"volume_id": vid, "no_snapshots": True}}, headers=v355)
    assert status == 202, body
    transfer = body["transfer"]
    assert transfer["no_snapshots"] is True and transfer["accepted"] is False
    assert transfer["source_project_id"] == cloud.who["demo"][1] and transfer["destination_project_id"] is None
    status, _ = await cloud.req("POST", "demo", "/os-volume-transfer", {"transfer": {"volume_id": vid, "no_snapshots": True}})
    assert status == 400  # no_snapshots only from 3.55
    assert (await cloud.req("DELETE", "demo", f"/volume-transfers/{transfer['id']}", headers=v355))[0] == 202
    shown = (await cloud.req("GET", "demo", f"/volumes/{vid}"))[1]["volume"]
    assert shown["status"] == "available" and shown["os-vol-tenant-attr:tenant_id"] == cloud.who["demo"][1]
    assert (await cloud.req("GET", "demo", "/os-volume-transfer"))[1] == {"transfers": []}
