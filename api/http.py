"""Small request helpers shared by the three APIs."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from api.errors import MalformedBody
from api.keys import CONTEXT
from cells.context import RequestContext

MAX_BODY = 1 << 20  # 1 MiB is plenty for any JSON request these APIs take


async def json_body(request: web.Request) -> Any:
    """The request's JSON document; 400 when it is missing or malformed."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise MalformedBody("Request body is too large")
    raw = await request.read()
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
