"""Authenticating with an application credential (Keystone's `application_credential` method).

A credential names its user and project and carries a subset of the user's roles there; its
secret is stored as a scrypt hash, as a password. It stops working when it is deleted, when it
expires, when its user or project is disabled or deleted, or when the user loses one of its roles
(api/identity/tokens.py checks the last one, and every token made with it dies with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import application_credentials, domains, projects, users
from api.identity.named import Named
from api.identity.passwords import verify_password
from api.timeutil import utcnow
from cells import errors


@dataclass(frozen=True)
class Credential:
    id: str
    user: Named
    project: Named
    role_names: tuple[str, ...]
    expires_at: datetime | None


def _invalid(where: str, what: str) -> errors.Invalid:
    return errors.Invalid(f"Invalid input for field 'identity/application_credential{where}': {what}")


async def authenticate(conn: AsyncConnection, spec: Any, decoy_hash: str) -> Credential:
    """The credential `spec` ({id, secret} or {name, user: {id | name, domain}, secret}) names, its
    secret checked; Unauthorized for anything wrong (the same answer and cost whatever it was)."""
    from api.identity.tokens import Unauthorized  # the one authentication failure (tokens imports us)

    if not isinstance(spec, dict):
        raise _invalid("", "must be an object")
    secret = spec.get("secret")
    if not isinstance(secret, str):
        raise _invalid("/secret", "'secret' is a required property")
    ud, pd = domains.alias("ud"), domains.alias("pd")
    query = (select(application_credentials, users.c.name.label("user_name"), users.c.domain_id.label("udid"),
                    ud.c.name.label("udname"), projects.c.name.label("project_name"),
                    projects.c.domain_id.label("pdid"), pd.c.name.label("pdname"),
                    and_(users.c.enabled, ud.c.enabled, projects.c.enabled, pd.c.enabled).label("enabled"))
             .join(users, users.c.id == application_credentials.c.user_id).join(ud, ud.c.id == users.c.domain_id)
             .join(projects, projects.c.id == application_credentials.c.project_id)
             .join(pd, pd.c.id == projects.c.domain_id))
    if spec.get("id"):
        query = query.where(application_credentials.c.id == str(spec["id"]))
    elif spec.get("name"):
        user = spec.get("user")
        if not isinstance(user, dict) or not (user.get("id") or user.get("name")):
            raise _invalid("/user", "a credential named by name needs its user (id, or name and domain)")
        query = query.where(application_credentials.c.name == str(spec["name"]))
        if user.get("id"):
            query = query.where(users.c.id == str(user["id"]))
        else:
            found = user.get("domain")
            domain: dict[str, Any] = found if isinstance(found, dict) else {}
            query = query.where(users.c.name == str(user["name"]),
                                or_(ud.c.id == str(domain.get("id", "")), ud.c.name == str(domain.get("name", ""))))
    else:
        raise _invalid("", "'id' or 'name' is required")
    row = (await conn.execute(query)).first()
    stored = row.secret_hash if row is not None else decoy_hash
    if not await verify_password(secret, stored) or row is None or not row.enabled:
        raise Unauthorized()
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthorized("The application credential has expired.")
    return Credential(row.id, Named(row.user_id, row.user_name, row.udid, row.udname),
                      Named(row.project_id, row.project_name, row.pdid, row.pdname),
                      tuple(r["name"] for r in row.roles), row.expires_at)


async def alive(conn: AsyncConnection, cred_id: str) -> bool:
    """Whether the credential still exists and has not expired (its tokens' check)."""
    expires = (await conn.execute(select(application_credentials.c.expires_at, application_credentials.c.id)
                                  .where(application_credentials.c.id == cred_id))).first()
    return expires is not None and (expires.expires_at is None or expires.expires_at > utcnow())
