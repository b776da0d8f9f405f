"""EC2's security group calls (CreateSecurityGroup, DescribeSecurityGroups, DeleteSecurityGroup,
AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress) on our Neutron security groups
(cells/network/secgroups.py), through the same controller calls as /network/v2.0, so quotas, scope
and every check are theirs (issue 17). A group shows as sg-XXXXXXXX; a permission is one Neutron
ingress rule per address range or source group. Every id is resolved before anything changes.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.ec2 import ids
from api.ec2.errors import Ec2Error, from_cellcloud
from api.ec2.query_actions import _list, _str
from api.keys import ENGINE, ROUTER
from api.network import quotas
from api.network.cells import each_cell, find_cell, network_cells
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.network import NetworkAPI

_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "-1": None, "all": None, "6": "tcp", "17": "udp",
              "1": "icmp"}


async def _groups(request: web.Request, ctx: RequestContext) -> list[dict[str, Any]]:
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "security_group", {"project_id": str(ctx.project)}))
    return [g for groups in per_cell for g in groups]


async def _group(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> tuple[NetworkAPI, dict[str, Any]]:
    """(its cell's API, the caller's group) named by GroupId or GroupName."""
    group_id, name = _str(params, "GroupId"), _str(params, "GroupName")
    if group_id:
        uuid = await ids.uuid_of(request.config_dict[ENGINE], "security_group", group_id)
        if uuid is not None:
            try:
                api, group = await find_cell(request.config_dict[ROUTER], ctx, "security_group", uuid)
                if group.get("project_id") == ctx.project:
                    return api, group
            except errors.SecurityGroupNotFound:
                pass
        raise Ec2Error("InvalidGroup.NotFound", f"The security group '{group_id}' does not exist")
    if name:
        for group in await _groups(request, ctx):
            if group["name"] == name:
                return await find_cell(request.config_dict[ROUTER], ctx, "security_group", group["id"])
        raise Ec2Error("InvalidGroup.NotFound", f"The security group '{name}' does not exist")
    raise Ec2Error("MissingParameter", "The request must contain the parameter GroupId or GroupName")


async def _view(request: web.Request, group: dict[str, Any]) -> dict[str, Any]:
    engine = request.config_dict[ENGINE]
    sources = sorted({r["remote_group_id"] for r in group["security_group_rules"] if r.get("remote_group_id")})
    sg_ids = await ids.ec2_ids_for(engine, "security_group", [group["id"], *sources])

    def permissions(direction: str) -> list[dict[str, Any]]:
        out = []
        for r in group["security_group_rules"]:
            if r["direction"] != direction or r.get("ethertype") != "IPv4":
                continue
            perm: dict[str, Any] = {"IpProtocol": r["protocol"] or "-1", "IpRanges": [], "UserIdGroupPairs": []}
            if r["protocol"] in ("tcp", "udp", "icmp"):
                default = -1 if r["protocol"] == "icmp" else None
                perm["FromPort"] = r["port_range_min"] if r["port_range_min"] is not None else (default or 0)
                perm["ToPort"] = r["port_range_max"] if r["port_range_max"] is not None else (default or 65535)
            if r.get("remote_group_id"):
                perm["UserIdGroupPairs"].append({"GroupId": sg_ids[r["remote_group_id"]],
                                                 "UserId": group["project_id"]})
            else:
                perm["IpRanges"].append({"CidrIp": r.get("remote_ip_prefix") or "0.0.0.0/0"})
            out.append(perm)
        return out

    return {"GroupId": sg_ids[group["id"]], "GroupName": group["name"], "Description": group["description"],
            "OwnerId": group["project_id"], "IpPermissions": permissions("ingress"),
            "IpPermissionsEgress": permissions("egress")}


async def create_security_group(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _str(params, "GroupName", required=True) or ""
    description = _str(params, "GroupDescription") or _str(params, "Description") or ""
    if not 0 < len(name) <= 255 or len(description) > 255:
        raise Ec2Error("InvalidParameterValue", "GroupName and GroupDescription are at most 255 characters")
    if name == "default" or any(g["name"] == name for g in await _groups(request, ctx)):
        raise Ec2Error("InvalidGroup.Duplicate", f"The security group '{name}' already exists")
    api = NetworkAPI(network_cells(request.config_dict[ROUTER])[0])
    limit = await quotas.limit_for(request, "security_group", str(ctx.project))
    try:
        group = await api.create(ctx, "security_group", {"name": name, "description": description}, limit)
    except errors.OverQuota:
        raise Ec2Error("SecurityGroupLimitExceeded", "The maximum number of security groups has been reached.") \
            from None
    except errors.CellcloudError as exc:
        raise from_cellcloud(exc) from None
    return {"GroupId": await ids.ec2_id(request.config_dict[ENGINE], "security_group", group["id"])}


async def describe_security_groups(request: web.Request, ctx: RequestContext,
                                   params: dict[str, Any]) -> dict[str, Any]:
    views = [await _view(request, g) for g in await _groups(request, ctx)]
    for key, param, what in (("GroupId", "GroupId", "InvalidGroup.NotFound"),
                             ("GroupName", "GroupName", "InvalidGroup.NotFound")):
        wanted = {str(v) for v in _list(params, param)}
        missing = wanted - {v[key] for v in views}
        if missing:
            raise Ec2Error(what, f"The security group '{min(missing)}' does not exist")
        if wanted:
            views = [v for v in views if v[key] in wanted]
    return {"SecurityGroups": views}


async def delete_security_group(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    api, group = await _group(request, ctx, params)
    try:
        await api.delete(ctx, "security_group", group["id"])
    except errors.Conflict as exc:
        raise Ec2Error("DependencyViolation", exc.message) from None
    except errors.CellcloudError as exc:
        raise from_cellcloud(exc) from None
    return {}


async def _rules(request: web.Request, ctx: RequestContext, group: dict[str, Any],
                 params: dict[str, Any]) -> list[dict[str, Any]]:
    """Neutron ingress rules the request's permissions (or its legacy flat fields) ask for."""
    perms = _list(params, "IpPermissions") or [{k: params[k] for k in ("IpProtocol", "FromPort", "ToPort")
                                                if k in params} | ({"IpRanges": [{"CidrIp": params["CidrIp"]}]}
                                                                   if "CidrIp" in params else {})]
    rules = []
    for perm in perms:
        if not isinstance(perm, dict) or "IpProtocol" not in perm:
            raise Ec2Error("MissingParameter", "Each permission needs an IpProtocol")
        proto_raw = str(perm["IpProtocol"]).lower()
        if proto_raw not in _PROTOCOLS:
            raise Ec2Error("InvalidParameterValue", f"Invalid value '{perm['IpProtocol']}' for IP protocol")
        proto = _PROTOCOLS[proto_raw]
        low = high = None
        if proto is not None:
            try:
                low, high = int(perm.get("FromPort", -1)), int(perm.get("ToPort", -1))
            except ValueError:
                raise Ec2Error("InvalidParameterValue", "FromPort and ToPort must be integers") from None
            if proto == "icmp":
                low, high = (None if low == -1 else low), (None if high == -1 else high)
        base = {"security_group_id": group["id"], "direction": "ingress", "ethertype": "IPv4", "protocol": proto,
                "port_range_min": low, "port_range_max": high}
        ranges = [r.get("CidrIp") for r in _list(perm, "IpRanges") if isinstance(r, dict)]
        pairs = [p.get("GroupId") for p in _list(perm, "UserIdGroupPairs") if isinstance(p, dict)]
        for cidr in ranges:
            rules.append({**base, "remote_ip_prefix": str(cidr)})
        for source in pairs:
            uuid = await ids.uuid_of(request.config_dict[ENGINE], "security_group", str(source))
            if uuid is None:
                raise Ec2Error("InvalidGroup.NotFound", f"The security group '{source}' does not exist")
            rules.append({**base, "remote_group_id": uuid})
        if not ranges and not pairs:
            rules.append({**base, "remote_ip_prefix": "0.0.0.0/0"})
    return rules


