"""/image/v2: change an image after create, as Glance does.

    PATCH /v2/images/{id}                        JSON-patch (application/openstack-images-v2.1-json-patch, or
                                                 v2.0's form, {"replace": "/path", "value": v}, which Tempest sends):
                                                 add/replace/remove of the core attributes a user may set,
                                                 of extra properties, and of tags
    PUT/DELETE /v2/images/{id}/tags/{tag}        204: one tag added or removed
    POST  /v2/images/{id}/actions/deactivate     204; active -> deactivated (its data no longer downloads
    POST  /v2/images/{id}/actions/reactivate     for non-admins, no new server boots from it); and back

Policy (api/policy/rules.py): modify_image, publicize_image / communitize_image for the visibility a
patch asks for, deactivate, reactivate. The whole patch is checked before any of it is applied, and
applied in one UPDATE: a bad operation leaves the image as it was.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select, update

from api.db.schema import images
from api.http import allowed, authorize, context, json_body
from api.image import images as db
from api.image.schemas import _FORMATS_CONTAINER, _FORMATS_DISK
from api.image.upload import (
    MAX_PROPERTIES,
    READ_ONLY,
    RESERVED_PREFIX,
    VISIBILITIES,
    ImageForbidden,
    _non_negative,
    _string,
)
from api.keys import ENGINE
from api.timeutil import utcnow
from cells import errors

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
PATCH_TYPE_V20 = "application/openstack-images-v2.0-json-patch"  # the op is the key: {"add": "/path", "value": v}
_OPS = ("add", "replace", "remove")
_SETTABLE = {"name", "visibility", "protected", "os_hidden", "min_disk", "min_ram", "tags", "disk_format",
             "container_format"}
_QUEUED_ONLY = {"disk_format", "container_format"}  # Glance: fixed once data is uploaded
_IMMUTABLE = set(READ_ONLY) | {"id", "owner"}


def image_target(row: Any, project: str | None) -> dict[str, Any]:
    """What Glance's rules read of an image: its owner, visibility, and the caller's membership."""
    return {"owner": row.owner, "visibility": row.visibility, "project_id": project}


def _from_v20(op: Any) -> Any:
    """A v2.0 operation ({"replace": "/name", "value": v}) in RFC 6902's form; anything else as it came."""
    if not isinstance(op, dict):
        return op
    named = [k for k in _OPS if k in op]
    if len(named) != 1:
        return op
    out = {"op": named[0], "path": op[named[0]]}
    if "value" in op:
        out["value"] = op["value"]
    return out


def _ops(body: Any, v20: bool = False) -> list[tuple[str, str, Any]]:
    if not isinstance(body, list):
        raise errors.Invalid("A JSON-patch body is a list of operations.")
    out = []
    for op in (_from_v20(o) for o in body) if v20 else body:
        if not isinstance(op, dict) or op.get("op") not in _OPS \
                or not isinstance(op.get("path"), str) or not op["path"].startswith("/"):
            raise errors.Invalid(f"Unable to find '{op!r}': each operation needs op (add|replace|remove) "
                                 "and a path")
        key = op["path"][1:]
        if not key or "/" in key.replace("~1", ""):
            raise errors.Invalid(f"Invalid JSON pointer for this resource: '{op['path']}'")
        key = key.replace("~1", "/").replace("~0", "~")
        if op["op"] != "remove" and "value" not in op:
            raise errors.Invalid(f"Operation '{op['op']}' on {op['path']} needs a value.")
        out.append((op["op"], key, op.get("value")))
    return out


def _apply(row: Any, ops: list[tuple[str, str, Any]], sets_owner: bool = False) -> dict[str, Any]:
    """The column values after `ops`, every value checked; 400/403 as Glance for a bad one. `sets_owner`:
    the caller may give the image to another project (Glance: an administrator)."""
    core: dict[str, Any] = {}
    props = dict(row.properties or {})
    for op, key, value in ops:
        if key == "owner" and sets_owner and op != "remove":
            if not isinstance(value, str) or not 0 < len(value) <= 255:
                raise errors.Invalid("Invalid value for owner: expected a project id.")
            core["owner"] = value
            continue
        if key in _IMMUTABLE:
            raise ImageForbidden(reason=f"Attribute '{key}' is read-only.")
        if key.startswith(RESERVED_PREFIX):
            raise ImageForbidden(reason=f"Attribute '{key}' is reserved.")
        if key in _SETTABLE:
            if op == "remove":
                raise ImageForbidden(reason=f"Attribute '{key}' cannot be removed.")
            if key in _QUEUED_ONLY and row.status != "queued":
                raise ImageForbidden(reason=f"Attribute {key} can be only replaced for a queued image.")
            core[key] = _checked(key, value)
            continue
        if op == "remove":
            if key not in props:
                raise errors.Invalid(f"Property {key} does not exist.")
            del props[key]
        else:  # add and replace alike: JSON-patch's add replaces an existing member
            if not isinstance(value, str) or len(value) > 255:
                raise errors.Invalid(f"Invalid value for property {key!r}: additional properties must be strings.")
            props[key] = value
    if len(props) > MAX_PROPERTIES:
        raise errors.Invalid(f"Maximum number of image properties ({MAX_PROPERTIES}) exceeded.")
    return {**core, "properties": props}


