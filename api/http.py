"""Small request helpers shared by the three APIs."""
from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from api.errors import MalformedBody, RequestTooLarge
from api.keys import CONTEXT, POLICY
from cells import errors
from cells.context import RequestContext

MAX_BODY = 1 << 20  # 1 MiB is plenty for any JSON request these APIs take (aiohttp's client_max_size too)
_TRUE = {"1", "t", "true", "on", "y", "yes"}
_FALSE = {"0", "f", "false", "off", "n", "no"}


async def json_body(request: web.Request) -> Any:
    """The request's JSON document; 400 when it is missing or malformed, 413 over MAX_BODY."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestTooLarge()
    try:
        raw = await request.read()  # a chunked body stops at the app's client_max_size
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge() from None
    if not raw:
        raise MalformedBody("The request body is empty")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody() from None


def context(request: web.Request) -> RequestContext:
    """The caller's context, set by the token middleware."""
    try:
        return request[CONTEXT]
    except KeyError:
        raise RuntimeError(f"{request.path} reached a handler without the token middleware") from None


def authorize(request: web.Request, rule: str, target: dict[str, Any] | None = None) -> RequestContext:
    """The caller's context if the policy rule `rule` allows it on `target` (defaults: the caller's
    own project and user); 403 in the service's words otherwise."""
    ctx = context(request)
    request.config_dict[POLICY].authorize(rule, ctx, target)
    return ctx


def allowed(request: web.Request, rule: str, target: dict[str, Any] | None = None) -> bool:
    """Whether the policy rule `rule` allows the caller on `target` (for what a view shows)."""
    return request.config_dict[POLICY].check(rule, context(request), target)


def query_int(query: Any, name: str, default: int | None = None, message: str | None = None) -> int | None:
    """A non-negative integer query parameter; `default` when absent, 400 when malformed."""
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        value = -1
    if value < 0:
        raise errors.Invalid(message or f"{name} param must be a non-negative integer")
    return value


def parse_bool(value: str) -> bool | None:
    """oslo's bool_from_string: None for anything that is not a recognised boolean."""
    v = value.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def id_from_href(ref: str) -> str:
    """An id, or the last path segment of a link to one ("http://.../images/<id>" -> "<id>")."""
    return urlsplit(ref).path.rstrip("/").rsplit("/", 1)[-1] if "/" in ref else ref
