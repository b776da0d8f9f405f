"""os-interface (issue 16): attach a port to a server, or detach one, on its host.

    attach   validate -> check (visible, unlocked, active/stopped/paused without a task, on a host) ->
             network controller: the port joins the instance, bound to its host, addresses updated ->
             compute: its tap made, its <interface> plugged into the guest (test hypervisor: the definition)
             -> the attach_interface action recorded. A compute that fails takes the port back out.
    detach   validate -> check -> compute: the guest lets go of the interface -> network controller: the
             port leaves (deleted if it was made for the server, else kept, as Nova) -> detach_interface
             action recorded.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import select

from cells import errors, lifecycle
from cells.conductor.env import FlowEnv
from cells.conductor.flows import delete
from cells.context import RequestContext
from cells.db import action_records
from cells.db import instances as idb
from cells.db.fast import AnyRow
from cells.network.instance_ports import DEVICE_OWNER, tap_name
from cells.network.schema import ports
from cells.objects.instance import VmState
from cells.rpcapi.compute import ComputeAPI
from cells.rpcapi.network import NetworkAPI

LOG = logging.getLogger(__name__)
STATES = (VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED)
_UUID = re.compile(r"^[0-9a-fA-F-]{32,36}$")


def _id(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _UUID.match(value):
        raise errors.Invalid(reason=f"{what} must be a uuid")
    return value


async def _checked(env: FlowEnv, ctx: RequestContext, uuid: Any, action: str) -> AnyRow:
    if not isinstance(uuid, str):
        raise errors.Invalid(reason="instance uuid must be a string")
    row = await env.db.read(lambda conn: idb.get_row(conn, uuid))
    if row is None or row.deleted or not delete.visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    lifecycle.check_unlocked(row.locked_by, ctx.is_admin, uuid)
    if row.vm_state not in STATES or row.task_state is not None or row.host is None:
        attr, state = ("task_state", row.task_state) if row.task_state else ("vm_state", row.vm_state)
        raise errors.InstanceInvalidState(action=action, instance_id=uuid, attr=attr, state=state)
    return row


async def _record(env: FlowEnv, ctx: RequestContext, row: AnyRow, action: str) -> None:
    def write(conn: Any) -> None:
        action_records.start_action(conn, ctx, row.uuid, action, row.project_id)
        action_records.finish_action(conn, row.uuid, action)
    await env.db.write(write)


async def interface_attach(env: FlowEnv, ctx: RequestContext, uuid: Any, port_id: Any, net_id: Any,
                           port_quota: Any) -> dict[str, Any]:
    port, net = _id(port_id, "port_id"), _id(net_id, "net_id")
    if (port is None) == (net is None):
        raise errors.Invalid(reason="give one of port_id and net_id")
    if port_quota is not None and (not isinstance(port_quota, int) or isinstance(port_quota, bool)):
        raise errors.Invalid(reason="port_quota must be an integer")
    row = await _checked(env, ctx, uuid, "attach_interface")
    network = NetworkAPI(env.service)
    vif = await network.interface_attach(ctx, row.uuid, row.project_id, row.host, port, net, port_quota)
    try:
        await ComputeAPI(env.service).attach_interface(ctx, row.host, row.uuid, vif)
    except BaseException:
        LOG.warning("attaching port %s to %s failed on %s: taking it back", vif.get("port_id"), row.uuid, row.host)
        await network.interface_detach(ctx, row.uuid, str(vif["port_id"]))
        raise
    await _record(env, ctx, row, "attach_interface")
    return {"port_id": vif["port_id"]}


async def interface_detach(env: FlowEnv, ctx: RequestContext, uuid: Any, port_id: Any) -> None:
    port = _id(port_id, "port_id")
    row = await _checked(env, ctx, uuid, "detach_interface")
    found = await env.db.read(lambda conn: conn.execute(select(ports.c.id, ports.c.mac_address).where(
        ports.c.id == port, ports.c.device_id == row.uuid, ports.c.device_owner == DEVICE_OWNER)).first())
    if found is None:
        raise errors.PortNotFound(port_id=str(port))
    vif = {"port_id": found.id, "mac": found.mac_address, "tap": tap_name(found.id)}
    await ComputeAPI(env.service).detach_interface(ctx, row.host, row.uuid, vif)
    await NetworkAPI(env.service).interface_detach(ctx, row.uuid, found.id)
    await _record(env, ctx, row, "detach_interface")
