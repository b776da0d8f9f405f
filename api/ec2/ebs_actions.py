"""EC2's volume calls (CreateVolume, DescribeVolumes, AttachVolume, DetachVolume,
DeleteVolume) on the Cinder volumes of api/volume and the attachments of
api/compute/service.py: the same functions those APIs' handlers call,
so quotas, placement, the atomic attach and every check are theirs.

Volumes show as vol-XXXXXXXX (api/ec2/ids.py). Cinder's statuses map onto EC2's
six (attaching/detaching are in-use, as the ec2-api project shows them); an
attachment shows its own state. Every id is resolved before anything changes.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api import quota
from api.compute import service, volume_attachments
from api.compute.views import DEFAULT_AZ
from api.ec2 import ids
from api.ec2.errors import Ec2Error, from_cellcloud
from api.ec2.query_actions import _filters, _list, _remember, _remembered, _str, _uuids
from api.ec2.snapshot_actions import snapshot_uuid
from api.keys import ENGINE, ROUTER
from api.validation import validate
from api.volume import cells
from api.volume.volumes import create_volume, validate_create
from cells import errors
from cells.context import RequestContext

# Cinder status -> EC2 volume state
_STATES = {"creating": "creating", "available": "available", "reserved": "available", "attaching": "in-use",
           "in-use": "in-use", "detaching": "in-use", "deleting": "deleting", "error": "error",
           "error_deleting": "error", "error_attaching": "error", "error_detaching": "error"}
_FILTERS = {"volume-id", "status", "size", "availability-zone", "attachment.instance-id", "attachment.status",
            "attachment.device"}
VOLUME_TYPE = "standard"  # EC2's name for the one kind of volume this cloud makes


def _state(record: dict[str, Any]) -> str:
    return _STATES.get(str(record.get("status")), "error")


async def _views(request: web.Request, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = request.config_dict[ENGINE]
    volume_ids = await ids.ec2_ids_for(engine, "volume", [r["id"] for r in records])
    servers = sorted({a["instance_uuid"] for r in records for a in r.get("attachments") or ()})
    instance_ids = await ids.ec2_ids_for(engine, "instance", servers)
    snapshot_ids = await ids.ec2_ids_for(engine, "snapshot", sorted({r["snapshot_id"] for r in records
                                                                     if r.get("snapshot_id")}))
    views = []
    for r in records:
        attachments = [{"VolumeId": volume_ids[r["id"]], "InstanceId": instance_ids[a["instance_uuid"]],
                        "Device": a.get("device"), "State": a.get("status"), "AttachTime": a.get("created_at"),
                        "DeleteOnTermination": False} for a in r.get("attachments") or ()]
        snapshot = snapshot_ids.get(r.get("snapshot_id") or "", "")
        views.append({"VolumeId": volume_ids[r["id"]], "Size": int(r["size"]), "SnapshotId": snapshot,
                      "AvailabilityZone": r.get("availability_zone") or DEFAULT_AZ, "State": _state(r),
                      "CreateTime": r.get("created_at"), "Attachments": attachments, "VolumeType": VOLUME_TYPE,
                      "Encrypted": False, "MultiAttachEnabled": False})
    return views


async def _volume(request: web.Request, ctx: RequestContext, ec2_id: str) -> dict[str, Any]:
    """The caller's volume behind vol-XXXXXXXX; InvalidVolume.NotFound for any other id."""
    router = request.config_dict[ROUTER]
    return await ids.caller_owned(request.config_dict[ENGINE], ctx, "volume", ec2_id,
                                  lambda uuid: cells.find(router, ctx, uuid), errors.VolumeNotFound,
                                  "InvalidVolume.NotFound")


def _translated(exc: errors.CellcloudError, ec2_volume: str) -> Ec2Error:
    """EC2's codes for the volume errors of the one tree; the rest as api/ec2/errors.py maps them."""
    if isinstance(exc, quota.VolumeOverLimit):
        return Ec2Error("VolumeLimitExceeded", exc.message)
    if isinstance(exc, errors.VolumeNotFound):
        return Ec2Error("InvalidVolume.NotFound", f"The volume '{ec2_volume}' does not exist.")
    if isinstance(exc, errors.VolumeInvalidState):
        return Ec2Error("IncorrectState", exc.message)
    return from_cellcloud(exc)


