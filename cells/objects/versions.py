"""What this process speaks: the release, each RPC surface's version, each object's version;
the conversion of the versioned objects a method declares it carries (Method.args, plain_args,
result in its RPC table); and the pin of a cell (the lowest version any live member speaks).

Every service advertises `advertised()` in its heartbeat (Member.version = the release,
Member.meta["versions"] = {"rpc": ..., "objects": {...}}), so every peer can see what
the others speak. A member without that meta runs the release before versioning
(release 1: every surface at RPC 1.0, every object at 1.0).

Rolling upgrades: a service may be started as an older release (`pin_release`, or
CELLCLOUD_PIN_RELEASE for one service id: tools/serve.py): it then advertises and
serves only that release's RPC methods and object versions, exactly as the older
code would, which is how the tests check old and new services side by side.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cells.objects.base import VersionedObject, newer
from cells.objects.records import InstanceRecord, MigrationRecord, wire_kinds

if TYPE_CHECKING:
    from cells.rpc.wire import Method

RELEASE = "5"
BASE_RPC = "1.0"


class Instance(VersionedObject):
    obj_name = "Instance"
    VERSION = "1.3"
    history: ClassVar[dict[str, tuple[str, ...]]] = {"1.1": ("old_flavor",),  # 1.1: old_flavor (resize awaiting confirm)
               "1.2": ("key_data",),  # 1.2: key_data (the boot's public key, for the metadata service)
               "1.3": ("locked_by", "locked_reason")}  # 1.3: a locked server (Nova's lock/unlock)
    fields: ClassVar[dict[str, str]] = wire_kinds(InstanceRecord)


class Migration(VersionedObject):
    obj_name = "Migration"
    VERSION = "1.0"
    fields: ClassVar[dict[str, str]] = wire_kinds(MigrationRecord)


OBJECTS: dict[str, type[VersionedObject]] = {o.obj_name: o for o in (Instance, Migration)}

@dataclass
class Speaks:
    release: str = RELEASE
    rpc_cap: str | None = None  # None: every method of our surfaces; else only those <= this version
    objects: dict[str, str] = field(default_factory=lambda: {n: o.VERSION for n, o in OBJECTS.items()})


RELEASES: dict[str, Speaks] = {
    "1": Speaks("1", BASE_RPC, {"Instance": "1.0", "Migration": "1.0"}),
    # 2: moves; 3: network refresh casts (RPC 1.2), Instance 1.2 (key_data), a move's disks copied
    # from its source (compute disk_info and read_disk, finish_move's disk_source: RPC 1.2)
    "2": Speaks("2", "1.1", {"Instance": "1.1", "Migration": "1.0"}),
    # 4: a compute asks the conductor for the connection of a volume it plugs (volume_connection, RPC 1.4)
    "3": Speaks("3", "1.3", {"Instance": "1.2", "Migration": "1.0"}),
    # 5: a compute reports its steps as lifecycle events (conductor instance_event, RPC 1.5); lock/unlock
    # (conductor instance_lock, RPC 1.5), Instance 1.3 (locked_by, locked_reason)
    "4": Speaks("4", "1.4", {"Instance": "1.2", "Migration": "1.0"}),
    RELEASE: Speaks(),
}
local = Speaks()


def pin_release(release: str) -> None:
    """Run this process as `release` speaks (rolling-upgrade tests; an operator never needs it)."""
    global local
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r} (known: {', '.join(sorted(RELEASES))})")
    local = RELEASES[release]


def pin_from_env(service_id: str) -> None:
    """CELLCLOUD_PIN_RELEASE="cell1/compute/node1=1,..." pins the listed services."""
    for item in os.environ.get("CELLCLOUD_PIN_RELEASE", "").split(","):
        sid, _, release = item.strip().partition("=")
        if sid == service_id and release:
            pin_release(release)


def surface_version(surface: Mapping[str, Any]) -> str:
    """The RPC version a process serving `surface` speaks: its newest method, capped by a pin."""
    top = max((getattr(m, "version", BASE_RPC) for m in surface.values()), key=lambda v: tuple(map(int, v.split("."))),
              default=BASE_RPC)
    return local.rpc_cap if local.rpc_cap is not None and newer(top, local.rpc_cap) else top


def serves(method: Any) -> bool:
    """False for a method newer than this (pinned) process speaks: old code did not have it."""
    return local.rpc_cap is None or not newer(getattr(method, "version", BASE_RPC), local.rpc_cap)


def versioned() -> bool:
    """False when pinned to release 1, which predates versioning: no versions advertised,
    none asked for, plain dicts on the wire."""
    return local.release != "1"


def advertised(surface: Mapping[str, Any]) -> dict[str, Any] | None:
    if not versioned():
        return None
    return {"rpc": surface_version(surface), "objects": dict(local.objects)}


def asked_objects() -> dict[str, str] | None:
    """The object versions a request asks its results in ("ov" in the envelope)."""
    return dict(local.objects) if versioned() else None


def member_versions(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """A member's advertised versions; None for a member from before versioning."""
    v = meta.get("versions")
    return v if isinstance(v, dict) else None


