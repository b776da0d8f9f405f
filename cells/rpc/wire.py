"""msgpack envelopes and the declared RPC surface type.

Request: {v, id, method, ctx, args, reply, key, mv, ov}; reply: {v, id, ok, result | error}.
`error` is {code, message, kwargs}: never a traceback. `mv` is the version of the
method the caller means (Method.version), `ov` the object versions it reads results
in (cells/objects/versions.py); both absent from callers that predate versioning.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

VERSION = 1

# Timeout classes a method can declare (seconds). A caller may pass a tighter one.
FAST, NORMAL, SLOW = 5.0, 30.0, 300.0


@dataclass(frozen=True)
class Method:
    """One entry of a service's declared RPC surface."""
    name: str
    timeout: float = NORMAL
    retry_safe: bool = False  # safe to resend to another member after a timeout
    cast: bool = False  # one-way: the caller never waits for a reply
    version: str = "1.0"  # the surface version that added (or last changed) the method
    # principal kinds that may call it (cells/rpc/principal.py; the operator may call any method)
    callers: frozenset[str] = frozenset()
    # versioned objects it carries (cells/objects/versions.py converts them for each peer): arguments
    # {name: object}; arguments older than versioning, plain dicts (a list: each item) only made
    # compatible; the result: "X", "X[]" (a list of X) or "X@key" (a map whose `key` entry is an X)
    args: Mapping[str, str] = field(default_factory=dict, compare=False)
    plain_args: Mapping[str, str] = field(default_factory=dict, compare=False)
    result: str | None = None


def surface(*methods: Method) -> dict[str, Method]:
    """One service's RPC table: each method declared once, with the principals that may call it."""
    table: dict[str, Method] = {}
    for m in methods:
        if m.name in table:
            raise ValueError(f"RPC method {m.name!r} is declared twice")
        if not m.callers:
            raise ValueError(f"RPC method {m.name!r} declares no caller")
        table[m.name] = m
    return table


def pack(msg: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(msg, use_bin_type=True)
    return packed


def unpack(data: bytes) -> dict[str, Any]:
    msg = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(msg, dict):
        raise TypeError("envelope is not a map")
    return msg


def request(msg_id: int, method: str, ctx: dict[str, Any], args: dict[str, Any],
            reply: bool, key: str | None = None, versions: dict[str, Any] | None = None) -> bytes:
    msg = {"v": VERSION, "id": msg_id, "method": method, "ctx": ctx, "args": args, "reply": reply, "key": key}
    if versions:
        msg.update(versions)
    return pack(msg)


def ok_reply(msg_id: int, result: Any) -> bytes:
    return pack({"v": VERSION, "id": msg_id, "ok": True, "result": result})


def error_reply(msg_id: int, error: dict[str, Any]) -> bytes:
    return pack({"v": VERSION, "id": msg_id, "ok": False, "error": error})
