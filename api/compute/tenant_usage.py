"""/compute/v2.1/os-simple-tenant-usage: Nova's usage report over a time window.

    GET /os-simple-tenant-usage?start=&end=[&detailed=1][&limit=&marker=]   admins: every project
    GET /os-simple-tenant-usage/{project_id}?start=&end=[&limit=&marker=]   a member: its own project

A server counts for the hours of the window it lived (from launched_at to terminated_at or the window's
end; deleted servers too, as Nova), times its flavor's vCPUs, RAM and disk. The servers come from every
cell at once (api/scatter.py; a silent cell fails the report: usage partly known is wrong usage). From
2.40 `limit` and `marker` page over the servers (by id) and a full page carries the next page's link.
start and end default to now, as Nova; start must come before end (400).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from api.compute.microversions import version_of
from api.http import authorize, query_int
from api.keys import ROUTER, public_url
from api.scatter import answered, scatter
from cells import errors
from cells.context import RequestContext

PAGING_VERSION = (2, 40)
MAX_LIMIT = 1000
_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")  # Nova's


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _parse(value: str | None) -> datetime:
    if value is None:
        return _now()
    for fmt in _FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    raise errors.Invalid(f"Invalid time format {value!r}: use %Y-%m-%dT%H:%M:%S[.%f].")


def _window(request: web.Request) -> tuple[datetime, datetime]:
    start, end = _parse(request.query.get("start")), _parse(request.query.get("end"))
    if not start < end:
        raise errors.Invalid("Invalid start time. The start time cannot occur after the end time.")
    return start, end


def _iso(dt: datetime) -> str:
    """The cell DB's form (cells/objects/instance.py utcnow_iso)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stored(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)


async def _servers(request: web.Request, ctx: RequestContext, project: str | None, start: datetime,
                   end: datetime) -> tuple[list[dict[str, Any]], int | None]:
    """The servers of the window from every cell, by id, one page of them from 2.40; and the page's limit
    when it is full (a next page may follow)."""
    paged = version_of(request) >= PAGING_VERSION
    limit = query_int(request.query, "limit") if paged else None
    limit = min(limit, MAX_LIMIT) if limit else MAX_LIMIT
    marker = request.query.get("marker") if paged else None
    router = request.config_dict[ROUTER]

    async def one(cell: Any, bounded: RequestContext) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await cell.conductor.usage_window(bounded, _iso(start), _iso(end), project,
                                                                        limit, marker)
        return found
    found = answered(await scatter(list(router.cells.values()), ctx, router.bound, one), "the usage", strict=True)
    servers = sorted((s for _, rows in found for s in rows), key=lambda s: str(s["uuid"]))[:limit]
    full = paged and "limit" in request.query and len(servers) == limit
    return servers, limit if full else None


def _server_usage(server: dict[str, Any], start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
    launched, terminated = _stored(server["launched_at"]), _stored(server["terminated_at"])
    begin, stop = max(launched or start, start), min(terminated or end, end)
    hours = max((stop - begin).total_seconds(), 0.0) / 3600.0
    flavor = server["flavor"]
    state = "terminated" if server["deleted"] else server["vm_state"]
    uptime = ((terminated or now) - (launched or now)).total_seconds()
    return {"instance_id": server["uuid"], "name": server["name"], "hours": hours,
            "memory_mb": int(flavor.get("ram") or 0), "vcpus": int(flavor.get("vcpus") or 0),
            "local_gb": int(flavor.get("disk") or 0) + int(flavor.get("ephemeral") or 0),
            "tenant_id": server["project_id"], "flavor": flavor.get("name"),
            "started_at": launched.isoformat(timespec="microseconds") if launched else None,
            "ended_at": terminated.isoformat(timespec="microseconds") if terminated else None,
            "state": state, "uptime": int(uptime)}


def _report(project: str, usages: list[dict[str, Any]], start: datetime, end: datetime,
            detailed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tenant_id": project, "start": start.isoformat(timespec="microseconds"),
        "stop": end.isoformat(timespec="microseconds"), "total_hours": sum(u["hours"] for u in usages),
        "total_vcpus_usage": sum(u["hours"] * u["vcpus"] for u in usages),
        "total_memory_mb_usage": sum(u["hours"] * u["memory_mb"] for u in usages),
        "total_local_gb_usage": sum(u["hours"] * u["local_gb"] for u in usages)}
    if detailed:
        out["server_usages"] = usages
    return out


def _next(request: web.Request, path: str, limit: int | None, servers: list[dict[str, Any]]) -> list[dict[str, str]]:
    if limit is None or not servers:
        return []
    query = {k: v for k, v in request.query.items() if k != "marker"}
    query["marker"] = str(servers[-1]["uuid"])
    return [{"rel": "next", "href": f"{public_url(request)}/compute/v2.1/{path}?{urlencode(query)}"}]


async def index(request: web.Request) -> web.Response:
    ctx = authorize(request, "os_compute_api:os-simple-tenant-usage:list")
    start, end = _window(request)
    servers, limit = await _servers(request, ctx, None, start, end)
    now, detailed = _now(), request.query.get("detailed") in ("1", "true", "True")
    by_project: dict[str, list[dict[str, Any]]] = {}
    for server in servers:
        by_project.setdefault(str(server["project_id"]), []).append(_server_usage(server, start, end, now))
    body: dict[str, Any] = {"tenant_usages": [_report(p, u, start, end, detailed) for p, u in by_project.items()]}
    if links := _next(request, "os-simple-tenant-usage", limit, servers):
        body["tenant_usages_links"] = links
    return web.json_response(body)


async def show(request: web.Request) -> web.Response:
    project = request.match_info["project_id"]
    ctx = authorize(request, "os_compute_api:os-simple-tenant-usage:show", {"project_id": project})
    start, end = _window(request)
    servers, limit = await _servers(request, ctx, project, start, end)
    now = _now()
    usages = [_server_usage(s, start, end, now) for s in servers]
    body: dict[str, Any] = {"tenant_usage": _report(project, usages, start, end, True) if usages else {}}
    if links := _next(request, f"os-simple-tenant-usage/{project}", limit, servers):
        body["tenant_usage_links"] = links
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-simple-tenant-usage", index)
    app.router.add_get("/v2.1/os-simple-tenant-usage/{project_id}", show)
