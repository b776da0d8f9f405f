"""What a server view shows beyond the instance record, read from the cell DB for the API: each
server's attached volume ids (oldest attachment first) and its ports' security group names.
instance_show reads them for one server; instance_list_views (RPC 1.8, issue 21) for a detail
listing's page, in the same unit of work as the page's rows. Either way one query per kind for
the whole page, never one per server, and only for the rows the caller's scope returned."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row

from cells import errors
from cells.conductor.env import FlowEnv
from cells.context import RequestContext
from cells.db import instances as idb
from cells.db import volumes as vdb
from cells.network import instance_ports
from cells.objects.records import ShownInstance, shown

Views = tuple[dict[str, list[str]], dict[str, list[str]] | None]


def views_of(conn: Connection, ctx: RequestContext, uuids: Sequence[str], groups: bool) -> Views:
    """({uuid: volume ids}, {uuid: group names} or None without `groups`: a cell without a network
    controller has no ports). Group names are those `ctx` may see (instance_ports.group_names)."""
    attached = {u: [a.volume_id for a in atts] for u, atts in vdb.attachments_for_instances(conn, uuids).items()}
    return attached, instance_ports.group_names(conn, ctx, list(uuids)) if groups else None


def with_views(record: ShownInstance, views: Views) -> ShownInstance:
    attached, names = views
    record["volumes_attached"] = attached.get(record["uuid"], [])
    if names is not None:
        record["security_groups"] = names.get(record["uuid"], [])
    return record


def page_with_views(conn: Connection, ctx: RequestContext, filters: dict[str, Any], sort_keys: list[str] | None,
                    sort_dirs: list[str] | None, limit: int | None, marker: str | None,
                    scope: Iterable[ColumnElement[bool]], groups: bool) -> tuple[list[Row[Any]], Views]:
    """list_rows' page (the same filters, order and tenant `scope`) and the views of its rows only."""
    rows = idb.list_rows(conn, filters, sort_keys, sort_dirs, limit, marker, scope)
    return rows, views_of(conn, ctx, [r.uuid for r in rows], groups)


async def instance_list_views(env: FlowEnv, ctx: RequestContext, filters: dict[str, Any],
                              sort_keys: list[str] | None, sort_dirs: list[str] | None, limit: int | None,
                              marker: str | None, scope: Iterable[ColumnElement[bool]],
                              groups: bool) -> list[ShownInstance]:
    """instance_list's records, each with its view's "volumes_attached" and, with `groups`,
    "security_groups": a detail page in one call and one read unit of work."""
    if not isinstance(groups, bool):
        raise errors.Invalid(reason=f"groups must be true or false, not {groups!r}")
    rows, views = await env.db.read(
        lambda conn: page_with_views(conn, ctx, filters, sort_keys, sort_dirs, limit, marker, scope, groups))
    return [with_views(shown(env.record(r)), views) for r in rows]
