"""EC2's volume and snapshot calls through real boto3 (in a thread: it blocks) against the API,
with the real volume flows, cell DB and volume worker of test_api_volumes' cell:
vol- and snap- ids, Cinder states in EC2's words, ClientToken, attach/detach on a server,
a volume made from a snapshot, and EC2 error codes for requests that must change nothing."""
from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.ec2_support import Ec2Client as Ec2
from tests.unit.ec2_support import ec2_credentials
from tests.unit.test_api_volumes import Cloud, cloud

__all__ = ["cloud"]


async def ec2_for(cloud: Cloud, user: str = "demo") -> Ec2:
    headers, project = cloud.who[user]
    cred = await ec2_credentials(cloud.client, headers, project)
    return Ec2(cloud.client, cred["access"], cred["secret"])


async def wait_state(cloud: Cloud, ec2: Ec2, volume_id: str, state: str) -> dict[str, Any]:
    for _ in range(200):
        await cloud.cell.settle()
        [vol] = (await ec2("describe_volumes", VolumeIds=[volume_id]))["Volumes"]
        if vol["State"] == state:
            return dict(vol)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{volume_id} stayed {vol['State']}, not {state}")


async def test_volume_lifecycle_through_boto3(cloud: Cloud) -> None:
    ec2 = await ec2_for(cloud)
    made = await ec2("create_volume", Size=1, AvailabilityZone="nova", ClientToken="vol-once")
    assert made["VolumeId"].startswith("vol-") and (made["Size"], made["State"]) == (1, "creating")
    again = await ec2("create_volume", Size=1, AvailabilityZone="nova", ClientToken="vol-once")
    assert again["VolumeId"] == made["VolumeId"]  # the same token: the same volume, nothing new
    _, cinder = await cloud.req("GET", "demo", "/volumes")
    assert len(cinder["volumes"]) == 1
    vol = await wait_state(cloud, ec2, made["VolumeId"], "available")
    assert (vol["AvailabilityZone"], vol["Attachments"], vol["Encrypted"]) == ("nova", [], False)

    server = await cloud.boot()
    [reservation] = (await ec2("describe_instances"))["Reservations"]
    instance = reservation["Instances"][0]["InstanceId"]
    att = await ec2("attach_volume", VolumeId=made["VolumeId"], InstanceId=instance, Device="/dev/vdb")
    assert (att["VolumeId"], att["InstanceId"], att["State"]) == (made["VolumeId"], instance, "attaching")
    vol = await wait_state(cloud, ec2, made["VolumeId"], "in-use")
    assert [(a["InstanceId"], a["State"], a["Device"]) for a in vol["Attachments"]] == \
        [(instance, "attached", "/dev/vdb")]
    assert cloud.cell.compute.plugged[vol_uuid(cinder)]["instance"] == server  # hot-plugged on the server
    by_server = (await ec2("describe_volumes", Filters=[{"Name": "attachment.instance-id", "Values": [instance]}]))
    assert [v["VolumeId"] for v in by_server["Volumes"]] == [made["VolumeId"]]
    assert await ec2.error("delete_volume", VolumeId=made["VolumeId"]) == "VolumeInUse"
    assert await ec2.error("attach_volume", VolumeId=made["VolumeId"], InstanceId=instance,
                           Device="/dev/vdc") == "VolumeInUse"

    detached = await ec2("detach_volume", VolumeId=made["VolumeId"])
    assert (detached["InstanceId"], detached["State"]) == (instance, "detaching")
    await wait_state(cloud, ec2, made["VolumeId"], "available")
    assert await ec2.error("detach_volume", VolumeId=made["VolumeId"]) == "IncorrectState"
    await ec2("delete_volume", VolumeId=made["VolumeId"])
    await cloud.cell.settle()
    assert (await ec2("describe_volumes"))["Volumes"] == []
    assert await ec2.error("describe_volumes", VolumeIds=[made["VolumeId"]]) == "InvalidVolume.NotFound"


def vol_uuid(cinder_list: dict[str, Any]) -> str:
    return str(cinder_list["volumes"][0]["id"])


