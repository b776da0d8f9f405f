"""Keystone v3 application credentials: /v3/users/{user_id}/application_credentials.

A user makes one from a project-scoped token (`openstack application credential create ci
--role member`): it is bound to that project and to the roles asked for, which must be among
the user's roles there now (the token's when none are asked for); the secret is shown once and stored hashed. Authenticating with it
(api/identity/appcred_auth.py) gives a token with those roles on that project and nothing
else; deleting it, or its expiry, ends it and every token made with it. A token made with an
application credential cannot make another (Keystone's rule against a credential minting
its own successors), nor rescope.
"""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, insert, select

from api.db.schema import application_credentials
from api.http import json_body
from api.identity.passwords import hash_password
from api.identity.resources import authorize
from api.identity.tokens import new_id
from api.keys import ENGINE, TOKENS, public_url
from api.timeutil import parse as parse_time
from api.timeutil import utcnow
from cells import errors

MAX_NAME = 255
MAX_DESCRIPTION = 255


class ApplicationCredentialNotFound(errors.NotFound):
    code, msg = "application_credential_not_found", "Could not find application credential: {cred_id}."


def _view(request: web.Request, row: Any, secret: str | None = None) -> dict[str, Any]:
    view = {"id": row.id, "name": row.name, "description": row.description, "user_id": row.user_id,
            "project_id": row.project_id, "roles": list(row.roles), "unrestricted": bool(row.unrestricted),
            # as Keystone stores and shows it: no zone suffix (Tempest compares it with what it sent)
            "expires_at": row.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%f") if row.expires_at else None,
            "system": None,
            "access_rules": [],
            "links": {"self": f"{public_url(request)}/identity/v3/users/{row.user_id}/application_credentials/"
                              f"{row.id}"}}
    if secret is not None:
        view["secret"] = secret
    return view


