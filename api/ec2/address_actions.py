"""EC2's Elastic IP calls (AllocateAddress, AssociateAddress, DisassociateAddress, ReleaseAddress,
DescribeAddresses) on Neutron's floating IPs (cells/network/l3.py), through the same controller calls
as /network/v2.0, so quotas, scope and every check are theirs (issue 17).

An address is VPC-shaped: AllocationId eipalloc-XXXXXXXX, and while associated AssociationId
eipassoc-XXXXXXXX (the same number). Addresses come from the external network named `public`, or
the only external network there is. An instance is found through its ports, which Neutron shows only
to their own project: another project's instance is InvalidInstanceID.NotFound. Every id is
resolved before anything changes.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.ec2 import ids
from api.ec2.errors import Ec2Error, from_cellcloud
from api.ec2.query_actions import _filters, _list, _str
from api.keys import ENGINE, ROUTER
from api.network import quotas
from api.network.cells import each_cell, find_cell
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.network import NetworkAPI

_FILTERS = {"allocation-id", "association-id", "instance-id", "public-ip", "private-ip-address", "domain"}


async def _external_network(request: web.Request, ctx: RequestContext) -> dict[str, Any]:
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "network", {"router:external": "true"}))
    nets = [n for cell_nets in per_cell for n in cell_nets]
    chosen = [n for n in nets if n["name"] == "public"] or nets
    if len(chosen) != 1:
        raise Ec2Error("AddressLimitExceeded", "This cloud has no (single) external network to allocate "
                                               "addresses from: an admin makes one named public")
    return chosen[0]


async def _views(request: web.Request, ctx: RequestContext, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = request.config_dict[ENGINE]
    alloc = await ids.ec2_ids_for(engine, "floatingip", [r["id"] for r in records])
    out = []
    for r in records:
        view = {"PublicIp": r["floating_ip_address"], "AllocationId": alloc[r["id"]], "Domain": "vpc",
                "PublicIpv4Pool": "public", "NetworkBorderGroup": "RegionOne"}
        if r.get("port_id"):
            view["AssociationId"] = alloc[r["id"]].replace("eipalloc-", "eipassoc-")
            view["PrivateIpAddress"] = r.get("fixed_ip_address")
            _, port = await find_cell(request.config_dict[ROUTER], ctx, "port", r["port_id"])
            if str(port.get("device_owner", "")).startswith("compute:") and port.get("device_id"):
                view["InstanceId"] = await ids.ec2_id(engine, "instance", port["device_id"])
        out.append(view)
    return out


async def _address(request: web.Request, ctx: RequestContext, params: dict[str, Any],
                   id_name: str = "AllocationId") -> tuple[NetworkAPI, dict[str, Any]]:
    """(its cell's API, the caller's floating IP) named by AllocationId/AssociationId or PublicIp."""
    ec2_id, public_ip = _str(params, id_name), _str(params, "PublicIp")
    if ec2_id:
        uuid = await ids.uuid_of(request.config_dict[ENGINE], "floatingip", ec2_id)
        prefix = "eipassoc-" if id_name == "AssociationId" else "eipalloc-"
        code = "InvalidAssociationID.NotFound" if id_name == "AssociationId" else "InvalidAllocationID.NotFound"
        if uuid is None or not ec2_id.lower().startswith(prefix):
            raise Ec2Error(code, f"The {id_name} '{ec2_id}' does not exist")
        try:
            found = await find_cell(request.config_dict[ROUTER], ctx, "floatingip", uuid)
        except errors.FloatingIPNotFound:
            raise Ec2Error(code, f"The {id_name} '{ec2_id}' does not exist") from None
        if id_name == "AssociationId" and not found[1].get("port_id"):
            raise Ec2Error(code, f"The {id_name} '{ec2_id}' does not exist")
        return found
    if public_ip:
        per_cell = await each_cell(request.config_dict[ROUTER], ctx, lambda api, c: api.index(
            c, "floatingip", {"floating_ip_address": public_ip, "project_id": str(ctx.project)}))
        for records in per_cell:
            for record in records:
                return await find_cell(request.config_dict[ROUTER], ctx, "floatingip", record["id"])
        raise Ec2Error("InvalidAddress.NotFound", f"Address '{public_ip}' not found.")
    raise Ec2Error("MissingParameter", f"The request must contain the parameter {id_name} or PublicIp")


def _translated(exc: errors.CellcloudError) -> Ec2Error:
    if isinstance(exc, errors.OverQuota):
        return Ec2Error("AddressLimitExceeded", "The maximum number of addresses has been reached.")
    if isinstance(exc, errors.NotFound) and "not reachable" in exc.message:
        return Ec2Error("Gateway.NotAttached", exc.message)
    if isinstance(exc, errors.RevisionNumberConstraintFailed):  # another association got there first
        return Ec2Error("Resource.AlreadyAssociated", "the address was associated by another request meanwhile")
    return from_cellcloud(exc)


async def allocate_address(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    domain = _str(params, "Domain") or "vpc"
    if domain != "vpc":
        raise Ec2Error("InvalidParameterValue", "Only VPC addresses (Domain=vpc) are offered here")
    net = await _external_network(request, ctx)
    api, _ = await find_cell(request.config_dict[ROUTER], ctx, "network", net["id"])
    limit = await quotas.limit_for(request, "floatingip", str(ctx.project))
    try:
        record = await api.create(ctx, "floatingip", {"floating_network_id": net["id"]}, limit)
    except errors.CellcloudError as exc:
        raise _translated(exc) from None
    [view] = await _views(request, ctx, [record])
    return {k: view[k] for k in ("PublicIp", "AllocationId", "Domain", "PublicIpv4Pool", "NetworkBorderGroup")}


async def _instance_port(request: web.Request, ctx: RequestContext, ec2_id: str) -> str:
    uuid = await ids.uuid_of(request.config_dict[ENGINE], "instance", ec2_id)
    ports: list[dict[str, Any]] = []
    if uuid is not None:
        per_cell = await each_cell(request.config_dict[ROUTER], ctx, lambda api, c: api.index(
            c, "port", {"device_id": uuid, "project_id": str(ctx.project)}))
        ports = sorted((p for cell_ports in per_cell for p in cell_ports), key=lambda p: str(p["created_at"]))
    if not ports:
        raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{ec2_id}' does not exist")
    return str(ports[0]["id"])  # EC2 associates with the instance's primary interface


async def associate_address(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    instance = _str(params, "InstanceId", required=True) or ""
    api, record = await _address(request, ctx, params)
    port_id = await _instance_port(request, ctx, instance)
    body: dict[str, Any] = {"port_id": port_id}
    if _str(params, "PrivateIpAddress"):
        body["fixed_ip_address"] = _str(params, "PrivateIpAddress")
    reassociate = _str(params, "AllowReassociation") == "true"
    if record.get("port_id") and record["port_id"] != port_id and not reassociate:
        raise Ec2Error("Resource.AlreadyAssociated", f"resource {record['floating_ip_address']} is already associated")
    try:  # one update (a reassociation moves it), only if nobody changed it since it was read
        record = await api.update(ctx, "floatingip", record["id"], body, if_match=int(record["revision_number"]))
    except errors.CellcloudError as exc:
        raise _translated(exc) from None
    [view] = await _views(request, ctx, [record])
    return {"AssociationId": view["AssociationId"]}


async def disassociate_address(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    api, record = await _address(request, ctx, params, "AssociationId")
    if record.get("port_id"):
        await api.update(ctx, "floatingip", record["id"], {"port_id": None})
    return {}


async def release_address(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    api, record = await _address(request, ctx, params)
    if record.get("port_id"):
        raise Ec2Error("InvalidIPAddress.InUse", f"Address {record['floating_ip_address']} is in use.")
    await api.delete(ctx, "floatingip", record["id"])
    return {}


async def describe_addresses(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted_ids, wanted_ips = set(_list(params, "AllocationId")), set(_list(params, "PublicIp"))
    filters = _filters(params, _FILTERS)
    per_cell = await each_cell(request.config_dict[ROUTER], ctx,
                               lambda api, c: api.index(c, "floatingip", {"project_id": str(ctx.project)}))
    views = await _views(request, ctx, [r for records in per_cell for r in records])
    for wanted, key, code in ((wanted_ids, "AllocationId", "InvalidAllocationID.NotFound"),
                              (wanted_ips, "PublicIp", "InvalidAddress.NotFound")):
        missing = wanted - {v[key] for v in views}
        if missing:
            raise Ec2Error(code, f"The {key} '{min(missing)}' does not exist")

    def keep(v: dict[str, Any]) -> bool:
        if (wanted_ids and v["AllocationId"] not in wanted_ids) or (wanted_ips and v["PublicIp"] not in wanted_ips):
            return False
        got = {"allocation-id": {v["AllocationId"]}, "association-id": {v.get("AssociationId")},
               "instance-id": {v.get("InstanceId")}, "public-ip": {v["PublicIp"]},
               "private-ip-address": {v.get("PrivateIpAddress")}, "domain": {"vpc"}}
        return all(got[name] & values for name, values in filters.items())

    return {"Addresses": [v for v in views if keep(v)]}


ACTIONS = {"AllocateAddress": allocate_address, "AssociateAddress": associate_address,
           "DisassociateAddress": disassociate_address, "ReleaseAddress": release_address,
           "DescribeAddresses": describe_addresses}
