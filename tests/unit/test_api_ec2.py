"""The EC2 Query API at /ec2, driven by real boto3 (in a thread: it blocks) against
the API over HTTP with a fake cell; EC2 credentials from Keystone's OS-EC2 API."""
from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import requests

from api.ec2 import sigv4
from tests.unit.ec2_support import Ec2Client, ec2_credentials
from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]


class Ec2(Ec2Client):
    def __init__(self, cloud: Cloud, access: str, secret: str) -> None:
        super().__init__(cloud.client, access, secret)
        self.cloud = cloud


async def credentials(cloud: Cloud, headers: dict[str, str]) -> dict[str, Any]:
    return await ec2_credentials(cloud.client, headers)


@pytest_asyncio.fixture
async def ec2(cloud: Cloud) -> AsyncIterator[Ec2]:
    cred = await credentials(cloud, cloud.demo)
    yield Ec2(cloud, cred["access"], cred["secret"])


async def test_os_ec2_credentials_lifecycle(cloud: Cloud) -> None:
    cred = await credentials(cloud, cloud.demo)
    assert set(cred) == {"user_id", "tenant_id", "access", "secret", "trust_id", "links"}
    user = cred["user_id"]
    listed = await (await cloud.client.get(f"/identity/v3/users/{user}/credentials/OS-EC2",
                                           headers=cloud.demo)).json()
    assert [c["access"] for c in listed["credentials"]] == [cred["access"]]
    generic = await (await cloud.client.get("/identity/v3/credentials?type=ec2", headers=cloud.demo)).json()
    assert [c["id"] for c in generic["credentials"]] == [cred["access"]]
    assert '"secret"' in generic["credentials"][0]["blob"]
    # a user cannot read or delete another's; nobody makes credentials for a project they have no role on
    admins = await credentials(cloud, cloud.admin)
    other = await cloud.client.get(f"/identity/v3/users/{admins['user_id']}/credentials/OS-EC2", headers=cloud.demo)
    assert other.status == 403
    theirs = await (await cloud.client.get("/identity/v3/credentials", headers=cloud.demo)).json()
    assert admins["access"] not in {c["id"] for c in theirs["credentials"]}
    resp = await cloud.client.post(f"/identity/v3/users/{user}/credentials/OS-EC2", json={"tenant_id": "nope"},
                                   headers=cloud.demo)
    assert resp.status == 403 and "error" in await resp.json()
    resp = await cloud.client.post(f"/identity/v3/users/{user}/credentials/OS-EC2", json={}, headers=cloud.demo)
    assert resp.status == 400
    path = f"/identity/v3/users/{user}/credentials/OS-EC2/{cred['access']}"
    assert (await cloud.client.delete(path, headers=cloud.demo)).status == 204
    assert (await cloud.client.get(path, headers=cloud.demo)).status == 404


async def test_images_zones_keypairs(ec2: Ec2) -> None:
    images = (await ec2("describe_images"))["Images"]
    assert [i["Name"] for i in images] == ["tiny-raw"] and images[0]["ImageId"].startswith("ami-")
    assert images[0]["State"] == "available" and images[0]["Public"] is True
    again = (await ec2("describe_images", ImageIds=[images[0]["ImageId"]]))["Images"]
    assert [i["ImageId"] for i in again] == [images[0]["ImageId"]]
    assert (await ec2.error_detail("describe_images", ImageIds=["ami-0000ffff"]))[0] == "InvalidAMIID.NotFound"

    zones = (await ec2("describe_availability_zones"))["AvailabilityZones"]
    assert [(z["ZoneName"], z["State"], z["RegionName"]) for z in zones] == [("nova", "available", "RegionOne")]

    made = await ec2("create_key_pair", KeyName="k1")
    assert made["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----") and made["KeyPairId"].startswith("key-")
    assert (await ec2.error_detail("create_key_pair", KeyName="k1"))[0] == "InvalidKeyPair.Duplicate"
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"
    imported = await ec2("import_key_pair", KeyName="k2", PublicKeyMaterial=pub.encode())
    assert imported["KeyName"] == "k2" and ":" in imported["KeyFingerprint"]
    pairs = (await ec2("describe_key_pairs"))["KeyPairs"]
    assert [p["KeyName"] for p in pairs] == ["k1", "k2"]
    assert [p["KeyName"] for p in (await ec2("describe_key_pairs", KeyNames=["k2"]))["KeyPairs"]] == ["k2"]
    assert (await ec2.error_detail("describe_key_pairs", KeyNames=["nope"]))[0] == "InvalidKeyPair.NotFound"
    await ec2("delete_key_pair", KeyName="k1")
    await ec2("delete_key_pair", KeyName="k1")  # EC2: deleting a missing key pair is not an error
    assert [p["KeyName"] for p in (await ec2("describe_key_pairs"))["KeyPairs"]] == ["k2"]
    # the same key pairs through Nova
    nova = await (await ec2.cloud.client.get("/compute/v2.1/os-keypairs", headers=ec2.cloud.demo)).json()
    assert [k["keypair"]["name"] for k in nova["keypairs"]] == ["k2"]


