"""The EC2 actions: each takes (request, ctx, params) and returns the output members
of its botocore shape (api/ec2/xml.py renders them).

Instances are Nova servers (RunInstances boots through the same code as POST
/servers, quotas included), images are Glance images, key pairs are Nova's.
Every id that reaches a handler is checked before anything changes, so a
request naming one unknown instance changes none.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import and_, insert, select
from sqlalchemy.exc import IntegrityError

from api import quota
from api.cell_router import is_down
from api.compute import keypairs, service
from api.compute.server_create import BootRequest
from api.compute.views import DEFAULT_AZ, record_status
from api.db.schema import ec2_client_tokens, flavors, images
from api.ec2 import ids
from api.ec2.errors import Ec2Error
from api.image import images as image_db
from api.keys import CLUSTER, ENGINE
from api.timeutil import utcnow
from cells import errors
from cells.context import RequestContext
from cells.objects.instance import TaskState
from cells.objects.records import InstanceRecord

Handler = Callable[[web.Request, RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]
DEFAULT_INSTANCE_TYPE = "m1.small"  # EC2's and Nova EC2's default
LIST_LIMIT = 1000

# Nova status -> EC2 instance state (code, name)
_STATES = {"BUILD": (0, "pending"), "ACTIVE": (16, "running"), "REBOOT": (16, "running"),
           "HARD_REBOOT": (16, "running"), "PASSWORD": (16, "running"), "SHUTOFF": (80, "stopped"),
           "DELETED": (48, "terminated"), "ERROR": (80, "stopped"), "PAUSED": (80, "stopped"),
           "SUSPENDED": (80, "stopped")}
_TASK_STATES = {TaskState.DELETING: (32, "shutting-down"), TaskState.POWERING_OFF: (64, "stopping"),
                TaskState.POWERING_ON: (0, "pending")}


def _list(params: dict[str, Any], name: str) -> list[Any]:
    value = params.get(name, [])
    if not isinstance(value, list):
        raise Ec2Error("InvalidParameterValue", f"{name} must be given as {name}.1, {name}.2, ...")
    return value


def _str(params: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise Ec2Error("MissingParameter", f"The request must contain the parameter {name}")
        return None
    if not isinstance(value, str):
        raise Ec2Error("InvalidParameterValue", f"Invalid value for parameter {name}")
    return value


def _int(params: dict[str, Any], name: str, default: int) -> int:
    raw = _str(params, name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise Ec2Error("InvalidParameterValue", f"Value ({raw}) for parameter {name} is invalid. "
                                                "Expected an integer from 1 to 1000.")
    return int(raw)


def _filters(params: dict[str, Any], allowed: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in _list(params, "Filter"):
        if not isinstance(f, dict) or not isinstance(f.get("Name"), str) or not isinstance(f.get("Value"), list):
            raise Ec2Error("InvalidParameterValue", "A filter needs Filter.N.Name and Filter.N.Value.M")
        if f["Name"] not in allowed:
            raise Ec2Error("InvalidParameterValue", f"The filter '{f['Name']}' is invalid")
        out.setdefault(f["Name"], set()).update(str(v) for v in f["Value"])
    return out


# --- instances -------------------------------------------------------------------

def _state(record: InstanceRecord) -> dict[str, Any]:
    code, name = _TASK_STATES.get(record.get("task_state") or "", None) or _STATES.get(record_status(record),
                                                                                       (0, "pending"))
    return {"Code": code, "Name": name}


def _fixed_ip(record: InstanceRecord) -> str | None:
    for ips in (record.get("addresses") or {}).values():
        for ip in ips:
            if ip.get("OS-EXT-IPS:type", "fixed") == "fixed" and ip.get("version", 4) == 4:
                return str(ip["addr"])
    return None


async def _instance_views(request: web.Request, records: list[InstanceRecord]) -> list[dict[str, Any]]:
    engine = request.config_dict[ENGINE]
    instance_ids = await ids.ec2_ids_for(engine, "instance", [r["uuid"] for r in records])
    image_uuids = [str((r.get("image") or {}).get("id")) for r in records if (r.get("image") or {}).get("id")]
    image_ids = await ids.ec2_ids_for(engine, "image", image_uuids)
    views = []
    for r in records:
        ip = _fixed_ip(r)
        fault_record = r.get("fault")
        fault = fault_record.get("message") if fault_record and record_status(r) == "ERROR" else None
        views.append({
            "InstanceId": instance_ids[r["uuid"]],
            "ImageId": image_ids.get(str((r.get("image") or {}).get("id")), ""),
            "State": _state(r), "PrivateDnsName": r.get("name") or "", "PublicDnsName": "",
            "StateTransitionReason": f"Server.InternalError: {fault}" if fault else "",
            "KeyName": r.get("key_name"), "AmiLaunchIndex": 0,
            "InstanceType": (r.get("flavor") or {}).get("name", ""),
            "LaunchTime": r.get("launched_at") or r.get("created_at"),
            "Placement": {"AvailabilityZone": r.get("availability_zone") or DEFAULT_AZ},
            "PrivateIpAddress": ip, "Monitoring": {"State": "disabled"}, "Architecture": "x86_64",
            "RootDeviceType": "instance-store", "VirtualizationType": "hvm",
        })
    return views


def _reservation(ctx: RequestContext, views: list[dict[str, Any]]) -> dict[str, Any]:
    first = views[0]["InstanceId"] if views else "i-00000000"
    return {"ReservationId": "r-" + first.split("-", 1)[1], "OwnerId": ctx.project, "Groups": [],
            "Instances": views}


async def _records(request: web.Request, ctx: RequestContext) -> list[InstanceRecord]:
    """The caller's live servers, oldest first (a down cell's are left out: EC2 has no UNKNOWN state)."""
    query = service.ServerQuery({"deleted": False, "project_id": ctx.project}, ["created_at", "uuid"],
                                ["asc", "asc"], LIST_LIMIT, with_down=False)
    return [r for r in await service.list_servers(service.ComputeContext.of(request), ctx, query) if not is_down(r)]


async def _uuids(request: web.Request, ec2_instance_ids: list[Any]) -> list[str]:
    """Every id resolved (to a server of the caller's project) before anything acts on one."""
    if not ec2_instance_ids:
        raise Ec2Error("MissingParameter", "The request must contain the parameter InstanceId")
    out = []
    for ec2_id in ec2_instance_ids:
        uuid = await ids.uuid_of(request.config_dict[ENGINE], "instance", str(ec2_id))
        if uuid is None:
            raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{ec2_id}' does not exist")
        out.append(uuid)
    return out


async def _live(request: web.Request, ctx: RequestContext, uuids: list[str]) -> list[InstanceRecord]:
    """(records) of the caller's live servers; InvalidInstanceID.NotFound for any other."""
    cc = service.ComputeContext.of(request)
    records = []
    for uuid in uuids:
        try:
            records.append(await service.get(cc, ctx, uuid))
        except errors.InstanceNotFound:
            ec2_id = await ids.ec2_id(cc.engine, "instance", uuid)
            raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{ec2_id}' does not exist") from None
    return records


async def describe_instances(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted = set(await _uuids(request, _list(params, "InstanceId"))) if "InstanceId" in params else None
    filters = _filters(params, {"instance-id", "instance-state-name", "key-name", "image-id", "instance-type",
                                "availability-zone", "private-ip-address"})
    records = await _records(request, ctx)
    if wanted is not None:
        missing = wanted - {r["uuid"] for r in records}
        if missing:
            ec2_id = await ids.ec2_id(request.config_dict[ENGINE], "instance", min(missing))
            raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{ec2_id}' does not exist")
        records = [r for r in records if r["uuid"] in wanted]
    views = await _instance_views(request, records)
    keys = {"instance-id": "InstanceId", "key-name": "KeyName", "image-id": "ImageId",
            "instance-type": "InstanceType", "private-ip-address": "PrivateIpAddress"}

    def keep(v: dict[str, Any]) -> bool:
        for name, values in filters.items():
            if name == "instance-state-name":
                got = v["State"]["Name"]
            elif name == "availability-zone":
                got = v["Placement"]["AvailabilityZone"]
            else:
                got = v.get(keys[name])
            if got not in values:
                return False
        return True

    return {"Reservations": [_reservation(ctx, [v]) for v in views if keep(v)]}


async def _flavor_id(request: web.Request, instance_type: str) -> str:
    async with request.config_dict[ENGINE].connect() as conn:
        row = (await conn.execute(select(flavors.c.id).where(and_(
            flavors.c.name == instance_type, flavors.c.disabled.is_(False), flavors.c.is_public.is_(True))))).first()
    if row is None:
        raise Ec2Error("InvalidParameterValue", f"Invalid value '{instance_type}' for InstanceType.")
    return str(row.id)


async def _remembered(request: web.Request, ctx: RequestContext, action: str, token: str) -> list[str] | None:
    async with request.config_dict[ENGINE].connect() as conn:
        row = (await conn.execute(select(ec2_client_tokens.c.result).where(and_(
            ec2_client_tokens.c.project_id == ctx.project, ec2_client_tokens.c.action == action,
            ec2_client_tokens.c.client_token == token)))).first()
    return None if row is None else list(row.result)


async def _remember(request: web.Request, ctx: RequestContext, action: str, token: str, result: list[str]) -> None:
    try:
        async with request.config_dict[ENGINE].begin() as conn:
            await conn.execute(insert(ec2_client_tokens).values(project_id=ctx.project, action=action,
                                                                client_token=token, result=result,
                                                                created_at=utcnow()))
    except IntegrityError:
        pass  # the same token, remembered a moment ago: the lock below makes this unreachable in one process


async def run_instances(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    image_ec2 = _str(params, "ImageId", required=True) or ""
    min_count, max_count = _int(params, "MinCount", 1), _int(params, "MaxCount", 1)
    if min_count > max_count:
        raise Ec2Error("InvalidParameterValue", "MinCount must not be greater than MaxCount")
    token = _str(params, "ClientToken")
    if token is not None and not 1 <= len(token) <= 64:
        raise Ec2Error("InvalidParameterValue", "ClientToken must be 1 to 64 characters")
    async with quota.project_lock(f"ec2-token:{ctx.project}"):  # one request per token at a time
        if token is not None:
            done = await _remembered(request, ctx, "RunInstances", token)
            if done is not None:  # the same request again: the same reservation, nothing new
                records = [r for r in await _records(request, ctx) if r["uuid"] in set(done)]
                return _reservation(ctx, await _instance_views(request, records))
        image_uuid = await _visible_image(request, ctx, image_ec2)
        flavor_id = await _flavor_id(request, _str(params, "InstanceType") or DEFAULT_INSTANCE_TYPE)
        placement = params.get("Placement")
        zone = placement.get("AvailabilityZone") if isinstance(placement, dict) else None
        from api.ec2 import subnet_actions  # it reads parameters with this module's helpers: imported late
        networks = await subnet_actions.boot_networks(request, ctx, params)
        groups = await subnet_actions.boot_security_groups(request, ctx, params)
        boot = BootRequest(name="ec2-instance", image_ref=image_uuid, flavor_ref=flavor_id, min_count=min_count,
                           max_count=max_count, key_name=_str(params, "KeyName"),
                           user_data=_str(params, "UserData"), availability_zone=zone or None, networks=networks,
                           security_groups=groups)
        uuids = await service.create(service.ComputeContext.of(request), ctx, boot)
        if token is not None:
            await _remember(request, ctx, "RunInstances", token, uuids)
    records = [r for r in await _records(request, ctx) if r["uuid"] in set(uuids)]
    return _reservation(ctx, await _instance_views(request, records))


def _changes(views: list[dict[str, Any]], current: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"InstanceId": v["InstanceId"], "CurrentState": current, "PreviousState": v["State"]} for v in views]


async def terminate_instances(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    records = await _live(request, ctx, await _uuids(request, _list(params, "InstanceId")))
    views = await _instance_views(request, records)
    cc = service.ComputeContext.of(request)
    for r in records:  # as a Nova delete: it no longer counts against quota, and leaves its group
        await service.delete(cc, ctx, r["uuid"])
    return {"TerminatingInstances": _changes(views, {"Code": 32, "Name": "shutting-down"})}


async def _power(request: web.Request, ctx: RequestContext, params: dict[str, Any], action: str) -> list[
        dict[str, Any]]:
    records = await _live(request, ctx, await _uuids(request, _list(params, "InstanceId")))
    views = await _instance_views(request, records)
    cc = service.ComputeContext.of(request)
    for r in records:
        await service.act(cc, ctx, r["uuid"], action)
    return views


async def reboot_instances(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    await _power(request, ctx, params, "reboot")
    return {}


async def stop_instances(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    views = await _power(request, ctx, params, "stop")
    return {"StoppingInstances": _changes(views, {"Code": 64, "Name": "stopping"})}


async def start_instances(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    views = await _power(request, ctx, params, "start")
    return {"StartingInstances": _changes(views, {"Code": 0, "Name": "pending"})}


async def get_console_output(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ec2_id = _str(params, "InstanceId", required=True) or ""
    [record] = await _live(request, ctx, await _uuids(request, [ec2_id]))
    text = await service.console_output(service.ComputeContext.of(request), ctx, record["uuid"], None)
    return {"InstanceId": ec2_id, "Timestamp": utcnow(),
            "Output": base64.b64encode(text.encode("utf-8", "replace")).decode("ascii")}


# --- images and zones ------------------------------------------------------------

async def describe_images(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    engine = request.config_dict[ENGINE]
    asked: dict[str, str] = {}  # uuid -> the EC2 id asked for
    for ec2_id in _list(params, "ImageId") if "ImageId" in params else []:
        asked[await _visible_image(request, ctx, str(ec2_id))] = str(ec2_id)
    # asked for by id: any image the caller may see; a plain listing: what Glance lists
    where = [images.c.status == "active"] + ([images.c.id.in_(asked), image_db.visible(ctx)] if asked else
                                             [image_db.listed(ctx), images.c.os_hidden.is_(False)])
    async with engine.connect() as conn:
        rows = (await conn.execute(select(images).where(*where).order_by(images.c.created_at))).all()
    for uuid in set(asked) - {r.id for r in rows}:  # visible but not available: as if it did not exist
        raise Ec2Error("InvalidAMIID.NotFound", f"The image id '[{asked[uuid]}]' does not exist")
    image_ids = await ids.ec2_ids_for(engine, "image", [r.id for r in rows])
    return {"Images": [{
        "ImageId": image_ids[r.id], "ImageLocation": r.name or r.id, "State": "available", "OwnerId": r.owner,
        "Public": r.visibility == "public", "Architecture": "x86_64", "ImageType": "machine", "Name": r.name,
        "RootDeviceType": "instance-store", "VirtualizationType": "hvm",
        "CreationDate": r.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")} for r in rows]}


async def _visible_image(request: web.Request, ctx: RequestContext, ec2_id: str) -> str:
    """The uuid behind an ami-/aki-/ari- id the caller may see. One the caller may not see
    answers exactly as one that does not exist: the same code, the same message."""
    uuid = await ids.uuid_of(request.config_dict[ENGINE], "image", ec2_id)
    if uuid is not None:
        async with request.config_dict[ENGINE].connect() as conn:
            try:
                return str((await image_db.get(conn, ctx, uuid)).id)
            except errors.ImageNotFound:
                pass
    raise Ec2Error("InvalidAMIID.NotFound", f"The image id '[{ec2_id}]' does not exist")


async def describe_availability_zones(request: web.Request, ctx: RequestContext,
                                      params: dict[str, Any]) -> dict[str, Any]:
    region = request.config_dict[CLUSTER].api.region
    return {"AvailabilityZones": [{"ZoneName": DEFAULT_AZ, "State": "available", "RegionName": region,
                                   "Messages": []}]}


# --- key pairs -------------------------------------------------------------------

def _key_id(k: keypairs.KeyPair) -> str:
    return f"key-{k.id:017x}"


async def _make_keypair(request: web.Request, ctx: RequestContext, name: str,
                        public_key: str | None) -> tuple[keypairs.KeyPair, str | None]:
    try:
        return await keypairs.create(request.config_dict[ENGINE], str(ctx.user), str(ctx.project), name, public_key)
    except keypairs.KeyPairExists:
        raise Ec2Error("InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists.") from None
    except keypairs.InvalidKeypair as exc:
        code = "InvalidKeyPair.Format" if public_key is not None else "InvalidParameterValue"
        raise Ec2Error(code, exc.message) from None


async def create_key_pair(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _str(params, "KeyName", required=True) or ""
    k, private = await _make_keypair(request, ctx, name, None)
    return {"KeyName": k.name, "KeyFingerprint": k.fingerprint, "KeyMaterial": private, "KeyPairId": _key_id(k)}


async def import_key_pair(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _str(params, "KeyName", required=True) or ""
    material = _str(params, "PublicKeyMaterial", required=True) or ""
    try:
        public_key = base64.b64decode(material, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Ec2Error("InvalidKeyPair.Format", "Key is not in valid OpenSSH public key format") from None
    k, _ = await _make_keypair(request, ctx, name, public_key)
    return {"KeyName": k.name, "KeyFingerprint": k.fingerprint, "KeyPairId": _key_id(k)}


async def describe_key_pairs(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    names = [str(n) for n in _list(params, "KeyName")] if "KeyName" in params else None
    filters = _filters(params, {"key-name", "fingerprint"})
    found = await keypairs.list_for(request.config_dict[ENGINE], str(ctx.user), names)
    if names is not None:
        missing = sorted(set(names) - {k.name for k in found})
        if missing:
            raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{missing[0]}' does not exist")
    found = [k for k in found if k.name in filters.get("key-name", {k.name})
             and k.fingerprint in filters.get("fingerprint", {k.fingerprint})]
    return {"KeyPairs": [{"KeyName": k.name, "KeyFingerprint": k.fingerprint, "KeyPairId": _key_id(k)}
                         for k in found]}


async def delete_key_pair(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _str(params, "KeyName", required=True) or ""
    try:
        await keypairs.remove(request.config_dict[ENGINE], str(ctx.user), name)
    except keypairs.KeypairNotFound:
        pass  # EC2 answers true for a key pair that is already gone
    return {}


ACTIONS: dict[str, Handler] = {
    "DescribeImages": describe_images, "DescribeAvailabilityZones": describe_availability_zones,
    "RunInstances": run_instances, "DescribeInstances": describe_instances,
    "TerminateInstances": terminate_instances, "RebootInstances": reboot_instances,
    "StopInstances": stop_instances, "StartInstances": start_instances, "GetConsoleOutput": get_console_output,
    "CreateKeyPair": create_key_pair, "ImportKeyPair": import_key_pair, "DescribeKeyPairs": describe_key_pairs,
    "DeleteKeyPair": delete_key_pair,
}  # the volume calls: api/ec2/ebs_actions.py
