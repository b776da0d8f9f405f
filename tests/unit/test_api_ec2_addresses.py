"""EC2's Elastic IP calls through real boto3 (in a thread: it blocks) against the API over a real
network controller (issue 17): AllocateAddress from the `public` external network, Associate /
Disassociate / Release / DescribeAddresses as Neutron floating IPs, the security group calls as
Neutron security groups and rules, and EC2's error codes.

The cell here has a network controller only, no compute: the instance is a port the admin made for
demo with the server's uuid as device_id (what the boot flow's port looks like to Neutron), with an
EC2 instance id mapped to that uuid."""
from __future__ import annotations

import uuid as uuidlib
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from api.ec2 import ids
from api.keys import ENGINE
from tests.unit.api_support import SECRETS, token
from tests.unit.ec2_support import Ec2Client as Ec2
from tests.unit.ec2_support import ec2_credentials
from tests.unit.test_api_network import api_client
from tests.unit.test_api_routers import N, _post, _project_net, _public, _put

Client = TestClient[Any, Any]


async def _ec2(client: Client, headers: dict[str, str]) -> Ec2:
    cred = await ec2_credentials(client, headers)
    return Ec2(client, cred["access"], cred["secret"])


async def test_elastic_ips_through_boto3(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        ec2 = await _ec2(client, demo)
        assert await ec2.error("allocate_address", Domain="vpc") == "AddressLimitExceeded"  # no external net yet
        public, _ = await _public(client, admin)
        inside_net, inside = await _project_net(client, demo, "192.168.70.0/24")
        router = (await _post(client, "routers", demo, {"router": {
            "external_gateway_info": {"network_id": public["id"]}}}))["router"]
        await _put(client, f"routers/{router['id']}/add_router_interface", demo, {"subnet_id": inside["id"]})
        project = inside["project_id"]
        server = str(uuidlib.uuid4())
        port = (await _post(client, "ports", admin, {"port": {"network_id": inside_net["id"], "project_id": project,
                                                              "device_id": server}}))["port"]
        instance = await ids.ec2_id(client.app[ENGINE], "instance", server)

        made = await ec2("allocate_address", Domain="vpc")
        assert made["AllocationId"].startswith("eipalloc-") and made["Domain"] == "vpc"
        assert made["PublicIp"].startswith("203.0.113.")
        neutron = (await (await client.get(f"{N}/floatingips", headers=demo)).json())["floatingips"]
        assert [f["floating_ip_address"] for f in neutron] == [made["PublicIp"]]

        assert await ec2.error("associate_address", AllocationId=made["AllocationId"],
                               InstanceId="i-0000ffff") == "InvalidInstanceID.NotFound"
        assoc = await ec2("associate_address", AllocationId=made["AllocationId"], InstanceId=instance)
        assert assoc["AssociationId"] == made["AllocationId"].replace("eipalloc-", "eipassoc-")
        [shown] = (await ec2("describe_addresses", AllocationIds=[made["AllocationId"]]))["Addresses"]
        assert (shown["PublicIp"], shown["AssociationId"], shown["PrivateIpAddress"]) == \
            (made["PublicIp"], assoc["AssociationId"], port["fixed_ips"][0]["ip_address"])
        neutron = (await (await client.get(f"{N}/floatingips", headers=demo)).json())["floatingips"]
        assert neutron[0]["port_id"] == port["id"]
        # an associated address is not released
        assert await ec2.error("release_address", AllocationId=made["AllocationId"]) == "InvalidIPAddress.InUse"
        # another instance takes it only with AllowReassociation (one Neutron update: a move)
        other = str(uuidlib.uuid4())
        other_port = (await _post(client, "ports", admin, {"port": {
            "network_id": inside_net["id"], "project_id": project, "device_id": other}}))["port"]
        other_instance = await ids.ec2_id(client.app[ENGINE], "instance", other)
        assert await ec2.error("associate_address", AllocationId=made["AllocationId"],
                               InstanceId=other_instance) == "Resource.AlreadyAssociated"
        await ec2("associate_address", AllocationId=made["AllocationId"], InstanceId=other_instance,
                  AllowReassociation=True)
        [shown] = (await ec2("describe_addresses", AllocationIds=[made["AllocationId"]]))["Addresses"]
        assert shown["PrivateIpAddress"] == other_port["fixed_ips"][0]["ip_address"]
        assoc = await ec2("associate_address", AllocationId=made["AllocationId"], InstanceId=instance,
                          AllowReassociation=True)

        await ec2("disassociate_address", AssociationId=assoc["AssociationId"])
        [shown] = (await ec2("describe_addresses", PublicIps=[made["PublicIp"]]))["Addresses"]
        assert "AssociationId" not in shown
        await ec2("release_address", AllocationId=made["AllocationId"])
        assert (await ec2("describe_addresses"))["Addresses"] == []
        assert await ec2.error("release_address", AllocationId=made["AllocationId"]) == \
            "InvalidAllocationID.NotFound"


async def test_another_projects_address_and_instance_are_not_found(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, admin):
        alt = {"X-Auth-Token": await token(client, "alt_demo", SECRETS["alt_demo_password"], "alt_demo")}
        await _public(client, admin)
        demo_ec2, alt_ec2 = await _ec2(client, demo), await _ec2(client, alt)
        inside_net, _ = await _project_net(client, demo, "192.168.71.0/24")
        server = str(uuidlib.uuid4())
        await _post(client, "ports", admin, {"port": {"network_id": inside_net["id"], "device_id": server,
                                                      "project_id": inside_net["project_id"]}})
        instance = await ids.ec2_id(client.app[ENGINE], "instance", server)
        mine = await demo_ec2("allocate_address", Domain="vpc")
        theirs = await alt_ec2("allocate_address", Domain="vpc")
        assert [a["AllocationId"] for a in (await alt_ec2("describe_addresses"))["Addresses"]] == \
            [theirs["AllocationId"]]
        assert await alt_ec2.error("release_address", AllocationId=mine["AllocationId"]) == \
            "InvalidAllocationID.NotFound"
        assert await alt_ec2.error("describe_addresses", PublicIps=[mine["PublicIp"]]) == "InvalidAddress.NotFound"
        # demo's instance is nothing to alt_demo
        assert await alt_ec2.error("associate_address", AllocationId=theirs["AllocationId"],
                                   InstanceId=instance) == "InvalidInstanceID.NotFound"
        assert await demo_ec2.error("allocate_address", Domain="standard") == "InvalidParameterValue"


async def test_security_groups_through_boto3(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, _):
        ec2 = await _ec2(client, demo)
        made = await ec2("create_security_group", GroupName="web", Description="http in")
        assert made["GroupId"].startswith("sg-")
        assert await ec2.error("create_security_group", GroupName="web", Description="again") == \
            "InvalidGroup.Duplicate"
        await ec2("authorize_security_group_ingress", GroupId=made["GroupId"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        assert await ec2.error("authorize_security_group_ingress", GroupId=made["GroupId"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == \
            "InvalidPermission.Duplicate"
        [group] = (await ec2("describe_security_groups", GroupIds=[made["GroupId"]]))["SecurityGroups"]
        assert (group["GroupName"], group["Description"]) == ("web", "http in")
        assert [(p["IpProtocol"], p["FromPort"], p["ToPort"], p["IpRanges"]) for p in group["IpPermissions"]] == \
            [("tcp", 80, 80, [{"CidrIp": "0.0.0.0/0"}])]
        # the same rule in Neutron's words
        neutron = (await (await client.get(f"{N}/security-groups?name=web", headers=demo)).json())["security_groups"]
        ingress = [r for r in neutron[0]["security_group_rules"] if r["direction"] == "ingress"]
        assert [(r["protocol"], r["port_range_min"], r["port_range_max"]) for r in ingress] == [("tcp", 80, 80)]

        await ec2("revoke_security_group_ingress", GroupId=made["GroupId"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        assert await ec2.error("revoke_security_group_ingress", GroupId=made["GroupId"], IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == \
            "InvalidPermission.NotFound"
        [group] = (await ec2("describe_security_groups", GroupNames=["web"]))["SecurityGroups"]
        assert group["IpPermissions"] == []
        await ec2("delete_security_group", GroupId=made["GroupId"])
        assert await ec2.error("describe_security_groups", GroupIds=[made["GroupId"]]) == "InvalidGroup.NotFound"
        assert await ec2.error("delete_security_group", GroupName="web") == "InvalidGroup.NotFound"


async def test_another_projects_security_group_is_not_found(tmp_path: Path) -> None:
    async with api_client(tmp_path) as (client, demo, _):
        alt = {"X-Auth-Token": await token(client, "alt_demo", SECRETS["alt_demo_password"], "alt_demo")}
        demo_ec2, alt_ec2 = await _ec2(client, demo), await _ec2(client, alt)
        made = await demo_ec2("create_security_group", GroupName="mine", Description="x")
        for call, extra in (("delete_security_group", {}), ("authorize_security_group_ingress", {"IpPermissions": [
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]})):
            assert await alt_ec2.error(call, GroupId=made["GroupId"], **extra) == "InvalidGroup.NotFound"
        names = [g["GroupName"] for g in (await alt_ec2("describe_security_groups"))["SecurityGroups"]]
        assert "mine" not in names
        [group] = (await demo_ec2("describe_security_groups", GroupIds=[made["GroupId"]]))["SecurityGroups"]
        assert group["IpPermissions"] == []  # alt_demo's refused rule left nothing
