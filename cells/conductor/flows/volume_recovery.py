"""Volume flows (and snapshot flows, flows/volume_snapshots.py) whose conductor left (issue 14): adopted by a live conductor and driven on.

A volume in `creating`, `attaching`, `detaching` or `deleting` records the conductor
driving it (volumes.conductor_id). When that conductor leaves the directory (or the
periodic sweep finds it not live, or it restarts: its own previous run), a live
conductor takes each such volume with one conditional UPDATE of the owner (of several
live conductors exactly one wins a volume) and runs the flow again from the state the
DB holds. Every step is idempotent on the hosts (create finds the file made, export
and hot-plug answer the same for a repeat, unplug and delete of what is gone succeed),
and each flow ends in a stable state or rolls back as it would have for its first owner:

    creating   not placed: placed and made; placed: made on its host -> available | error
    deleting   delete (its cascaded snapshots first) on the volume host again -> row deleted | error_deleting
    extending  grow to the recorded size again (and the guest's disk) -> available | in-use | error_extending
    uploading  rolled back to available with the reason (flows/volume_upload.py)
    attaching  export + hot-plug again -> in-use; any failure rolls back to available
    detaching  unplug + unexport again -> available; an unplug failure goes back to in-use
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection

from cells.conductor.env import FlowEnv
from cells.conductor.flows import volume_extend, volume_snapshots, volume_upload
from cells.conductor.flows import volumes as flows
from cells.context import admin_context
from cells.db import volume_snapshots as sdb
from cells.db import volumes as vdb
from cells.db.volumes import VolumeStatus as S
from cells.objects.records import AttachmentRecord, VolumeRecord

LOG = logging.getLogger(__name__)
Adopted = tuple[VolumeRecord, AttachmentRecord | None]  # (volume row, its attachment)


def owners_in_progress(conn: Connection) -> list[str]:
    """Conductors driving a volume or snapshot flow now (for the dead-member sweep)."""
    return sorted(vdb.owners_in_progress(conn, vdb.volumes, vdb.IN_PROGRESS)
                  | vdb.owners_in_progress(conn, vdb.volume_snapshots, sdb.IN_PROGRESS))


def _adopt(conn: Connection, env: FlowEnv, owners: list[str]) -> list[Adopted]:
    taken: list[Adopted] = []
    for row in vdb.take_over(conn, vdb.volumes, owners, vdb.IN_PROGRESS, env.conductor_id):
        att = vdb.attachment_of(conn, row.id)
        taken.append((vdb.volume_record(row), None if att is None else vdb.attachment_record(att)))
    return taken


async def adopt(env: FlowEnv, owners: Iterable[str]) -> int:
    """Adopt and resume the volume flows of `owners`; returns how many were taken."""
    owners = list(owners)
    if not owners:
        return 0
    taken = await env.db.write(lambda conn: _adopt(conn, env, owners))
    for row, att in taken:
        LOG.warning("volume %s: adopting its %s flow from %s", row["id"], row["status"], owners)
        env.spawn(resume(env, row, att))
    return len(taken) + await volume_snapshots.adopt(env, owners)


def _no_attachment(conn: Connection, volume_id: str) -> None:
    vdb.transition(conn, volume_id, [S.ATTACHING, S.DETACHING],
                   {"status": S.AVAILABLE, "error": "attachment lost with its conductor"})


async def resume(env: FlowEnv, row: VolumeRecord, att: AttachmentRecord | None) -> None:
    ctx = admin_context()
    status, volume = row["status"], row
    if status == S.CREATING:
        if row["host"] is None:
            await flows.place_and_create(env, ctx, row["id"], int(row["size"]))
        else:
            await flows.create_on_host(env, ctx, row)
    elif status == S.DELETING:
        await flows.delete_on_host(env, ctx, volume)
    elif status == S.EXTENDING:
        await volume_extend.extend_on_host(env, ctx, volume, None, att)
    elif status == S.UPLOADING:  # the user's token went with its conductor: rolled back
        await env.db.write(lambda conn: volume_upload.roll_back_adopted(conn, row["id"]))
    elif att is None:  # attach and detach write the attachment with the status: not expected, but never stuck
        await env.db.write(lambda conn: _no_attachment(conn, row["id"]))
    elif status == S.ATTACHING:
        await flows.attach_steps(env, ctx, volume, att)
    elif status == S.DETACHING:
        await flows.detach_steps(env, ctx, volume, att)
