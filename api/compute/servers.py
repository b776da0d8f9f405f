"""/compute/v2.1/servers: create, list (scatter-gather over cells), show, delete: HTTP over the compute
service (api/compute/service.py).

One server is routed by its instance mapping to its cell's conductor. The
mapping is also the project check: another project's server is a 404, never
a 403, so ids cannot be probed.
"""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from api.compute import actions, down_cells, mappings, security_groups, service, volume_attachments
from api.compute.server_create import BootRequest, server_admin_pass
from api.compute.views import record_status, server_brief, server_created, server_detail, vm_states_for
from api.http import context, json_body, parse_bool, query_int
from api.keys import CLUSTER, DB, ENGINE, ROUTER, public_url
from api.timeutil import parse
from cells import errors, linear_regex
from cells.context import RequestContext

MAX_LIMIT = 1000
# Nova sort key -> instance record field (cells/objects/instance.py)
SORT_KEYS = {"created_at": "created_at", "updated_at": "updated_at", "display_name": "name", "uuid": "uuid",
             "launched_at": "launched_at", "terminated_at": "terminated_at", "vm_state": "vm_state",
             "task_state": "task_state", "power_state": "power_state", "host": "host", "key_name": "key_name",
             "project_id": "project_id", "user_id": "user_id", "availability_zone": "availability_zone",
             "hostname": "name"}


async def _record(request: web.Request, ctx: RequestContext, server_id: str, view: bool = False) -> dict[str, Any]:
    """The live record of a server the caller may see; 404 for everything else. `view`: with the
    server view's volumes and security groups, in the same conductor call where it speaks RPC 1.2."""
    db = request.config_dict[DB]
    mapping = await mappings.get(db, ctx, server_id)
    conductor = request.config_dict[ROUTER].conductor(mapping.cell_path)
    try:
        if view:
            try:  # every poll of a booting server is one: one call and one read instead of three
                record = await conductor.instance_show(ctx, mapping.instance_uuid,
                                                       security_groups.has_network(request, mapping.cell_path))
            # a conductor of an older release: show() asks for the rest apart (UnknownMethod: a nested cell's
            # conductor, reached through its routers, whose release the API cannot see beforehand)
            except (errors.UnsupportedVersion, errors.UnknownMethod):
                record = await conductor.instance_get(ctx, mapping.instance_uuid)
        else:
            record = await conductor.instance_get(ctx, mapping.instance_uuid)
    except errors.InstanceNotFound:
        record = None
    if record is None or record.get("deleted"):
        await mappings.remove(db, [mapping.instance_uuid])  # gone from its cell: the mapping points nowhere
        raise errors.InstanceNotFound(instance_id=server_id)
    if not ctx.is_admin and record.get("project_id") != ctx.project:
        raise errors.InstanceNotFound(instance_id=server_id)
    mappings.recount_if_stale(db, mapping, record)
    return record


async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await json_body(request)
    uuids = await service.create(service.ComputeContext.of(request), ctx, BootRequest.from_nova(body))
    admin_pass = server_admin_pass(body["server"])
    base = public_url(request)
    return web.json_response(server_created(base, uuids[0], admin_pass, body["server"].get("security_groups")),
                             status=202,
                             headers={"Location": f"{base}/compute/v2.1/servers/{uuids[0]}"})


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    try:
        record = await _record(request, ctx, request.match_info["server_id"], view=True)
    except errors.RpcError:  # its cell is down: what the mapping knows, status UNKNOWN
        mapping = await mappings.get(request.config_dict[DB], ctx, request.match_info["server_id"])
        return web.json_response({"server": down_cells.detail(public_url(request), down_cells.record(mapping))})
    if "volumes_attached" not in record:  # from a conductor without instance_show
        await asyncio.gather(volume_attachments.add_volume_ids(request, ctx, [record]),
                             security_groups.add_group_names(request, ctx, [record]))
    return web.json_response({"server": server_detail(public_url(request), record, ctx.is_admin)})


async def delete(request: web.Request) -> web.Response:
    await service.delete(service.ComputeContext.of(request), context(request), request.match_info["server_id"])
    return web.Response(status=204)


def _sort(query: Any) -> tuple[list[str], list[str]]:
    """Nova's sort params, made explicit and total (as the cell DB completes them:
    missing directions take the first one, then created_at and uuid), so every
    cell and the merge here order records the same way."""
    keys = [k.strip() for k in query.getall("sort_key", [])]
    dirs = [d.strip().lower() for d in query.getall("sort_dir", [])]
    if keys and len(dirs) > len(keys):
        raise errors.Invalid("there are more sort directions than sort keys")
    for d in dirs:
        if d not in ("asc", "desc"):
            raise errors.Invalid(f"Invalid sort direction {d}")
    default_dir = dirs[0] if dirs else "desc"
    pairs: dict[str, str] = {}
    for i, k in enumerate(keys):
        if k not in SORT_KEYS:
            raise errors.Invalid(f"Invalid sort key {k}")
        pairs.setdefault(SORT_KEYS[k], dirs[i] if i < len(dirs) else default_dir)
    for k in ("created_at", "uuid"):
        pairs.setdefault(k, default_dir)
    return list(pairs), list(pairs.values())


def _all_tenants(query: Any) -> bool:
    """Nova's is_all_tenants: absent is off, an empty value on, else a strict boolean."""
    if "all_tenants" not in query:
        return False
    if not query["all_tenants"]:
        return True
    value = parse_bool(query["all_tenants"])
    if value is None:
        raise errors.Invalid(f"Invalid value '{query['all_tenants']}' for all_tenants")
    return value


