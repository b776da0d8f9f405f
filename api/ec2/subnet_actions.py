"""EC2's subnets on our Neutron subnets (issue 17): DescribeSubnets (subnet- ids) and what
RunInstances' SubnetId, SecurityGroupId.N and SecurityGroup.N ask of a boot. Every id and name is
resolved, and must be the caller's (or, for a subnet, one it may use), before anything is made:
an unknown or another project's one is EC2's NotFound code.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from api.ec2 import ids
from api.ec2.errors import Ec2Error
from api.ec2.query_actions import _list, _str
from api.ec2.security_group_actions import _group
from api.keys import ENGINE, ROUTER
from api.network.cells import each_cell, find_cell
from cells import errors
from cells.context import RequestContext


async def _subnets(request: web.Request, ctx: RequestContext) -> list[dict[str, Any]]:
    """The IPv4 subnets the caller may boot on: its own and shared ones, never an external network's."""
    per_cell = await each_cell(request.config_dict[ROUTER], ctx, lambda api, c: api.index(c, "subnet", {}))
    external = {n["id"] for nets in await each_cell(request.config_dict[ROUTER], ctx,
                                                    lambda api, c: api.index(c, "network", {}))
                for n in nets if n.get("router:external")}
    return [s for subnets in per_cell for s in subnets if s["ip_version"] == 4 and s["network_id"] not in external]


async def describe_subnets(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    subnets = await _subnets(request, ctx)
    shown = await ids.ec2_ids_for(request.config_dict[ENGINE], "subnet", [s["id"] for s in subnets])
    views = [{"SubnetId": shown[s["id"]], "CidrBlock": s["cidr"], "State": "available", "AvailabilityZone": "nova",
              "AvailableIpAddressCount": max(ipaddress.ip_network(s["cidr"]).num_addresses - 3, 0),
              "DefaultForAz": False, "MapPublicIpOnLaunch": False, "OwnerId": s["project_id"],
              "Tags": [{"Key": "Name", "Value": s["name"]}] if s.get("name") else []} for s in subnets]
    wanted = {str(v) for v in _list(params, "SubnetId")}
    missing = wanted - {v["SubnetId"] for v in views}
    if missing:
        raise Ec2Error("InvalidSubnetID.NotFound", f"The subnet ID '{min(missing)}' does not exist")
    return {"Subnets": [v for v in views if not wanted or v["SubnetId"] in wanted]}


async def boot_networks(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> list[dict[str, str]] | None:
    """Nova's `networks` for RunInstances' SubnetId: the subnet's network (None: the project's default).
    A network of several subnets would let the port take an address outside the one asked for: refused."""
    subnet_id = _str(params, "SubnetId")
    if subnet_id is None:
        return None
    uuid = await ids.uuid_of(request.config_dict[ENGINE], "subnet", subnet_id)
    usable = {s["id"]: s for s in await _subnets(request, ctx)} if uuid is not None else {}
    if uuid is None or uuid not in usable:
        raise Ec2Error("InvalidSubnetID.NotFound", f"The subnet ID '{subnet_id}' does not exist")
    network = usable[uuid]["network_id"]
    if sum(1 for s in usable.values() if s["network_id"] == network) > 1:
        raise Ec2Error("InvalidParameterValue", f"Subnet '{subnet_id}' shares its network with other subnets: "
                                                "this cloud cannot place an instance on one of them")
    try:
        await find_cell(request.config_dict[ROUTER], ctx, "network", network)
    except errors.NetworkNotFound:
        raise Ec2Error("InvalidSubnetID.NotFound", f"The subnet ID '{subnet_id}' does not exist") from None
    return [{"uuid": network}]


async def boot_security_groups(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> list[str]:
    """The group ids RunInstances' SecurityGroupId.N and SecurityGroup.N (names) name, each the caller's;
    none given: the project's default group, as a boot without any."""
    found: list[str] = []
    for key, field in (("SecurityGroupId", "GroupId"), ("SecurityGroup", "GroupName")):
        for value in _list(params, key):
            _, group = await _group(request, ctx, {field: str(value)})
            if group["id"] not in found:
                found.append(str(group["id"]))
    return found


ACTIONS = {"DescribeSubnets": describe_subnets}
