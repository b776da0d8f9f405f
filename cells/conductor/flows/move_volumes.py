"""The volumes that go with a move (resize, migration, evacuation, and their revert or roll back).

    carry(host)   every volume attached to the server exported to `host`: the network targets admit one
                  initiator, so a re-export takes the volume from the previous host (tgt's ACL, the NBD
                  gate), and the local target serves its own host only (another host gets a network
                  target); the attachment then names `host` and the new connection_info. Idempotent: an
                  adopted move, or a revert, carries again.
    plug(host)    the data volumes (not a boot volume: the guest is made on it) hot-plugged into the guest on
                  `host`, each at its device, after the guest is made there; the compute asks this conductor
                  for the connection (volume_connection answers the host the attachment names).

A volume that cannot be exported or plugged fails the move, which rolls back: the volumes are carried back
to the source, whose guest kept its disks.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv, through_host_restart
from cells.conductor.flows import boot_volume
from cells.conductor.flows.volumes import connector
from cells.context import RequestContext
from cells.db import volumes as vdb
from cells.objects.records import InstanceRecord
from cells.rpcapi.volume import ComputeVolumeAPI, VolumeAPI

LOG = logging.getLogger(__name__)


def refuse_busy(conn: Connection, uuid: str, action: str) -> None:
    """A volume being attached or detached would race the move: Nova's 409 before anything changes."""
    busy = [a.volume_id for a in vdb.attachments_for_instances(conn, [uuid])[uuid] if a.status != "attached"]
    if busy:
        raise errors.Conflict(reason=f"Cannot '{action}' instance {uuid}: volumes {', '.join(busy)} are being "
                                     "attached or detached.")


def _attached(conn: Connection, uuid: str) -> list[tuple[Any, Any]]:
    out = []
    for att in vdb.attachments_for_instances(conn, [uuid])[uuid]:
        vol = vdb.get_row(conn, att.volume_id)
        if vol is not None:
            out.append((vdb.attachment_record(att), vdb.volume_record(vol)))
    return out


async def carry(env: FlowEnv, ctx: RequestContext, uuid: str, host: str) -> None:
    """Every volume of the server exported to `host`, its attachment recorded there."""
    for _, volume in await env.db.read(lambda conn: _attached(conn, uuid)):
        info = await VolumeAPI(env.service).export_volume(ctx, vdb.volume_host(volume), volume,
                                                          connector(env, host, volume))
        await env.db.write(functools.partial(_moved_to, volume_id=volume["id"], host=host, info=info))
        LOG.info("volume %s of %s exported to %s for its move", volume["id"], uuid, host)


def _moved_to(conn: Connection, volume_id: str, host: str, info: dict[str, Any]) -> None:
    vdb.update_attachment(conn, volume_id, {"connection_info": info, "instance_host": host})


async def plug(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, host: str) -> None:
    """The server's data volumes plugged into its guest on `host` (idempotent on the compute)."""
    uuid = str(record["uuid"])
    root = boot_volume.root_volume_id(record.get("image"))
    for att, _ in await env.db.read(lambda conn: _attached(conn, uuid)):
        vid = att["volume_id"]
        if vid == root:
            continue
        attach = functools.partial(ComputeVolumeAPI(env.service).attach_volume, ctx, host, uuid, vid,
                                   att["connection_info"] or {}, att["device"])
        await through_host_restart(env, host, f"plug of volume {vid}", attach)


async def carry_back(env: FlowEnv, ctx: RequestContext, record: InstanceRecord, host: str) -> None:
    """Best effort, for a roll back (a revert carries and fails loudly): the volumes exported to `host` again."""
    try:
        await carry(env, ctx, str(record["uuid"]), host)
    except errors.CellcloudError as exc:
        LOG.error("volumes of %s not exported back to %s: %s", record["uuid"], host, exc)
