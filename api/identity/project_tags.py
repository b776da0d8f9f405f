"""Keystone v3 project tags: /v3/projects/{project_id}/tags[/{tag}] (`openstack project set --tag`).

Under Keystone's rule names and defaults (api/policy/rules.py identity:*project_tag*): the project's
readers (and its domain's, and the cloud's) read them; its admins change them, so a member cannot tag
their own project and nobody tags a project they hold no role on. The list filters (?tags=, tags-any,
not-tags, not-tags-any) are api/identity/tag_store.py's.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, select

from api.db.schema import project_tags, projects
from api.http import json_body
from api.identity import tag_store
from api.identity.resources import ProjectNotFound, authorize
from api.keys import ENGINE, public_url
from cells import errors


async def _authorized(request: web.Request, action: str) -> str:
    """The path's project id, once identity:`action` allows it (404 after, for a project that is none)."""
    project_id = request.match_info["project_id"]
    async with request.config_dict[ENGINE].connect() as conn:
        domain_id = (await conn.execute(select(projects.c.domain_id).where(projects.c.id == project_id))).scalar()
    await authorize(request, action, {"target.project.id": project_id, "target.project.domain_id": domain_id})
    if domain_id is None:
        raise ProjectNotFound(project_id=project_id)
    return project_id


def _tags_body(request: web.Request, tags: list[str]) -> dict[str, Any]:
    return {"tags": tags, "links": {"self": public_url(request) + request.path}}


async def list_tags(request: web.Request) -> web.Response:
    project_id = await _authorized(request, "list_project_tags")
    async with request.config_dict[ENGINE].connect() as conn:
        tags = (await tag_store.tags_of(conn, [project_id])).get(project_id, [])
    return web.json_response(_tags_body(request, tags))


async def replace_tags(request: web.Request) -> web.Response:
    project_id = await _authorized(request, "update_project_tags")
    body = await json_body(request)
    if not isinstance(body, dict) or "tags" not in body:
        raise errors.Invalid("Invalid input for field 'tags': 'tags' is a required property")
    tags = tag_store.checked_tags(body["tags"])
    async with request.config_dict[ENGINE].begin() as conn:
        await tag_store.replace_tags(conn, project_id, tags)
        tags = (await tag_store.tags_of(conn, [project_id])).get(project_id, [])
    return web.json_response(_tags_body(request, tags))


async def delete_tags(request: web.Request) -> web.Response:
    project_id = await _authorized(request, "delete_project_tags")
    async with request.config_dict[ENGINE].begin() as conn:
        await tag_store.replace_tags(conn, project_id, [])
    return web.Response(status=204)


async def check_tag(request: web.Request) -> web.Response:
    project_id = await _authorized(request, "get_project_tag")
    tag = request.match_info["tag"]
    async with request.config_dict[ENGINE].connect() as conn:
        found = (await conn.execute(select(project_tags.c.name).where(and_(
            project_tags.c.project_id == project_id, project_tags.c.name == tag)))).first()
    if found is None:
        raise errors.NotFound(f"Could not find tag: {tag}.")
    return web.Response(status=204)


async def add_tag(request: web.Request) -> web.Response:
    project_id = await _authorized(request, "create_project_tag")
    tag = tag_store.checked_tag(request.match_info["tag"])
    async with request.config_dict[ENGINE].begin() as conn:
        await tag_store.add_tag(conn, project_id, tag)
    return web.Response(status=201, headers={"Location": public_url(request) + request.path})


async def delete_tag(request: web.Request) -> web.Response:
    project_id = await _authorized(request, "delete_project_tag")
    tag = request.match_info["tag"]
    async with request.config_dict[ENGINE].begin() as conn:
        result = await conn.execute(delete(project_tags).where(and_(
            project_tags.c.project_id == project_id, project_tags.c.name == tag)))
    if result.rowcount == 0:
        raise errors.NotFound(f"Could not find tag: {tag}.")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    tags = "/v3/projects/{project_id}/tags"
    app.router.add_get(tags, list_tags)
    app.router.add_put(tags, replace_tags)
    app.router.add_delete(tags, delete_tags)
    app.router.add_get(tags + "/{tag}", check_tag)  # aiohttp adds HEAD, which is what clients send
    app.router.add_put(tags + "/{tag}", add_tag)
    app.router.add_delete(tags + "/{tag}", delete_tag)
