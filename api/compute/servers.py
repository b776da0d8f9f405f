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

from api.cell_router import is_down
from api.compute import (
    deferred_delete,
    down_cells,
    interfaces,
    mappings,
    security_groups,
    server_actions,
    service,
    volume_attachments,
)
from api.compute.microversions import version_of
from api.compute.server_create import BootRequest, server_admin_pass
from api.compute.views import basic_addresses, server_brief, server_created, server_detail, server_show, vm_states_for
from api.http import allowed, authorize, context, json_body, parse_bool, query_int
from api.keys import DB, public_url
from api.timeutil import parse
from cells import errors
from cells.context import RequestContext
from cells.db.instances import fixed_ip_matcher
from cells.objects.records import shown

MAX_LIMIT = 1000
# Nova sort key -> instance record field (cells/objects/instance.py)
SORT_KEYS = {"created_at": "created_at", "updated_at": "updated_at", "display_name": "name", "uuid": "uuid",
             "launched_at": "launched_at", "terminated_at": "terminated_at", "vm_state": "vm_state",
             "task_state": "task_state", "power_state": "power_state", "host": "host", "key_name": "key_name",
             "project_id": "project_id", "user_id": "user_id", "availability_zone": "availability_zone",
             "hostname": "name"}

# Nova's list query schema (query_params_v21 with its pagination and joined-table keys, 2.26 tags, 2.66
# changes-before, 2.73 locked): from 2.75 (additionalProperties false) any other key is a 400
QUERY_KEYS = frozenset({
    "user_id", "project_id", "tenant_id", "launch_index", "image_ref", "image", "kernel_id", "ramdisk_id",
    "hostname", "key_name", "power_state", "vm_state", "task_state", "host", "node", "flavor", "reservation_id",
    "launched_at", "terminated_at", "availability_zone", "name", "display_name", "description",
    "display_description", "locked_by", "uuid", "root_device_name", "config_drive", "access_ip_v4",
    "access_ip_v6", "auto_disk_config", "progress", "sort_key", "sort_dir", "all_tenants", "soft_deleted",
    "deleted", "status", "changes-since", "ip", "ip6", "created_at", "limit", "marker", "block_device_mapping",
    "services", "metadata", "system_metadata", "info_cache", "security_groups", "pci_devices"})
LATER_QUERY_KEYS = (((2, 26), ("tags", "tags-any", "not-tags", "not-tags-any")), ((2, 66), ("changes-before",)),
                    ((2, 73), ("locked",)))
STRICT_QUERY_VERSION = (2, 75)


def _check_query_keys(query: Any, version: tuple[int, int]) -> None:
    """From 2.75, Nova's 400 for a query key its list schema does not name (before, such keys are ignored)."""
    if version < STRICT_QUERY_VERSION:
        return
    known = QUERY_KEYS.union(*(keys for since, keys in LATER_QUERY_KEYS if version >= since))
    unknown = sorted(set(query) - known)
    if unknown:
        raise errors.Invalid(f"Invalid input for query parameters {unknown[0]}. Value: {query.get(unknown[0])}. "
                             f"Additional properties are not allowed ('{unknown[0]}' was unexpected)")


async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await json_body(request)
    cc = service.ComputeContext.of(request)
    boot = BootRequest.from_nova(body, cc.version)
    uuids = await service.create(cc, ctx, boot)
    if parse_bool(str(body["server"].get("return_reservation_id", False))):  # Nova: the reservation, not a server
        return web.json_response({"reservation_id": boot.reservation_id}, status=202)
    admin_pass = server_admin_pass(body["server"])
    base = public_url(request)
    return web.json_response(server_created(base, uuids[0], admin_pass, body["server"].get("security_groups")),
                             status=202,
                             headers={"Location": f"{base}/compute/v2.1/servers/{uuids[0]}"})


async def show(request: web.Request) -> web.Response:
    ctx, cc = context(request), service.ComputeContext.of(request)
    try:
        record = await service.show(cc, ctx, request.match_info["server_id"], view=True)
    except errors.RpcError:  # its cell is down: what the mapping knows, status UNKNOWN
        mapping = await mappings.get(request.config_dict[DB], ctx, request.match_info["server_id"])
        return web.json_response({"server": down_cells.shown(public_url(request), down_cells.record(mapping),
                                                                   cc.version)})
    if "volumes_attached" not in record:  # from a conductor without instance_show
        await asyncio.gather(volume_attachments.add_volume_ids(cc, ctx, [record]),
                             security_groups.add_group_names(cc, ctx, [record]))
    await service.for_views(cc, ctx, [record], show=True)
    return web.json_response({"server": server_show(public_url(request), record, allowed(request, "os_compute_api:os-extended-server-attributes"), cc.version)})


async def delete(request: web.Request) -> web.Response:
    await deferred_delete.delete(service.ComputeContext.of(request), context(request), request.match_info["server_id"])
    return web.Response(status=204)


