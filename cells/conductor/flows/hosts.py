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

from sqlalchemy import Connection, false, or_, select

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


def _host_lost(conn: Connection, env: FlowEnv, host: str) -> tuple[int, int]:
    c = instances.c
    failed = deleted = 0
    for row in idb.rows_where(conn, c.host == host, c.deleted == false(),
                              or_(c.vm_state == VmState.BUILDING, c.task_state == TaskState.DELETING)):
        if row.task_state == TaskState.DELETING:
            complete_delete(conn, env, row)
            deleted += 1
        else:
            set_error(conn, row, actions.make_fault(HOST_LOST.format(host=host)), Event.HOST_LOST)
            failed += 1
    return failed, deleted


async def host_lost(env: FlowEnv, host: str) -> None:
    failed, deleted = await env.db.write(lambda conn: _host_lost(conn, env, host))
    if failed or deleted:
        LOG.warning("compute host %s lost: %d builds failed, %d deletes completed", host, failed, deleted)


def _orphaned(conn: Connection, owners: list[str]) -> int:
    c = instances.c
    rows = idb.rows_where(conn, c.conductor_id.in_(owners), c.deleted == false(),
                          c.vm_state == VmState.BUILDING, c.task_state == TaskState.SCHEDULING)
    for row in rows:
        set_error(conn, row, actions.make_fault(CONDUCTOR_LOST.format(owner=row.conductor_id)))
    return len(rows)


async def orphaned_builds(env: FlowEnv, owners: Iterable[str]) -> None:
    owners = list(owners)
    if not owners:
        return
    count = await env.db.write(lambda conn: _orphaned(conn, owners))
    if count:
        LOG.warning("%d builds orphaned by conductor(s) %s set to ERROR", count, owners)


def _unfinished(conn: Connection) -> tuple[list[str], list[str]]:
    """Hosts with builds or deletes in flight, and conductors with builds being scheduled."""
    c = instances.c
    hosts = conn.execute(select(c.host).distinct().where(
        c.host.is_not(None), c.deleted == false(),
        or_(c.vm_state == VmState.BUILDING, c.task_state == TaskState.DELETING))).scalars().all()
    owners = conn.execute(select(c.conductor_id).distinct().where(
        c.conductor_id.is_not(None), c.deleted == false(), c.vm_state == VmState.BUILDING,
        c.task_state == TaskState.SCHEDULING)).scalars().all()
    return [str(h) for h in hosts], [str(o) for o in owners]


async def sweep(env: FlowEnv, suspects: set[str]) -> set[str]:
    """Safety net behind the directory listener (missed events, conductor restarts):
    a host or conductor with unfinished work that is absent from the directory in two
    consecutive sweeps is handled as lost. Returns the names absent this time."""
    hosts, owners = await env.db.read(_unfinished)
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