def rpc_of(meta: Mapping[str, Any]) -> str:
    v = member_versions(meta)
    return str(v.get("rpc", BASE_RPC)) if v else BASE_RPC


def pinned_rpc(metas: Iterable[Mapping[str, Any]]) -> str | None:
    """The lowest RPC version any of these members speaks (None: no member)."""
    versions = [rpc_of(m) for m in metas]
    return min(versions, key=lambda v: tuple(map(int, v.split(".")))) if versions else None


def pinned_objects(metas: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """Per object, the lowest version any of these members speaks; None when one predates versioning."""
    out: dict[str, str | None] = {}
    for meta in metas:
        v = member_versions(meta)
        for name in OBJECTS:
            have = None if v is None else (v.get("objects") or {}).get(name)
            if name not in out:
                out[name] = have
            elif out[name] is None or have is None:
                out[name] = None
            elif newer(out[name] or "", have):
                out[name] = have
    return out


def _in_map(result: Any, key: str, convert: Any) -> Any:
    """`result` with its `key` entry converted (a result kind "X@key")."""
    if not isinstance(result, dict) or result.get(key) is None:
        return result
    return {**result, key: convert(result[key])}


def encode_args(method: Method, args: dict[str, Any], target: Mapping[str, str | None] | None) -> dict[str, Any]:
    """Declared object arguments (Method.args, plain_args) as primitives for a peer speaking `target`
    (None: predates versioning)."""
    spec, plain = method.args, method.plain_args
    if not spec and not plain:
        return args
    out = dict(args)
    for arg, obj in (spec or {}).items():
        if isinstance(out.get(arg), dict):
            out[arg] = OBJECTS[obj].to_primitive(out[arg], None if target is None else target.get(obj))
    for arg, obj in (plain or {}).items():
        cls = OBJECTS[obj]
        version = (None if target is None else target.get(obj)) or cls.first_version()
        if isinstance(out.get(arg), list):
            out[arg] = [cls.make_compatible(x, version) if isinstance(x, dict) else x for x in out[arg]]
    return out


def decode_args(method: Method, args: dict[str, Any]) -> dict[str, Any]:
    spec = method.args
    if not spec:
        return args
    out = dict(args)
    for arg, obj in spec.items():
        if arg in out and out[arg] is not None:
            out[arg] = OBJECTS[obj].from_primitive(out[arg], local.objects.get(obj))
    return out


def encode_result(method: Method, result: Any, target: Mapping[str, str] | None) -> Any:
    """The result (Method.result) for a caller speaking `target` (None: a caller from before versioning)."""
    kind = method.result
    if not kind or result is None:
        return result
    kind, _, key = kind.partition("@")
    if key:
        return _in_map(result, key, lambda value: _encode(kind, value, target))
    return _encode(kind, result, target)


def _encode(kind: str, result: Any, target: Mapping[str, str] | None) -> Any:
    obj = OBJECTS[kind.removesuffix("[]")]
    version = None if target is None else target.get(obj.obj_name)
    if kind.endswith("[]"):
        return [obj.to_primitive(r, version) if isinstance(r, dict) else r for r in result]
    return obj.to_primitive(result, version) if isinstance(result, dict) else result


def decode_result(method: Method, result: Any) -> Any:
    kind = method.result
    if not kind or result is None:
        return result
    kind, _, key = kind.partition("@")
    if key:
        return _in_map(result, key, lambda value: _decode(kind, value))
    return _decode(kind, result)


def _decode(kind: str, result: Any) -> Any:
    obj = OBJECTS[kind.removesuffix("[]")]
    speaks = local.objects.get(obj.obj_name)
    if kind.endswith("[]") and isinstance(result, list):
        return [obj.from_primitive(r, speaks) for r in result]
    return obj.from_primitive(result, speaks)
