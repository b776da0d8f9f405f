"""Cinder's read routes over the volume hosts of every cell (admin), and the volume summary.

    GET /volume/v3/{project_id}/os-services[?host=&binary=]     cinder-volume per volume host, cinder-scheduler
                                                                per cell (its conductor places volumes)
    GET .../scheduler-stats/get_pools[?detail=true]             one pool per volume host: host@backend#backend
    GET .../capabilities/{host}                                 a volume host's backend (host, host@backend
                                                                or its pool name)
    GET .../os-hosts, .../os-hosts/{host}                       the services by host; a volume host's usage
    GET .../volumes/summary                                     3.12: count and size of the caller's volumes
                                                                (every project's with all_tenants, admins)
    GET .../extensions                                          what this Cinder serves, as Cinder lists them

A volume host is named as Cinder names a backend: `<host>@<backend>`, its one pool `<host>@<backend>#<backend>`
(the backend: file or lvm), as a volume's os-vol-host-attr:host shows it (api/volume/views.py). Services
cannot be disabled here (no PUT): every one is `enabled`; `up` while its worker is in its cell's directory.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from api.cell_choice import DEFAULT_ZONE
from api.http import allowed, context, parse_bool
from api.keys import ROUTER
from api.timeutil import iso_naive_micro, utcnow
from api.volume import cells
from api.volume.microversions import version_of
from cells import errors
from cells.db.volumes import DRIVER_VERSION, VENDOR, storage_protocols

EPOCH = "1970-01-01T00:00:00"  # a cell that did not answer now: no heartbeat time here, and Cinder's schema wants one
EXTENSIONS = (  # (alias, name, description) of what this API serves
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("os-vol-tenant-attr", "VolumeTenantAttribute", "Expose the internal project_id as an attribute of a volume."),
    ("os-vol-host-attr", "VolumeHostAttribute", "Expose host as an attribute of a volume."),
    ("os-quota-sets", "Quotas", "Quota management support."),
    ("os-availability-zone", "AvailabilityZones", "Describe Availability Zones."),
    ("os-volume-actions", "VolumeActions", "Enable volume actions."),
    ("os-admin-actions", "AdminActions", "Enable admin actions."),
    ("os-snapshot-actions", "SnapshotActions", "Enable snapshot manager actions."),
    ("os-extended-snapshot-attributes", "ExtendedSnapshotAttributes", "Extended SnapshotAttributes support."),
    ("os-types-manage", "TypesManage", "Types manage support."),
    ("os-types-extra-specs", "TypesExtraSpecs", "Type extra specs support."),
    ("os-services", "Services", "Services support."),
    ("scheduler-stats", "Scheduler_stats", "Scheduler stats support."),
    ("capabilities", "Capabilities", "Capabilities support."),
    ("os-used-limits", "UsedLimits", "Provide data on limited resources that are being used."),
)


def backend_name(host: Mapping[str, Any]) -> str:
    return f"{host['host']}@{host['backend']}"


def pool_name(host: Mapping[str, Any]) -> str:
    return f"{backend_name(host)}#{host['backend']}"


async def _hosts(request: web.Request) -> list[dict[str, Any]]:
    return (await cells.volume_hosts(request.config_dict[ROUTER], context(request)))[1]


async def _cells_and_hosts(request: web.Request) -> tuple[list[tuple[str, bool, str]], list[dict[str, Any]]]:
    """([(cell path, up, when it last answered)] for every cell: its conductor is Cinder's scheduler, up
    when it answered now; the volume hosts)."""
    answered, hosts = await cells.volume_hosts(request.config_dict[ROUTER], context(request))
    now = utcnow().isoformat()
    return [(path, path in answered, now if path in answered else EPOCH)
            for path in sorted(request.config_dict[ROUTER].cells)], hosts


def _service(binary: str, host: str, up: bool, updated: str | None, version: tuple[int, int],
             marks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Cinder's service view; `marks`: a volume host's os-services state (api/volume/services.py)."""
    marks = marks or {}
    out: dict[str, Any] = {"binary": binary, "host": host, "zone": DEFAULT_ZONE,
                           "status": "disabled" if marks.get("disabled") else "enabled",
                           "state": "up" if up else "down", "updated_at": iso_naive_micro(updated),
                           "disabled_reason": marks.get("disabled_reason")}
    if version >= (3, 7):
        out["cluster"] = None
    if binary == "cinder-volume":
        out.update({"frozen": bool(marks.get("frozen")), "replication_status": "disabled",
                    "active_backend_id": None})
        if version >= (3, 49):
            out["backend_state"] = "up" if up else "down"
    return out


async def services(request: web.Request) -> web.Response:
    version, query = version_of(request), request.query
    schedulers, hosts = await _cells_and_hosts(request)
    out = [_service("cinder-scheduler", path, up, when, version) for path, up, when in schedulers]
    out += [_service("cinder-volume", backend_name(h), bool(h["up"]), h.get("updated_at"), version, h) for h in hosts]
    if query.get("binary"):
        out = [s for s in out if s["binary"] == query["binary"]]
    if query.get("host"):  # Cinder matches the host with or without its @backend
        out = [s for s in out if query["host"] in (s["host"], s["host"].partition("@")[0])]
    return web.json_response({"services": out})


