"""Keystone's implied roles: `openstack implied role create PRIOR --implied-role IMPLIED` (admin).

A user granted PRIOR gets IMPLIED too, transitively, in their tokens and in `role assignment list
--effective` (api/identity/tokens.py implications). Keystone's bootstrap implications (admin ->
member -> reader) are listed with the others and always in force: the policy defaults are written
against them, so they cannot be deleted. As Keystone refuses by default, nothing implies `admin`
(prohibited_implied_role), no implication may lead back to its prior role, and a global role implies no
domain-specific one (a domain's role may imply global roles and other domains' roles, as Keystone).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import implied_roles, roles
from api.identity.resources import RoleNotFound, authorize
from api.identity.tokens import IMPLIED_ROLES, implications
from api.keys import ENGINE, public_url
from cells import errors

PROHIBITED_IMPLIED = ("admin",)  # Keystone's [assignment] prohibited_implied_role default


def _ref(base: str, row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "links": {"self": f"{base}/identity/v3/roles/{row.id}"}}


async def _role(conn: AsyncConnection, role_id: str) -> Any:
    row = (await conn.execute(select(roles.c.id, roles.c.name, roles.c.domain_id)
                              .where(roles.c.id == role_id))).first()
    if row is None:
        raise RoleNotFound(role_id=role_id)
    return row


def _built_in(prior: Any, implied: Any) -> bool:
    return implied.name in IMPLIED_ROLES.get(prior.name, ())


async def _pair(conn: AsyncConnection, request: web.Request) -> tuple[Any, Any]:
    m = request.match_info
    return await _role(conn, m["prior_role_id"]), await _role(conn, m["implied_role_id"])


async def _exists(conn: AsyncConnection, prior: Any, implied: Any) -> bool:
    if _built_in(prior, implied):
        return True
    return (await conn.execute(select(implied_roles).where(and_(
        implied_roles.c.prior_role_id == prior.id, implied_roles.c.implied_role_id == implied.id)))).first() is not None


def _inference(request: web.Request, prior: Any, implied: Any) -> dict[str, Any]:
    base = public_url(request)
    return {"role_inference": {"prior_role": _ref(base, prior), "implies": _ref(base, implied)},
            "links": {"self": base + request.path}}


async def create_implied_role(request: web.Request) -> web.Response:
    await authorize(request, "create_implied_role")
    async with request.config_dict[ENGINE].begin() as conn:
        prior, implied = await _pair(conn, request)
        if implied.name in PROHIBITED_IMPLIED:
            raise errors.Forbidden(f"{implied.name} may not be implied by another role.")
        if prior.domain_id is None and implied.domain_id is not None:
            # a global role would otherwise hand a domain's role out in every domain
            raise errors.Forbidden(f"Global role {prior.id} cannot imply {implied.id}, a domain-specific role.")
        if prior.id == implied.id or prior.name in _reachable(await implications(conn), implied.name):
            raise errors.Invalid(f"Circular role inference: {implied.name} already leads to {prior.name}.")
        if not await _exists(conn, prior, implied):
            await conn.execute(insert(implied_roles).values(prior_role_id=prior.id, implied_role_id=implied.id))
    return web.json_response(_inference(request, prior, implied), status=201)


def _reachable(implies: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in implies.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


async def get_implied_role(request: web.Request) -> web.Response:
    """GET shows the implication; HEAD checks it (204), as Keystone."""
    head = request.method == "HEAD"
    await authorize(request, "check_implied_role" if head else "get_implied_role")
    async with request.config_dict[ENGINE].connect() as conn:
        prior, implied = await _pair(conn, request)
        if not await _exists(conn, prior, implied):
            raise errors.NotFound(f"{prior.id} does not imply {implied.id}.")
    return web.Response(status=204) if head else web.json_response(_inference(request, prior, implied))


async def delete_implied_role(request: web.Request) -> web.Response:
    await authorize(request, "delete_implied_role")
    async with request.config_dict[ENGINE].begin() as conn:
        prior, implied = await _pair(conn, request)
        if _built_in(prior, implied):
            raise errors.Forbidden(f"{prior.name} implies {implied.name} by the policy defaults: it stays.")
        result = await conn.execute(delete(implied_roles).where(and_(
            implied_roles.c.prior_role_id == prior.id, implied_roles.c.implied_role_id == implied.id)))
    if result.rowcount == 0:
        raise errors.NotFound(f"{prior.id} does not imply {implied.id}.")
    return web.Response(status=204)


async def _inferences(conn: AsyncConnection, base: str, prior_id: str | None = None) -> list[dict[str, Any]]:
    """[{prior_role, implies: [...]}] of every role that implies another (or of `prior_id` only)."""
    implies = await implications(conn)
    by_name = {r.name: r for r in (await conn.execute(select(roles.c.id, roles.c.name))).all()}
    out = []
    for prior_name in sorted(implies):
        prior = by_name.get(prior_name)
        if prior is None or (prior_id is not None and prior.id != prior_id):
            continue
        implied = [_ref(base, by_name[n]) for n in sorted(implies[prior_name]) if n in by_name]
        if implied:
            out.append({"prior_role": _ref(base, prior), "implies": implied})
    return out


async def list_implied_roles(request: web.Request) -> web.Response:
    """GET /v3/roles/{prior_role_id}/implies: what one role implies directly."""
    await authorize(request, "list_implied_roles")
    base = public_url(request)
    async with request.config_dict[ENGINE].connect() as conn:
        prior = await _role(conn, request.match_info["prior_role_id"])
        found = await _inferences(conn, base, prior.id)
    inference = found[0] if found else {"prior_role": _ref(base, prior), "implies": []}
    return web.json_response({"role_inference": inference, "links": {"self": base + request.path}})


async def list_role_inference_rules(request: web.Request) -> web.Response:
    await authorize(request, "list_role_inference_rules")
    base = public_url(request)
    async with request.config_dict[ENGINE].connect() as conn:
        found = await _inferences(conn, base)
    return web.json_response({"role_inferences": found, "links": {"self": base + request.path}})


def add_routes(app: web.Application) -> None:
    one = "/v3/roles/{prior_role_id}/implies/{implied_role_id}"
    app.router.add_put(one, create_implied_role)
    app.router.add_get(one, get_implied_role)  # aiohttp adds HEAD: the check
    app.router.add_delete(one, delete_implied_role)
    app.router.add_get("/v3/roles/{prior_role_id}/implies", list_implied_roles)
    app.router.add_get("/v3/role_inferences", list_role_inference_rules)
