"""GET /compute/v2.1/extensions[/{alias}]: Nova's deprecated extension list, kept for old clients (Tempest's
ExtensionsTest, novaclient's `list-extensions`). As Nova's v2.1 it is a fixed list in the v2 shape, each entry
with Nova's placeholder namespace and date; here it names only what this cloud serves."""
from __future__ import annotations

from aiohttp import web

from api.http import context
from cells import errors

NAMESPACE, UPDATED = "http://docs.openstack.org/compute/ext/fake_xml", "2014-12-03T00:00:00Z"  # Nova's, for all
# (name, alias, description): what this cloud serves, by Nova's names
SERVED = (
    ("AdminActions", "os-admin-actions", "Enable admin-only server actions"),
    ("AttachInterfaces", "os-attach-interfaces", "Attach interface support."),
    ("AvailabilityZone", "os-availability-zone", "1. Add availability_zone to the Create Server API."),
    ("ConsoleOutput", "os-console-output", "Console log output support, with tailing ability."),
    ("Consoles", "os-consoles", "Interactive Console support."),
    ("DeferredDelete", "os-deferred-delete", "Instance deferred delete."),
    ("DiskConfig", "OS-DCF", "Disk Management Extension."),
    ("ExtendedStatus", "OS-EXT-STS", "Extended Status support."),
    ("FlavorAccess", "os-flavor-access", "Flavor access support."),
    ("FlavorExtraSpecs", "os-flavor-extra-specs", "Flavors extra specs support."),
    ("FlavorManage", "os-flavor-manage", "Flavor create/delete API support."),
    ("Hosts", "os-hosts", "Admin-only host administration."),
    ("Hypervisors", "os-hypervisors", "Admin-only hypervisor administration."),
    ("InstanceActions", "os-instance-actions", "View a log of actions and events taken on an instance."),
    ("Keypairs", "os-keypairs", "Keypair Support."),
    ("Migrations", "os-migrations", "Provide data on migrations."),
    ("QuotaClasses", "os-quota-class-sets", "Quota classes management support."),
    ("Quotas", "os-quota-sets", "Quotas management support."),
    ("Rescue", "os-rescue", "Instance rescue mode."),
    ("SecurityGroups", "os-security-groups", "Security group support."),
    ("ServerDiagnostics", "os-server-diagnostics", "Allow Admins to view server diagnostics through server id."),
    ("ServerGroups", "os-server-groups", "Server group support."),
    ("Services", "os-services", "Services support."),
    ("SimpleTenantUsage", "os-simple-tenant-usage", "Simple tenant usage extension."),
    ("Volumes", "os-volumes", "Volumes support."),
)
EXTENSIONS = {alias: {"name": name, "alias": alias, "description": text, "namespace": NAMESPACE, "updated": UPDATED,
                      "links": []} for name, alias, text in SERVED}


async def index(request: web.Request) -> web.Response:
    context(request)
    return web.json_response({"extensions": list(EXTENSIONS.values())})


async def show(request: web.Request) -> web.Response:
    context(request)
    alias = request.match_info["alias"]
    if alias not in EXTENSIONS:
        raise errors.NotFound(f"Extension {alias} could not be found.")
    return web.json_response({"extension": EXTENSIONS[alias]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/extensions", index)
    app.router.add_get("/v2.1/extensions/{alias}", show)
