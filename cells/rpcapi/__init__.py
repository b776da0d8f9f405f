"""Declared RPC surfaces and caller stubs, one module per service.

Callers import only these stubs; a `Caller` is anything with `call`/`cast`
(a `cells.service_process.Service`, or the API's per-cell client).
"""
from __future__ import annotations

from typing import Any, Protocol, cast

from cells import errors
from cells.context import RequestContext
from cells.objects.records import InstanceRecord
from cells.rpc.wire import Method


class Caller(Protocol):
    async def call(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   timeout: float | None = None) -> Any: ...

    async def cast(self, topic: str, method: Method, args: dict[str, Any], ctx: RequestContext,
                   key: str | None = None) -> None: ...


def map_reply(result: Any) -> dict[str, Any]:
    """A reply that must be a map: anything else is a broken or hostile peer, not data to use."""
    if not isinstance(result, dict):
        raise errors.RpcError(reason=f"a peer answered with {type(result).__name__} where a map was expected")
    return result


def instance_reply(result: Any) -> InstanceRecord:
    """A reply that must be an instance record (the conductor's Method.result="Instance" decodes it)."""
    return cast(InstanceRecord, map_reply(result))


def instances_reply(result: Any) -> list[InstanceRecord]:
    return [instance_reply(r) for r in list_reply(result)]


def list_reply(result: Any) -> list[Any]:
    """A reply that must be a list (see map_reply)."""
    if not isinstance(result, list):
        raise errors.RpcError(reason=f"a peer answered with {type(result).__name__} where a list was expected")
    return result
