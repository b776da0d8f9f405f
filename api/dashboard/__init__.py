"""The operator's dashboard at /dashboard/: static files (no build step, no vendored library) and one
live stream.

    GET /dashboard/               index.html (the login form and the views; public, holds no data)
    GET /dashboard/static/{file}  its script and style sheet
    GET /dashboard/stream         text/event-stream: a snapshot (api/dashboard/snapshot.py) every
                                  TICK seconds while the client stays; X-Auth-Token of an admin;
                                  ?limit=&marker=&name=&status= pick the page of servers it lists

The browser logs in with Keystone (POST /identity/v3/auth/tokens) and reads the stream with fetch(), so
the token travels in a header, never in a URL or a cookie. A stream ends when its token expires.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from api.dashboard.snapshot import SAMPLE_EVERY, BootRate, ServerPage, gather
from api.errors import compute_body, error_middleware
from api.http import authorize
from api.keys import TOKENS
from api.middleware import token_auth
from api.workers import metrics_urls, worker_index
from cells import errors
from cells.config import ClusterConfig

LOG = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
TICK = 1.0
RATE = web.AppKey("dashboard_boot_rate", BootRate)
FILES = {"app.js": "text/javascript", "style.css": "text/css"}


def _public(request: web.Request) -> bool:
    return request.match_info.route.name != "stream"


async def index(request: web.Request) -> web.StreamResponse:
    if not request.path.endswith("/"):
        raise web.HTTPFound(request.path + "/")
    return web.FileResponse(STATIC / "index.html", headers={
        "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache",
        # the page runs only its own script and talks only to this origin
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in FILES:  # a fixed set: no path from the URL reaches the file system
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Content-Type": FILES[name], "Cache-Control": "no-cache"})


async def stream(request: web.Request) -> web.StreamResponse:
    ctx = authorize(request, "dashboard:stream")  # admins (api/policy/rules.py DASHBOARD)
    page = ServerPage.from_query(request.query)  # before the stream starts: a bad page is a 400
    token = request.headers["X-Auth-Token"]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    rate = request.app[RATE]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            try:
                await request.config_dict[TOKENS].validate(token)
            except errors.CellcloudError:
                await response.write(b"event: expired\ndata: {}\n\n")
                break
            try:
                snapshot = await gather(request, ctx, session, token, rate, page)
            except (errors.CellcloudError, aiohttp.ClientError, TimeoutError) as exc:
                LOG.warning("dashboard snapshot failed: %s", exc)
                await asyncio.sleep(TICK)
                continue
            try:
                await response.write(b"data: " + json.dumps(snapshot).encode() + b"\n\n")
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                break  # the browser went away
            await asyncio.sleep(TICK)
    return response


async def _sample_boot_rate(app: web.Application) -> AsyncIterator[None]:
    """The boot-rate history is kept whether or not anyone watches, so the graph has the last hour."""
    async def run() -> None:
        rate = app[RATE]
        async with aiohttp.ClientSession() as session:
            while True:
                rate.record(time.time(), await rate.counts(session))
                await asyncio.sleep(SAMPLE_EVERY)
    task = asyncio.create_task(run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def make_dashboard_app(cluster: ClusterConfig, service_id: str = "api") -> web.Application:
    app = web.Application(middlewares=[error_middleware(compute_body), token_auth(_public)])
    # every worker's boots: this process's own counter and its siblings' /metrics (none without api.metrics)
    app[RATE] = BootRate(own=worker_index(service_id), urls=metrics_urls(cluster))
    app.cleanup_ctx.append(_sample_boot_rate)
    app.router.add_get("", index)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/stream", stream, name="stream")
    return app
