"""/volume/v3/{project_id}/volumes: create, list (brief and detail), show, update, delete.

Validate -> quota -> act: a request is checked whole before anything is made
(size in whole GiB from 1 to MAX_SIZE_GB, strings, metadata, no unsupported
source such as an image or a backup), then the project's volume quotas
(volumes, gigabytes: 413 as Cinder) are checked and the new volume reserved in
one write unit of the API DB (api/quota.py reserve_volume), so two concurrent
creates, through one API worker or several, cannot both take the last unit. A new volume answers 202 in status `creating`; the cell's conductor
places it on a volume host and it becomes `available` (or `error`, with the
reason in its record). A volume made from a snapshot (`snapshot_id`) or from
another volume (`source_volid`) is made in its source's cell, on its source's
host, at least as large as its source (its size when none is given).

The metadata key `cellcloud:target` (local, tgt, nbd, lio) asks for that
export target when the volume is attached; without it the volume host uses
its first target that reaches the server's host.
"""
from __future__ import annotations

import ast
import asyncio
import datetime
import operator
import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from api import quota
from api.http import allowed, context, is_uuid, json_body, parse_bool, query_int
from api.keys import DB, ROUTER, public_url
from api.timeutil import parse
from api.volume import actions, cells, groups, image_metadata, source_images, types, upload
from api.volume.microversions import version_of
from api.volume.views import volume_brief, volume_detail
from cells import errors
from cells.conductor.flows.volumes import MAX_SIZE_GB
from cells.context import RequestContext
from cells.db.volumes import CAPABILITY_SPECS
from cells.rpcapi.volume import VolumeConductorAPI

MAX_LIMIT = 1000
TARGET_KEY = "cellcloud:target"
TARGETS = ("local", "tgt", "nbd", "lio")
# create-body keys this cloud cannot honour when they are set
UNSUPPORTED_SOURCES = {"backup_id": "a backup", "consistencygroup_id": "a consistency group",
                       "source_replica": "a replica"}
CREATE_KEYS = {"size", "name", "display_name", "description", "display_description", "availability_zone",
               "volume_type", "metadata", "multiattach", "OS-SCH-HNT:scheduler_hints", "snapshot_id", "source_volid",
               "imageRef", "group_id", *UNSUPPORTED_SOURCES}
UPDATE_KEYS = {"name", "display_name", "description", "display_description", "metadata"}
SORT_KEYS = ("created_at", "updated_at", "name", "size", "status", "id")
SORT_ALIASES = {"display_name": "name"}  # Cinder's older name of the key (Tempest sorts snapshots by it)


# --- validation (pure) --------------------------------------------------------------

def validate_size(raw: Any) -> int:
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise errors.Invalid(f"Invalid input received: Volume size '{raw}' must be an integer and greater than 0")
    if raw > MAX_SIZE_GB:
        raise errors.Invalid(f"Invalid input received: Volume size {raw} GiB is larger than the largest volume "
                             f"this cloud makes ({MAX_SIZE_GB} GiB)")
    return raw


def _string(value: Any, field: str, limit: int = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value}. "
                             f"Expected a string of at most {limit} characters")
    return value


def validate_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise errors.Invalid("Invalid input for field/attribute metadata: expected a map of strings to strings")
    for key, value in raw.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise errors.Invalid(f"Invalid metadata key {key!r}: a string of 1 to 255 characters")
        if not isinstance(value, str) or len(value) > 255:
            raise errors.Invalid(f"Invalid metadata value for {key!r}: a string of at most 255 characters")
    target = raw.get(TARGET_KEY)
    if target is not None and target not in TARGETS:
        raise errors.Invalid(f"Invalid metadata {TARGET_KEY}={target!r}: expected one of {', '.join(TARGETS)}")
    return dict(raw)