def _expiry(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.Invalid("Invalid input for field 'expires_at': expected an ISO 8601 time")
    try:
        when = parse_time(value)
    except ValueError:
        raise errors.Invalid(f"Invalid input for field 'expires_at': {value!r} is not an ISO 8601 time") from None
    if when is None or when <= utcnow():
        raise errors.Invalid("The expiration time of an application credential must be in the future.")
    return when


def _check_roles_shape(asked: Any) -> None:
    if asked is not None and (not isinstance(asked, list) or not all(isinstance(r, dict) for r in asked)):
        raise errors.Invalid("Invalid input for field 'roles': expected a list of {id} or {name}")


def _roles(asked: Any, held: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[dict[str, str]]:
    """The roles asked for (by id or name), each one of `held`; all of `held` when none asked."""
    _check_roles_shape(asked)
    if asked is None:
        return [{"id": i, "name": n} for i, n in held]
    out: dict[str, dict[str, str]] = {}
    for spec in asked:
        match = [(i, n) for i, n in held if i == spec.get("id") or n == spec.get("name")]
        if not match:
            wanted = spec.get("id") or spec.get("name")
            raise errors.Forbidden(f"You are not authorized to create an application credential with role "
                                   f"{wanted}: you have no such role on the project.")
        out[match[0][0]] = {"id": match[0][0], "name": match[0][1]}
    return list(out.values())


async def create(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    token = await authorize(request, "create_application_credential", {"user_id": user_id})
    if token.project is None:
        raise errors.Forbidden("An application credential is made from a project-scoped token.")
    if token.app_cred_id is not None:
        raise errors.Forbidden("A token made with an application credential cannot make another.")
    body = await json_body(request)
    doc = body.get("application_credential") if isinstance(body, dict) else None
    if not isinstance(doc, dict):
        raise errors.Invalid("Invalid input for field 'application_credential': it is a required property")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise errors.Invalid(f"Invalid input for field 'name': expected a string of 1 to {MAX_NAME} characters")
    description = doc.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        raise errors.Invalid(f"Invalid input for field 'description': at most {MAX_DESCRIPTION} characters")
    unrestricted = doc.get("unrestricted", False)
    if not isinstance(unrestricted, bool):
        raise errors.Invalid("Invalid input for field 'unrestricted': expected a boolean")
    if unrestricted:
        raise errors.Invalid("Unrestricted application credentials are not offered by this cloud.")
    if doc.get("access_rules"):
        raise errors.Invalid("Access rules are not supported by this cloud.")
    secret = doc.get("secret") or secrets.token_urlsafe(48)
    if not isinstance(secret, str) or len(secret) > 4096:
        raise errors.Invalid("Invalid input for field 'secret': expected a string")
    asked = doc.get("roles")
    _check_roles_shape(asked)
    held: tuple[tuple[str, str], ...] | list[tuple[str, str]] = token.roles
    if asked is not None:
        # asked-for roles are checked against the user's roles on the project now, as Keystone checks them
        # against the assignments: a token keeps the roles it was issued with, and a role granted since counts
        async with request.config_dict[ENGINE].connect() as conn:
            held = await request.config_dict[TOKENS].roles_on(conn, token.user.id, token.project.id)
    values = {"id": new_id(), "name": name, "user_id": user_id, "project_id": token.project.id,
              "description": description, "roles": _roles(asked, held),
              "unrestricted": False, "expires_at": _expiry(doc.get("expires_at")), "created_at": utcnow(),
              "secret_hash": await hash_password(secret)}
    async with request.config_dict[ENGINE].begin() as conn:
        taken = (await conn.execute(select(application_credentials.c.id).where(and_(
            application_credentials.c.user_id == user_id, application_credentials.c.name == name)))).first()
        if taken is not None:
            raise errors.Conflict(f"Conflict occurred attempting to store application_credential - Duplicate "
                                  f"entry found with name {name}.")
        await conn.execute(insert(application_credentials).values(**values))
        row = (await conn.execute(select(application_credentials)
                                  .where(application_credentials.c.id == values["id"]))).one()
    return web.json_response({"application_credential": _view(request, row, secret)}, status=201)


async def list_all(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    await authorize(request, "list_application_credentials", {"user_id": user_id})
    query = select(application_credentials).where(application_credentials.c.user_id == user_id)
    if "name" in request.query:
        query = query.where(application_credentials.c.name == request.query["name"])
    async with request.config_dict[ENGINE].connect() as conn:
        rows = (await conn.execute(query.order_by(application_credentials.c.name))).all()
    return web.json_response({"application_credentials": [_view(request, r) for r in rows],
                              "links": {"self": public_url(request) + request.path, "previous": None,
                                        "next": None}})


async def _row(request: web.Request, conn: Any) -> Any:
    m = request.match_info
    row = (await conn.execute(select(application_credentials).where(and_(
        application_credentials.c.id == m["cred_id"], application_credentials.c.user_id == m["user_id"])))).first()
    if row is None:
        raise ApplicationCredentialNotFound(cred_id=m["cred_id"])
    return row


async def show(request: web.Request) -> web.Response:
    await authorize(request, "get_application_credential", {"user_id": request.match_info["user_id"]})
    async with request.config_dict[ENGINE].connect() as conn:
        row = await _row(request, conn)
    return web.json_response({"application_credential": _view(request, row)})


async def remove(request: web.Request) -> web.Response:
    await authorize(request, "delete_application_credential", {"user_id": request.match_info["user_id"]})
    async with request.config_dict[ENGINE].begin() as conn:
        row = await _row(request, conn)
        # its tokens fail their next validation (api/identity/appcred_auth.py alive)
        await conn.execute(delete(application_credentials).where(application_credentials.c.id == row.id))
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    base = "/v3/users/{user_id}/application_credentials"
    app.router.add_post(base, create)
    app.router.add_get(base, list_all)
    app.router.add_get(base + "/{cred_id}", show)
    app.router.add_delete(base + "/{cred_id}", remove)
