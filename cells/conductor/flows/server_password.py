"""os-server-password (Nova's): the password a guest posts once to the metadata service, encrypted by the
guest with the server's key pair (this cloud never sees it in clear), read and cleared by the server's
users through the API.

    password_get    the server's password, '' when none (the API's GET: any reader of the server)
    password_clear  none again (the API's DELETE; a guest may then post a new one)
    password_post   the metadata service on the network's host: the guest that sent it (its network and
                    source address, as instance_for_metadata) stores it, once (409 when one is kept), at
                    most 256 characters (400: Nova's metadata limit)
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from cells import errors
from cells.conductor.env import FlowEnv
from cells.conductor.flows.delete import visible
from cells.conductor.flows.lookups import by_port_address
from cells.context import RequestContext
from cells.db import instances as idb
from cells.objects.instance import utcnow_iso

MAX_SIZE = 256  # Nova's metadata password handler refuses more


def _row(conn: Connection, ctx: RequestContext, uuid: str, lock: bool) -> Any:
    row = idb.get_row(conn, uuid, lock=lock)
    if row is None or row.deleted or not visible(ctx, row):
        raise errors.InstanceNotFound(instance_id=uuid)
    return row


async def password_get(env: FlowEnv, ctx: RequestContext, uuid: str) -> str:
    row = await env.db.read(lambda conn: _row(conn, ctx, uuid, lock=False))
    return str(row.password or "")


def _clear(conn: Connection, ctx: RequestContext, uuid: str) -> None:
    _row(conn, ctx, uuid, lock=True)
    idb.update_row(conn, uuid, {"password": None, "updated_at": utcnow_iso()})


async def password_clear(env: FlowEnv, ctx: RequestContext, uuid: str) -> None:
    await env.db.write(lambda conn: _clear(conn, ctx, uuid))


def _post(conn: Connection, network_id: str, address: str, password: str) -> str:
    found = by_port_address(conn, network_id, address)
    if found is None:
        raise errors.InstanceNotFound(instance_id=address)
    row = idb.get_row(conn, str(found.uuid), lock=True)  # the check and the write in one locked unit
    if row is None or row.deleted:
        raise errors.InstanceNotFound(instance_id=address)
    if row.password:
        raise errors.Conflict(reason=f"Instance {row.uuid} has a password already: clear it first")
    idb.update_row(conn, str(row.uuid), {"password": password, "updated_at": utcnow_iso()})
    return str(row.uuid)


async def password_post(env: FlowEnv, ctx: RequestContext, network_id: Any, address: Any, password: Any) -> str:
    """Store the guest's password; the server's uuid."""
    if not (ctx.is_admin or "service" in ctx.roles):
        raise errors.Forbidden()
    if not isinstance(network_id, str) or not network_id or not isinstance(address, str) or not address:
        raise errors.Invalid(reason="network_id and address must be non-empty strings")
    if not isinstance(password, str) or not password:
        raise errors.Invalid(reason="password must be a non-empty string")
    if len(password) > MAX_SIZE:
        raise errors.Invalid(reason=f"Request is too large: a password has at most {MAX_SIZE} characters")
    return await env.db.write(lambda conn: _post(conn, network_id, address, password))