async def create_volume_action(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    size, snapshot_ec2 = _str(params, "Size"), _str(params, "SnapshotId")
    if size is None and snapshot_ec2 is None:
        raise Ec2Error("MissingParameter", "The request must contain the parameter size or snapshotId")
    if _str(params, "VolumeType") not in (None, VOLUME_TYPE):
        raise Ec2Error("InvalidParameterValue", f"Volume type {params['VolumeType']} is not offered: only "
                                                f"{VOLUME_TYPE}")
    if _str(params, "Encrypted") == "true" or _str(params, "MultiAttachEnabled") == "true":
        raise Ec2Error("InvalidParameterValue", "Encrypted and multi-attach volumes are not offered by this cloud")
    token = _str(params, "ClientToken")
    if token is not None and not 1 <= len(token) <= 64:
        raise Ec2Error("InvalidParameterValue", "ClientToken must be 1 to 64 characters")
    zone = _str(params, "AvailabilityZone")
    body: dict[str, Any] = {"size": size, "availability_zone": None if zone == DEFAULT_AZ else zone}
    if snapshot_ec2 is not None:  # made from the snapshot, in its cell (its size when none is given)
        body["snapshot_id"] = await snapshot_uuid(request, ctx, snapshot_ec2)
    try:  # the Cinder API's own validation: whole GiB from 1 to its largest size
        spec = validate_create({"volume": body})
    except errors.Invalid as exc:
        raise Ec2Error("InvalidParameterValue", exc.message) from None
    async with quota.project_lock(f"ec2-token:{ctx.project}"):  # one request per token at a time
        if token is not None:
            done = await _remembered(request, ctx, "CreateVolume", token)
            if done is not None:  # the same request again: the same volume, nothing new
                _, record = await cells.find(request.config_dict[ROUTER], ctx, done[0])
                [view] = await _views(request, [record])
                return view
        try:
            record = await create_volume(request, ctx, str(ctx.project), spec)
        except errors.CellcloudError as exc:
            raise _translated(exc, "") from None
        if token is not None:
            await _remember(request, ctx, "CreateVolume", token, [record["id"]])
    [view] = await _views(request, [record])
    return view


async def describe_volumes(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted: list[dict[str, Any]] | None = None
    if "VolumeId" in params:
        wanted = [await _volume(request, ctx, str(v)) for v in _list(params, "VolumeId")]
    filters = _filters(params, _FILTERS)
    records = wanted if wanted is not None else \
        await cells.list_all(request.config_dict[ROUTER], ctx, {"project_id": ctx.project})
    views = await _views(request, [r for r in records if not r.get("deleted")])

    def keep(v: dict[str, Any]) -> bool:
        got = {"volume-id": {v["VolumeId"]}, "status": {v["State"]}, "size": {str(v["Size"])},
               "availability-zone": {v["AvailabilityZone"]},
               "attachment.instance-id": {a["InstanceId"] for a in v["Attachments"]},
               "attachment.status": {a["State"] for a in v["Attachments"]},
               "attachment.device": {a["Device"] for a in v["Attachments"]}}
        return all(got[name] & values for name, values in filters.items())

    return {"Volumes": [v for v in views if keep(v)]}


def _attachment_view(volume_ec2: str, instance_ec2: str, att: dict[str, Any], state: str) -> dict[str, Any]:
    return {"VolumeId": volume_ec2, "InstanceId": instance_ec2, "Device": att.get("device"), "State": state,
            "AttachTime": att.get("created_at"), "DeleteOnTermination": False}


async def attach_volume(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    volume_ec2 = _str(params, "VolumeId", required=True) or ""
    instance_ec2 = _str(params, "InstanceId", required=True) or ""
    device = _str(params, "Device", required=True) or ""
    try:  # the same device names the compute API takes
        validate(volume_attachments.ATTACH, {"volumeAttachment": {"volumeId": "00000000-0000-0000-0000-000000000000",
                                                                  "device": device}})
    except errors.Invalid:
        raise Ec2Error("InvalidParameterValue", f"Value ({device}) for parameter device is invalid. "
                                                "Expected a device name such as /dev/vdb or /dev/sdh.") from None
    volume = await _volume(request, ctx, volume_ec2)
    [server] = await _uuids(request, [instance_ec2])
    if volume.get("status") != "available" and volume.get("attachments"):
        raise Ec2Error("VolumeInUse", f"{volume_ec2} is already attached to an instance")
    try:
        att = await service.attach_volume(service.ComputeContext.of(request), ctx, server, volume["id"], device)
    except errors.InstanceNotFound:
        raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{instance_ec2}' does not exist") from None
    except errors.CellcloudError as exc:
        raise _translated(exc, volume_ec2) from None
    return _attachment_view(volume_ec2, instance_ec2, att, "attaching")


async def detach_volume(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    volume_ec2 = _str(params, "VolumeId", required=True) or ""
    volume = await _volume(request, ctx, volume_ec2)
    attached = list(volume.get("attachments") or ())
    instance_ec2 = _str(params, "InstanceId")
    if instance_ec2 is not None:
        [server] = await _uuids(request, [instance_ec2])
        attached = [a for a in attached if a["instance_uuid"] == server]
    if not attached:
        raise Ec2Error("IncorrectState", f"Volume '{volume_ec2}' is in the 'available' state."
                       if instance_ec2 is None else
                       f"Volume '{volume_ec2}' is not attached to instance '{instance_ec2}'.")
    att = attached[0]
    instance_ec2 = instance_ec2 or await ids.ec2_id(request.config_dict[ENGINE], "instance", att["instance_uuid"])
    try:
        await service.detach_volume(service.ComputeContext.of(request), ctx, att["instance_uuid"], volume["id"])
    except service.VolumeAttachmentNotFound:
        raise Ec2Error("IncorrectState", f"Volume '{volume_ec2}' is not attached.") from None
    except errors.CellcloudError as exc:
        raise _translated(exc, volume_ec2) from None
    return _attachment_view(volume_ec2, instance_ec2, att, "detaching")


async def delete_volume(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    volume_ec2 = _str(params, "VolumeId", required=True) or ""
    volume = await _volume(request, ctx, volume_ec2)
    if volume.get("attachments") or volume.get("status") in ("in-use", "attaching", "detaching"):
        raise Ec2Error("VolumeInUse", f"Volume {volume_ec2} is currently attached to an instance")
    api, record = await cells.find(request.config_dict[ROUTER], ctx, volume["id"])
    try:
        await api.volume_delete(ctx, record["id"])
    except errors.CellcloudError as exc:
        raise _translated(exc, volume_ec2) from None
    return {}


ACTIONS = {"CreateVolume": create_volume_action, "DescribeVolumes": describe_volumes, "AttachVolume": attach_volume,
           "DetachVolume": detach_volume, "DeleteVolume": delete_volume}
