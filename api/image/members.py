"""/image/v2/images/{id}/members: sharing an image with other projects, as Glance.

The owner of a `shared` image adds a project as a member (pending); the member project accepts or
rejects it. A member sees the image by id whatever its status; its default image list shows it once
accepted (api/image/images.py listed). The owner sees every member; a member sees only its own
membership; anyone else gets 404 for the image itself. Policy: add_member, delete_member,
get_member(s), modify_member (api/policy/rules.py).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import image_members, projects
from api.http import allowed, authorize, context, json_body
from api.image import images as db
from api.image.upload import ImageForbidden
from api.keys import ENGINE
from api.timeutil import iso_seconds, utcnow
from cells import errors
from cells.context import RequestContext

STATUSES = ("pending", "accepted", "rejected")
MAX_MEMBERS = 128  # Glance's image_member_quota


class MemberNotFound(errors.NotFound):
    code, msg = "image_member_not_found", "{reason}"


def _view(row: Any) -> dict[str, Any]:
    return {"image_id": row.image_id, "member_id": row.member_id, "status": row.status,
            "created_at": iso_seconds(row.created_at), "updated_at": iso_seconds(row.updated_at),
            "schema": "/v2/schemas/member"}


async def _image_and_target(conn: AsyncConnection, ctx: RequestContext, image_id: str,
                            member_id: str | None = None) -> tuple[Any, dict[str, Any]]:
    image = await db.get(conn, ctx, image_id)  # 404 for an image the caller may not see
    mine = (await conn.execute(select(image_members.c.member_id).where(and_(
        image_members.c.image_id == image.id, image_members.c.member_id == ctx.project)))).first()
    target = {"owner": image.owner, "visibility": image.visibility,
              "member_id": member_id if member_id is not None else (ctx.project if mine else None)}
    return image, target


async def add_member(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await json_body(request)
    member = body.get("member") if isinstance(body, dict) else None
    if not isinstance(member, str) or not member or len(member) > 64:
        raise errors.Invalid("Invalid input: 'member' is a required project id.")
    async with request.config_dict[ENGINE].begin() as conn:
        image, target = await _image_and_target(conn, ctx, request.match_info["image_id"])
        authorize(request, "add_member", dict(target, member_id=None))
        if image.visibility != "shared":
            raise ImageForbidden(reason=f"Image members cannot be created for an image with visibility "
                                        f"{image.visibility}; only shared images have members.")
        if (await conn.execute(select(projects.c.id).where(projects.c.id == member))).first() is None:
            raise errors.Invalid(f"{member} is not a project of this cloud.")
        rows = (await conn.execute(select(image_members.c.member_id)
                                   .where(image_members.c.image_id == image.id))).all()
        if member in {r.member_id for r in rows}:
            raise errors.Conflict(f"Member {member} already exists for image {image.id}.")
        if len(rows) >= MAX_MEMBERS:
            raise errors.Invalid(f"The image has the most members allowed ({MAX_MEMBERS}).")
        now = utcnow()
        await conn.execute(insert(image_members).values(image_id=image.id, member_id=member, status="pending",
                                                        created_at=now, updated_at=now))
        row = (await conn.execute(select(image_members).where(and_(
            image_members.c.image_id == image.id, image_members.c.member_id == member)))).one()
    return web.json_response(_view(row))


async def list_members(request: web.Request) -> web.Response:
    ctx = context(request)
    async with request.config_dict[ENGINE].connect() as conn:
        image, target = await _image_and_target(conn, ctx, request.match_info["image_id"])
        authorize(request, "get_members", target)
        if image.visibility != "shared":
            raise ImageForbidden(reason="Only shared images have members.")
        query = select(image_members).where(image_members.c.image_id == image.id)
        # a member sees only its own membership
        if image.owner != ctx.project and not allowed(request, "context_is_admin"):
            query = query.where(image_members.c.member_id == ctx.project)
        rows = (await conn.execute(query.order_by(image_members.c.created_at))).all()
    return web.json_response({"members": [_view(r) for r in rows], "schema": "/v2/schemas/members"})


async def _member_row(request: web.Request, conn: AsyncConnection, image: Any, member_id: str) -> Any:
    ctx = context(request)
    row = (await conn.execute(select(image_members).where(and_(
        image_members.c.image_id == image.id, image_members.c.member_id == member_id)))).first()
    if row is None or (image.owner != ctx.project and member_id != ctx.project
                       and not allowed(request, "context_is_admin")):
        raise MemberNotFound(reason=f"{member_id} is not a member of image {image.id}")
    return row


async def show_member(request: web.Request) -> web.Response:
    ctx, member_id = context(request), request.match_info["member_id"]
    async with request.config_dict[ENGINE].connect() as conn:
        image, target = await _image_and_target(conn, ctx, request.match_info["image_id"])
        authorize(request, "get_member", target)
        row = await _member_row(request, conn, image, member_id)
    return web.json_response(_view(row))


async def update_member(request: web.Request) -> web.Response:
    """The member project accepts or rejects the share (the owner cannot do it for them)."""
    ctx, member_id = context(request), request.match_info["member_id"]
    body = await json_body(request)
    status = body.get("status") if isinstance(body, dict) else None
    if status not in STATUSES:
        raise errors.Invalid(f"Invalid status: {status!r}: one of {', '.join(STATUSES)}")
    async with request.config_dict[ENGINE].begin() as conn:
        image, target = await _image_and_target(conn, ctx, request.match_info["image_id"], member_id)
        await _member_row(request, conn, image, member_id)
        authorize(request, "modify_member", target)
        await conn.execute(update(image_members).where(and_(
            image_members.c.image_id == image.id, image_members.c.member_id == member_id))
            .values(status=status, updated_at=utcnow()))
        row = await _member_row(request, conn, image, member_id)
    return web.json_response(_view(row))


async def delete_member(request: web.Request) -> web.Response:
    ctx, member_id = context(request), request.match_info["member_id"]
    async with request.config_dict[ENGINE].begin() as conn:
        image, target = await _image_and_target(conn, ctx, request.match_info["image_id"])
        authorize(request, "delete_member", dict(target, member_id=None))
        await _member_row(request, conn, image, member_id)
        await conn.execute(delete(image_members).where(and_(
            image_members.c.image_id == image.id, image_members.c.member_id == member_id)))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2/images/{image_id}/members", add_member)
    app.router.add_get("/v2/images/{image_id}/members", list_members)
    app.router.add_get("/v2/images/{image_id}/members/{member_id}", show_member)
    app.router.add_put("/v2/images/{image_id}/members/{member_id}", update_member)
    app.router.add_delete("/v2/images/{image_id}/members/{member_id}", delete_member)
