"""Request schemas of the compute API at microversion 2.1 (as Nova's, for what this cloud takes)."""
from __future__ import annotations

import ipaddress
from typing import Any

BOOL = {"enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t",
                  False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"]}
# printable, no leading or trailing whitespace (2.1 dropped the v2.0 leniency)
NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^(?!\s)[^\x00-\x1f\x7f]*(?<!\s)$"}
_POSITIVE_INT = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1}
_UUID = {"type": "string", "format": "uuid"}

_BDM_V2 = {
    "type": "object",
    "properties": {
        "virtual_name": {"type": "string", "maxLength": 255},
        "volume_id": _UUID, "snapshot_id": _UUID, "image_id": _UUID,
        "volume_size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
        "device_name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._/-]*$"},
        "delete_on_termination": BOOL,
        "no_device": {},
        "connection_info": {"type": "string", "maxLength": 16777215},
        "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
        "uuid": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._-]*$"},
        "destination_type": {"type": "string", "enum": ["local", "volume"]},
        "guest_format": {"type": "string", "maxLength": 255},
        "device_type": {"type": "string", "maxLength": 255},
        "disk_bus": {"type": "string", "maxLength": 255},
        "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$"},
    },
    "additionalProperties": False,
}

_UUIDS = {"oneOf": [_UUID, {"type": "array", "items": _UUID, "uniqueItems": True}]}
# Nova's same_host / different_host (SameHostFilter, DifferentHostFilter) and group (a server group's
# id: api/compute/server_groups.py); others are kept and ignored
_HINTS = {"type": "object", "properties": {"same_host": _UUIDS, "different_host": _UUIDS, "group": _UUID},
          "additionalProperties": True}

SERVER_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": NAME,
                "imageRef": {"type": "string"},  # a uuid or an image link; checked after the schema
                "flavorRef": {"type": ["string", "integer"], "minLength": 1},
                "adminPass": {"type": "string"},
                "metadata": {"type": "object",
                             "patternProperties": {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string",
                                                                                  "maxLength": 255}},
                             "additionalProperties": False},
                "networks": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"fixed_ip": {"type": "string"},
                                   "port": {"oneOf": [_UUID, {"type": "null"}]},
                                   "uuid": {"type": "string"}},
                    "additionalProperties": False}},
                "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
                "accessIPv4": {"type": "string", "format": "ipv4"},
                "accessIPv6": {"type": "string", "format": "ipv6"},
                "personality": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "contents": {"type": "string", "format": "base64"}},
                    "additionalProperties": False}},
                "availability_zone": NAME,
                "block_device_mapping": {"type": "array", "items": {"type": "object"}},
                "block_device_mapping_v2": {"type": "array", "items": _BDM_V2},
                "config_drive": BOOL,
                "key_name": NAME,
                "min_count": _POSITIVE_INT,
                "max_count": _POSITIVE_INT,
                "return_reservation_id": BOOL,
                "security_groups": {"type": "array", "items": {
                    "type": "object", "properties": {"name": NAME}, "additionalProperties": False}},
                "user_data": {"type": "string", "format": "base64", "maxLength": 65535},
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": _HINTS,
        "OS-SCH-HNT:scheduler_hints": _HINTS,
    },
    "required": ["server"],
    "additionalProperties": False,
}


def canonical_ip(value: str | None) -> str | None:
    """An access address as Nova stores it: the canonical spelling (RFC 5952 for IPv6, so
    0000:0000:0000:0000:0000:babe:220.12.22.2 reads back as ::babe:dc0c:1602), what Tempest compares."""
    return None if value is None else str(ipaddress.ip_address(value))
