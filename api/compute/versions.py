"""Compute version documents and microversion negotiation.

This API speaks exactly microversion 2.1. Like Nova: no header means the
minimum, "latest" means the maximum, a malformed version is a 400 and a
version outside [min, max] a 406. Every compute response, errors included,
says which version answered.
"""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import VersionNotSupported
from api.keys import REQUEST_ID, public_url
from cells import errors

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 1)
UPDATED = "2013-07-23T11:33:21Z"
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")
HEADERS = {
    "OpenStack-API-Version": f"compute {MAX_VERSION[0]}.{MAX_VERSION[1]}",
    "X-OpenStack-Nova-API-Version": f"{MAX_VERSION[0]}.{MAX_VERSION[1]}",
    "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
}


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def requested_version(request: web.Request) -> tuple[int, int]:
    raw: str | None = None
    for item in request.headers.getall("OpenStack-API-Version", []):
        for part in item.split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "compute":
                raw = value.strip()
    if raw is None:
        raw = request.headers.get("X-OpenStack-Nova-API-Version")
    if raw is None:
        return MIN_VERSION
    if raw.lower() == "latest":
        return MAX_VERSION
    m = _VERSION_RE.match(raw.strip())
    if not m:
        raise errors.Invalid(f"API Version String {raw} is of invalid format. Must be of format "
                             "MajorNum.MinorNum.")
    version = (int(m.group(1)), int(m.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionNotSupported(version=raw, min=_fmt(MIN_VERSION), max=_fmt(MAX_VERSION))
    return version


def _is_root(request: web.Request) -> bool:
    return request.path in ("/compute", "/compute/")


@web.middleware
async def version_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost compute middleware: stamps every response, including rendered errors."""
    response = await handler(request)
    response.headers.update(HEADERS)
    if REQUEST_ID in request:
        response.headers["X-Compute-Request-Id"] = request[REQUEST_ID]  # Nova's older name for the request id
    return response


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_root(request):
        requested_version(request)  # raises 400/406; 2.1 is the only behaviour there is
    return await handler(request)


def is_public(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and request.path in ("/compute", "/compute/", "/compute/v2.1",
                                                                  "/compute/v2.1/")


def _v21(base: str) -> dict[str, Any]:
    return {"id": "v2.1", "status": "CURRENT", "version": _fmt(MAX_VERSION), "min_version": _fmt(MIN_VERSION),
            "updated": UPDATED, "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}]}


async def versions(request: web.Request) -> web.Response:
    return web.json_response({"versions": [_v21(public_url(request))]})


async def version(request: web.Request) -> web.Response:
    doc = _v21(public_url(request))
    doc["links"].append({"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"})
    doc["media-types"] = [{"base": "application/json",
                           "type": "application/vnd.openstack.compute+json;version=2.1"}]
    return web.json_response({"version": doc})
