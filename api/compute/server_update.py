"""PUT /servers/{id} (rename, access IPs) and the server metadata resource (Nova 2.1): the
handlers parse and validate the body and render; api/compute/service.py (update, metadata,
change_metadata) locks the server in this API process, checks its state and quota and writes
through its cell's conductor.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from aiohttp import web

from api.compute import service
from api.compute.microversions import Microversion
from api.compute.schemas import DESCRIPTION, NAME, SERVER_CREATE, canonical_ip, hostname_schema
from api.compute.service import ComputeContext
from api.compute.views import server_updated
from api.http import allowed, context, json_body
from api.keys import public_url
from api.validation import validate
from cells import errors
from cells.objects.records import shown

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


class MetadataItemNotFound(errors.NotFound):
    code, msg = "metadata_item_not_found", "Metadata item was not found"


async def update_server(request: web.Request) -> web.Response:
    ctx, cc = context(request), ComputeContext.of(request)
    body = await json_body(request)
    validate(update_schema(cc.version), body)
    spec = body["server"]
    values = {k: v for k, v in (("name", spec.get("name")), ("access_ipv4", canonical_ip(spec.get("accessIPv4"))),
                                ("access_ipv6", canonical_ip(spec.get("accessIPv6")))) if v is not None}
    record = await service.update(cc, ctx, request.match_info["server_id"], values,
                                  {k: spec[k] for k in ("description", "hostname") if k in spec})  # 2.19, 2.90
    viewed = shown(record)
    await service.for_views(cc, ctx, [viewed], show=True)
    extended = allowed(request, "os_compute_api:os-extended-server-attributes")
    return web.json_response({"server": server_updated(public_url(request), viewed, extended, cc.version)})


async def _change_metadata(request: web.Request, change: Callable[[dict[str, str]], dict[str, str]]) -> dict[str, str]:
    return await service.change_metadata(ComputeContext.of(request), context(request), request.match_info["server_id"],
                                         change)


async def _metadata(request: web.Request) -> dict[str, str]:
    return await service.metadata(ComputeContext.of(request), context(request), request.match_info["server_id"])


async def metadata_index(request: web.Request) -> web.Response:
    return web.json_response({"metadata": await _metadata(request)})


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
    key = request.match_info["key"]
    meta = await _metadata(request)
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
