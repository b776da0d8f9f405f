"""PUT /servers/{id} (rename, access IPs) and the server metadata resource (Nova 2.1).

validate -> lock (per server, in this API process) -> check (state, quota) ->
write through the cell conductor. A rename also renames the instance mapping,
which is what a listing shows while the server's cell is down.
"""
from __future__ import annotations

import asyncio
import copy
import functools
import weakref
from typing import Any

from aiohttp import web
from sqlalchemy import update

from api import quota
from api.compute import mappings
from api.compute.microversions import Microversion
from api.compute.schemas import DESCRIPTION, NAME, SERVER_CREATE, canonical_ip, hostname_schema
from api.compute.service import ComputeContext, for_views
from api.compute.views import server_updated
from api.db.schema import instance_mappings
from api.http import allowed, context, json_body
from api.keys import DB, ENGINE, ROUTER, public_url
from api.validation import validate
from cells import errors
from cells.context import RequestContext

_METADATA = SERVER_CREATE["properties"]["server"]["properties"]["metadata"]
@functools.cache
def update_schema(version: Microversion) -> dict[str, Any]:
    """Nova's PUT /servers/{id} body at `version`: 2.19 description, 2.90 hostname."""
    schema = copy.deepcopy(SERVER_UPDATE)
    if version >= (2, 19):
        schema["properties"]["server"]["properties"]["description"] = DESCRIPTION
    if version >= (2, 90):
        schema["properties"]["server"]["properties"]["hostname"] = hostname_schema(version)
    return schema


