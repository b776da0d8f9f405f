"""GET /compute/v2.1/os-services: Nova's compute services, admins only (403), read-only.

Each cell's conductor (nova-conductor) and scheduler (nova-scheduler), zone `internal`, up while its cell's
directory lists them; each compute host (nova-compute), zone its site, up while its cell's conductor sees
it alive (cells/rpc/liveness.py). Filters `host` and `binary`, as Nova. Every service is enabled and not
forced down: disabling one, forcing one down (and the scheduler honouring it) is not served yet.
Ids are UUIDs from 2.53, integers before, stable for a service of a cell.
"""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

from aiohttp import web

from api.compute.availability_zones import host_states
from api.compute.microversions import version_of
from api.http import authorize
from api.keys import CLUSTER, ROUTER
from cells.rpc.liveness import ALIVE

UUID_VERSION = (2, 53)
BINARIES = {"conductor": "nova-conductor", "scheduler": "nova-scheduler", "compute": "nova-compute"}
_NAMESPACE = uuidlib.UUID("0b9d3c4e-58f1-4c7a-9e2b-7a61d5f0c3a2")  # Cellcloud's service ids


def _id(service_id: str, version: tuple[int, int]) -> str | int:
    ident = uuidlib.uuid5(_NAMESPACE, service_id)
    return str(ident) if version >= UUID_VERSION else ident.int % (2 ** 31 - 1) + 1


async def index(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-services:list")
    router, cluster, version = request.config_dict[ROUTER], request.config_dict[CLUSTER], version_of(request)
    cells = {c.path: c for c in cluster.cells}
    out: list[dict[str, Any]] = []
    for spec in cluster.services:
        binary = BINARIES.get(spec.kind)
        cell = cells.get(spec.cell or "")
        if binary is None or cell is None:
            continue
        if spec.kind == "compute":
            states = host_states(router, cell)
            up = states.get(spec.host) == ALIVE if states is not None else False
            zone = cell.site or cell.name
        else:
            try:
                view = router.cell(cell.path).view
                up = cell.parent is None and any(m.id == spec.id for m in view.members(spec.kind))
            except Exception:  # noqa: BLE001 - a cell this API process cannot see: down
                up = False
            zone = "internal"
        out.append({"id": _id(spec.id, version), "binary": binary, "host": spec.host, "zone": zone,
                    "status": "enabled", "state": "up" if up else "down", "updated_at": None,
                    "disabled_reason": None, "forced_down": False})
    for key in ("host", "binary"):
        if request.query.get(key):
            out = [s for s in out if s[key] == request.query[key]]
    return web.json_response({"services": out})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-services", index)
