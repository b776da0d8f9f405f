"""Nova's network admin actions on a server, as its libvirt driver has them (admins only, 202):

    POST /servers/{id}/action {"injectNetworkInfo": null}
    POST /servers/{id}/action {"resetNetwork": null}

Nova's libvirt driver injects nothing into a guest (its inject_network_info only refreshes the API's network
info cache) and resetNetwork was XenAPI's alone; Cellcloud keeps no network info cache (a server's addresses
are its ports, read live), so both answer 202 once the server is found (404 otherwise) and change nothing.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import service
from api.http import authorize
from api.validation import validate
from cells.context import RequestContext

ACTIONS = {"injectNetworkInfo": "inject_network_info", "resetNetwork": "reset_network"}
_NULL_OR_EMPTY = {"type": ["null", "object"], "properties": {}, "additionalProperties": False}


async def admin_action(request: web.Request, ctx: RequestContext, server_id: str, name: str, spec: Any) -> web.Response:
    authorize(request, f"os_compute_api:os-admin-actions:{ACTIONS[name]}")
    validate(_NULL_OR_EMPTY, spec, name)
    await service.get(service.ComputeContext.of(request), ctx, server_id)  # 404 for a server that is not there
    return web.Response(status=202)
