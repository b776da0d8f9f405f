"""PUT /volume/v3/{project_id}/os-services/{action}: Cinder's service actions on a cinder-volume (admins).

    enable              {"host", "binary"}                     200 {disabled, status, host, service, binary, disabled_reason}
    disable             {"host", "binary"}                     200 {disabled, status, host, service, binary}
    disable-log-reason  {"host", "binary", "disabled_reason"}  200, as enable (a reason is required: 400)
    freeze / thaw       {"host"}                               200

A cinder-volume is a volume host (`node1` or `node1@file`, as os-services lists it); its state is kept by its
cell (volume_nodes) and the cell's placement gives a disabled or frozen host no new volume; what it holds
stays served (attach, detach, snapshots, delete), so freeze is no stronger than disable here. A cell's
cinder-scheduler (its conductor) cannot be disabled (400). An unknown binary or host is a 404 for enable and
disable, a 400 for freeze and thaw, as Cinder.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from api.http import context, json_body
from api.keys import ROUTER
from api.volume import cells
from cells import errors

BINARIES = ("cinder-volume", "cinder-scheduler")


def _host(raw: Any) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= 255:
        raise errors.Invalid("Invalid input received: host must be a string of 1 to 255 characters")
    return raw.partition("@")[0]  # node1@file -> node1: a volume host has one backend


def _reason(body: Mapping[str, Any]) -> str:
    reason = body.get("disabled_reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 255:
        raise errors.Invalid("Invalid input received: disabled_reason must be a string of 1 to 255 characters")
    return reason


async def action(request: web.Request) -> web.Response:
    ctx = context(request)
    name = request.match_info["action"]
    body = await json_body(request)
    if not isinstance(body, Mapping):
        raise errors.Invalid("Malformed request body.")
    router = request.config_dict[ROUTER]
    if name in ("freeze", "thaw"):
        host = _host(body.get("host"))
        try:
            await cells.set_volume_host(router, ctx, host, {"frozen": name == "freeze"})
        except errors.NotFound:
            raise errors.Invalid(f"Invalid input received: no cinder-volume on host {body.get('host')}") from None
        return web.Response(status=200)
    if name not in ("enable", "disable", "disable-log-reason"):
        raise errors.NotFound(f"Unknown action {name}")
    values: dict[str, Any] = {"disabled": name != "enable", "disabled_reason": None}
    if name == "disable-log-reason":
        values["disabled_reason"] = _reason(body)
    host, binary = _host(body.get("host")), body.get("binary")
    if binary not in BINARIES:
        raise errors.NotFound(f"Service {binary} could not be found.")
    if binary == "cinder-scheduler":
        if body.get("host") not in router.cells:  # a cinder-scheduler is a cell's conductor, named by its path
            raise errors.NotFound(f"Service cinder-scheduler on host {body.get('host')} could not be found.")
        raise errors.Invalid("Invalid input received: a cell's cinder-scheduler (its conductor) cannot be disabled "
                             "here; disable its cinder-volume hosts")
    changed = await cells.set_volume_host(router, ctx, host, values)
    out = {"disabled": changed["disabled"], "status": "disabled" if changed["disabled"] else "enabled",
           "host": body["host"], "service": binary, "binary": binary}
    if name != "disable":
        out["disabled_reason"] = changed["disabled_reason"]
    return web.json_response(out)


def add_routes(app: web.Application) -> None:
    app.router.add_put("/v3/{project_id}/os-services/{action}", action)
