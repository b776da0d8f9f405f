"""Compute version documents and microversion negotiation.

Like Nova: no header means the minimum, "latest" means the maximum, a malformed
version is a 400 and a version outside [min, max] a 406. Every compute response,
errors included, says which version answered. MAX_VERSION is the highest
microversion whose request and response changes are all implemented:
  2.2  key pair types (ssh, x509) in requests and views; keypair create 201, delete 204
The negotiation middleware is the one place that decides; handlers and views read the
result from the service layer's context (`ComputeContext.of(request).version`, or
`cc.at_least(2, 19)`), and `version_of(request)` only for handlers outside it.
"""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import VersionNotSupported
from api.keys import REQUEST_ID, public_url
from cells import errors

Microversion = tuple[int, int]  # (major, minor): compares in version order
MIN_VERSION: Microversion = (2, 1)
MAX_VERSION: Microversion = (2, 96)
UPDATED = "2013-07-23T11:33:21Z"
VERSION = web.RequestKey("compute_api_version", tuple)  # the negotiated (major, minor)
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")
VARY = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"


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


def version_of(request: web.Request) -> tuple[int, int]:
    """The microversion this request negotiated (the minimum before negotiation ran)."""
    version: tuple[int, int] = request.get(VERSION, MIN_VERSION)
    return version


def _is_root(request: web.Request) -> bool:
    return request.path in ("/compute", "/compute/", "/compute/v2", "/compute/v2/")


@web.middleware
async def version_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost compute middleware: stamps every response, including rendered errors."""
    response = await handler(request)
    answered = _fmt(version_of(request))
    response.headers.update({"OpenStack-API-Version": f"compute {answered}", "X-OpenStack-Nova-API-Version": answered,
                             "Vary": VARY})
    if REQUEST_ID in request:
        response.headers["X-Compute-Request-Id"] = request[REQUEST_ID]  # Nova's older name for the request id
    return response


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _is_root(request):
        request[VERSION] = requested_version(request)  # raises 400/406
    return await handler(request)


def is_public(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and request.path in ("/compute", "/compute/", "/compute/v2.1",
                                                                  "/compute/v2.1/", "/compute/v2", "/compute/v2/")


def _v21(base: str) -> dict[str, Any]:
    return {"id": "v2.1", "status": "CURRENT", "version": _fmt(MAX_VERSION), "min_version": _fmt(MIN_VERSION),
            "updated": UPDATED, "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}]}


def _v20(base: str) -> dict[str, Any]:
    """The legacy v2.0 entry Nova lists first; /compute/v2/ here is only its document (no v2.0 API)."""
    return {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "", "updated": "2011-01-21T11:33:21Z",
            "links": [{"rel": "self", "href": f"{base}/compute/v2/"}]}


async def versions(request: web.Request) -> web.Response:
    base = public_url(request)
    return web.json_response({"versions": [_v20(base), _v21(base)]})


async def version(request: web.Request) -> web.Response:
    doc = _v21(public_url(request))
    doc["links"].append({"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"})
    doc["media-types"] = [{"base": "application/json",
                           "type": "application/vnd.openstack.compute+json;version=2.1"}]
    return web.json_response({"version": doc})


async def version_v20(request: web.Request) -> web.Response:
    doc = _v20(public_url(request))
    doc["links"].append({"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"})
    doc["media-types"] = [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2"}]
    return web.json_response({"version": doc})