def _filters(ctx: RequestContext, query: Any) -> tuple[dict[str, Any], list[str] | None]:
    """Conductor filters for a listing, and the statuses to keep (None: any)."""
    filters: dict[str, Any] = {"deleted": False}
    all_tenants = _all_tenants(query)
    if all_tenants and not ctx.is_admin:
        raise errors.Forbidden("Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed.")
    if not all_tenants:
        filters["project_id"] = ctx.project
    elif query.get("project_id") or query.get("tenant_id"):
        filters["project_id"] = query.get("project_id") or query.get("tenant_id")
    if "name" in query:
        name_pattern(query["name"])
        filters["name"] = query["name"]  # a regular expression, as Nova
    statuses = query.getall("status", []) or None
    if statuses:
        filters["vm_state"] = vm_states_for(statuses)
    if "changes-since" in query:
        try:
            since = parse(query["changes-since"])
        except ValueError:
            raise errors.Invalid(f"Invalid filter field: changes-since. Value: {query['changes-since']}") from None
        filters["changes_since"] = since.isoformat(timespec="microseconds") + "Z" if since else None
        del filters["deleted"]  # Nova: changes-since shows deleted servers too
    if "host" in query and ctx.is_admin:
        filters["host"] = query["host"]
    # flavor: a flavor id; image: an image id or its href (Nova matches the id at the end)
    if query.get("flavor"):
        filters["flavor_id"] = query.getall("flavor")[-1]
    if query.get("image"):
        filters["image_id"] = query.getall("image")[-1].rstrip("/").rsplit("/", 1)[-1]
    return filters, statuses


def name_pattern(pattern: str) -> linear_regex.LinearRegex:
    """The name filter, compiled for a search in time linear in the name (cells/linear_regex.py):
    Python's re would let one pattern like (a+)+$ hold the event loop for seconds. 400 outside that subset."""
    try:
        return linear_regex.compile_pattern(pattern)
    except linear_regex.PatternError as exc:
        raise errors.Invalid(f"Invalid regular expression for name filter: {exc}") from None


def _name_ok(record: dict[str, Any], filters: dict[str, Any]) -> bool:
    return "name" not in filters or name_pattern(filters["name"]).search(record.get("name") or "")


def _keep(record: dict[str, Any], filters: dict[str, Any], statuses: list[str] | None) -> bool:
    """The API re-checks what isolation and correctness depend on, whatever a cell did with the filters."""
    if "project_id" in filters and record.get("project_id") != filters["project_id"]:
        return False
    if filters.get("deleted") is False and record.get("deleted"):
        return False
    if record.get("down"):  # from a down cell's mappings: its status is UNKNOWN
        return not statuses and _name_ok(record, filters)
    if statuses and record_status(record) not in {s.upper() for s in statuses}:
        return False
    for key, field in (("flavor_id", "flavor"), ("image_id", "image")):
        if key in filters and (record.get(field) or {}).get("id") != filters[key]:
            return False
    return _name_ok(record, filters)


async def _kept(records: list[dict[str, Any]], filters: dict[str, Any],
                statuses: list[str] | None) -> list[dict[str, Any]]:
    def keep() -> list[dict[str, Any]]:
        return [r for r in records if _keep(r, filters, statuses)]
    # a name search over a page (up to 1000 names of up to 255 characters) runs off the event loop
    return await asyncio.to_thread(keep) if "name" in filters and records else keep()


async def _list(request: web.Request, detail: bool) -> web.Response:
    ctx, query = context(request), request.query
    filters, statuses = _filters(ctx, query)
    sort_keys, sort_dirs = _sort(query)
    limit = min(query_int(query, "limit", MAX_LIMIT) or 0, MAX_LIMIT)
    marker = None
    if "marker" in query:
        try:
            marker = await _record(request, ctx, query["marker"])
        except errors.InstanceNotFound:
            raise errors.MarkerNotFound(marker=query["marker"]) from None
        except errors.RpcError:  # the marker's cell is down: its mapping still gives its sort position
            marker = down_cells.record(await mappings.get(request.config_dict[DB], ctx, query["marker"]))
    router, engine = request.config_dict[ROUTER], request.config_dict[ENGINE]
    records = [] if statuses and not filters.get("vm_state") else await router.list_instances(
        ctx, filters, sort_keys, sort_dirs, limit, marker, bound=request.config_dict[CLUSTER].list_bound,
        down_records=lambda paths: down_cells.records(engine, paths, filters))
    records = await _kept(records, filters, statuses)
    if detail:
        await asyncio.gather(volume_attachments.add_volume_ids(request, ctx, records),
                             security_groups.add_group_names(request, ctx, records))
    base = public_url(request)
    body: dict[str, Any] = {"servers": [
        (down_cells.detail(base, r) if detail else down_cells.brief(base, r)) if r.get("down")
        else server_detail(base, r, ctx.is_admin) if detail else server_brief(base, r) for r in records]}
    if records and len(records) == limit:
        params = [(k, v) for k, v in query.items() if k != "marker"] + [("marker", records[-1]["uuid"])]
        path = "servers/detail" if detail else "servers"
        body["servers_links"] = [{"rel": "next", "href": f"{base}/compute/v2.1/{path}?{urlencode(params)}"}]
    return web.json_response(body)


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers", index)
    app.router.add_post("/v2.1/servers", create)
    app.router.add_get("/v2.1/servers/detail", detail)
    app.router.add_get("/v2.1/servers/{server_id}", show)
    app.router.add_delete("/v2.1/servers/{server_id}", delete)
    actions.add_routes(app)  # POST /servers/{id}/action: api/compute/actions.py
    volume_attachments.add_routes(app)  # /servers/{id}/os-volume_attachments: api/compute/volume_attachments.py