async def ips_index(request: web.Request) -> web.Response:
    record = await service.show(service.ComputeContext.of(request), context(request), request.match_info["server_id"])
    return web.json_response({"addresses": basic_addresses(record)})


async def ips_show(request: web.Request) -> web.Response:
    record = await service.show(service.ComputeContext.of(request), context(request), request.match_info["server_id"])
    network = request.match_info["network"]
    addresses = basic_addresses(record)
    if network not in addresses:
        raise errors.NotFound("Instance is not a member of specified network")
    return web.json_response({network: addresses[network]})


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


def _filters(request: web.Request, ctx: RequestContext, query: Any) -> tuple[dict[str, Any], list[str] | None]:
    """Conductor filters for a listing, and the statuses to keep (None: any)."""
    filters: dict[str, Any] = {"deleted": False}
    all_tenants = _all_tenants(query)
    if all_tenants:
        authorize(request, "os_compute_api:servers:index:get_all_tenants")
    if not all_tenants:
        filters["project_id"] = ctx.project
    elif query.get("project_id") or query.get("tenant_id"):
        filters["project_id"] = query.get("project_id") or query.get("tenant_id")
    if "name" in query:
        service.name_pattern(query["name"])
        filters["name"] = query["name"]  # a regular expression, as Nova
    for key in ("ip", "ip6"):  # Nova's fixed-address filters (regular expressions), open to members too
        if key in query:
            filters[key] = query[key]
    fixed_ip_matcher(filters)  # a pattern outside the linear-time subset is a 400 before any cell is asked
    statuses = query.getall("status", []) or None
    if statuses and version_of(request) >= (2, 38):  # Nova 2.38: an unknown status is a 400, no longer []
        unknown = [s for s in statuses if not vm_states_for([s])]
        if unknown:
            raise errors.Invalid(f"Invalid status value: {unknown[0]}")
    if statuses:
        filters["vm_state"] = vm_states_for(statuses)
    if "changes-since" in query:
        try:
            since = parse(query["changes-since"])
        except ValueError:
            raise errors.Invalid(f"Invalid filter field: changes-since. Value: {query['changes-since']}") from None
        filters["changes_since"] = since.isoformat(timespec="microseconds") + "Z" if since else None
        del filters["deleted"]  # Nova: changes-since shows deleted servers too
    if "host" in query and allowed(request, "os_compute_api:servers:allow_all_filters"):
        filters["host"] = query["host"]
    # flavor: a flavor id; image: an image id or its href (Nova matches the id at the end)
    if query.get("flavor"):
        filters["flavor_id"] = query.getall("flavor")[-1]
    if query.get("image"):
        filters["image_id"] = query.getall("image")[-1].rstrip("/").rsplit("/", 1)[-1]
    return filters, statuses


async def _list(request: web.Request, detail: bool) -> web.Response:
    ctx, query = context(request), request.query
    _check_query_keys(query, version_of(request))
    filters, statuses = _filters(request, ctx, query)
    cc = service.ComputeContext.of(request)
    if query.get("reservation_id"):  # kept in the API's mappings, not the cells: the cells get its servers' ids
        filters["uuid"] = await mappings.of_reservation(cc.db, query["reservation_id"], filters.get("project_id"))
    sort_keys, sort_dirs = _sort(query)
    limit = min(query_int(query, "limit", MAX_LIMIT) or 0, MAX_LIMIT)
    records = await service.list_servers(cc, ctx, service.ServerQuery(
        filters, sort_keys, sort_dirs, limit, statuses, query.get("marker"), views=detail))
    if detail:  # records of conductors older than instance_list_views come without their volumes and groups
        bare = [r for r in records if "volumes_attached" not in r]
        await asyncio.gather(volume_attachments.add_volume_ids(cc, ctx, bare),
                             security_groups.add_group_names(cc, ctx, bare),
                             service.for_views(cc, ctx, records))
    base, extended = public_url(request), allowed(request, "os_compute_api:os-extended-server-attributes")
    body: dict[str, Any] = {"servers": [
        (down_cells.detail(base, r, cc.version) if detail else down_cells.brief(base, r, cc.version)) if is_down(r)
        else server_detail(base, shown(r), extended, cc.version) if detail else server_brief(base, r)
        for r in records]}
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
    app.router.add_get("/v2.1/servers/{server_id}/ips", ips_index)
    app.router.add_get("/v2.1/servers/{server_id}/ips/{network}", ips_show)
    server_actions.add_routes(app)  # POST /servers/{id}/action: api/compute/server_actions.py
    volume_attachments.add_routes(app)  # /servers/{id}/os-volume_attachments: api/compute/volume_attachments.py
    interfaces.add_routes(app)  # /servers/{id}/os-interface (read side): api/compute/interfaces.py
