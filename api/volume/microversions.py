"""Volume API (Cinder v3) microversion negotiation, as Cinder does it.

`OpenStack-API-Version: volume 3.N` (no header: 3.0, "latest": the maximum); a malformed version is a 400,
one outside [MIN_VERSION, MAX_VERSION] a 406; every response says which version answered. Handlers and
views read the negotiated version with `version_of(request)`. MAX_VERSION is the highest microversion
whose changes to what this API serves are all implemented (api/volume/views.py, volumes.py):
  3.13 group_id, 3.21 provider_id (admins), 3.48 shared_targets and service_uuid in volume views;
  3.45 `count` in volume lists (with_count=true); 3.60 created_at/updated_at filters with gt/gte/lt/lte/eq/neq.
3.3 user messages (api/volume/messages.py), 3.11 group types (api/volume/group_types.py) and 3.13 groups
(api/volume/groups.py: 3.20 reset_status, 3.25 volumes, 3.38 replication_status, 3.58 project_id) exist from
their version (a 404 below). The others up to 3.60 change resources this API does not serve (clusters, group
snapshots, backups, attachments, workers...): their routes stay 404.
"""
from __future__ import annotations

import re

from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import VersionNotSupported
from cells import errors

Microversion = tuple[int, int]
MIN_VERSION: Microversion = (3, 0)
MAX_VERSION: Microversion = (3, 60)
VERSION = web.RequestKey("volume_api_version", tuple)
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def fmt(version: Microversion) -> str:
    return f"{version[0]}.{version[1]}"


def requested_version(request: web.Request) -> Microversion:
    raw: str | None = None
    for item in request.headers.getall("OpenStack-API-Version", []):
        for part in item.split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "volume":
                raw = value.strip()
    if raw is None:
        return MIN_VERSION
    if raw.lower() == "latest":
        return MAX_VERSION
    m = _VERSION_RE.match(raw)
    if not m:
        raise errors.Invalid(f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum.")
    version = (int(m.group(1)), int(m.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionNotSupported(version=raw, min=fmt(MIN_VERSION), max=fmt(MAX_VERSION))
    return version


def version_of(request: web.Request) -> Microversion:
    """The volume microversion this request negotiated (the minimum before negotiation ran)."""
    version: Microversion = request.get(VERSION, MIN_VERSION)
    return version


@web.middleware
async def version_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.update({"OpenStack-API-Version": f"volume {fmt(version_of(request))}",
                             "Vary": "OpenStack-API-Version"})
    return response
