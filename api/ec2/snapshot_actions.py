"""EC2's snapshot calls (CreateSnapshot, DescribeSnapshots, DeleteSnapshot) on the Cinder snapshots of
api/volume/snapshots.py: the same functions its handlers call, so quotas and every check are theirs.

Snapshots show as snap-XXXXXXXX (api/ec2/ids.py). Cinder's statuses map onto EC2's as the ec2-api
project maps them (creating -> pending, available -> completed). As EC2 does, a snapshot of an attached
volume is taken (Cinder's force). Every id is resolved before anything changes.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api import quota
from api.ec2 import ids
from api.ec2.errors import Ec2Error, from_cellcloud
from api.ec2.query_actions import _filters, _list, _str
from api.keys import ENGINE, ROUTER
from api.volume import cells
from api.volume.snapshots import create_snapshot
from cells import errors
from cells.context import RequestContext

_STATES = {"creating": "pending", "available": "completed", "deleting": "deleting", "error": "error",
           "error_deleting": "error"}
_FILTERS = {"snapshot-id", "volume-id", "status", "volume-size", "owner-id", "description"}


async def _views(request: web.Request, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = request.config_dict[ENGINE]
    snapshot_ids = await ids.ec2_ids_for(engine, "snapshot", [r["id"] for r in records])
    volume_ids = await ids.ec2_ids_for(engine, "volume", sorted({r["volume_id"] for r in records}))
    return [{"SnapshotId": snapshot_ids[r["id"]], "VolumeId": volume_ids[r["volume_id"]],
             "State": _STATES.get(str(r.get("status")), "error"), "StartTime": r.get("created_at"),
             "Progress": "100%" if r.get("status") == "available" else "0%", "OwnerId": r["project_id"],
             "Description": r.get("description") or "", "VolumeSize": int(r["size"]), "Encrypted": False}
            for r in records]


async def _snapshot(request: web.Request, ctx: RequestContext, ec2_id: str) -> dict[str, Any]:
    """The caller's snapshot behind snap-XXXXXXXX; InvalidSnapshot.NotFound for any other id."""
    router = request.config_dict[ROUTER]
    return await ids.caller_owned(request.config_dict[ENGINE], ctx, "snapshot", ec2_id,
                                  lambda uuid: cells.find_snapshot(router, ctx, uuid), errors.SnapshotNotFound,
                                  "InvalidSnapshot.NotFound")


async def snapshot_uuid(request: web.Request, ctx: RequestContext, ec2_id: str) -> str:
    """For CreateVolume's SnapshotId."""
    return str((await _snapshot(request, ctx, ec2_id))["id"])


def _translated(exc: errors.CellcloudError) -> Ec2Error:
    if isinstance(exc, quota.VolumeOverLimit):
        return Ec2Error("SnapshotLimitExceeded", exc.message)
    if isinstance(exc, (errors.VolumeInvalidState, errors.SnapshotInvalidState)):
        return Ec2Error("IncorrectState", exc.message)
    return from_cellcloud(exc)


async def create_snapshot_action(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    volume_ec2 = _str(params, "VolumeId", required=True) or ""
    description = _str(params, "Description")
    if description is not None and len(description) > 255:
        raise Ec2Error("InvalidParameterValue", "Description must be at most 255 characters")
    volume = await ids.uuid_of(request.config_dict[ENGINE], "volume", volume_ec2)
    if volume is None:
        raise Ec2Error("InvalidVolume.NotFound", f"The volume '{volume_ec2}' does not exist.")
    spec = {"volume_id": volume, "force": True, "description": description, "metadata": {}}
    try:
        record = await create_snapshot(request, ctx, str(ctx.project), spec)
    except errors.VolumeNotFound:
        raise Ec2Error("InvalidVolume.NotFound", f"The volume '{volume_ec2}' does not exist.") from None
    except errors.CellcloudError as exc:
        raise _translated(exc) from None
    [view] = await _views(request, [record])
    return view


async def describe_snapshots(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    if "SnapshotId" in params:
        records = [await _snapshot(request, ctx, str(s)) for s in _list(params, "SnapshotId")]
    else:
        records = await cells.list_snapshots(request.config_dict[ROUTER], ctx, {"project_id": ctx.project})
    owners = set(_list(params, "Owner")) if "Owner" in params else None
    filters = _filters(params, _FILTERS)
    views = await _views(request, [r for r in records if not r.get("deleted")])

    def keep(v: dict[str, Any]) -> bool:
        if owners is not None and not owners & {"self", v["OwnerId"]}:
            return False
        got = {"snapshot-id": {v["SnapshotId"]}, "volume-id": {v["VolumeId"]}, "status": {v["State"]},
               "volume-size": {str(v["VolumeSize"])}, "owner-id": {v["OwnerId"]}, "description": {v["Description"]}}
        return all(got[name] & values for name, values in filters.items())

    return {"Snapshots": [v for v in views if keep(v)]}


async def delete_snapshot(request: web.Request, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    snapshot_ec2 = _str(params, "SnapshotId", required=True) or ""
    record = await _snapshot(request, ctx, snapshot_ec2)
    api, record = await cells.find_snapshot(request.config_dict[ROUTER], ctx, record["id"])
    try:
        await api.snapshot_delete(ctx, record["id"])
    except errors.CellcloudError as exc:
        raise _translated(exc) from None
    return {}


ACTIONS = {"CreateSnapshot": create_snapshot_action, "DescribeSnapshots": describe_snapshots,
           "DeleteSnapshot": delete_snapshot}
