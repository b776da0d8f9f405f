"""/compute/v2.1/flavors: the Nova flavor views and list filters. Microversions: 2.55 description (in
lists too), 2.61 extra_specs in the flavor, 2.75 swap 0 instead of "" for none."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import ColumnElement, Connection, Select, bindparam, exists, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from api.compute.microversions import Microversion, version_of
from api.compute.views import links
from api.db.schema import flavor_projects, flavors
from api.http import allowed, context, parse_bool, query_int
from api.keys import ENGINE, public_url
from cells import errors
from cells.context import RequestContext
from cells.db.fast import AnyRow, Fast

MAX_LIMIT = 1000


def flavor_dict(row: AnyRow) -> dict[str, Any]:
    """The flavor as an instance record carries it (cells/objects/instance.py)."""
    return {"id": row.id, "name": row.name, "vcpus": row.vcpus, "ram": row.ram, "disk": row.disk,
            "ephemeral": row.ephemeral, "swap": row.swap, "extra_specs": dict(row.extra_specs or {})}


def _brief(base: str, row: Row[Any], version: Microversion) -> dict[str, Any]:
    view = {"id": row.id, "name": row.name, "links": links(base, "flavors", row.id)}
    if version >= (2, 55):
        view["description"] = row.description
    return view


def flavor_detail(base: str, row: AnyRow, version: Microversion) -> dict[str, Any]:
    view = {
        "id": row.id, "name": row.name, "ram": row.ram, "disk": row.disk, "vcpus": row.vcpus,
        "OS-FLV-EXT-DATA:ephemeral": row.ephemeral, "OS-FLV-DISABLED:disabled": row.disabled,
        "os-flavor-access:is_public": row.is_public, "swap": row.swap if version >= (2, 75) else row.swap or "",
        "rxtx_factor": row.rxtx_factor, "links": links(base, "flavors", row.id),
    }
    if version >= (2, 55):
        view["description"] = row.description
    if version >= (2, 61):  # Nova's default policy lets whoever sees the flavor read its extra specs
        view["extra_specs"] = {str(k): str(v) for k, v in (row.extra_specs or {}).items()}
    return view


def _shared_with(project: str | None) -> ColumnElement[bool]:
    """The flavor is shared with `project` (Nova's Flavor.projects.any(project_id=...))."""
    return exists().where(flavor_projects.c.flavor_id == flavors.c.id,
                          flavor_projects.c.project_id == (project or ""))


def _list_query(request: web.Request) -> tuple[Select[Any], int, str | None]:
    q = request.query
    query = select(flavors).where(flavors.c.disabled.is_(False))
    # Non-admins see public flavors and the private ones shared with their project (os-flavor-access);
    # admins may ask for private ones (is_public=false) or all (is_public=none), as Nova.
    is_public: bool | None = True
    sees_private = allowed(request, "os_compute_api:os-flavor-access")
    if sees_private and "is_public" in q and q["is_public"].strip().lower() == "none":
        is_public = None
    elif sees_private and "is_public" in q:
        is_public = parse_bool(q["is_public"])
        if is_public is None:
            raise errors.Invalid(f"Invalid is_public filter [{q['is_public']}]")
    if is_public:
        query = query.where(or_(flavors.c.is_public.is_(True), _shared_with(context(request).project)))
    elif is_public is not None:
        query = query.where(flavors.c.is_public.is_(False))
    min_ram = query_int(q, "minRam", message=f"Invalid minRam filter [{q.get('minRam')}]")
    min_disk = query_int(q, "minDisk", message=f"Invalid minDisk filter [{q.get('minDisk')}]")
    if min_ram is not None:
        query = query.where(flavors.c.ram >= min_ram)
    if min_disk is not None:
        query = query.where(flavors.c.disk >= min_disk)
    limit = min(query_int(q, "limit", MAX_LIMIT) or 0, MAX_LIMIT)
    return query.order_by(flavors.c.id), limit, q.get("marker")


async def _list(request: web.Request, detail: bool) -> web.Response:
    query, limit, marker = _list_query(request)
    async with request.config_dict[ENGINE].connect() as conn:
        if marker is not None:
            found = (await conn.execute(select(flavors.c.id).where(flavors.c.id == marker))).first()
            if found is None:
                raise errors.MarkerNotFound(marker=marker)
            query = query.where(flavors.c.id > marker)
        rows = (await conn.execute(query.limit(limit))).all()
    base = public_url(request)
    view = flavor_detail if detail else _brief
    version = version_of(request)
    body: dict[str, Any] = {"flavors": [view(base, r, version) for r in rows]}
    if rows and len(rows) == limit and "limit" in request.query:
        suffix = "/detail" if detail else ""
        body["flavors_links"] = [{"rel": "next", "href": f"{base}/compute/v2.1/flavors{suffix}?limit={limit}"
                                                         f"&marker={rows[-1].id}"}]
    return web.json_response(body)


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def get_flavor(engine: AsyncEngine, ctx: RequestContext, flavor_id: str) -> AnyRow:
    """One flavor the caller may use; FlavorNotFound otherwise (a private flavor: admins and the projects
    it is shared with)."""
    async with engine.connect() as conn:
        return await conn.run_sync(flavor_of, ctx, flavor_id)


_FLAVOR_ANY_SELECT = select(flavors).where(flavors.c.id == bindparam("b_id"))  # built once: every boot reads one
_FLAVOR_ANY = Fast(_FLAVOR_ANY_SELECT)
# a private flavor: an admin's, or a project's it is shared with
_FLAVOR_VISIBLE = Fast(_FLAVOR_ANY_SELECT.where(or_(
    flavors.c.is_public.is_(True),
    exists().where(flavor_projects.c.flavor_id == flavors.c.id,
                   flavor_projects.c.project_id == bindparam("b_project")))))


def flavor_of(conn: Connection, ctx: RequestContext, flavor_id: str) -> AnyRow:
    """get_flavor() in a unit of work (api/db/engine.py make_database)."""
    sees_private = ctx.allows("os_compute_api:os-flavor-access", {"project_id": ctx.project})
    row = _FLAVOR_ANY.first(conn, {"b_id": flavor_id}) if sees_private else \
        _FLAVOR_VISIBLE.first(conn, {"b_id": flavor_id, "b_project": ctx.project or ""})
    if row is None:
        raise errors.FlavorNotFound(flavor_id=flavor_id)
    return row


async def show(request: web.Request) -> web.Response:
    row = await get_flavor(request.config_dict[ENGINE], context(request), request.match_info["flavor_id"])
    return web.json_response({"flavor": flavor_detail(public_url(request), row, version_of(request))})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/flavors", index)
    app.router.add_get("/v2.1/flavors/detail", detail)
    app.router.add_get("/v2.1/flavors/{flavor_id}", show)

