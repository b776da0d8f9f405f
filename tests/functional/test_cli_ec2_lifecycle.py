"""Issue 7 end to end on a real cluster (cellctl up): the unmodified `openstack` CLI
through key pairs, user data, quotas and limits (quota set/show by project name),
filters (name, status, flavor, image), rename and properties, power actions and the
event list; real boto3 through EC2 credentials, images, zones, key pairs, the
instance lifecycle and the volume lifecycle (node1 is a volume host too)."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    # node1 is a volume host too (file backend): the EC2 volume calls need one
    with running_cluster(tmp_path_factory.mktemp("issue7"), volumes=True) as c:
        yield c


def wait_status(cluster: RunningCluster, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
    return dict(wait_for(f"server {name} {status}", lambda: (
        s := cluster.ok("server", "show", name, "-f", "json"))["status"] == status and s, timeout, 0.3))


def test_cli_keypairs_user_data_quotas_filters_and_events(cluster: RunningCluster, tmp_path: Path) -> None:
    made = cluster.ok("keypair", "create", "gen")
    assert "PRIVATE KEY-----" in made  # this CLI makes the pair itself and imports the public half
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    imported = cluster.ok("keypair", "create", "--public-key", str(tmp_path / "id.pub"), "mine", "-f", "json")
    assert imported["name"] == "mine" and imported["fingerprint"]
    assert sorted(k["Name"] for k in cluster.ok("keypair", "list", "-f", "json")) == ["gen", "mine"]
    assert cluster.ok("keypair", "show", "mine", "-f", "json")["fingerprint"] == imported["fingerprint"]

    user_data = tmp_path / "user-data"
    user_data.write_text("#!/bin/sh\necho hello from user data\n")
    server = cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--key-name", "mine",
                "--user-data", str(user_data), "--wait", "-f", "json", "web1")
    assert server["status"] == "ACTIVE" and server["key_name"] == "mine"
    cluster.ok("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "--wait", "db1")

    limits = {r["Name"]: r["Value"] for r in cluster.ok("limits", "show", "--absolute", "-f", "json")}
    assert (limits["total_instances_used"], limits["instances"], limits["total_ram_used"]) == (2, 10, 1024)
    quota = cluster.ok("quota", "show", "--compute", "-f", "json")
    quota = {r["Resource"]: r["Limit"] for r in quota} if isinstance(quota, list) else quota
    assert quota["instances"] == 10 and quota["key-pairs"] == 100
    every = cluster.ok("quota", "show", "-f", "json")  # compute, volume and network quotas together
    every = {r["Resource"]: r["Limit"] for r in every} if isinstance(every, list) else every
    assert (every["instances"], every["networks"], every["ports"]) == (10, 100, 500)  # Neutron's defaults

    names = [s["Name"] for s in cluster.ok("server", "list", "--name", "^web", "-f", "json")]
    assert names == ["web1"]
    active = cluster.ok("server", "list", "--status", "ACTIVE", "--sort-column", "Name", "-f", "json")
    assert [s["Name"] for s in active] == ["db1", "web1"]
    cluster.ok("server", "create", "--flavor", "m1.small", "--image", "tiny-raw", "--wait", "big1")
    small = cluster.ok("server", "list", "--flavor", "m1.small", "--image", "tiny-raw", "-f", "json")
    assert [s["Name"] for s in small] == ["big1"]
    tiny = cluster.ok("server", "list", "--flavor", "m1.tiny", "--sort-column", "Name", "-f", "json")
    assert [s["Name"] for s in tiny] == ["db1", "web1"]
    assert cluster.ok("server", "list", "--flavor", "m1.medium", "-f", "json") == []
    cluster.ok("server", "delete", "--wait", "big1")

    cluster.ok("server", "set", "--name", "web2", "--property", "role=frontend", "web1")
    shown = cluster.ok("server", "show", "web2", "-f", "json")
    assert "role='frontend'" in str(shown["properties"]) or shown["properties"] == {"role": "frontend"}

    cluster.ok("server", "reboot", "--soft", "--wait", "web2")
    cluster.ok("server", "stop", "web2")
    wait_status(cluster, "web2", "SHUTOFF")
    cluster.ok("server", "start", "web2")
    wait_status(cluster, "web2", "ACTIVE")
    events = [e["Action"] for e in cluster.ok("server", "event", "list", "web2", "-f", "json")]
    assert {"create", "reboot", "stop", "start"} <= set(events)
    assert "FAKE CONSOLE OUTPUT" in cluster.ok("console", "log", "show", "web2")  # the test hypervisor's console

    # the admin lowers demo's quota by project name (the CLI looks it up in Keystone's /v3/projects);
    # with instances at 2 a third boot is refused with Nova's 403
    cluster.ok("quota", "set", "--instances", "2", "--cores", "8", "demo", who="admin")
    shown = cluster.ok("quota", "show", "--compute", "demo", "-f", "json", who="admin")
    shown = {r["Resource"]: r["Limit"] for r in shown} if isinstance(shown, list) else shown
    assert (shown["instances"], shown["cores"]) == (2, 8)
    assert "identity:list_projects" in cluster.cli("quota", "show", "--compute", "admin").stderr  # Keystone's policy
    refused = cluster.cli("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw", "third")
    assert refused.returncode != 0 and "Quota exceeded for instances" in refused.stderr

    for name in ("web2", "db1"):
        cluster.ok("server", "delete", "--wait", name)
    cluster.ok("keypair", "delete", "gen", "mine")
    assert cluster.ok("keypair", "list", "-f", "json") == []


def ec2_client(cluster: RunningCluster, access: str, secret: str) -> Any:
    return boto3.client("ec2", endpoint_url=cluster.endpoint + "/ec2", region_name="RegionOne",
                        aws_access_key_id=access, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 0}))


def wait_running(ec2: Any, instance_id: str) -> dict[str, Any]:
    def running() -> Any:
        [r] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return r["Instances"][0]["State"]["Name"] == "running" and r["Instances"][0]
    return dict(wait_for(f"{instance_id} running", running, 30, 0.3))


def test_boto3_ec2_lifecycle(cluster: RunningCluster) -> None:
    cred = cluster.ok("ec2", "credentials", "create", "-f", "json")
    ec2 = ec2_client(cluster, cred["access"], cred["secret"])
    [image] = [i for i in ec2.describe_images()["Images"] if i["Name"] == "tiny-raw"]
    assert [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]] == ["nova"]
    key = ec2.create_key_pair(KeyName="ec2key")
    assert key["KeyMaterial"].startswith("-----BEGIN")

    res = ec2.run_instances(ImageId=image["ImageId"], MinCount=1, MaxCount=1, InstanceType="m1.tiny",
                            KeyName="ec2key", UserData="#!/bin/sh\necho hi\n", ClientToken="once")
    [inst] = res["Instances"]
    again = ec2.run_instances(ImageId=image["ImageId"], MinCount=1, MaxCount=1, InstanceType="m1.tiny",
                              ClientToken="once")
    assert [i["InstanceId"] for i in again["Instances"]] == [inst["InstanceId"]]
    assert wait_running(ec2, inst["InstanceId"])["KeyName"] == "ec2key"
    ec2.reboot_instances(InstanceIds=[inst["InstanceId"]])
    output = ec2.get_console_output(InstanceId=inst["InstanceId"])
    assert output["InstanceId"] == inst["InstanceId"]
    assert "LAST LINE" in output["Output"]  # EC2 sends it base64; botocore decodes it

    bad = ec2_client(cluster, cred["access"], "wrong" * 6)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        bad.describe_instances()
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    done = ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    assert done["TerminatingInstances"][0]["CurrentState"]["Name"] == "shutting-down"
    ec2.delete_key_pair(KeyName="ec2key")
    assert ec2.describe_key_pairs()["KeyPairs"] == []


def test_boto3_run_instances_honours_security_groups_and_subnet(cluster: RunningCluster) -> None:
    """RunInstances' SecurityGroupId.N, SecurityGroup.N and SubnetId reach the server's ports (shown by
    Nova); an unknown group or subnet is EC2's NotFound code and boots nothing."""
    cred = cluster.ok("ec2", "credentials", "create", "-f", "json")
    ec2 = ec2_client(cluster, cred["access"], cred["secret"])
    [image] = [i for i in ec2.describe_images()["Images"] if i["Name"] == "tiny-raw"]
    web = ec2.create_security_group(GroupName="ec2web", Description="web")["GroupId"]
    cluster.ok("security", "group", "create", "ec2db")
    net = cluster.ok("network", "create", "ec2net", "-f", "json")
    cluster.ok("subnet", "create", "--network", "ec2net", "--subnet-range", "10.77.3.0/24", "ec2sub")
    [subnet] = [s for s in ec2.describe_subnets()["Subnets"] if s["CidrBlock"] == "10.77.3.0/24"]
    assert subnet["SubnetId"].startswith("subnet-") and subnet["State"] == "available"
    before = {s["ID"] for s in cluster.ok("server", "list", "-f", "json")}

    for kwargs, code in (({"SecurityGroupIds": ["sg-7fffffff"]}, "InvalidGroup.NotFound"),
                         ({"SecurityGroups": ["nosuchgroup"]}, "InvalidGroup.NotFound"),
                         ({"SubnetId": "subnet-7fffffff"}, "InvalidSubnetID.NotFound")):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            ec2.run_instances(ImageId=image["ImageId"], MinCount=1, MaxCount=1, InstanceType="m1.tiny", **kwargs)
        assert info.value.response["Error"]["Code"] == code, kwargs
    assert {s["ID"] for s in cluster.ok("server", "list", "-f", "json")} == before

    [inst] = ec2.run_instances(ImageId=image["ImageId"], MinCount=1, MaxCount=1, InstanceType="m1.tiny",
                               SecurityGroupIds=[web], SecurityGroups=["ec2db"],
                               SubnetId=subnet["SubnetId"])["Instances"]
    shown = wait_running(ec2, inst["InstanceId"])
    assert shown["PrivateIpAddress"].startswith("10.77.3.")
    [server] = [s for s in cluster.ok("server", "list", "-f", "json") if s["ID"] not in before]
    details = cluster.ok("server", "show", server["ID"], "-f", "json")
    assert {g["name"] for g in details["security_groups"]} == {"ec2web", "ec2db"}
    assert list(details["addresses"]) == ["ec2net"], details["addresses"]
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    wait_for("the instance gone", lambda: server["ID"] not in {
        s["ID"] for s in cluster.ok("server", "list", "-f", "json")}, 30)
    cluster.ok("network", "delete", net["id"])