def _same(rule: dict[str, Any], wanted: dict[str, Any]) -> bool:
    keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_group_id")
    prefix = rule.get("remote_ip_prefix") or ("0.0.0.0/0" if not rule.get("remote_group_id") else None)
    return all(rule.get(k) == wanted.get(k) for k in keys) and prefix == wanted.get("remote_ip_prefix")


async def authorize_security_group_ingress(request: web.Request, ctx: RequestContext,
                                           params: dict[str, Any]) -> dict[str, Any]:
    api, group = await _group(request, ctx, params)
    rules = await _rules(request, ctx, group, params)
    for wanted in rules:
        if any(_same(r, wanted) for r in group["security_group_rules"]):
            raise Ec2Error("InvalidPermission.Duplicate", "the specified rule already exists")
    limit = await quotas.limit_for(request, "security_group_rule", str(ctx.project))
    for wanted in rules:
        try:
            await api.create(ctx, "security_group_rule", wanted, limit)
        except errors.OverQuota:
            raise Ec2Error("RulesPerSecurityGroupLimitExceeded", "The maximum number of rules has been reached.") \
                from None
        except errors.Conflict:
            raise Ec2Error("InvalidPermission.Duplicate", "the specified rule already exists") from None
        except errors.CellcloudError as exc:
            raise from_cellcloud(exc) from None
    return {"Return": True}


async def revoke_security_group_ingress(request: web.Request, ctx: RequestContext,
                                        params: dict[str, Any]) -> dict[str, Any]:
    api, group = await _group(request, ctx, params)
    found = []
    for wanted in await _rules(request, ctx, group, params):
        match = next((r for r in group["security_group_rules"] if _same(r, wanted)), None)
        if match is None:
            raise Ec2Error("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
        found.append(match)
    for rule in found:
        await api.delete(ctx, "security_group_rule", rule["id"])
    return {"Return": True}


ACTIONS = {"CreateSecurityGroup": create_security_group, "DescribeSecurityGroups": describe_security_groups,
           "DeleteSecurityGroup": delete_security_group,
           "AuthorizeSecurityGroupIngress": authorize_security_group_ingress,
           "RevokeSecurityGroupIngress": revoke_security_group_ingress}
