"""Glance v2 JSON schemas for the image resource (what `GET /v2/schemas/image` returns).

A trimmed version of Glance's: the core properties and their types, and
additionalProperties as strings (Glance's extra-properties rule).
"""
from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["null", "string"]}
_NULLABLE_INT = {"type": ["null", "integer"]}
# the disk formats whose data we can check (cells/imageformat.py ACCEPTED): others are refused at create
_FORMATS_DISK = [None, "ami", "ari", "aki", "raw", "qcow2"]
_FORMATS_CONTAINER = [None, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]


def image_schema() -> dict[str, Any]:
    return {
        "name": "image",
        "additionalProperties": {"type": "string"},
        "links": [{"href": "{self}", "rel": "self"}, {"href": "{file}", "rel": "enclosure"},
                  {"href": "{schema}", "rel": "describedby"}],
        "properties": {
            "id": {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                                                "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
                   "description": "An identifier for the image"},
            "name": {"type": ["null", "string"], "maxLength": 255},
            "status": {"type": "string", "readOnly": True,
                       "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                                "pending_delete", "deactivated"]},
            "visibility": {"type": "string", "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean"},
            "os_hidden": {"type": "boolean"},
            "checksum": dict(_NULLABLE_STR, readOnly=True, maxLength=32),
            "os_hash_algo": dict(_NULLABLE_STR, readOnly=True, maxLength=64),
            "os_hash_value": dict(_NULLABLE_STR, readOnly=True, maxLength=128),
            "owner": dict(_NULLABLE_STR, maxLength=255),
            "size": dict(_NULLABLE_INT, readOnly=True),
            "virtual_size": dict(_NULLABLE_INT, readOnly=True),
            "min_ram": {"type": "integer"},
            "min_disk": {"type": "integer"},
            "disk_format": {"type": ["null", "string"], "enum": _FORMATS_DISK},
            "container_format": {"type": ["null", "string"], "enum": _FORMATS_CONTAINER},
            "created_at": dict(_STR, readOnly=True),
            "updated_at": dict(_STR, readOnly=True),
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
            "self": dict(_STR, readOnly=True),
            "file": dict(_STR, readOnly=True),
            "schema": dict(_STR, readOnly=True),
            "stores": dict(_STR, readOnly=True, description="The stores holding the image's data, comma-separated"),
        },
    }


def images_schema() -> dict[str, Any]:
    return {
        "name": "images",
        "properties": {"images": {"type": "array", "items": image_schema()}, "schema": _STR, "first": _STR,
                       "next": _STR},
        "links": [{"href": "{first}", "rel": "first"}, {"href": "{next}", "rel": "next"},
                  {"href": "{schema}", "rel": "describedby"}],
    }


def member_schema() -> dict[str, Any]:
    """Glance's image member: a project an image is shared with, and its answer."""
    return {
        "name": "member",
        "properties": {
            "created_at": dict(_STR, description="Date and time of image member creation"),
            "image_id": dict(_STR, description="An identifier for the image"),
            "member_id": dict(_STR, description="An identifier for the image member (tenantId)"),
            "schema": dict(_STR, readOnly=True),
            "status": {"type": "string", "enum": ["pending", "accepted", "rejected"],
                       "description": "The status of this image member"},
            "updated_at": dict(_STR, description="Date and time of last modification of image member"),
        },
    }


def members_schema() -> dict[str, Any]:
    return {"name": "members",
            "properties": {"members": {"type": "array", "items": member_schema()}, "schema": _STR},
            "links": [{"href": "{schema}", "rel": "describedby"}]}
