"""/compute/v2.1/servers/{id}/os-instance-actions: what was done to a server, by whom, and how it went.

Nova 2.1: newest action first; the events of one action only for admins (the
default policy of os_compute_api:os-instance-actions:events), never tracebacks.
A deleted server is a 404 before 2.21; from 2.21 its actions stay readable while its cell keeps its row.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from api.compute import service
from api.http import allowed, context
from api.timeutil import iso_naive_micro
from cells import errors


class InstanceActionNotFound(errors.NotFound):
    code, msg = "instance_action_not_found", "Action for request_id {request_id} on instance {instance_uuid} not found"


def _action(a: dict[str, Any]) -> dict[str, Any]:
    return {"action": a["action"], "instance_uuid": a["instance_uuid"], "message": a.get("message"),
            "project_id": a.get("project_id"), "request_id": a.get("request_id"),
            "start_time": iso_naive_micro(a.get("start_time")), "user_id": a.get("user_id")}


def _event(e: dict[str, Any]) -> dict[str, Any]:
    return {"event": e["event"], "start_time": iso_naive_micro(e.get("start_time")),
            "finish_time": iso_naive_micro(e.get("finish_time")), "result": e.get("result")}


DELETED_VERSION = (2, 21)


async def _actions(request: web.Request) -> list[dict[str, Any]]:
    """Newest first; 404 when the server is not the caller's, or deleted before 2.21."""
    cc = service.ComputeContext.of(request)
    return await service.instance_actions(cc, context(request), request.match_info["server_id"],
                                          deleted=cc.at_least(*DELETED_VERSION))


async def index(request: web.Request) -> web.Response:
    return web.json_response({"instanceActions": [_action(a) for a in await _actions(request)]})


async def show(request: web.Request) -> web.Response:
    request_id = request.match_info["request_id"]
    found = [a for a in await _actions(request) if a.get("request_id") == request_id]
    if not found:
        raise InstanceActionNotFound(request_id=request_id, instance_uuid=request.match_info["server_id"])
    act = found[0]
    body = _action(act)
    if allowed(request, "os_compute_api:os-instance-actions:events"):
        body["events"] = [_event(e) for e in act.get("events") or []]
    return web.json_response({"instanceAction": body})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/servers/{server_id}/os-instance-actions", index)
    app.router.add_get("/v2.1/servers/{server_id}/os-instance-actions/{request_id}", show)
