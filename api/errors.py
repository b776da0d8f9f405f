"""Errors as each OpenStack API shapes them, and the API-only error classes.

Handlers raise errors of the one tree (cells.errors); the middleware of each
API turns them into that API's JSON body. A non-Cellcloud exception is logged
with its traceback and answered with a bare 500: never a traceback on the wire.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api.keys import CONTEXT, REQUEST_ID, public_url
from cells import errors

LOG = logging.getLogger(__name__)

Renderer = Callable[[int, str], dict[str, Any]]


# --- API-only errors (they never cross the wire, so they are not registered) ---

class VersionNotSupported(errors.CellcloudError):
    code, http_status = "version_not_supported", 406
    msg = "Version {version} is not supported by the API. Minimum is {min} and maximum is {max}."


class MalformedBody(errors.Invalid):
    code, msg = "malformed_body", "Malformed request body"


class RequestTooLarge(errors.CellcloudError):
    """A body over the API's limit (api/http.py MAX_BODY): Nova's 413 (oslo sizelimit's message)."""
    code, http_status, msg = "request_too_large", 413, "Request is too large."


# --- body shapes -------------------------------------------------------------

_NOVA_FAULTS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
                405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
                429: "overLimit", 501: "notImplemented", 503: "serviceUnavailable"}

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 413: "Request Entity Too Large",
           415: "Unsupported Media Type", 500: "Internal Server Error", 501: "Not Implemented",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 507: "Insufficient Storage"}


def compute_body(status: int, message: str) -> dict[str, Any]:
    """Nova: {"itemNotFound": {"code": 404, "message": ...}}; anything unnamed is computeFault."""
    return {_NOVA_FAULTS.get(status, "computeFault"): {"code": status, "message": message}}


def identity_body(status: int, message: str) -> dict[str, Any]:
    """Keystone: {"error": {"code": 401, "message": ..., "title": "Unauthorized"}}."""
    return {"error": {"code": status, "message": message, "title": _TITLES.get(status, "Error")}}


def image_body(status: int, message: str) -> dict[str, Any]:
    """Glance answers with webob's JSON error format."""
    title = _TITLES.get(status, "Error")
    return {"code": f"{status} {title}", "title": title, "message": message}


# server-side failures a user can act on: a fixed text for them (the cause stays in the log)
_PUBLIC_5XX = {"no_valid_host": "No valid host was found. There are not enough hosts available.",
               "image_store_full": "The image store is too full to take this image. Try again later.",
               # issue 14: a full or nearly full database disk, a writer lock held too long
               "low_disk_space": "Not enough free disk space for new servers: they are refused until space is freed.",
               "db_full": "The database is out of disk space; the request was not carried out. Try again later.",
               "db_busy": "The database is busy; the request was not carried out. Try again.",
               "cells_unreachable": "No cell can take new servers right now; nothing was made. Try again later."}


def unexpected(status: int, request: web.Request) -> str:
    """What a non-admin reads of a server-side failure: the request id to quote, nothing of its cause."""
    what = "Unexpected error" if status == 500 else _TITLES.get(status, "Server error")
    return f"{what}, request id {request.get(REQUEST_ID, '')}"


def _is_admin(request: web.Request) -> bool:
    ctx = request.get(CONTEXT)
    return ctx is not None and ctx.allows("context_is_admin", {})


def status_and_message(exc: BaseException, request: web.Request) -> tuple[int, str]:
    if isinstance(exc, errors.CellcloudError):
        if exc.http_status < 500:
            return exc.http_status, exc.message
        # a 5xx's text may carry what a peer raised ("OperationalError: ... [SQL: ...]"), host names and
        # addresses: the log keeps it under the request id, a non-admin gets only that id
        LOG.warning("%s %s failed (%s): %s (%s)", request.method, request.path, request.get(REQUEST_ID),
                    exc.message, exc.code)
        if _is_admin(request):
            return exc.http_status, exc.message
        public = _PUBLIC_5XX.get(exc.code)
        return exc.http_status, f"{public} Request id {request.get(REQUEST_ID, '')}" if public \
            else unexpected(exc.http_status, request)
    if isinstance(exc, web.HTTPException):
        if exc.status == 404:
            return 404, "The resource could not be found."
        if exc.status == 405:
            return 405, "The method is not allowed for this resource."
        return exc.status, exc.reason
    LOG.exception("unexpected error in %s %s (%s)", request.method, request.path, request.get(REQUEST_ID))
    return 500, unexpected(500, request)


def error_middleware(render: Renderer) -> Middleware:
    """A middleware answering every failure of one API in that API's shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects and other non-errors pass through
                raise
            status, message = status_and_message(exc, request)
        except errors.CellcloudError as exc:
            status, message = status_and_message(exc, request)
        except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a 500
            status, message = status_and_message(exc, request)
        headers = {"WWW-Authenticate": f'Keystone uri="{public_url(request)}/identity"'} if status == 401 else None
        return web.json_response(render(status, message), status=status, headers=headers)

    return middleware
