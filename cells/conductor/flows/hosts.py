"""Dead members: compute hosts that left the directory and conductors that died mid-flow.

- A compute host leaves: its instances still building go to ERROR (fault
  "Compute host <host> stopped responding while building the instance", claim
  released), and its pending deletes complete (the guest is gone with the host,
  or will be reaped when the host comes back).
- A conductor dies mid-flow: instances it was scheduling (building/scheduling,
  not yet handed to a compute) go to ERROR. Resuming them comes later.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import distinct, false, or_, select

from cells.conductor.env import FlowEnv
from cells.conductor.flows.boot import set_error
from cells.conductor.flows.delete import complete_delete
from cells.db import actions
from cells.db import instances as idb
from cells.db.schema import instances
from cells.lifecycle import Event
from cells.objects.instance import TaskState, VmState

LOG = logging.getLogger(__name__)
HOST_LOST = "Compute host {host} stopped responding while building the instance"
CONDUCTOR_LOST = "Conductor {owner} stopped while scheduling the instance"
COMPUTE_PREFIX = "compute."


async def host_lost(env: FlowEnv, host: str) -> None:
    c = instances.c
    failed = deleted = 0
    async with env.db.write() as conn:
        rows = await idb.rows_where(conn, c.host == host, c.deleted == false(),
                                    or_(c.vm_state == VmState.BUILDING, c.task_state == TaskState.DELETING))
        for row in rows:
            if row.task_state == TaskState.DELETING:
                await complete_delete(conn, env, row)
                deleted += 1
            else:
                await set_error(conn, row, actions.make_fault(HOST_LOST.format(host=host)), Event.HOST_LOST)
                failed += 1
    if rows:
        LOG.warning("compute host %s lost: %d builds failed, %d deletes completed", host, failed, deleted)


async def orphaned_builds(env: FlowEnv, owners: Iterable[str]) -> None:
    c = instances.c
    async with env.db.write() as conn:
        for owner in owners:
            rows = await idb.rows_where(conn, c.conductor_id == owner, c.deleted == false(),
                                        c.vm_state == VmState.BUILDING, c.task_state == TaskState.SCHEDULING)
            for row in rows:
                await set_error(conn, row, actions.make_fault(CONDUCTOR_LOST.format(owner=owner)))
            if rows:
                LOG.warning("%d builds orphaned by conductor %s set to ERROR", len(rows), owner)


async def sweep(env: FlowEnv, suspects: set[str]) -> set[str]:
    """Safety net behind the directory listener (missed events, conductor restarts):
    a host or conductor with unfinished work that is absent from the directory in two
    consecutive sweeps is handled as lost. Returns the names absent this time."""
    c = instances.c
    async with env.db.read() as conn:
        hosts = (await conn.execute(select(distinct(c.host)).where(
            c.host.is_not(None), c.deleted == false(),
            or_(c.vm_state == VmState.BUILDING, c.task_state == TaskState.DELETING)))).scalars().all()
        owners = (await conn.execute(select(distinct(c.conductor_id)).where(
            c.conductor_id.is_not(None), c.deleted == false(), c.vm_state == VmState.BUILDING,
            c.task_state == TaskState.SCHEDULING))).scalars().all()
    absent: set[str] = set()
    for host in hosts:
        if not env.host_alive(host):
            absent.add(COMPUTE_PREFIX + host)
            if COMPUTE_PREFIX + host in suspects:
                await host_lost(env, host)
    dead = [o for o in owners if o != env.conductor_id and not env.service.view.alive(o)]
    absent.update(dead)
    await orphaned_builds(env, [o for o in dead if o in suspects])
    return absent


def compute_hosts(members: Iterable[Any]) -> set[str]:
    """Hosts with a live compute member, from DirectoryView members."""
    return {t[len(COMPUTE_PREFIX):] for m in members for t in m.topics if t.startswith(COMPUTE_PREFIX)}