async def test_bad_volume_requests_make_nothing(cloud: Cloud) -> None:
    ec2 = await ec2_for(cloud)
    refused: list[tuple[dict[str, Any], str]] = [
        ({"Size": 0}, "InvalidParameterValue"), ({"Size": 10 ** 6}, "InvalidParameterValue"),
        ({"Size": 1, "SnapshotId": "snap-0000ffff"}, "InvalidSnapshot.NotFound"),
        ({"Size": 1, "VolumeType": "io2"}, "InvalidParameterValue"),
        ({"Size": 1, "Encrypted": True}, "InvalidParameterValue"),
        ({"Size": 1, "AvailabilityZone": "mars"}, "InvalidParameterValue"),
        ({"Size": 1, "ClientToken": "x" * 65}, "InvalidParameterValue"),
        ({"Size": 11 * 100}, "VolumeLimitExceeded")]  # past the 1000 GiB quota
    for kwargs, code in refused:
        assert await ec2.error("create_volume", **{"AvailabilityZone": "nova", **kwargs}) == code, kwargs
    assert await ec2.error("create_volume", AvailabilityZone="nova") == "MissingParameter"
    _, cinder = await cloud.req("GET", "demo", "/volumes")
    assert cinder["volumes"] == []
    for method, kwargs in (("delete_volume", {"VolumeId": "vol-0000ffff"}),
                           ("delete_volume", {"VolumeId": "i-00000001"}),
                           ("describe_volumes", {"VolumeIds": ["vol-nothex"]}),
                           ("detach_volume", {"VolumeId": "vol-0000ffff"})):
        assert await ec2.error(method, **kwargs) == "InvalidVolume.NotFound", (method, kwargs)

    made = await ec2("create_volume", Size=1, AvailabilityZone="nova")
    await wait_state(cloud, ec2, made["VolumeId"], "available")
    assert await ec2.error("attach_volume", VolumeId=made["VolumeId"], InstanceId="i-0000ffff",
                           Device="/dev/vdb") == "InvalidInstanceID.NotFound"
    await cloud.boot()
    instance = (await ec2("describe_instances"))["Reservations"][0]["Instances"][0]["InstanceId"]
    assert await ec2.error("attach_volume", VolumeId=made["VolumeId"], InstanceId=instance,
                           Device="not-a-device") == "InvalidParameterValue"
    # another project sees neither the volume nor a way to act on it
    other = await ec2_for(cloud, "admin")
    assert await other.error("delete_volume", VolumeId=made["VolumeId"]) == "InvalidVolume.NotFound"
    assert (await other("describe_volumes"))["Volumes"] == []
    assert (await wait_state(cloud, ec2, made["VolumeId"], "available"))["Attachments"] == []


async def wait_snapshot(cloud: Cloud, ec2: Ec2, snapshot_id: str, state: str) -> dict[str, Any]:
    for _ in range(200):
        await cloud.cell.settle()
        [snap] = (await ec2("describe_snapshots", SnapshotIds=[snapshot_id]))["Snapshots"]
        if snap["State"] == state:
            return dict(snap)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{snapshot_id} stayed {snap['State']}, not {state}")


async def test_snapshot_lifecycle_through_boto3(cloud: Cloud) -> None:
    ec2 = await ec2_for(cloud)
    vol = await ec2("create_volume", Size=1, AvailabilityZone="nova")
    await wait_state(cloud, ec2, vol["VolumeId"], "available")
    snap = await ec2("create_snapshot", VolumeId=vol["VolumeId"], Description="before the upgrade")
    assert snap["SnapshotId"].startswith("snap-") and snap["State"] == "pending"
    assert (snap["VolumeId"], snap["VolumeSize"], snap["Description"]) == (vol["VolumeId"], 1, "before the upgrade")
    done = await wait_snapshot(cloud, ec2, snap["SnapshotId"], "completed")
    assert done["Progress"] == "100%"
    _, cinder = await cloud.req("GET", "demo", "/snapshots/detail")
    assert [(s["status"], s["size"]) for s in cinder["snapshots"]] == [("available", 1)]
    by_volume = await ec2("describe_snapshots", OwnerIds=["self"],
                          Filters=[{"Name": "volume-id", "Values": [vol["VolumeId"]]}])
    assert [s["SnapshotId"] for s in by_volume["Snapshots"]] == [snap["SnapshotId"]]

    copy = await ec2("create_volume", SnapshotId=snap["SnapshotId"], AvailabilityZone="nova")
    assert copy["Size"] == 1 and copy["SnapshotId"] == snap["SnapshotId"]
    await wait_state(cloud, ec2, copy["VolumeId"], "available")
    assert await ec2.error("delete_volume", VolumeId=vol["VolumeId"]) == "IncorrectState"  # it has a snapshot

    other = await ec2_for(cloud, "admin")  # another project sees neither the snapshot nor a way to act on it
    assert (await other("describe_snapshots"))["Snapshots"] == []
    assert await other.error("delete_snapshot", SnapshotId=snap["SnapshotId"]) == "InvalidSnapshot.NotFound"
    assert await other.error("create_volume", SnapshotId=snap["SnapshotId"],
                             AvailabilityZone="nova") == "InvalidSnapshot.NotFound"
    assert await ec2.error("create_snapshot", VolumeId="vol-0000ffff") == "InvalidVolume.NotFound"

    await ec2("delete_snapshot", SnapshotId=snap["SnapshotId"])
    await cloud.cell.settle()
    assert (await ec2("describe_snapshots"))["Snapshots"] == []
    assert await ec2.error("describe_snapshots", SnapshotIds=[snap["SnapshotId"]]) == "InvalidSnapshot.NotFound"
    for volume in (vol, copy):
        await ec2("delete_volume", VolumeId=volume["VolumeId"])
    await cloud.cell.settle()
    assert (await ec2("describe_volumes"))["Volumes"] == []