def _names(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, alias in (("name", "display_name"), ("description", "display_description")):
        if field in item or alias in item:
            out[field] = _string(item.get(field, item.get(alias)), field, 255 if field == "name" else 65535)
    return out


def _item(body: Any, key: str = "volume") -> Mapping[str, Any]:
    if not isinstance(body, Mapping) or not isinstance(body.get(key), Mapping):
        raise errors.Invalid(f"Missing required element '{key}' in request body.")
    return body[key]  # type: ignore[no-any-return]


def validate_create(body: Any) -> dict[str, Any]:
    item = _item(body)
    unknown = sorted(set(item) - CREATE_KEYS)
    if unknown:
        raise errors.Invalid(f"Invalid input: unexpected attribute(s) {', '.join(unknown)} in volume")
    for key, what in UNSUPPORTED_SOURCES.items():
        if item.get(key) is not None:
            raise errors.Invalid(f"Creating a volume from {what} ({key}) is not supported by this cloud")
    if item.get("multiattach"):
        raise errors.Invalid("multiattach is not supported: a volume is attached to one server at a time")
    sources = {k: _source_id(item[k], k) for k in ("snapshot_id", "source_volid") if item.get(k) is not None}
    if item.get("imageRef") is not None:
        sources["image_ref"] = source_images.image_id_of(item["imageRef"])
    if len(sources) > 1:
        raise errors.Invalid("Invalid input received: give one of snapshot_id, source_volid and imageRef")
    if sources.get("image_ref") and item.get("size") is None:
        raise errors.Invalid("Invalid input received: a volume made from an image needs a size")
    if ("size" not in item or item["size"] is None) and not sources:
        raise errors.Invalid("Invalid input received: a volume size is required")
    size = None if item.get("size") is None else validate_size(item["size"])
    group = {"group_id": _source_id(item["group_id"], "group_id")} if item.get("group_id") is not None else {}
    return {"size": size, **sources, **group, **_names(item), "volume_type": _string(item.get("volume_type"), "volume_type"),
            "availability_zone": _string(item.get("availability_zone"), "availability_zone"),
            "metadata": validate_metadata(item.get("metadata"))}


def _source_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not is_uuid(value):
        raise errors.Invalid(f"Invalid input received: {field} {value!r} is not a UUID")
    return value.lower()


def validate_update(body: Any, key: str = "volume") -> dict[str, Any]:
    """Cinder's PUT of a volume or (key snapshot) a snapshot: name, description and metadata only."""
    item = _item(body, key)
    unknown = sorted(set(item) - UPDATE_KEYS)
    if unknown:
        raise errors.Invalid(f"Invalid input: cannot update {', '.join(unknown)}; updatable: name, description, "
                             "metadata")
    values = _names(item)
    if "metadata" in item:
        values["metadata"] = validate_metadata(item["metadata"])
    return values


def _sort(query: Mapping[str, str]) -> list[tuple[str, bool]]:
    """[(key, descending)] from Cinder's sort=key:dir,... or sort_key/sort_dir; default created_at desc."""
    pairs: list[tuple[str, str]] = []
    if query.get("sort"):
        for part in query["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            pairs.append((key, direction or "desc"))
    elif query.get("sort_key"):
        pairs.append((query["sort_key"], query.get("sort_dir", "desc")))
    out = []
    for key, direction in pairs:
        key = SORT_ALIASES.get(key, key)
        if key not in SORT_KEYS:
            raise errors.Invalid(f"Invalid input received: sort key {key!r} (one of {', '.join(SORT_KEYS)})")
        if direction.lower() not in ("asc", "desc"):
            raise errors.Invalid(f"Invalid input received: sort direction {direction!r} (asc or desc)")
        out.append((key, direction.lower() == "desc"))
    return out or [("created_at", True)]


def sort_records(records: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    out = sorted(records, key=lambda r: r["id"], reverse=order[0][1])  # ties: by id, in the first direction
    for key, desc in reversed(order):  # stable sorts, least significant key first
        out.sort(key=_by(key), reverse=desc)
    return out


def after_marker(records: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    """The sorted records after the query's marker (a marker not among them is Cinder's 404)."""
    if "marker" not in query:
        return records
    ids = [r["id"] for r in records]
    if query["marker"] not in ids:
        raise errors.NotFound(f"Marker {query['marker']} could not be found.")
    return records[ids.index(query["marker"]) + 1:]


def _by(key: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    """Sort on one field, None first (ascending) as the cell DBs do."""
    def value(record: dict[str, Any]) -> tuple[bool, Any]:
        v = record.get(key)
        return (v is not None, "" if v is None else v)
    return value


MAX_METADATA_FILTER = 4096


def _metadata_filter(raw: str) -> dict[str, str]:
    """The SDK sends the metadata filter as a Python dict literal ("{'k': 'v'}"), as Cinder expects.
    Bounded: the parser's work and nesting grow with the text (a deep one raises RecursionError)."""
    if len(raw) > MAX_METADATA_FILTER:
        raise errors.Invalid(f"Invalid input received: metadata filter longer than {MAX_METADATA_FILTER} characters")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        raise errors.Invalid(f"Invalid input received: metadata filter {raw!r} is not a map") from None
    if not isinstance(value, dict):
        raise errors.Invalid(f"Invalid input received: metadata filter {raw!r} is not a map")
    return {str(k): str(v) for k, v in value.items()}


# --- handlers ----------------------------------------------------------------------------

def _project(request: web.Request) -> str:
    return request.match_info["project_id"]


async def usage(request: web.Request, ctx: RequestContext, project: str) -> dict[str, int]:
    """volumes, snapshots and their gigabytes the project holds in every cell (a cell that cannot answer:
    refuse)."""
    return (await cells.project_usage(request.config_dict[ROUTER], ctx, project))[0]


async def create(request: web.Request) -> web.Response:
    ctx, project = context(request), _project(request)
    spec = validate_create(await json_body(request))
    record = await create_volume(request, ctx, project, spec)
    return web.json_response({"volume": volume_detail(public_url(request), project, record, allowed(request, "volume_extension:volume_host_attribute"),
                                                      extended=False, version=version_of(request))},
                             status=202)


async def create_volume(request: web.Request, ctx: RequestContext, project: str,
                        spec: dict[str, Any]) -> dict[str, Any]:
    """Create a volume from a validated spec (this API's POST and EC2's CreateVolume); its record."""
    router, db = request.config_dict[ROUTER], request.config_dict[DB]
    if spec.get("snapshot_id") or spec.get("source_volid"):  # made beside its source, in its cell
        api, source = await _source(request, ctx, spec)
        spec = {**spec, "size": spec.get("size") or int(source["size"])}
        if spec.get("volume_type") is None and spec.get("source_volid"):
            spec["volume_type"] = source.get("volume_type")  # a copy keeps its source's type
    else:
        api = VolumeConductorAPI(cells.choose(router, spec["availability_zone"]))
    if spec.get("image_ref"):  # resolved as the project sees it and checked against the size first
        spec = {**spec, "image": await source_images.image_for_volume(request, ctx, spec.pop("image_ref"),
                                                                int(spec["size"]))}
    vtype = await types.resolve(request, ctx, spec.get("volume_type"))
    if vtype.get("encryption"):  # stored and shown only (api/volume/encryption.py): never made in the clear
        raise errors.Invalid(f"Volume type {vtype['name']} asks for encryption, which this cloud's volume hosts "
                             "do not do")
    stored_type = None if vtype["id"] == types.DEFAULT_TYPE_ID else str(vtype["name"])
    specs = dict(vtype.get("extra_specs") or {})
    wanted = {k: str(specs.get(k, specs.get(f"capabilities:{k}"))) for k in CAPABILITY_SPECS
              if specs.get(k, specs.get(f"capabilities:{k}")) is not None}
    group_id = spec.pop("group_id", None)
    spec = {**spec, "volume_type": stored_type, "volume_backend_name": specs.get(types.BACKEND_KEY)}
    if wanted:  # sent only when asked (Cinder's CapabilitiesFilter): placement matches the volume hosts'
        spec["capabilities"] = wanted
    volume = {"id": str(uuidlib.uuid4()), "project_id": project, "user_id": ctx.user, **spec}
    listed, listed_ids, since = await cells.project_usage(router, ctx, project)
    vid, size = str(volume["id"]), int(spec["size"])
    # checked and reserved in one API DB write unit: creates of every API worker queue on it (api/quota.py)
    await db.write(lambda conn: quota.reserve_volume(conn, project, vid, size, listed, listed_ids,
                                                     volume_type=stored_type, listed_since=since))
    try:
        if group_id:  # joined before it is made: a refused or failed create leaves no member behind
            await groups.join_new_volume(request, ctx, group_id, vid, str(vtype["id"]))
        record = await api.volume_create(ctx, volume)
    except BaseException:
        if group_id:
            await groups.leave(request, vid)
        await asyncio.shield(db.write(lambda conn: quota.release_volume(conn, vid)))
        raise
    await db.write(lambda conn: quota.volume_made(conn, vid))
    return {**record, "group_id": group_id}


async def _source(request: web.Request, ctx: RequestContext,
                  spec: dict[str, Any]) -> tuple[VolumeConductorAPI, dict[str, Any]]:
    router = request.config_dict[ROUTER]
    if spec.get("snapshot_id"):
        return await cells.find_snapshot(router, ctx, spec["snapshot_id"])
    return await cells.find(router, ctx, spec["source_volid"])


def _list_filters(request: web.Request, ctx: RequestContext, query: Mapping[str, str]) -> dict[str, Any]:
    filters: dict[str, Any] = {"project_id": ctx.project}
    all_tenants = query.get("all_tenants") not in (None, "0", "false", "False", "f", "no")
    if all_tenants and allowed(request, "volume:get_all_tenants"):
        filters.pop("project_id")
        if query.get("project_id"):
            filters["project_id"] = query["project_id"]
    for key in ("name", "status"):
        if query.get(key):
            filters[key] = query[key]
    return filters


_TIME_OPERATORS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
                   "eq": operator.eq, "neq": operator.ne}


def _time_filters(query: Mapping[str, str]) -> list[tuple[str, Any, datetime.datetime]]:
    """3.60: created_at / updated_at filters, "OP:TIME" with OP one of gt, gte, lt, lte, eq, neq (several
    separated by commas); a plain TIME means eq. 400 for anything else."""
    out = []
    for key in ("created_at", "updated_at"):
        for part in query[key].split(",") if query.get(key) else []:
            op, sep, value = part.partition(":")
            if not sep or op not in _TIME_OPERATORS:  # no operator: the whole text is a time
                op, value = "eq", part
            try:
                when = parse(value.strip())
            except ValueError:
                when = None
            if when is None:
                raise errors.Invalid(f"Invalid filter value {part!r} for {key}: OP:TIME, OP one of "
                                     f"{', '.join(_TIME_OPERATORS)}")
            out.append((key, _TIME_OPERATORS[op], when))
    return out


def _matches_times(record: dict[str, Any], checks: list[tuple[str, Any, datetime.datetime]]) -> bool:
    for key, compare, when in checks:
        value = parse(record.get(key)) if record.get(key) else None
        if value is None or not compare(value, when):
            return False
    return True


async def _list(request: web.Request, detail: bool) -> web.Response:
    ctx, project, query = context(request), _project(request), request.query
    version = version_of(request)
    times = _time_filters(query) if version >= (3, 60) else []
    order = _sort(query)
    limit = min(query_int(query, "limit", MAX_LIMIT) or 0, MAX_LIMIT)
    offset = query_int(query, "offset", 0) or 0  # Cinder's offset, counted after the marker
    wanted_meta = _metadata_filter(query["metadata"]) if query.get("metadata") else {}
    records = await cells.list_all(request.config_dict[ROUTER], ctx, _list_filters(request, ctx, query))
    records = [r for r in records if all((r.get("metadata") or {}).get(k) == v for k, v in wanted_meta.items())
               and _matches_times(r, times)]
    records = sort_records(records, order)
    matched = len(records)  # 3.45's count: every match, whatever the page
    records = after_marker(records, query)[offset:]
    page = await with_groups(request, records[:limit], version)
    base = public_url(request)
    body: dict[str, Any] = {"volumes": [volume_detail(base, project, r, allowed(request, "volume_extension:volume_host_attribute"), version=version) if detail
                                        else volume_brief(base, project, r) for r in page]}
    if page and len(page) == limit:  # as Cinder: a full page links on, even when it is the last one
        params = [(k, v) for k, v in query.items() if k != "marker"] + [("marker", page[-1]["id"])]
        path = "volumes/detail" if detail else "volumes"
        body["volumes_links"] = [{"rel": "next", "href": f"{base}/volume/v3/{project}/{path}?{urlencode(params)}"}]
    if version >= (3, 45) and parse_bool(query.get("with_count", "false")):
        body["count"] = matched
    return web.json_response(body)


async def index(request: web.Request) -> web.Response:
    return await _list(request, detail=False)


async def detail(request: web.Request) -> web.Response:
    return await _list(request, detail=True)


async def find(request: web.Request, ctx: RequestContext, volume_id: str) -> tuple[VolumeConductorAPI, dict[str, Any]]:
    if not is_uuid(volume_id):
        raise errors.VolumeNotFound(volume_id=volume_id)
    return await cells.find(request.config_dict[ROUTER], ctx, volume_id.lower())


async def with_groups(request: web.Request, records: list[dict[str, Any]],
                      version: tuple[int, int]) -> list[dict[str, Any]]:
    """The records with their group's id (3.13 group_id; asked of the API DB only from 3.13)."""
    if version < groups.MIN_VERSION:
        return records
    of = await groups.groups_of(request, [str(r["id"]) for r in records])
    return [{**r, "group_id": of.get(str(r["id"]))} for r in records]


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    _, record = await find(request, ctx, request.match_info["volume_id"])
    record = (await with_groups(request, [record], version_of(request)))[0]
    return web.json_response({"volume": volume_detail(public_url(request), _project(request), record, allowed(request, "volume_extension:volume_host_attribute"),
                                                       version=version_of(request))})


async def update(request: web.Request) -> web.Response:
    ctx = context(request)
    values = validate_update(await json_body(request))
    api, record = await find(request, ctx, request.match_info["volume_id"])
    if values:
        record = await api.volume_update(ctx, record["id"], values)
    record = (await with_groups(request, [record], version_of(request)))[0]
    return web.json_response({"volume": volume_detail(public_url(request), _project(request), record, allowed(request, "volume_extension:volume_host_attribute"),
                                                       extended=False, version=version_of(request))})


async def delete(request: web.Request) -> web.Response:
    """?cascade=true deletes the volume's snapshots with it (else a volume with snapshots is a 400)."""
    ctx = context(request)
    cascade = parse_bool(request.query.get("cascade", "false"))
    if cascade is None:
        raise errors.Invalid(f"Invalid value for 'cascade': {request.query.get('cascade')!r} (a boolean)")
    api, record = await find(request, ctx, request.match_info["volume_id"])
    await api.volume_delete(ctx, record["id"], cascade=cascade)
    return web.Response(status=202)


async def action(request: web.Request) -> web.Response:
    """POST .../volumes/{id}/action: os-extend {"new_size": N} (202; the volume goes extending),
    os-set_bootable {"bootable": B} (200), os-volume_upload_image (202, api/volume/upload.py), the state
    actions of api/volume/actions.py (202), os-set/unset/show_image_metadata (200, api/volume/image_metadata.py)."""
    ctx = context(request)
    body = await json_body(request)
    if not isinstance(body, Mapping) or len(body) != 1:
        raise errors.Invalid("Invalid input received: one volume action per request")
    name, args = next(iter(body.items()))
    if name == "os-set_bootable":
        return await _set_bootable(request, ctx, args)
    if name in actions.VOLUME_STATE_ACTIONS:
        api, record = await find(request, ctx, request.match_info["volume_id"])
        return await actions.volume_action(request, ctx, api, record, name, args)
    if name == "os-volume_upload_image":
        api, record = await find(request, ctx, request.match_info["volume_id"])
        return await upload.upload_to_image(request, ctx, api, record, args)
    if name in image_metadata.ACTIONS:
        api, record = await find(request, ctx, request.match_info["volume_id"])
        return await image_metadata.image_metadata_action(ctx, api, record, name, args)
    if name != "os-extend":
        raise errors.Invalid(f"Invalid input received: volume action {name!r} is not supported by this cloud")
    if not isinstance(args, Mapping) or "new_size" not in args:
        raise errors.Invalid("Invalid input received: os-extend needs new_size")
    new_size = validate_size(args["new_size"])
    api, record = await find(request, ctx, request.match_info["volume_id"])
    growth, project = new_size - int(record["size"]), str(record["project_id"])
    if growth > 0:  # the flow refuses a shrink itself; a growth must fit the gigabytes quotas (413)
        listed, listed_ids, since = await cells.project_usage(request.config_dict[ROUTER], ctx, project)
        await request.config_dict[DB].write(lambda conn: quota.check_volume_growth(
            conn, project, growth, listed, listed_ids, record.get("volume_type"), new_size, since))
    await api.volume_extend(ctx, record["id"], new_size)
    return web.Response(status=202)


async def _set_bootable(request: web.Request, ctx: RequestContext, args: Any) -> web.Response:
    raw = args.get("bootable") if isinstance(args, Mapping) else None
    bootable = raw if isinstance(raw, bool) else parse_bool(raw) if isinstance(raw, str) else None
    if bootable is None:
        raise errors.Invalid(f"Invalid value for 'bootable': {raw!r} (true or false)")
    api, record = await find(request, ctx, request.match_info["volume_id"])
    await api.volume_update(ctx, record["id"], {"bootable": bootable})
    return web.Response(status=200)


async def availability_zones(request: web.Request) -> web.Response:
    """Cinder's os-availability-zone: where a volume may be made (api/volume/cells.py zones)."""
    context(request)
    return web.json_response({"availabilityZoneInfo": [
        {"zoneName": zone, "zoneState": {"available": up}} for zone, up in cells.zones(request.config_dict[ROUTER])]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/{project_id}/os-availability-zone", availability_zones)
    app.router.add_get("/v3/{project_id}/volumes", index)
    app.router.add_post("/v3/{project_id}/volumes", create)
    app.router.add_get("/v3/{project_id}/volumes/detail", detail)
    app.router.add_get("/v3/{project_id}/volumes/{volume_id}", show)
    app.router.add_put("/v3/{project_id}/volumes/{volume_id}", update)
    app.router.add_delete("/v3/{project_id}/volumes/{volume_id}", delete)
    app.router.add_post("/v3/{project_id}/volumes/{volume_id}/action", action)
