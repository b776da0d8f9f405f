"""Tokens: issue (password method), validate, revoke.

A token id is 32 random bytes (urlsafe text); the DB keeps only its sha256,
so a copy of the DB holds no usable token. Every /compute and /image request
validates one: a validation is cached for CACHE_TTL seconds, then read again
from the DB, where a revoked token (its row gone), a disabled user, project or
domain, or a role removed from the user on the project makes it invalid. So
whichever API worker revoked or disabled something, every worker refuses the
token within CACHE_TTL (plus one DB read).
"""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.db.schema import domains, projects, role_assignments, roles, tokens, users
from api.identity.passwords import hash_password_sync, verify_password
from api.timeutil import utcnow
from cells import errors
from cells.context import RequestContext

TOKEN_TTL = timedelta(hours=1)  # Keystone's default expiration
CACHE_SIZE = 10_000
CACHE_TTL = 2.0  # seconds a worker trusts a validation it made: revocations reach every worker within this
PRUNE_EVERY = 200  # issues between sweeps of expired rows
IMPLIED_ROLES = {"admin": ("member",), "member": ("reader",)}  # Keystone's bootstrap implications


@dataclass(frozen=True)
class Named:
    id: str
    name: str
    domain_id: str = ""
    domain_name: str = ""


@dataclass(frozen=True)
class Token:
    user: Named
    project: Named | None
    roles: tuple[tuple[str, str], ...]  # (id, name), implied roles included
    methods: tuple[str, ...]
    audit_id: str
    issued_at: datetime
    expires_at: datetime

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.roles)

    def context(self, request_id: str) -> RequestContext:
        return RequestContext(request_id=request_id, project=self.project.id if self.project else None,
                              user=self.user.id, roles=self.role_names)


_DECOY_HASH = hash_password_sync(secrets.token_urlsafe(16))


def _hash(token_id: str) -> str:
    return hashlib.sha256(token_id.encode("utf-8")).hexdigest()


class Unauthorized(errors.Unauthorized):
    """Keystone's one message for every authentication failure (no hint which part was wrong)."""


