"""os-server-password (Nova's): the password a server's guest posted to the metadata service, encrypted by
the guest with the server's key pair (cells/conductor/flows/server_password.py keeps it in the cell).

    GET    /v2.1/servers/{id}/os-server-password   200 {"password": ...} ('' when none)
    DELETE /v2.1/servers/{id}/os-server-password   204; none again (the guest may post a new one)
"""
from __future__ import annotations

from aiohttp import web

from api.compute import mappings, service
from api.http import context


async def show(request: web.Request) -> web.Response:
    cc, ctx = service.ComputeContext.of(request), context(request)
    mapping = await mappings.get(cc.db, ctx, request.match_info["server_id"])  # 404 for one the caller may not see
    password = await cc.router.conductor(mapping.cell_path).password_get(ctx, str(mapping.instance_uuid))
    return web.json_response({"password": password})


async def clear(request: web.Request) -> web.Response:
    cc, ctx = service.ComputeContext.of(request), context(request)
    mapping = await mappings.get(cc.db, ctx, request.match_info["server_id"])
    await cc.router.conductor(mapping.cell_path).password_clear(ctx, str(mapping.instance_uuid))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers/{server_id}/os-server-password", show)
    app.router.add_delete("/v2.1/servers/{server_id}/os-server-password", clear)
