"""/volume: the Cinder v3 sub-application (block-storage and volumev3 in the catalog).

    GET  /volume, /volume/v3                       version documents (public)
    /volume/v3/{project_id}/volumes[/detail|/{id}] api/volume/volumes.py (+ /{id}/action: os-extend)
    /volume/v3/{project_id}/snapshots[/detail|/{id}] api/volume/snapshots.py
    .../volumes|snapshots/{id}/metadata[/{key}]    api/volume/metadata.py
    /volume/v3/{project_id}/types[/{id}[/extra_specs]] api/volume/types.py
    /volume/v3/{project_id}/limits, os-quota-sets  api/volume/quotas.py
    os-services, scheduler-stats, capabilities, os-hosts, volumes/summary, extensions: api/volume/backends.py
    os-volume-transfer, volume-transfers (3.55)    api/volume/transfers.py
    qos-specs, types/{id}/encryption               api/volume/qos.py, api/volume/encryption.py (stored, shown)
    types/{id}/os-volume-type-access, /action      api/volume/type_access.py
    groups[/detail|/{id}[/action]] (3.13+)         api/volume/groups.py
    group_snapshots[...] (3.14+), groups/action     api/volume/group_snapshots.py

Microversions 3.0 to 3.60 (api/volume/microversions.py: negotiation, and what each changes here). The project in the URL must be the token's project
("Malformed request url" otherwise, as Cinder). Errors come in Cinder's shape,
which is Nova's: {"itemNotFound": {"code": 404, "message": ...}}.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import compute_body, error_middleware
from api.keys import CONTEXT, public_url
from api.middleware import route_policy, token_auth
from api.policy import routes as policy_routes
from api.volume import (
    backends,
    encryption,
    group_snapshots,
    group_types,
    groups,
    messages,
    metadata,
    microversions,
    qos,
    quotas,
    services,
    snapshots,
    transfers,
    type_access,
    types,
    volumes,
)
from cells import errors

UPDATED = "2016-02-08T12:20:21Z"
_PUBLIC = ("/volume", "/volume/", "/volume/v3", "/volume/v3/")


def is_public(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and request.path in _PUBLIC


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_public(request):
        request[microversions.VERSION] = microversions.requested_version(request)  # raises 400/406
    return await handler(request)


@web.middleware
async def own_project(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The project in the URL is the caller's (Cinder refuses any other, admins included)."""
    project = request.match_info.get("project_id")
    if project is not None and CONTEXT in request and project != request[CONTEXT].project:
        raise errors.Invalid("Malformed request url")
    return await handler(request)


def _v3(base: str) -> dict[str, Any]:
    return {"id": "v3.0", "status": "CURRENT", "version": microversions.fmt(microversions.MAX_VERSION),
            "min_version": microversions.fmt(microversions.MIN_VERSION), "updated": UPDATED,
            "links": [{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                      {"rel": "self", "href": f"{base}/volume/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}


async def versions(request: web.Request) -> web.Response:
    """Cinder answers its unversioned root with 300 Multiple Choices (Tempest checks it), /v3 with 200."""
    root = request.path.rstrip("/") == "/volume"
    return web.json_response({"versions": [_v3(public_url(request))]}, status=300 if root else 200)


def make_volume_app() -> web.Application:
    # outermost first: version headers on everything, errors in Cinder's shape, microversions, token, project
    app = web.Application(middlewares=[microversions.version_headers, error_middleware(compute_body), negotiate,
                                       token_auth(is_public), own_project,
                                       route_policy("/volume", policy_routes.VOLUME)])
    for path in ("", "/", "/v3", "/v3/"):
        app.router.add_get(path, versions)
    backends.add_routes(app)  # first: volumes/summary before volumes/{volume_id}
    volumes.add_routes(app)
    snapshots.add_routes(app)
    metadata.add_routes(app)
    transfers.add_routes(app)
    qos.add_routes(app)
    encryption.add_routes(app)
    type_access.add_routes(app)
    types.add_routes(app)
    group_types.add_routes(app)
    groups.add_routes(app)
    group_snapshots.add_routes(app)
    quotas.add_routes(app)
    services.add_routes(app)
    messages.add_routes(app)
    return app