def _capabilities(host: Mapping[str, Any]) -> dict[str, Any]:
    return {"volume_backend_name": str(host["backend_name"]), "vendor_name": VENDOR, "driver_version": DRIVER_VERSION,
            "storage_protocol": storage_protocols(list(host.get("targets") or []))[0]}


async def pools(request: web.Request) -> web.Response:
    detail = parse_bool(request.query.get("detail", "false"))
    if detail is None:
        raise errors.Invalid(f"Invalid value for 'detail': {request.query.get('detail')!r} (a boolean)")
    out = []
    for h in await _hosts(request):
        pool: dict[str, Any] = {"name": pool_name(h)}
        if detail:
            pool["capabilities"] = {**_capabilities(h), "updated": iso_naive_micro(h.get("updated_at")),
                                    "timestamp": iso_naive_micro(h.get("updated_at")), "QoS_support": False,
                                    "total_capacity_gb": int(h["capacity_gb"]),
                                    "free_capacity_gb": max(0, int(h["capacity_gb"]) - int(h["allocated_gb"])),
                                    "allocated_capacity_gb": int(h["allocated_gb"]), "reserved_percentage": 0}
        out.append(pool)
    return web.json_response({"pools": out})


def _named(hosts: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The volume host `name` names: host, host@backend or host@backend#pool (404 otherwise)."""
    for h in hosts:
        if name in (h["host"], backend_name(h), pool_name(h)):
            return h
    raise errors.NotFound(f"Host {name} could not be found.")


async def capabilities(request: web.Request) -> web.Response:
    h = _named(await _hosts(request), request.match_info["host"])
    return web.json_response({**_capabilities(h), "pool_name": None, "description": None, "visibility": None,
                              "namespace": f"OS::Storage::Capabilities::{backend_name(h)}", "properties": {},
                              "replication_targets": [], "display_name": None})


async def hosts_index(request: web.Request) -> web.Response:
    def entry(service: str, name: str, up: bool, updated: str | None) -> dict[str, Any]:
        return {"host_name": name, "service": service, "zone": DEFAULT_ZONE, "service-state": "enabled",
                "service-status": "available" if up else "unavailable", "last-update": iso_naive_micro(updated)}
    schedulers, hosts = await _cells_and_hosts(request)
    out = [entry("cinder-scheduler", path, up, when) for path, up, when in schedulers]
    out += [entry("cinder-volume", backend_name(h), bool(h["up"]), h.get("updated_at")) for h in hosts]
    return web.json_response({"hosts": out})


async def host_show(request: web.Request) -> web.Response:
    h = _named(await _hosts(request), request.match_info["host"])
    total = {"host": backend_name(h), "project": "(total)", "volume_count": str(h["volume_count"]),
             "total_volume_gb": str(h["volume_gb"]), "snapshot_count": str(h["snapshot_count"]),
             "total_snapshot_gb": str(h["snapshot_gb"])}
    return web.json_response({"host": [{"resource": total}]})


async def summary(request: web.Request) -> web.Response:
    """3.12; 3.36 adds every metadata key with the values the volumes give it."""
    if version_of(request) < (3, 12):  # Cinder has no such route before 3.12
        raise errors.NotFound("The resource could not be found.")
    ctx = context(request)
    filters: dict[str, Any] = {"project_id": ctx.project}
    if parse_bool(request.query.get("all_tenants", "false")) and allowed(request, "volume:get_all_tenants"):
        filters = {}
    records = await cells.list_all(request.config_dict[ROUTER], ctx, filters, strict=True)
    body: dict[str, Any] = {"total_size": sum(int(r["size"]) for r in records), "total_count": len(records)}
    if version_of(request) >= (3, 36):
        meta: dict[str, set[str]] = {}
        for r in records:
            for key, value in (r.get("metadata") or {}).items():
                meta.setdefault(key, set()).add(value)
        body["metadata"] = {k: sorted(v) for k, v in meta.items()}
    return web.json_response({"volume-summary": body})


async def extensions(request: web.Request) -> web.Response:
    context(request)
    return web.json_response({"extensions": [
        {"alias": alias, "name": name, "description": text, "links": [], "updated": "2013-10-03T00:00:00+00:00"}
        for alias, name, text in EXTENSIONS]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/{project_id}/os-services", services)
    app.router.add_get("/v3/{project_id}/scheduler-stats/get_pools", pools)
    app.router.add_get("/v3/{project_id}/capabilities/{host}", capabilities)
    app.router.add_get("/v3/{project_id}/os-hosts", hosts_index)
    app.router.add_get("/v3/{project_id}/os-hosts/{host}", host_show)
    app.router.add_get("/v3/{project_id}/volumes/summary", summary)
    app.router.add_get("/v3/{project_id}/extensions", extensions)
