"""A small JSON-schema validator for request bodies, with Nova's error messages.

It knows the keywords the OpenStack request schemas use: type, enum, required,
properties, patternProperties, additionalProperties, items, minItems,
maxItems, minLength, maxLength, pattern, minimum, oneOf and the formats uuid,
base64, ipv4, ipv6. The first violation found raises errors.Invalid with
"Invalid input for field/attribute <field>. Value: <value>. <why>".
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid
from typing import Any

from cells import errors

Schema = dict[str, Any]

_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,),
                                       "integer": (int,), "number": (int, float), "boolean": (bool,),
                                       "null": (type(None),)}


class ValidationError(errors.Invalid):
    code = "validation_failed"


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False  # JSON true is not a number
    return isinstance(value, _TYPES[name])


def _format_ok(fmt: str, value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        if fmt == "uuid":
            uuid.UUID(value)
        elif fmt == "base64":
            base64.b64decode(value, validate=True)
        elif fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
    except (ValueError, binascii.Error):
        return False
    return True


def _fail(field: str, value: Any, why: str) -> None:
    raise ValidationError(f"Invalid input for field/attribute {field}. Value: {value}. {why}")


def validate(schema: Schema, value: Any, field: str = "") -> None:
    """Raise ValidationError for the first way `value` breaks `schema`."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in names):
            shown = repr(names[0]) if len(names) == 1 else repr(names)
            _fail(field, value, f"{value!r} is not of type {shown}")
    if "enum" in schema and value not in schema["enum"]:
        _fail(field, value, f"{value!r} is not one of {schema['enum']!r}")
    if "oneOf" in schema:
        matches = 0
        for sub in schema["oneOf"]:
            try:
                validate(sub, value, field)
                matches += 1
            except ValidationError:
                pass
        if matches != 1:
            _fail(field, value, f"{value!r} is not valid under any of the given schemas")
    if isinstance(value, str):
        _check_string(schema, value, field)
    if _is_type(value, "number") and "minimum" in schema and value < schema["minimum"]:
        _fail(field, value, f"{value!r} is less than the minimum of {schema['minimum']}")
    if isinstance(value, dict):
        _check_object(schema, value, field)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            _fail(field, value, f"{value!r} is too short")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            _fail(field, value, f"{value!r} is too long")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            _fail(field, value, f"{value!r} has non-unique elements")
        if "items" in schema:
            for item in value:
                validate(schema["items"], item, field)


def _check_string(schema: Schema, value: str, field: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        _fail(field, value, f"{value!r} is too short")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        _fail(field, value, f"{value!r} is too long")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        _fail(field, value, f"{value!r} does not match {schema['pattern']!r}")
    if "format" in schema and not _format_ok(schema["format"], value):
        _fail(field, value, f"{value!r} is not a '{schema['format']}'")
    # an integer given as a string ("2") still honours "minimum"
    if "minimum" in schema and value.isdigit() and int(value) < schema["minimum"]:
        _fail(field, value, f"{value!r} is less than the minimum of {schema['minimum']}")


def _check_object(schema: Schema, value: dict[str, Any], field: str) -> None:
    for name in schema.get("required", ()):
        if name not in value:
            _fail(field, value, f"'{name}' is a required property")
    props: dict[str, Schema] = schema.get("properties", {})
    patterns: dict[str, Schema] = schema.get("patternProperties", {})
    extra = []
    for name, item in value.items():
        sub = props.get(name)
        matched = [s for p, s in patterns.items() if re.search(p, name)]
        if sub is not None:
            validate(sub, item, name)
        for s in matched:
            validate(s, item, name)
        if sub is None and not matched:
            extra.append(name)
    additional = schema.get("additionalProperties", True)
    if extra and additional is False:
        if patterns and not props:
            _fail(field, value, f"Additional properties are not allowed ({', '.join(repr(e) for e in extra)} "
                                "do not match any of the regexes)")
        listed = ", ".join(repr(e) for e in extra)
        _fail(field, value, f"Additional properties are not allowed ({listed} "
                            f"{'was' if len(extra) == 1 else 'were'} unexpected)")
    if extra and isinstance(additional, dict):
        for name in extra:
            validate(additional, value[name], name)
