"""Boot step 3: ports and fixed IPs from the cell's network controller, between the
scheduler's choice and the cast to compute.

A cell whose cluster has no network controller boots guests without NICs (the
one-cell test clusters of other suites); a cell that has one waits a little for
it at start-up, and a build that cannot get an address ends in ERROR with the
controller's reason (IpAddressExhausted, NetworkNotFound, ...). Releasing runs
in the conductor's own unit of work that marks the instance deleted
(cells/network/instance_ports.release_instance), so an address can never outlive
its server.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select

from cells import errors
from cells.conductor.env import FlowEnv
from cells.context import RequestContext
from cells.db import action_records
from cells.db.schema import instances
from cells.objects.records import InstanceRecord
from cells.rpc.directory import MISSED_BEATS
from cells.rpcapi.network import NetworkAPI

LOG = logging.getLogger(__name__)
CONTROLLER_WAIT = 5.0


def has_network_controller(env: FlowEnv) -> bool:
    cluster = getattr(env.service, "cluster", None)
    services = getattr(cluster, "services", ())
    return any(s.kind == "network" and s.cell == env.cell for s in services)


async def _request_spec(env: FlowEnv, uuid: str) -> dict[str, Any]:
    row = await env.db.read(lambda conn: conn.execute(
        select(instances.c.request_spec).where(instances.c.uuid == uuid)).first())
    return dict(row.request_spec or {}) if row is not None else {}


async def allocate_for_build(env: FlowEnv, ctx: RequestContext, record: InstanceRecord,
                             request_spec: dict[str, Any] | None = None) -> InstanceRecord | None:
    """`record` with its addresses filled, or None when the build failed here (recorded as ERROR).
    `request_spec`: the build's, when the caller has it (else it is read from the row)."""
    if not has_network_controller(env):
        return record
    uuid = str(record["uuid"])
    spec = request_spec if request_spec is not None else await _request_spec(env, uuid)
    if spec.get("networks") == "none":  # Nova 2.37's networks: none (a server without ports)
        return record
    api = NetworkAPI(env.service)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + max(CONTROLLER_WAIT, MISSED_BEATS * env.service.view.interval)
    while True:
        try:
            addresses = await api.allocate_for_instance(ctx, uuid, str(record["project_id"]),
                                                        spec.get("requested_networks"), spec.get("security_groups"),
                                                        spec.get("port_quota"))
            return {**record, "addresses": addresses}
        except errors.NoLiveMember as exc:
            if loop.time() < give_up:
                await asyncio.sleep(env.service.view.interval / 4)
                continue
            failure: errors.CellcloudError = exc
        except errors.InstanceNotFound:
            LOG.info("instance %s deleted before its network was allocated", uuid)
            return None
        except errors.CellcloudError as exc:
            failure = exc
        break
    from cells.conductor.flows.boot import fail_builds  # boot imports this module

    LOG.warning("network allocation for %s failed: %s", uuid, failure.message)
    await fail_builds(env, [uuid], action_records.make_fault(f"Build of instance {uuid} aborted: {failure.message}"))
    return None