SERVER_UPDATE: dict[str, Any] = {
    "type": "object",
    "properties": {"server": {
        "type": "object",
        "properties": {"name": NAME, "accessIPv4": {"type": "string", "format": "ipv4"},
                       "accessIPv6": {"type": "string", "format": "ipv6"},
                       "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]}},
        "additionalProperties": False}},
    "required": ["server"],
    "additionalProperties": False,
}
METADATA_SET: dict[str, Any] = {"type": "object", "properties": {"metadata": _METADATA}, "required": ["metadata"],
                                "additionalProperties": False}
META_ITEM: dict[str, Any] = {"type": "object", "properties": {"meta": _METADATA}, "required": ["meta"],
                             "additionalProperties": False}
# Nova's check_instance_state for metadata changes
_METADATA_VM_STATES = ("active", "paused", "suspended", "stopped")
_LOCKS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


class MetadataItemNotFound(errors.NotFound):
    code, msg = "metadata_item_not_found", "Metadata item was not found"


def _lock(uuid: str) -> asyncio.Lock:
    lock = _LOCKS.get(uuid)
    if lock is None:
        lock = _LOCKS[uuid] = asyncio.Lock()
    return lock


async def _server(request: web.Request, ctx: RequestContext) -> tuple[Any, dict[str, Any]]:
    """(conductor, live record) of a server the caller may see; 404 otherwise."""
    mapping = await mappings.get(request.config_dict[DB], ctx, request.match_info["server_id"])
    conductor = request.config_dict[ROUTER].conductor(mapping.cell_path)
    record = await conductor.instance_get(ctx, mapping.instance_uuid)
    if record.get("deleted"):
        raise errors.InstanceNotFound(instance_id=mapping.instance_uuid)
    return conductor, record


async def update_server(request: web.Request) -> web.Response:
    ctx = context(request)
    cc = ComputeContext.of(request)
    body = await json_body(request)
    validate(update_schema(cc.version), body)
    spec = body["server"]
    values = {k: v for k, v in (("name", spec.get("name")), ("access_ipv4", canonical_ip(spec.get("accessIPv4"))),
                                ("access_ipv6", canonical_ip(spec.get("accessIPv6")))) if v is not None}
    conductor, record = await _server(request, ctx)
    if values:
        async with _lock(record["uuid"]):
            record = await conductor.instance_update(ctx, record["uuid"], values)
            if "name" in values:
                async with request.config_dict[ENGINE].begin() as conn:
                    await conn.execute(update(instance_mappings).where(
                        instance_mappings.c.instance_uuid == record["uuid"]).values(name=values["name"]))
    attributes = {k: spec[k] for k in ("description", "hostname") if k in spec}  # 2.19, 2.90
    if attributes:
        await mappings.set_attributes(cc.db, record["uuid"], attributes)
    await for_views(cc, ctx, [record], show=True)
    return web.json_response({"server": server_updated(public_url(request), record, allowed(request, "os_compute_api:os-extended-server-attributes"), cc.version)})


async def _change_metadata(request: web.Request, change: Any) -> dict[str, str]:
    """Apply change(old metadata) -> new metadata, under the server's lock, after the state and quota checks."""
    ctx = context(request)
    conductor, record = await _server(request, ctx)
    async with _lock(record["uuid"]):
        record = await conductor.instance_get(ctx, record["uuid"])  # fresh, now that we hold the lock
        if record.get("vm_state") not in _METADATA_VM_STATES or record.get("task_state") is not None:
            attr, state = ("vm_state", record.get("vm_state")) if record.get("vm_state") not in _METADATA_VM_STATES \
                else ("task_state", record.get("task_state"))
            raise errors.InstanceInvalidState(action="update metadata", instance_id=record["uuid"], attr=attr,
                                              state=state)
        new = change(dict(record.get("metadata") or {}))
        limits = await quota.limits(request.config_dict[ENGINE], str(record.get("project_id")))
        quota.check_metadata(limits, len(new))
        record = await conductor.instance_update(ctx, record["uuid"], {"metadata": new})
    return dict(record.get("metadata") or {})


async def metadata_index(request: web.Request) -> web.Response:
    _, record = await _server(request, context(request))
    return web.json_response({"metadata": dict(record.get("metadata") or {})})


async def metadata_merge(request: web.Request) -> web.Response:
    body = await json_body(request)
    validate(METADATA_SET, body)
    merged = await _change_metadata(request, lambda old: {**old, **body["metadata"]})
    return web.json_response({"metadata": merged})


async def metadata_replace(request: web.Request) -> web.Response:
    body = await json_body(request)
    validate(METADATA_SET, body)
    replaced = await _change_metadata(request, lambda old: dict(body["metadata"]))
    return web.json_response({"metadata": replaced})


async def metadata_show(request: web.Request) -> web.Response:
    _, record = await _server(request, context(request))
    key = request.match_info["key"]
    meta = record.get("metadata") or {}
    if key not in meta:
        raise MetadataItemNotFound()
    return web.json_response({"meta": {key: meta[key]}})


async def metadata_set_item(request: web.Request) -> web.Response:
    body = await json_body(request)
    validate(META_ITEM, body)
    if len(body["meta"]) != 1:  # Nova's schema: minProperties = maxProperties = 1
        raise errors.Invalid(f"Invalid input for field/attribute meta. Value: {body['meta']}. "
                             f"{body['meta']} has {'too many' if body['meta'] else 'not enough'} properties")
    key = request.match_info["key"]
    if key not in body["meta"]:
        raise errors.Invalid("Request body and URI mismatch")
    await _change_metadata(request, lambda old: {**old, key: body["meta"][key]})
    return web.json_response({"meta": {key: body["meta"][key]}})


async def metadata_delete_item(request: web.Request) -> web.Response:
    key = request.match_info["key"]

    def drop(old: dict[str, str]) -> dict[str, str]:
        if key not in old:
            raise MetadataItemNotFound()
        return {k: v for k, v in old.items() if k != key}

    await _change_metadata(request, drop)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_put("/v2.1/servers/{server_id}", update_server)
    app.router.add_get("/v2.1/servers/{server_id}/metadata", metadata_index)
    app.router.add_post("/v2.1/servers/{server_id}/metadata", metadata_merge)
    app.router.add_put("/v2.1/servers/{server_id}/metadata", metadata_replace)
    app.router.add_get("/v2.1/servers/{server_id}/metadata/{key}", metadata_show)
    app.router.add_put("/v2.1/servers/{server_id}/metadata/{key}", metadata_set_item)
    app.router.add_delete("/v2.1/servers/{server_id}/metadata/{key}", metadata_delete_item)
