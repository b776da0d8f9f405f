"""Versioned wire objects: what crosses RPC carries its version, so services of two
releases can talk during a rolling upgrade.

Records stay plain dicts inside a service. At the RPC boundary an object travels as

    {"cc.object": "Instance", "cc.version": "1.1", "cc.data": {...}}

- The sender downgrades it to the version its peer speaks (`make_compatible`:
  fields added after that version are dropped). A peer that advertises no
  versions at all is the release before versioning: it gets the plain dict at
  the object's first version (what that release sent and read).
- The receiver refuses a version newer than its own (UnsupportedVersion) and
  fills the fields an older sender did not know with their defaults (`from_primitive`).
- `fingerprint()` hashes the fields and their types; tests/unit/test_object_versions.py
  holds the expected (version, fingerprint) of every object, so a field change
  without a version bump (and a `history` entry) fails.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

from cells import errors

NAME, VERSION, DATA = "cc.object", "cc.version", "cc.data"
_FIELDS_AT: dict[tuple[str, str], frozenset[str]] = {}  # (object, version) -> its fields there


@functools.lru_cache(maxsize=256)  # a handful of distinct versions, asked for on every record sent or read
def vtuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(version).split("."))


def newer(a: str, b: str) -> bool:
    return vtuple(a) > vtuple(b)


class VersionedObject:
    obj_name: ClassVar[str]
    VERSION: ClassVar[str]
    fields: ClassVar[dict[str, str]]  # name -> type ("str", "int", "bool", "dict", "list", with "?" = nullable)
    # version -> fields it added (the first version's fields are the rest)
    history: ClassVar[dict[str, tuple[str, ...]]] = {}
    defaults: ClassVar[dict[str, Any]] = {}  # for fields an older sender did not send (else None)

    @classmethod
    def fields_at(cls, version: str) -> frozenset[str]:
        key = (cls.obj_name, version)
        known = _FIELDS_AT.get(key)
        if known is None:  # objects are declared once: their fields at a version never change at run time
            if len(_FIELDS_AT) > 256:  # versions come from peers: keep it bounded
                _FIELDS_AT.clear()
            later = {f for v, added in cls.history.items() if newer(v, version) for f in added}
            known = _FIELDS_AT[key] = frozenset(cls.fields) - later
        return known

    @classmethod
    def first_version(cls) -> str:
        return "1.0"

    @classmethod
    def fingerprint(cls) -> str:
        text = ";".join(f"{k}:{cls.fields[k]}" for k in sorted(cls.fields))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def make_compatible(cls, data: Mapping[str, Any], target: str) -> dict[str, Any]:
        """`data` as a peer speaking `target` knows it."""
        if newer(target, cls.VERSION):
            target = cls.VERSION
        keep = cls.fields_at(target)
        return {k: v for k, v in data.items() if k in keep}

    @classmethod
    def to_primitive(cls, data: Mapping[str, Any], target: str | None) -> Any:
        """Wrapped at min(ours, target); target None = a peer from before versioning: a plain dict."""
        if target is None:
            return cls.make_compatible(data, cls.first_version())
        version = target if newer(cls.VERSION, target) else cls.VERSION
        return {NAME: cls.obj_name, VERSION: version, DATA: cls.make_compatible(data, version)}

    @classmethod
    def from_primitive(cls, value: Any, speaks: str | None = None) -> Any:
        """A received object as a plain dict at our version. `speaks` is the version this
        process runs at (a service pinned to an older release reads only that version's fields)."""
        ours = speaks or cls.VERSION
        if not is_primitive(value):
            version, data = cls.first_version(), value  # a sender from before versioning
            if not isinstance(data, dict):
                return value
        else:
            if value[NAME] != cls.obj_name:
                raise errors.Invalid(reason=f"expected a {cls.obj_name} object, got {value[NAME]}")
            version, data = str(value[VERSION]), dict(value[DATA] or {})
            if newer(version, ours):
                raise errors.UnsupportedVersion(peer="this service", what=f"{cls.obj_name} object", have=ours,
                                                need=version)
        unknown = set(data) - cls.fields_at(ours)
        if unknown:  # a newer field the sender should have dropped for us
            raise errors.Invalid(reason=f"{cls.obj_name} {version} has fields {sorted(unknown)} "
                                        f"unknown to version {ours}")
        for name in cls.fields_at(ours) - cls.fields_at(version):
            data.setdefault(name, cls.defaults.get(name))
        return data


def is_primitive(value: Any) -> bool:
    return isinstance(value, dict) and NAME in value and VERSION in value and DATA in value
