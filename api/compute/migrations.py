"""/compute/v2.1/os-migrations and /servers/{id}/migrations: Nova's migration records, admins only (403).

    GET /os-migrations[?host=&status=&instance_uuid=&migration_type=&source_compute=]
        every cell's resizes, cold migrations and evacuations, newest first (all cells at once; a silent
        cell left out, logged); `migration_type` and links from 2.23, `uuid` from 2.59, project and user
        from 2.80 (the server's mapping)
    GET /servers/{id}/migrations   (2.23) the server's live migrations in progress: none, as Cellcloud
        does not live-migrate; 404 for a server that is not there

The integer `id` Nova shows is derived from the migration's uuid (stable, not a row number).
"""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

from aiohttp import web

from api.compute import mappings
from api.compute.microversions import version_of
from api.http import authorize
from api.keys import DB, ROUTER
from api.scatter import answered, scatter
from api.timeutil import iso_naive_micro
from cells import errors
from cells.context import RequestContext
from cells.rpcapi.conductor import ConductorAPI

TYPE_VERSION, UUID_VERSION, OWNER_VERSION = (2, 23), (2, 59), (2, 80)
QUERY = {"host": "host", "status": "status", "instance_uuid": "instance_uuid", "migration_type": "migration_type",
         "source_compute": "source_host"}


def _flavor_id(flavor: Any) -> int:
    ident = str((flavor or {}).get("id") or "")
    return int(ident) if ident.isdigit() else 0


def view(mig: dict[str, Any], version: tuple[int, int], owner: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": uuidlib.UUID(str(mig["uuid"])).int % (2 ** 31 - 1) + 1, "status": mig["status"],
        "instance_uuid": mig["instance_uuid"], "source_compute": mig.get("source_host"),
        "source_node": mig.get("source_host"), "dest_compute": mig.get("dest_host"),
        "dest_node": mig.get("dest_host"), "dest_host": mig.get("dest_host"),
        "old_instance_type_id": _flavor_id(mig.get("old_flavor")),
        "new_instance_type_id": _flavor_id(mig.get("new_flavor")),
        "created_at": iso_naive_micro(mig.get("created_at")), "updated_at": iso_naive_micro(mig.get("updated_at"))}
    if version >= TYPE_VERSION:
        out["migration_type"] = mig["migration_type"]
    if version >= UUID_VERSION:
        out["uuid"] = mig["uuid"]
    if version >= OWNER_VERSION:
        out["project_id"] = getattr(owner, "project_id", None)
        out["user_id"] = getattr(owner, "user_id", None)
    return out


async def index(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-migrations:index")
    filters = {field: request.query[key] for key, field in QUERY.items() if request.query.get(key)}
    router = request.config_dict[ROUTER]

    async def one(cell: Any, bounded: RequestContext) -> list[dict[str, Any]]:
        return await ConductorAPI(cell).migration_list(bounded, filters)
    found = answered(await scatter(list(router.cells.values()), ctx, router.bound, one), "the migrations")
    migs = sorted((m for _, ms in found for m in ms), key=lambda m: (m["created_at"], m["uuid"]), reverse=True)
    version = version_of(request)
    owners: dict[str, Any] = {}
    if version >= OWNER_VERSION:
        for mig in migs:
            if mig["instance_uuid"] not in owners:
                try:
                    owners[mig["instance_uuid"]] = await mappings.get(request.config_dict[DB], ctx, mig["instance_uuid"])
                except errors.InstanceNotFound:  # deleted since: no owner to show
                    owners[mig["instance_uuid"]] = None
    return web.json_response({"migrations": [view(m, version, owners.get(m["instance_uuid"])) for m in migs]})


async def of_server(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:servers:migrations:index")
    if version_of(request) < TYPE_VERSION:
        raise errors.NotFound("The resource could not be found.")
    await mappings.get(request.config_dict[DB], ctx, request.match_info["server_id"])  # 404 for no such server
    return web.json_response({"migrations": []})  # no live migration is ever in progress here


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-migrations", index)
    app.router.add_get("/v2.1/servers/{server_id}/migrations", of_server)