def _checked(key: str, value: Any) -> Any:
    if key == "name":
        return _string(value, "name")
    if key == "visibility":
        if value not in VISIBILITIES:
            raise errors.Invalid(f"Invalid visibility value: {value}")
        return value
    if key in ("protected", "os_hidden"):
        if not isinstance(value, bool):
            raise errors.Invalid(f"Invalid value for {key}: expected a boolean.")
        return value
    if key in ("min_disk", "min_ram"):
        return _non_negative(value, key)
    if key == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 255 for t in value):
            raise errors.Invalid("Invalid tags: expected a list of strings.")
        if len(value) > MAX_PROPERTIES:
            raise errors.Invalid(f"Maximum number of tags ({MAX_PROPERTIES}) exceeded.")
        return list(dict.fromkeys(value))
    allowed = _FORMATS_DISK if key == "disk_format" else _FORMATS_CONTAINER
    if value not in allowed:
        raise errors.Invalid(f"Invalid {key.replace('_', ' ')} '{value}' for image.")
    return value


async def patch_image(request: web.Request) -> web.Response:
    ctx = context(request)
    if request.content_type not in (PATCH_TYPE, PATCH_TYPE_V20):
        raise web.HTTPUnsupportedMediaType(text=f"Unsupported Content-Type: use {PATCH_TYPE}")
    ops = _ops(await json_body(request), v20=request.content_type == PATCH_TYPE_V20)
    image_id = request.match_info["image_id"]
    async with request.config_dict[ENGINE].begin() as conn:
        row = await db.get(conn, ctx, image_id)
        authorize(request, "modify_image", image_target(row, ctx.project))
        values = _apply(row, ops, sets_owner=allowed(request, "context_is_admin"))
        wanted = values.get("visibility", row.visibility)
        if wanted != row.visibility and wanted in ("public", "community"):
            authorize(request, "publicize_image" if wanted == "public" else "communitize_image",
                      image_target(row, ctx.project))
        await conn.execute(update(images).where(images.c.id == row.id).values(**values, updated_at=utcnow()))
        row = (await conn.execute(select(images).where(images.c.id == row.id))).one()
    return web.json_response(db.view(row))


async def _tag(request: web.Request, add: bool) -> web.Response:
    """PUT/DELETE /v2/images/{id}/tags/{tag}: 204; deleting a tag the image lacks is 404 (Glance)."""
    ctx, tag = context(request), request.match_info["tag"]
    if not 0 < len(tag) <= 255:
        raise errors.Invalid("Invalid tag: 1 to 255 characters.")
    async with request.config_dict[ENGINE].begin() as conn:
        row = await db.get(conn, ctx, request.match_info["image_id"])
        authorize(request, "modify_image", image_target(row, ctx.project))
        tags = list(row.tags or [])
        if add and tag not in tags:
            if len(tags) >= MAX_PROPERTIES:
                raise errors.Invalid(f"Maximum number of tags ({MAX_PROPERTIES}) exceeded.")
            tags.append(tag)
        elif not add:
            if tag not in tags:
                raise errors.NotFound(f"Tag {tag} not found.")
            tags.remove(tag)
        await conn.execute(update(images).where(images.c.id == row.id).values(tags=tags, updated_at=utcnow()))
    return web.Response(status=204)


async def add_tag(request: web.Request) -> web.Response:
    return await _tag(request, add=True)


async def delete_tag(request: web.Request) -> web.Response:
    return await _tag(request, add=False)


async def _set_active(request: web.Request, action: str, before: str, after: str) -> web.Response:
    ctx = context(request)
    async with request.config_dict[ENGINE].begin() as conn:
        row = await db.get(conn, ctx, request.match_info["image_id"])
        authorize(request, action, image_target(row, ctx.project))
        if row.status == after:
            return web.Response(status=204)  # Glance: already there is no error
        if row.status != before:
            raise ImageForbidden(reason=f"Not allowed to {action} image in status '{row.status}'")
        await conn.execute(update(images).where(images.c.id == row.id, images.c.status == before)
                           .values(status=after, updated_at=utcnow()))
    return web.Response(status=204)


async def deactivate(request: web.Request) -> web.Response:
    return await _set_active(request, "deactivate", "active", "deactivated")


async def reactivate(request: web.Request) -> web.Response:
    return await _set_active(request, "reactivate", "deactivated", "active")


def add_routes(app: web.Application) -> None:
    app.router.add_patch("/v2/images/{image_id}", patch_image)
    app.router.add_put("/v2/images/{image_id}/tags/{tag}", add_tag)
    app.router.add_delete("/v2/images/{image_id}/tags/{tag}", delete_tag)
    app.router.add_post("/v2/images/{image_id}/actions/deactivate", deactivate)
    app.router.add_post("/v2/images/{image_id}/actions/reactivate", reactivate)
