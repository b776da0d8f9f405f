"""/compute: the Nova v2.1 sub-application."""
from __future__ import annotations

from aiohttp import web

from api.compute import (
    aggregates,
    availability_zones,
    compute_services,
    extension_info,
    extensions,
    flavor_access,
    flavor_manage,
    flavors,
    floating_ips,
    hosts,
    hypervisors,
    image_proxy,
    microversions,
    migrations,
    network_proxy,
    quota_classes,
    remote_consoles,
    security_group_proxy,
    server_diagnostics,
    server_password,
    server_tags,
    servers,
    tenant_usage,
    usage_audit_log,
    volume_proxy,
)
from api.errors import compute_body, error_middleware
from api.middleware import route_policy, token_auth
from api.policy import routes as policy_routes


def _is_public(request: web.Request) -> bool:
    return microversions.is_public(request) or remote_consoles.is_public(request)


def make_compute_app() -> web.Application:
    # outermost first: version headers on everything, then errors in Nova's shape,
    # then microversion negotiation, then the token check
    app = web.Application(middlewares=[microversions.version_headers, error_middleware(compute_body),
                                       microversions.negotiate, token_auth(_is_public),
                                       route_policy("/compute", policy_routes.COMPUTE)])
    app.router.add_get("", microversions.versions)
    app.router.add_get("/", microversions.versions)
    app.router.add_get("/v2", microversions.version_v20)
    app.router.add_get("/v2/", microversions.version_v20)
    app.router.add_get("/v2.1", microversions.version)
    app.router.add_get("/v2.1/", microversions.version)
    flavors.add_routes(app)
    flavor_manage.add_routes(app)
    flavor_access.add_routes(app)  # os-flavor-access (issue 16)
    servers.add_routes(app)
    extensions.add_routes(app)
    extension_info.add_routes(app)  # the deprecated /extensions list (issue 16)
    availability_zones.add_routes(app)  # os-availability-zone (issue 16)
    server_tags.add_routes(app)  # /servers/{id}/tags (2.26, issue 16)
    server_password.add_routes(app)  # os-server-password (issue 16)
    hypervisors.add_routes(app)  # os-hypervisors (issue 16)
    hosts.add_routes(app)  # os-hosts, up to 2.42 (issue 16)
    migrations.add_routes(app)  # os-migrations, /servers/{id}/migrations (issue 16)
    compute_services.add_routes(app)  # os-services (issue 16)
    aggregates.add_routes(app)  # os-aggregates (issue 16)
    tenant_usage.add_routes(app)  # os-simple-tenant-usage (issue 16)
    quota_classes.add_routes(app)  # os-quota-class-sets (issue 16)
    network_proxy.add_routes(app)  # os-networks, os-tenant-networks, up to 2.35 (issue 16)
    server_diagnostics.add_routes(app)  # /servers/{id}/diagnostics (issue 16)
    image_proxy.add_routes(app)  # images and their metadata, up to 2.35 (issue 16)
    volume_proxy.add_routes(app)  # os-volumes, os-snapshots, up to 2.35 (issue 16)
    security_group_proxy.add_routes(app)  # os-security-groups, -rules, a server's (issue 16)
    floating_ips.add_routes(app)  # os-floating-ips and -pools, Nova's proxy of Neutron's (issue 17, writes 16)
    usage_audit_log.add_routes(app)  # os-instance_usage_audit_log, admins (issue 16)
    remote_consoles.add_routes(app)  # remote-consoles and the serial console's websocket (issue 16)
    return app