async def test_run_describe_terminate_with_user_data_and_client_token(ec2: Ec2) -> None:
    image = (await ec2("describe_images"))["Images"][0]["ImageId"]
    await ec2("create_key_pair", KeyName="k1")
    res = await ec2("run_instances", ImageId=image, MinCount=1, MaxCount=1, InstanceType="m1.tiny", KeyName="k1",
                    UserData="#!/bin/sh\necho hello-ec2\n", ClientToken="tok-1")
    [inst] = res["Instances"]
    assert inst["InstanceId"].startswith("i-") and inst["State"] == {"Code": 0, "Name": "pending"}
    assert (inst["ImageId"], inst["KeyName"], inst["InstanceType"]) == (image, "k1", "m1.tiny")
    record = next(iter(ec2.cloud.cell.conductor.records.values()))
    assert base64.b64decode(record["user_data"]) == b"#!/bin/sh\necho hello-ec2\n"
    k1 = await (await ec2.cloud.client.get("/compute/v2.1/os-keypairs/k1", headers=ec2.cloud.demo)).json()
    assert (record["key_name"], record["key_data"]) == ("k1", k1["keypair"]["public_key"])  # for the metadata
    # the same ClientToken is the same reservation, not a second instance
    again = await ec2("run_instances", ImageId=image, MinCount=1, MaxCount=1, InstanceType="m1.tiny",
                      ClientToken="tok-1")
    assert [i["InstanceId"] for i in again["Instances"]] == [inst["InstanceId"]]
    assert len(ec2.cloud.cell.conductor.records) == 1

    ec2.cloud.cell.conductor.activate(record["uuid"])
    described = await ec2("describe_instances", InstanceIds=[inst["InstanceId"]])
    [shown] = [i for r in described["Reservations"] for i in r["Instances"]]
    assert shown["State"] == {"Code": 16, "Name": "running"} and shown["PrivateIpAddress"] == "10.0.0.5"
    running = await ec2("describe_instances", Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    assert len(running["Reservations"]) == 1
    stopped = await ec2("describe_instances", Filters=[{"Name": "instance-state-name", "Values": ["stopped"]}])
    assert stopped["Reservations"] == []
    assert (await ec2.error_detail("describe_instances", Filters=[{"Name": "bogus", "Values": ["x"]}]))[0] == \
        "InvalidParameterValue"
    assert (await ec2.error_detail("describe_instances", InstanceIds=["i-7fffffff"]))[0] == "InvalidInstanceID.NotFound"

    # one unknown id: nothing is terminated
    code, _ = await ec2.error_detail("terminate_instances", InstanceIds=[inst["InstanceId"], "i-7fffffff"])
    assert code == "InvalidInstanceID.NotFound" and record["task_state"] is None
    done = await ec2("terminate_instances", InstanceIds=[inst["InstanceId"]])
    assert done["TerminatingInstances"][0]["CurrentState"]["Name"] == "shutting-down"
    assert done["TerminatingInstances"][0]["PreviousState"]["Name"] == "running"
    assert record["task_state"] == "deleting"


async def test_run_instances_errors_create_nothing(ec2: Ec2) -> None:
    image = (await ec2("describe_images"))["Images"][0]["ImageId"]
    for kwargs, code in (({"ImageId": "ami-0000ffff"}, "InvalidAMIID.NotFound"),
                         ({"ImageId": image, "InstanceType": "c5.huge"}, "InvalidParameterValue"),
                         ({"ImageId": image, "KeyName": "nokey"}, "InvalidParameterValue"),
                         ({"ImageId": image, "MinCount": 11, "MaxCount": 11}, "InstanceLimitExceeded")):
        args = {"MinCount": 1, "MaxCount": 1, **kwargs}
        assert (await ec2.error_detail("run_instances", **args))[0] == code, kwargs
    assert ec2.cloud.cell.conductor.records == {}


async def test_bad_signatures_and_requests_get_ec2_error_xml(ec2: Ec2) -> None:
    wrong = Ec2(ec2.cloud, ec2.access, "0" * 32)
    assert (await wrong.error_detail("describe_images"))[0] == "SignatureDoesNotMatch"
    unknown = Ec2(ec2.cloud, "AKIDUNKNOWN", ec2.secret)
    assert (await unknown.error_detail("describe_images"))[0] == "AuthFailure"

    def post(data: Any, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(ec2.endpoint, data=data, headers=headers or {}, timeout=10)

    loop = asyncio.get_running_loop()
    resp = await loop.run_in_executor(None, post, {"Action": "DescribeImages", "Version": "2016-11-15"})
    assert resp.status_code == 401 and "<Code>AuthFailure</Code>" in resp.text
    assert resp.text.startswith("<?xml") and "<Response><Errors><Error>" in resp.text
    resp = await loop.run_in_executor(None, post, {"Action": "LaunchMissiles"})
    assert resp.status_code == 400 and "<Code>InvalidAction</Code>" in resp.text
    resp = await loop.run_in_executor(None, post, b"%%%not a form")
    assert resp.status_code == 400 and "<Code>InvalidParameterValue</Code>" in resp.text


def test_sigv4_rejects_stale_and_other_service_signatures() -> None:
    auth = sigv4.parse_authorization("AWS4-HMAC-SHA256 Credential=AK/20200101/RegionOne/ec2/aws4_request, "
                                     "SignedHeaders=host;x-amz-date, Signature=abc")
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.verify(auth, "s", "POST", "/ec2/", "", {"Host": "h", "X-Amz-Date": "20200101T000000Z"}, b"")
    assert info.value.code == "RequestExpired"
    for header in (None, "Basic abc", "AWS4-HMAC-SHA256 Credential=x"):
        with pytest.raises(sigv4.SignatureError):
            sigv4.parse_authorization(header)
