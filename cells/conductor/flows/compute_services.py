"""Nova's os-services writes for the cell's compute hosts (issue 16): disable/enable with a reason,
forced_down, delete. The state lives in the cell DB (cells/db/hosts.py host_marks), where the scheduler
reads it in the placement's own transaction: a disabled, forced-down or deleted host gets nothing new.
forced_down is the operator's word that the host is dead (cells/rpc/liveness.py): its servers may be
evacuated at once, as `cellctl host down` does.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, delete, false, func, select

from cells import errors
from cells.conductor.env import FlowEnv
from cells.context import RequestContext
from cells.db import hosts as hdb
from cells.db.schema import claims, compute_nodes, instances
from cells.rpcapi.compute import topic as compute_topic

LOG = logging.getLogger(__name__)
REASON_MAX = 255  # Nova's disabled_reason column
UPDATE_KEYS: dict[str, tuple[type, ...]] = {"disabled": (bool,), "disabled_reason": (str, type(None)),
                                            "forced_down": (bool,)}


def _admin(ctx: RequestContext, action: str) -> None:
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden(f"Policy doesn't allow os_compute_api:os-services:{action} to be performed.")


def _known(conn: Connection, host: str, cell_hosts: set[str]) -> bool:
    known = set(conn.execute(select(compute_nodes.c.host)).scalars())
    return host in cell_hosts | known


async def service_list(env: FlowEnv, ctx: RequestContext) -> dict[str, dict[str, Any]]:
    """host -> {disabled, disabled_reason, forced_down, deleted, updated_at, state} for every host the cell
    DB holds a mark for (a host without one is enabled and not forced down)."""
    _admin(ctx, "list")
    marks = await env.db.read(hdb.service_marks)
    return {host: {**mark, "state": env.host_state(host)} for host, mark in marks.items()}


def _checked_update(values: Any) -> dict[str, Any]:
    if not isinstance(values, dict) or not values or set(values) - set(UPDATE_KEYS):
        raise errors.Invalid(reason=f"values must map some of {', '.join(sorted(UPDATE_KEYS))}")
    for key, value in values.items():
        if not isinstance(value, UPDATE_KEYS[key]):
            raise errors.Invalid(reason=f"{key} has the wrong type: {type(value).__name__}")
    reason = values.get("disabled_reason")
    if isinstance(reason, str) and not 1 <= len(reason) <= REASON_MAX:
        raise errors.Invalid(reason=f"disabled_reason must be 1 to {REASON_MAX} characters")
    out = dict(values)
    if out.get("disabled") is False:
        out["disabled_reason"] = None  # Nova clears the reason on enable
    return out


async def service_update(env: FlowEnv, ctx: RequestContext, host: Any, values: Any,
                         cell_hosts: set[str]) -> dict[str, Any]:
    """Set the host's compute service disabled (with a reason) or enabled, forced down or not; its marks
    after it. 404 for a host the cell does not have."""
    _admin(ctx, "update")
    if not isinstance(host, str) or not host:
        raise errors.Invalid(reason="host must be a host name")
    checked = _checked_update(values)

    def write(conn: Connection) -> dict[str, Any]:
        if not _known(conn, host, cell_hosts):
            raise errors.NotFound(f"Compute host {host} could not be found.", host=host)
        hdb.set_service(conn, host, checked)
        return hdb.service_marks(conn)[host]
    mark = await env.db.write(write)
    if "forced_down" in checked:  # this conductor at once; the others on their next read of the marks
        (env.liveness.forced_down.add if checked["forced_down"] else env.liveness.forced_down.discard)(host)
    LOG.warning("compute service of host %s updated: %s", host, checked)
    return {**mark, "state": env.host_state(host)}


async def service_delete(env: FlowEnv, ctx: RequestContext, host: Any, cell_hosts: set[str]) -> None:
    """Forget the host's compute service: its node record and marks go, and it is hidden (and given
    nothing) until its compute reports again, as Nova re-creates a service that starts. 409 while the
    host holds servers or claims (Nova's), or while its compute still runs (it would be back in a second)."""
    _admin(ctx, "delete")
    if not isinstance(host, str) or not host:
        raise errors.Invalid(reason="host must be a host name")
    if env.service.view.members(compute_topic(host)):
        raise errors.Conflict(f"Compute service on host {host} is still running: stop it before deleting it.")

    def write(conn: Connection) -> None:
        if not _known(conn, host, cell_hosts):
            raise errors.NotFound(f"Compute host {host} could not be found.", host=host)
        held = conn.execute(select(func.count()).select_from(instances).where(
            instances.c.host == host, instances.c.deleted == false())).scalar_one()
        held += conn.execute(select(func.count()).select_from(claims).where(claims.c.host == host)).scalar_one()
        if held:
            raise errors.Conflict("Unable to delete compute service that is hosting instances. "
                                  "Migrate or delete the instances first.")
        conn.execute(delete(compute_nodes).where(compute_nodes.c.host == host))
        hdb.mark_deleted(conn, host)
    await env.db.write(write)
    env.liveness.forced_down.discard(host)
    LOG.warning("compute service of host %s deleted", host)