def test_boto3_ec2_volumes(cluster: RunningCluster) -> None:
    cred = cluster.ok("ec2", "credentials", "create", "-f", "json")
    ec2 = ec2_client(cluster, cred["access"], cred["secret"])

    def volume_state(volume_id: str, state: str, attachments: list[str] | None = None) -> dict[str, Any]:
        """Wait for the volume's state (and its attachments' states: EC2 shows an attaching volume in-use)."""
        def reached() -> Any:
            [vol] = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
            seen = [a["State"] for a in vol["Attachments"]]
            return vol["State"] == state and (attachments is None or seen == attachments) and vol
        return dict(wait_for(f"{volume_id} {state} {attachments}", reached, 30, 0.3))

    made = ec2.create_volume(Size=1, AvailabilityZone="nova", ClientToken="vol-once")
    assert made["VolumeId"].startswith("vol-")
    assert ec2.create_volume(Size=1, AvailabilityZone="nova", ClientToken="vol-once")["VolumeId"] == made["VolumeId"]
    assert len(cluster.ok("volume", "list", "-f", "json")) == 1  # one volume, as the Cinder API sees it too
    volume_state(made["VolumeId"], "available")

    [image] = [i for i in ec2.describe_images()["Images"] if i["Name"] == "tiny-raw"]
    [inst] = ec2.run_instances(ImageId=image["ImageId"], MinCount=1, MaxCount=1, InstanceType="m1.tiny")["Instances"]
    wait_running(ec2, inst["InstanceId"])
    att = ec2.attach_volume(VolumeId=made["VolumeId"], InstanceId=inst["InstanceId"], Device="/dev/vdb")
    assert att["State"] == "attaching"
    vol = volume_state(made["VolumeId"], "in-use", ["attached"])
    assert [(a["InstanceId"], a["State"]) for a in vol["Attachments"]] == [(inst["InstanceId"], "attached")]
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ec2.delete_volume(VolumeId=made["VolumeId"])
    assert info.value.response["Error"]["Code"] == "VolumeInUse"
    assert ec2.detach_volume(VolumeId=made["VolumeId"])["State"] == "detaching"
    volume_state(made["VolumeId"], "available", [])
    ec2.delete_volume(VolumeId=made["VolumeId"])
    wait_for("the volume deleted", lambda: not ec2.describe_volumes()["Volumes"], 30, 0.3)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ec2.describe_volumes(VolumeIds=[made["VolumeId"]])
    assert info.value.response["Error"]["Code"] == "InvalidVolume.NotFound"
    ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
