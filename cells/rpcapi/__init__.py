"""Declared RPC surfaces and caller stubs, one module per service.

Callers import only these stubs; a `Caller` is anything with `call`/`cast`
(a `cells.service.Service`, or the API's per-cell client).
"""
from __future__ import annotations

from typing import Any, Protocol

from cells.context import RequestContext
from cells.rpc.wire import Method


class Caller(Protocol):
    async def call(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any: ...

    async def cast(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None: ...
