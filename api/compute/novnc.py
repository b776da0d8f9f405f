"""noVNC's own page for a server's VNC console, served by the API (Nova's novncproxy, issue 16).

    GET /compute/vnc_lite.html?path=compute/vnc-console%3Ftoken%3D<server>.<secret>
        Nova's novncproxy_base_url page, with Nova's `path` query (noVNC 1.1+ reads the websocket's path
        there, relative to the page's host): the browser then opens ws[s]://<api>/compute/vnc-console?token=...
    GET /compute/core/<file>.js, /compute/vendor/<file>.js   the page's scripts (ES modules)

The files are Debian's package `novnc` (/usr/share/novnc, installed by `make deps`); none is copied
into this tree. Without it, a novnc console is Nova's 400 that says what is missing, and no URL is
handed out that would lead nowhere. No token is needed for these files: they hold no data.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from cells import errors

NOVNC_DIR = Path("/usr/share/novnc")  # Debian's package novnc
PAGE = "vnc_lite.html"
SCRIPT_DIRS = ("core", "vendor")
WEBSOCKET_PATH = "/vnc-console"  # under /compute: api/compute/remote_consoles.py
NOVNC = "novnc"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def missing() -> str | None:
    """Why this API host cannot serve noVNC's page, None when it can."""
    if (NOVNC_DIR / PAGE).is_file():
        return None
    return f"noVNC is not installed on this API host ({NOVNC_DIR / PAGE} is missing: Debian package novnc)"


async def check_installed() -> None:
    """Nova's 400 for a novnc console, saying what is missing, unless this host can serve the page."""
    reason = await asyncio.get_running_loop().run_in_executor(None, missing)
    if reason is not None:
        raise errors.ConsoleTypeUnavailable(f"Unavailable console type {NOVNC}: {reason}", console_type=NOVNC)


def page_url(base: str, token: str) -> str:
    """The console URL for `token` on the API at `base` (its public URL, maybe under a path prefix)."""
    prefix = urlsplit(base).path.strip("/")
    websocket = f"{prefix + '/' if prefix else ''}compute{WEBSOCKET_PATH}?token={token}"
    return f"{base}/compute/{PAGE}?{urlencode({'path': websocket})}"


async def page(request: web.Request) -> web.StreamResponse:
    reason = await asyncio.get_running_loop().run_in_executor(None, missing)
    if reason is not None:
        raise errors.NotFound(reason)
    return web.FileResponse(NOVNC_DIR / PAGE, headers={"Content-Type": "text/html; charset=utf-8",
                                                       "Cache-Control": "no-cache"})


def _script(top: str, name: str) -> Path | None:
    """The script `name` under noVNC's `top` directory; None for anything else (a path out of it, not a
    .js file, absent)."""
    root = (NOVNC_DIR / top).resolve()
    path = (root / name).resolve()
    return path if path.is_relative_to(root) and path.suffix == ".js" and path.is_file() else None


def _scripts(top: str) -> Handler:
    async def script(request: web.Request) -> web.StreamResponse:
        found = await asyncio.get_running_loop().run_in_executor(None, _script, top, request.match_info["name"])
        if found is None:
            raise errors.NotFound("The resource could not be found.")
        return web.FileResponse(found, headers={"Content-Type": "text/javascript; charset=utf-8",
                                                "Cache-Control": "no-cache"})
    return script


def is_public(path: str) -> bool:
    return path == f"/compute/{PAGE}" or any(path.startswith(f"/compute/{top}/") for top in SCRIPT_DIRS)


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"/{PAGE}", page)
    for top in SCRIPT_DIRS:
        app.router.add_get(f"/{top}/{{name:.+}}", _scripts(top))