def _need(d: Any, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise errors.Invalid(f"Invalid input for field '{where}': '{key}' is a required property")
    return d[key]


class TokenService:
    def __init__(self, engine: AsyncEngine, ttl: timedelta = TOKEN_TTL, cache_ttl: float = CACHE_TTL) -> None:
        self.engine = engine
        self.ttl = ttl
        self.cache_ttl = cache_ttl
        self._cache: OrderedDict[str, tuple[float, Token]] = OrderedDict()  # id hash -> (cached at, token)
        self._issued = 0

    # --- issue -------------------------------------------------------------

    async def authenticate(self, body: Any) -> tuple[str, Token]:
        """Validate a Keystone v3 auth request body; return (token id, token)."""
        auth = _need(body, "auth", "auth")
        identity = _need(auth, "identity", "auth")
        methods = _need(identity, "methods", "identity")
        if not isinstance(methods, list) or not methods:
            raise errors.Invalid("Invalid input for field 'identity/methods': must be a non-empty list")
        if methods != ["password"]:
            raise Unauthorized("Attempted to authenticate with an unsupported method.")
        pw = _need(_need(identity, "password", "identity"), "user", "identity/password")
        password = pw.get("password") if isinstance(pw, dict) else None
        if not isinstance(password, str):
            raise errors.Invalid("Invalid input for field 'identity/password/user/password': "
                                 "'password' is a required property")
        scope = auth.get("scope")
        async with self.engine.connect() as conn:
            user_row = await self._find_user(conn, pw)
            # an unknown user costs the same hash as a wrong password: timing does not reveal who exists
            stored = user_row.password_hash if user_row is not None else _DECOY_HASH
            if not await verify_password(password, stored) or user_row is None or not user_row.enabled:
                raise Unauthorized()
            user = Named(user_row.id, user_row.name, user_row.domain_id, user_row.domain_name)
            project = None
            role_rows: list[tuple[str, str]] = []
            if scope is not None:
                project = await self._find_project(conn, scope)
            elif user_row.default_project_id:
                project = await self._project_by_id(conn, user_row.default_project_id)
            if project is not None:
                role_rows = await self._roles(conn, user.id, project.id)
                if not role_rows:
                    raise Unauthorized(f"User {user.id} has no access to project {project.id}")
        now = utcnow().replace(microsecond=0)
        token = Token(user=user, project=project, roles=tuple(role_rows), methods=("password",),
                      audit_id=secrets.token_urlsafe(16)[:22], issued_at=now, expires_at=now + self.ttl)
        token_id = "gAAAA" + secrets.token_urlsafe(32)  # Fernet-like prefix: some tools sniff it
        async with self.engine.begin() as conn:
            await conn.execute(insert(tokens).values(
                id_hash=_hash(token_id), user_id=user.id, project_id=project.id if project else None,
                roles=[{"id": i, "name": n} for i, n in token.roles], methods=list(token.methods),
                audit_id=token.audit_id, issued_at=token.issued_at, expires_at=token.expires_at))
            self._issued += 1
            if self._issued % PRUNE_EVERY == 0:
                await conn.execute(delete(tokens).where(tokens.c.expires_at < now))
        self._remember(_hash(token_id), token)
        return token_id, token

    async def _find_user(self, conn: AsyncConnection, spec: dict[str, Any]) -> Any:
        query = (select(users.c.id, users.c.name, users.c.domain_id, users.c.password_hash,
                        and_(users.c.enabled, domains.c.enabled).label("enabled"),
                        users.c.default_project_id, domains.c.name.label("domain_name"))
                 .join(domains, domains.c.id == users.c.domain_id))
        if spec.get("id"):
            query = query.where(users.c.id == str(spec["id"]))
        elif spec.get("name"):
            query = query.where(users.c.name == str(spec["name"]), self._domain_clause(spec.get("domain"), "user"))
        else:
            raise errors.Invalid("Invalid input for field 'identity/password/user': 'id' or 'name' is required")
        return (await conn.execute(query)).first()

    @staticmethod
    def _domain_clause(domain: Any, what: str) -> Any:
        if isinstance(domain, dict) and domain.get("id"):
            return domains.c.id == str(domain["id"])
        if isinstance(domain, dict) and domain.get("name"):
            return domains.c.name == str(domain["name"])
        raise errors.Invalid(f"Invalid input for field '{what}/domain': a {what} name requires its domain "
                             "(id or name)")

    async def _find_project(self, conn: AsyncConnection, scope: Any) -> Named:
        if not isinstance(scope, dict) or "project" not in scope:
            if isinstance(scope, dict) and ("domain" in scope or "system" in scope):
                raise errors.Invalid("Only project scope is supported by this cloud")
            raise errors.Invalid("Invalid input for field 'scope': 'project' is a required property")
        spec = scope["project"]
        query = (select(projects.c.id, projects.c.name, projects.c.domain_id,
                        and_(projects.c.enabled, domains.c.enabled).label("enabled"), domains.c.name.label("domain_name"))
                 .join(domains, domains.c.id == projects.c.domain_id))
        if isinstance(spec, dict) and spec.get("id"):
            query = query.where(projects.c.id == str(spec["id"]))
        elif isinstance(spec, dict) and spec.get("name"):
            query = query.where(projects.c.name == str(spec["name"]), self._domain_clause(spec.get("domain"),
                                                                                          "project"))
        else:
            raise errors.Invalid("Invalid input for field 'scope/project': 'id' or 'name' is required")
        row = (await conn.execute(query)).first()
        if row is None or not row.enabled:
            raise Unauthorized()
        return Named(row.id, row.name, row.domain_id, row.domain_name)

    async def _project_by_id(self, conn: AsyncConnection, project_id: str) -> Named | None:
        row = (await conn.execute(
            select(projects.c.id, projects.c.name, projects.c.domain_id, domains.c.name.label("domain_name"))
            .join(domains, domains.c.id == projects.c.domain_id).where(projects.c.id == project_id))).first()
        return None if row is None else Named(row.id, row.name, row.domain_id, row.domain_name)

    @staticmethod
    async def enabled(conn: AsyncConnection, user_id: str, project_id: str) -> bool:
        """Whether the user, the project and both their domains are enabled (the EC2 API's check)."""
        ud, pd = domains.alias("ud"), domains.alias("pd")
        row = (await conn.execute(
            select(users.c.enabled, ud.c.enabled, projects.c.enabled, pd.c.enabled)
            .join(ud, ud.c.id == users.c.domain_id).join(projects, projects.c.id == project_id)
            .join(pd, pd.c.id == projects.c.domain_id).where(users.c.id == user_id))).first()
        return row is not None and all(row)

    @staticmethod
    async def _roles(conn: AsyncConnection, user_id: str, project_id: str) -> list[tuple[str, str]]:
        assigned = (await conn.execute(
            select(roles.c.id, roles.c.name).join(role_assignments, role_assignments.c.role_id == roles.c.id)
            .where(and_(role_assignments.c.user_id == user_id, role_assignments.c.project_id == project_id))
        )).all()
        if not assigned:
            return []
        names = {r.name for r in assigned}
        todo = list(names)
        while todo:  # add implied roles transitively (admin -> member -> reader)
            for implied in IMPLIED_ROLES.get(todo.pop(), ()):
                if implied not in names:
                    names.add(implied)
                    todo.append(implied)
        rows = (await conn.execute(select(roles.c.id, roles.c.name).where(roles.c.name.in_(names)))).all()
        return sorted(((r.id, r.name) for r in rows), key=lambda r: r[1])

    # --- validate / revoke -------------------------------------------------

    async def validate(self, token_id: str) -> Token:
        """The token for `token_id`; Unauthorized when unknown, revoked or expired."""
        key = _hash(token_id)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] <= self.cache_ttl:
            token = cached[1]
        else:
            self._cache.pop(key, None)
            token = await self._load(key)
            self._remember(key, token)
        if token.expires_at <= utcnow():
            self._cache.pop(key, None)
            raise Unauthorized("The token has expired.")
        return token

    async def _load(self, key: str) -> Token:
        ud, pd = domains.alias("ud"), domains.alias("pd")
        query = (select(tokens, users.c.name.label("user_name"), users.c.domain_id.label("user_domain_id"),
                        ud.c.name.label("user_domain_name"), projects.c.name.label("project_name"),
                        projects.c.domain_id.label("project_domain_id"), pd.c.name.label("project_domain_name"),
                        users.c.enabled.label("user_enabled"), ud.c.enabled.label("user_domain_enabled"),
                        projects.c.enabled.label("project_enabled"), pd.c.enabled.label("project_domain_enabled"))
                 .join(users, users.c.id == tokens.c.user_id)
                 .join(ud, ud.c.id == users.c.domain_id)
                 .outerjoin(projects, projects.c.id == tokens.c.project_id)
                 .outerjoin(pd, pd.c.id == projects.c.domain_id)
                 .where(tokens.c.id_hash == key))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None or not (row.user_enabled and row.user_domain_enabled):
                raise Unauthorized()
            if row.project_id is not None:
                if not (row.project_enabled and row.project_domain_enabled):
                    raise Unauthorized()
                # Keystone revokes a user's tokens on a project when one of their roles there is removed
                current = {name for _, name in await self._roles(conn, row.user_id, row.project_id)}
                if not {r["name"] for r in row.roles} <= current:
                    raise Unauthorized()
        project = None
        if row.project_id is not None:
            project = Named(row.project_id, row.project_name or "", row.project_domain_id or "",
                            row.project_domain_name or "")
        return Token(user=Named(row.user_id, row.user_name, row.user_domain_id, row.user_domain_name),
                     project=project, roles=tuple((r["id"], r["name"]) for r in row.roles),
                     methods=tuple(row.methods), audit_id=row.audit_id, issued_at=row.issued_at,
                     expires_at=row.expires_at)

    async def revoke(self, token_id: str) -> None:
        key = _hash(token_id)
        self._cache.pop(key, None)
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(tokens).where(tokens.c.id_hash == key))
        if result.rowcount == 0:
            raise errors.NotFound("Could not find token.")

    def _remember(self, key: str, token: Token) -> None:
        self._cache[key] = (time.monotonic(), token)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def new_id() -> str:
    """Keystone-style ids: 32 hex characters."""
    return uuid.uuid4().hex
