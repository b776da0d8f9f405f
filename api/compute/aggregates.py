"""/compute/v2.1/os-aggregates: Nova's host aggregates (admins only: 403), kept in the API DB as Nova's
API DB keeps them (an aggregate may hold hosts of several cells).

    GET    /os-aggregates                  {"aggregates": [...]}
    POST   /os-aggregates                  {"aggregate": {name, availability_zone}}
    GET    /os-aggregates/{id}             one
    PUT    /os-aggregates/{id}             {"aggregate": {name?, availability_zone?}}
    DELETE /os-aggregates/{id}             400 while it has hosts (Nova's)
    POST   /os-aggregates/{id}/action      {"add_host": {host}}, {"remove_host": {host}},
                                           {"set_metadata": {"metadata": {key: value | null}}}

An aggregate's `availability_zone` (kept in its metadata, as Nova) is the zone of its hosts: listed by
os-availability-zone, shown as its servers' OS-EXT-AZ, and a boot asking for it is placed on those hosts
only (the request spec's `zone_hosts`, honoured by the cell scheduler). A host is in one zone at most
(409 on add_host otherwise, 400 on an update that would split one). A zone name may not be a site or
cell of cluster.yaml (those are zones already) nor `internal`. Flavor extra specs
`aggregate_instance_extra_specs:KEY=VALUE` keep a boot to hosts whose aggregates carry KEY=VALUE (Nova's
AggregateInstanceExtraSpecsFilter, equality only). The id is an integer; 2.41 adds the uuid.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.compute.microversions import version_of
from api.db.schema import aggregate_hosts, aggregates
from api.http import authorize, json_body
from api.keys import CLUSTER, ENGINE
from api.timeutil import iso_naive_micro, utcnow
from api.validation import validate
from cells import errors
from cells.config import ClusterConfig

UUID_VERSION = (2, 41)
AZ_KEY = "availability_zone"
INTERNAL_ZONE = "internal"
EXTRA_SPEC_SCOPE = "aggregate_instance_extra_specs:"
_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^(?!\s)[^\x00-\x1f\x7f]*(?<!\s)$"}
_ZONE = {"type": ["string", "null"], "minLength": 1, "maxLength": 255,
         "pattern": r"^(?!\s)[^\x00-\x1f\x7f]*(?<!\s)$"}
CREATE = {"type": "object", "properties": {"aggregate": {
    "type": "object", "properties": {"name": _NAME, "availability_zone": _ZONE},
    "required": ["name"], "additionalProperties": False}}, "required": ["aggregate"], "additionalProperties": False}
UPDATE = {"type": "object", "properties": {"aggregate": {
    "type": "object", "properties": {"name": _NAME, "availability_zone": _ZONE},
    "additionalProperties": False}}, "required": ["aggregate"], "additionalProperties": False}
_HOST = {"type": "object", "properties": {"host": {"type": "string", "minLength": 1, "maxLength": 255}},
         "required": ["host"], "additionalProperties": False}
_METADATA = {"type": "object", "properties": {"metadata": {
    "type": "object", "patternProperties": {r"^[a-zA-Z0-9-_:. /]{1,255}$": {
        "type": ["string", "null"], "maxLength": 255}}, "additionalProperties": False}},
    "required": ["metadata"], "additionalProperties": False}
ACTIONS = {"add_host": _HOST, "remove_host": _HOST, "set_metadata": _METADATA}


class AggregateNotFound(errors.NotFound):
    code, msg = "aggregate_not_found", "Aggregate {aggregate_id} could not be found."


# --- reads the rest of the API uses ---------------------------------------------------------------

async def _rows(conn: AsyncConnection) -> list[tuple[Any, list[str]]]:
    rows = (await conn.execute(select(aggregates).order_by(aggregates.c.id))).all()
    members: dict[int, list[str]] = {}
    for agg_id, host in (await conn.execute(select(aggregate_hosts.c.aggregate_id, aggregate_hosts.c.host)
                                            .order_by(aggregate_hosts.c.host))).all():
        members.setdefault(int(agg_id), []).append(str(host))
    return [(r, members.get(int(r.id), [])) for r in rows]


async def host_zones(engine: AsyncEngine) -> dict[str, str]:
    """host -> the availability zone its aggregates give it (hosts in no zoned aggregate are left out)."""
    async with engine.connect() as conn:
        return {h: str(r.metadata[AZ_KEY]) for r, hosts in await _rows(conn) if r.metadata.get(AZ_KEY)
                for h in hosts}


async def zone_hosts(engine: AsyncEngine, zone: str) -> set[str] | None:
    """The hosts of the aggregate zone `zone`; None when no aggregate names it."""
    async with engine.connect() as conn:
        found = [hosts for r, hosts in await _rows(conn) if r.metadata.get(AZ_KEY) == zone]
    return {h for hosts in found for h in hosts} if found else None


async def extra_spec_hosts(engine: AsyncEngine, extra_specs: Mapping[str, Any]) -> set[str] | None:
    """Hosts whose aggregates carry every `aggregate_instance_extra_specs:KEY` = VALUE of the flavor; None
    when the flavor asks for none."""
    wanted = {k[len(EXTRA_SPEC_SCOPE):]: str(v) for k, v in extra_specs.items() if k.startswith(EXTRA_SPEC_SCOPE)}
    if not wanted:
        return None
    carried: dict[str, dict[str, set[str]]] = {}  # host -> key -> values of its aggregates
    async with engine.connect() as conn:
        for row, hosts in await _rows(conn):
            for host in hosts:
                for key, value in row.metadata.items():
                    carried.setdefault(host, {}).setdefault(key, set()).add(str(value))
    return {h for h, meta in carried.items() if all(v in meta.get(k, set()) for k, v in wanted.items())}


async def forget_host(engine: AsyncEngine, host: str) -> None:
    """A deleted compute service leaves its aggregates (Nova's)."""
    async with engine.begin() as conn:
        await conn.execute(delete(aggregate_hosts).where(aggregate_hosts.c.host == host))


# --- the API --------------------------------------------------------------------------------------

def _view(row: Any, hosts: list[str], version: tuple[int, int]) -> dict[str, Any]:
    out = {"id": int(row.id), "name": row.name, "availability_zone": row.metadata.get(AZ_KEY),
           "hosts": hosts, "metadata": dict(row.metadata), "created_at": iso_naive_micro(row.created_at),
           "updated_at": iso_naive_micro(row.updated_at), "deleted": False, "deleted_at": None}
    if version >= UUID_VERSION:
        out["uuid"] = row.uuid
    return out


async def _get(conn: AsyncConnection, aggregate_id: str) -> tuple[Any, list[str]]:
    if not aggregate_id.isdigit():
        raise AggregateNotFound(aggregate_id=aggregate_id)
    for row, hosts in await _rows(conn):
        if row.id == int(aggregate_id):
            return row, hosts
    raise AggregateNotFound(aggregate_id=aggregate_id)


def _check_zone_name(cluster: ClusterConfig, zone: str | None) -> None:
    if zone is None:
        return
    if zone == INTERNAL_ZONE:
        raise errors.Invalid(f"Aggregates cannot have the availability zone '{INTERNAL_ZONE}': it names the "
                             "internal services' zone.")
    if any(zone in (c.site, c.name, c.path) for c in cluster.cells):
        raise errors.Invalid(f"The availability zone {zone} is a site or cell of this cloud already.")


async def _zone_conflicts(conn: AsyncConnection, hosts: list[str], zone: str | None, skip: int) -> list[str]:
    """The hosts that another aggregate (not `skip`) puts in a zone other than `zone`."""
    if zone is None:
        return []
    return sorted({h for row, members in await _rows(conn) if row.id != skip and row.metadata.get(AZ_KEY)
                   and row.metadata[AZ_KEY] != zone for h in members if h in hosts})


async def index(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-aggregates:index")
    version = version_of(request)
    async with request.config_dict[ENGINE].connect() as conn:
        return web.json_response({"aggregates": [_view(r, h, version) for r, h in await _rows(conn)]})


async def show(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-aggregates:show")
    async with request.config_dict[ENGINE].connect() as conn:
        row, hosts = await _get(conn, request.match_info["aggregate_id"])
    return web.json_response({"aggregate": _view(row, hosts, version_of(request))})


async def create(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-aggregates:create")
    body = await json_body(request)
    validate(CREATE, body)
    spec = body["aggregate"]
    zone = spec.get("availability_zone")
    _check_zone_name(request.config_dict[CLUSTER], zone)
    metadata = {AZ_KEY: zone} if zone else {}
    try:
        async with request.config_dict[ENGINE].begin() as conn:
            await conn.execute(insert(aggregates).values(uuid=str(uuidlib.uuid4()), name=spec["name"],
                                                         metadata=metadata, created_at=utcnow()))
            row, hosts = next((r, h) for r, h in await _rows(conn) if r.name == spec["name"])
    except IntegrityError:
        raise errors.Conflict(f"Aggregate {spec['name']} already exists.") from None
    # Nova's create answers without hosts and metadata (its response schema forbids them)
    made = {k: v for k, v in _view(row, hosts, version_of(request)).items() if k not in ("hosts", "metadata")}
    return web.json_response({"aggregate": made})


async def update_aggregate(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-aggregates:update")
    body = await json_body(request)
    validate(UPDATE, body)
    spec = body["aggregate"]
    if not spec:
        raise errors.Invalid("Invalid input for field/attribute aggregate: name or availability_zone is needed.")
    try:
        async with request.config_dict[ENGINE].begin() as conn:
            row, hosts = await _get(conn, request.match_info["aggregate_id"])
            metadata = dict(row.metadata)
            if "availability_zone" in spec:
                zone = spec["availability_zone"]
                _check_zone_name(request.config_dict[CLUSTER], zone)
                if clash := await _zone_conflicts(conn, hosts, zone, row.id):
                    raise errors.Invalid(f"Cannot update aggregate {row.id}: hosts {', '.join(clash)} are in "
                                         "another availability zone already.")
                metadata.pop(AZ_KEY, None)
                metadata.update({AZ_KEY: zone} if zone else {})
            await conn.execute(update(aggregates).where(aggregates.c.id == row.id).values(
                name=spec.get("name", row.name), metadata=metadata, updated_at=utcnow()))
            row, hosts = await _get(conn, str(row.id))
    except IntegrityError:
        raise errors.Conflict(f"Aggregate {spec.get('name')} already exists.") from None
    return web.json_response({"aggregate": _view(row, hosts, version_of(request))})


async def delete_aggregate(request: web.Request) -> web.Response:
    authorize(request, "os_compute_api:os-aggregates:delete")
    async with request.config_dict[ENGINE].begin() as conn:
        row, hosts = await _get(conn, request.match_info["aggregate_id"])
        if hosts:
            raise errors.Invalid(f"Cannot remove aggregate {row.id}: it has hosts ({', '.join(hosts)}).")
        await conn.execute(delete(aggregates).where(aggregates.c.id == row.id))
    return web.Response(status=200)


def _compute_hosts(cluster: ClusterConfig) -> set[str]:
    return {s.host for s in cluster.services if s.kind == "compute"}


async def action(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in ACTIONS:
        raise errors.Invalid(f"Invalid request body: one of {', '.join(ACTIONS)} was expected.")
    (name, args), = body.items()
    authorize(request, f"os_compute_api:os-aggregates:{name}")
    validate(ACTIONS[name], args)
    cluster = request.config_dict[CLUSTER]
    async with request.config_dict[ENGINE].begin() as conn:
        row, hosts = await _get(conn, request.match_info["aggregate_id"])
        c = aggregate_hosts.c
        if name == "add_host":
            host = args["host"]
            if host not in _compute_hosts(cluster):
                raise errors.NotFound(f"Compute host {host} could not be found.")
            if host in hosts:
                raise errors.Conflict(f"Aggregate {row.id} already has host {host}.")
            if await _zone_conflicts(conn, [host], row.metadata.get(AZ_KEY), row.id):
                raise errors.Conflict(f"Cannot add host {host} to aggregate {row.id}: it is in another "
                                      "availability zone already.")
            await conn.execute(insert(aggregate_hosts).values(aggregate_id=row.id, host=host))
        elif name == "remove_host":
            host = args["host"]
            if host not in hosts:
                raise errors.NotFound(f"Cannot remove host {host} in aggregate {row.id}: not found.")
            await conn.execute(delete(aggregate_hosts).where(c.aggregate_id == row.id, c.host == host))
        else:
            metadata = dict(row.metadata)
            for key, value in args["metadata"].items():
                if key == AZ_KEY:
                    _check_zone_name(cluster, value)
                    if clash := await _zone_conflicts(conn, hosts, value, row.id):
                        raise errors.Invalid(f"Cannot update aggregate {row.id}: hosts {', '.join(clash)} are "
                                             "in another availability zone already.")
                if value is None:
                    metadata.pop(key, None)
                else:
                    metadata[key] = value
            await conn.execute(update(aggregates).where(aggregates.c.id == row.id).values(metadata=metadata))
        await conn.execute(update(aggregates).where(aggregates.c.id == row.id).values(updated_at=utcnow()))
        row, hosts = await _get(conn, str(row.id))
    return web.json_response({"aggregate": _view(row, hosts, version_of(request))})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-aggregates", index)
    app.router.add_post("/v2.1/os-aggregates", create)
    app.router.add_get("/v2.1/os-aggregates/{aggregate_id}", show)
    app.router.add_put("/v2.1/os-aggregates/{aggregate_id}", update_aggregate)
    app.router.add_delete("/v2.1/os-aggregates/{aggregate_id}", delete_aggregate)
    app.router.add_post("/v2.1/os-aggregates/{aggregate_id}/action", action)


@dataclass(frozen=True)
class Placement:
    """Where a boot may go by the aggregates: `only` hosts (None: any), never `excluded` ones; `cells` the
    cells holding `only` (for the cell choice), and `zone` what the cell choice filters by (None when the
    zone is an aggregate's, which no cell is)."""
    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()
    cells: tuple[str, ...] = ()
    zone: str | None = None

    def spec_part(self) -> dict[str, Any]:
        """What the cell scheduler reads of it (cells/scheduler/manager.py)."""
        out: dict[str, Any] = {"excluded_hosts": sorted(self.excluded)} if self.excluded else {}
        if self.only is not None:
            out["only_hosts"] = sorted(self.only)
        return out


async def placement(engine: AsyncEngine, cluster: ClusterConfig, zone: str | None, default_zone: str,
                    extra_specs: Mapping[str, Any], zone_exists: Callable[[str], bool]) -> Placement:
    """The boot's placement by aggregate zones and aggregate_instance_extra_specs; 400 for a zone that is
    neither an aggregate's nor a site or cell."""
    only: set[str] | None = None
    excluded: set[str] = set()
    cell_zone = zone
    if zone and zone != default_zone:
        in_zone = await zone_hosts(engine, zone)
        if in_zone is not None:
            only, cell_zone = in_zone, None
        elif not zone_exists(zone):
            raise errors.Invalid(f"The requested availability zone is not available: {zone}")
        else:  # a site or cell: its hosts that no aggregate puts in a zone of its own
            excluded = set(await host_zones(engine))
    by_specs = await extra_spec_hosts(engine, extra_specs)
    if by_specs is not None:
        only = by_specs if only is None else only & by_specs
    cells = sorted({s.cell for s in cluster.services if s.kind == "compute" and s.host in (only or ()) and s.cell})
    return Placement(None if only is None else frozenset(only), frozenset(excluded), tuple(cells), cell_zone)
