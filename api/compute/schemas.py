"""Request schemas of the compute API (as Nova's, for what this cloud takes): the 2.1 schemas, and
the server create, update and rebuild schemas at a negotiated microversion (`server_create(version)`, ...).
"""
from __future__ import annotations

import copy
import functools
import ipaddress
from typing import Any

from api.compute.microversions import Microversion

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


# 2.19: a server's description (null clears it)
DESCRIPTION = {"type": ["string", "null"], "maxLength": 255, "pattern": r"^[^\x00-\x1f\x7f]*$"}
# 2.90: a hostname (RFC 952/1123 label, as Nova's); 2.94: a fully qualified name
_HOSTNAME = {"type": "string", "minLength": 2, "maxLength": 63,
             "pattern": r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$"}
_FQDN = {"type": "string", "minLength": 2, "maxLength": 255,
         "pattern": r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"}
# 2.26 / 2.52: a server's tags
TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}
TAGS = {"type": "array", "items": TAG, "maxItems": 50}
# 2.63: trusted image certificate ids
TRUSTED_CERTS = {"type": ["array", "null"], "minItems": 1, "maxItems": 50, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1}}


def hostname_schema(version: Microversion) -> dict[str, Any]:
    return _FQDN if version >= (2, 94) else _HOSTNAME


@functools.cache
def server_create(version: Microversion) -> dict[str, Any]:
    """Nova's create body at `version`: 2.19 description, 2.37 networks required ("auto", "none" or a
    list), 2.52 tags, 2.57 no personality, 2.63 trusted_image_certificates, 2.90 hostname."""
    schema = copy.deepcopy(SERVER_CREATE)
    server = schema["properties"]["server"]
    props = server["properties"]
    if version >= (2, 19):
        props["description"] = DESCRIPTION
    if version >= (2, 37):
        props["networks"] = {"oneOf": [props["networks"], {"type": "string", "enum": ["none", "auto"]}]}
        server["required"] = [*server["required"], "networks"]
    if version >= (2, 52):
        props["tags"] = TAGS
    if version >= (2, 57):
        del props["personality"]
    if version >= (2, 63):
        props["trusted_image_certificates"] = TRUSTED_CERTS
    if version >= (2, 90):
        props["hostname"] = hostname_schema(version)
    return schema


def canonical_ip(value: str | None) -> str | None:
    """An access address as Nova stores it: the canonical spelling (RFC 5952 for IPv6, so
    0000:0000:0000:0000:0000:babe:220.12.22.2 reads back as ::babe:dc0c:1602), what Tempest compares."""
    return None if value is None else str(ipaddress.ip_address(value))
