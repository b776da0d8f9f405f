"""Tokens: issue (password method), validate, revoke.

A token id is 32 random bytes (urlsafe text); the DB keeps only its sha256,
so a copy of the DB holds no usable token. Every /compute and /image request
validates one: a validation is cached for CACHE_TTL seconds, then read again
from the DB, where a revoked token (its row gone), a disabled user, project or
domain, or a role removed from the user on the project (or from a group of theirs, or the user
from the group) makes it invalid. So
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

from sqlalchemy import and_, delete, insert, select, union
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.db.schema import (
    domain_role_assignments,
    domains,
    group_domain_role_assignments,
    group_members,
    group_role_assignments,
    implied_roles,
    projects,
    role_assignments,
    roles,
    tokens,
    users,
)
from api.identity import appcred_auth
from api.identity.named import Named
from api.identity.passwords import hash_password_sync, verify_password
from api.timeutil import utcnow
from cells import errors
from cells.context import RequestContext

TOKEN_TTL = timedelta(hours=1)  # Keystone's default expiration
CACHE_SIZE = 10_000
CACHE_TTL = 2.0  # seconds a worker trusts a validation it made: revocations reach every worker within this
PRUNE_EVERY = 200  # issues between sweeps of expired rows
IMPLIED_ROLES = {"admin": ("member",), "member": ("reader",)}  # Keystone's bootstrap implications
METHODS = ("password", "token", "application_credential")
# (name, domain id) of the project whose admins are cloud admins (Keystone's admin_project_name/domain_name)
ADMIN_PROJECT = ("admin", "default")


def granted_role_ids(user_id: str, project_id: str) -> Any:
    """A query of the role ids granted to the user on the project: directly, or to a group they are in."""
    direct = select(role_assignments.c.role_id).where(
        and_(role_assignments.c.user_id == user_id, role_assignments.c.project_id == project_id))
    through_groups = (select(group_role_assignments.c.role_id)
                      .join(group_members, group_members.c.group_id == group_role_assignments.c.group_id)
                      .where(and_(group_members.c.user_id == user_id, group_role_assignments.c.project_id == project_id)))
    return union(direct, through_groups)


def granted_domain_role_ids(user_id: str, domain_id: str) -> Any:
    """A query of the role ids granted to the user on the domain: directly, or to a group they are in."""
    direct = select(domain_role_assignments.c.role_id).where(
        and_(domain_role_assignments.c.user_id == user_id, domain_role_assignments.c.domain_id == domain_id))
    through_groups = (select(group_domain_role_assignments.c.role_id)
                      .join(group_members, group_members.c.group_id == group_domain_role_assignments.c.group_id)
                      .where(and_(group_members.c.user_id == user_id,
                                  group_domain_role_assignments.c.domain_id == domain_id)))
    return union(direct, through_groups)


def granted_project_ids(user_id: str) -> Any:
    """A query of the ids of the projects the user has a role on, directly or through a group."""
    direct = select(role_assignments.c.project_id).where(role_assignments.c.user_id == user_id)
    through_groups = (select(group_role_assignments.c.project_id)
                      .join(group_members, group_members.c.group_id == group_role_assignments.c.group_id)
                      .where(group_members.c.user_id == user_id))
    return union(direct, through_groups)


def granted_domain_ids(user_id: str) -> Any:
    """A query of the ids of the domains the user has a role on, directly or through a group."""
    direct = select(domain_role_assignments.c.domain_id).where(domain_role_assignments.c.user_id == user_id)
    through_groups = (select(group_domain_role_assignments.c.domain_id)
                      .join(group_members, group_members.c.group_id == group_domain_role_assignments.c.group_id)
                      .where(group_members.c.user_id == user_id))
    return union(direct, through_groups)


async def implications(conn: AsyncConnection) -> dict[str, set[str]]:
    """role name -> the names it implies directly: Keystone's bootstrap ones and those an admin added."""
    out: dict[str, set[str]] = {prior: set(implied) for prior, implied in IMPLIED_ROLES.items()}
    prior, implied = roles.alias("prior"), roles.alias("implied")
    rows = (await conn.execute(select(prior.c.name.label("prior"), implied.c.name.label("implied"))
                               .join(implied_roles, implied_roles.c.prior_role_id == prior.c.id)
                               .join(implied, implied.c.id == implied_roles.c.implied_role_id))).all()
    for row in rows:
        out.setdefault(row.prior, set()).add(row.implied)
    return out


def _with_implied(names: set[str], implies: dict[str, set[str]]) -> set[str]:
    """`names` and every role they imply, transitively (admin -> member -> reader, and an admin's)."""
    out = set(names)
    todo = list(names)
    while todo:
        for implied in implies.get(todo.pop(), ()):
            if implied not in out:
                out.add(implied)
                todo.append(implied)
    return out


@dataclass(frozen=True)
class Token:
    user: Named
    project: Named | None
    roles: tuple[tuple[str, str], ...]  # (id, name), implied roles included
    methods: tuple[str, ...]
    audit_id: str
    issued_at: datetime
    expires_at: datetime
    system: bool = False  # system scope: no project, the user's roles on the admin project
    app_cred_id: str | None = None  # issued to this application credential
    domain: Named | None = None  # domain scope: no project, the user's roles on this domain

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.roles)

    @property
    def is_admin_project(self) -> bool:
        return self.project is not None and (self.project.name, self.project.domain_id) == ADMIN_PROJECT

    def context(self, request_id: str) -> RequestContext:
        return RequestContext(request_id=request_id, project=self.project.id if self.project else None,
                              user=self.user.id, roles=self.role_names, is_admin_project=self.is_admin_project,
                              system_scope=self.system)

    def credentials(self) -> dict[str, Any]:
        """What the policy engine reads of the caller (api/policy)."""
        # domain_id is the token's domain scope, as Keystone's policy credentials name it
        scope = self.domain.id if self.domain is not None else None
        return {"roles": self.role_names, "user_id": self.user.id, "user_domain_id": self.user.domain_id,
                "domain_id": scope, "token.domain.id": scope,
                "project_id": self.project.id if self.project else None,
                "project_domain_id": self.project.domain_id if self.project else None,
                "is_admin_project": self.is_admin_project, "system_scope": "all" if self.system else None}


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
        """Validate a Keystone v3 auth request body; return (token id, token).

        Methods: password, token (rescoping: the new token keeps the old one's expiry) and
        application_credential (scoped to the credential's project and roles, nothing else)."""
        auth = _need(body, "auth", "auth")
        identity = _need(auth, "identity", "auth")
        methods = _need(identity, "methods", "identity")
        if not isinstance(methods, list) or not methods:
            raise errors.Invalid("Invalid input for field 'identity/methods': must be a non-empty list")
        if len(methods) != 1 or methods[0] not in METHODS:
            raise Unauthorized("Attempted to authenticate with an unsupported method.")
        method = methods[0]
        scope = auth.get("scope")
        now = utcnow().replace(microsecond=0)
        expires_at, app_cred_id, system, domain = now + self.ttl, None, False, None
        project: Named | None
        # a password is checked before a DB connection is taken: the hash is ~50 ms of CPU
        password_user = await self._password_user(identity) if method == "password" else None
        async with self.engine.connect() as conn:
            if method == "application_credential":
                if scope is not None:
                    raise Unauthorized("Application credentials cannot request a scope.")
                cred = await appcred_auth.authenticate(conn, _need(identity, "application_credential", "identity"),
                                                       _DECOY_HASH)
                user, project, app_cred_id = cred.user, cred.project, cred.id
                role_rows = await self._roles(conn, user.id, project.id)
                granted = {name for _, name in role_rows}
                if not set(cred.role_names) <= granted:  # the user lost a role the credential carries
                    raise Unauthorized()
                wanted = _with_implied(set(cred.role_names), await implications(conn))
                role_rows = [r for r in role_rows if r[1] in wanted]
                if cred.expires_at is not None:
                    expires_at = min(expires_at, cred.expires_at)
                token_methods: tuple[str, ...] = ("application_credential",)
            else:
                if password_user is not None:
                    user, default_project = password_user
                    token_methods = ("password",)
                else:
                    prior = await self.validate(str(_need(_need(identity, "token", "identity"), "id",
                                                          "identity/token")))
                    if prior.app_cred_id is not None:
                        raise errors.Forbidden("A token created with an application credential cannot be "
                                               "used to rescope.")
                    user, default_project, expires_at = prior.user, None, prior.expires_at
                    token_methods = tuple(dict.fromkeys((*prior.methods, "token")))
                if isinstance(scope, dict) and "domain" in scope:
                    domain, role_rows = await self._domain_scope(conn, user, scope["domain"])
                    project = None
                else:
                    project, role_rows, system = await self._scope(conn, user, scope, default_project)
        token = Token(user=user, project=project, roles=tuple(role_rows), methods=token_methods,
                      audit_id=secrets.token_urlsafe(16)[:22], issued_at=now, expires_at=expires_at,
                      system=system, app_cred_id=app_cred_id, domain=domain)
        token_id = "gAAAA" + secrets.token_urlsafe(32)  # Fernet-like prefix: some tools sniff it
        async with self.engine.begin() as conn:
            await conn.execute(insert(tokens).values(
                id_hash=_hash(token_id), user_id=user.id, project_id=project.id if project else None,
                roles=[{"id": i, "name": n} for i, n in token.roles], methods=list(token.methods),
                audit_id=token.audit_id, issued_at=token.issued_at, expires_at=token.expires_at,
                system=system, app_cred_id=app_cred_id, domain_id=domain.id if domain else None))
            self._issued += 1
            if self._issued % PRUNE_EVERY == 0:
                await conn.execute(delete(tokens).where(tokens.c.expires_at < now))
        self._remember(_hash(token_id), token)
        return token_id, token

    async def _password_user(self, identity: Any) -> tuple[Named, str | None]:
        """The user a password names, checked with no DB connection held while it hashes: a login storm
        (hundreds of nodes fetching their first image) queues on the hash threads, not on the pool,
        whose 30 s wait turned it into 500s."""
        pw = _need(_need(identity, "password", "identity"), "user", "identity/password")
        password = pw.get("password") if isinstance(pw, dict) else None
        if not isinstance(password, str):
            raise errors.Invalid("Invalid input for field 'identity/password/user/password': "
                                 "'password' is a required property")
        async with self.engine.connect() as conn:
            user_row = await self._find_user(conn, pw)
        # an unknown user costs the same hash as a wrong password: timing does not reveal who exists
        stored = user_row.password_hash if user_row is not None else _DECOY_HASH
        if not await verify_password(password, stored) or user_row is None or not user_row.enabled:
            raise Unauthorized()
        return Named(user_row.id, user_row.name, user_row.domain_id, user_row.domain_name), \
            user_row.default_project_id

    async def _scope(self, conn: AsyncConnection, user: Named, scope: Any,
                     default_project: str | None) -> tuple[Named | None, list[tuple[str, str]], bool]:
        """(project, roles, system) of the scope asked for: a project, the system (the user's roles on
        the admin project are their system roles), the user's default project, or none."""
        if isinstance(scope, dict) and "system" in scope:
            if scope["system"] != {"all": True}:
                raise errors.Invalid("Invalid input for field 'scope/system': only {'all': true} is a system scope")
            admin = (await conn.execute(
                select(projects.c.id).where(projects.c.name == ADMIN_PROJECT[0],
                                            projects.c.domain_id == ADMIN_PROJECT[1]))).scalar()
            role_rows = await self._roles(conn, user.id, admin) if admin else []
            if not role_rows:
                raise Unauthorized(f"User {user.id} has no access to the system")
            return None, role_rows, True
        project = None
        if scope is not None:
            project = await self._find_project(conn, scope)
        elif default_project:
            project = await self._project_by_id(conn, default_project)
        if project is None:
            return None, [], False
        role_rows = await self._roles(conn, user.id, project.id)
        if not role_rows:
            raise Unauthorized(f"User {user.id} has no access to project {project.id}")
        return project, role_rows, False

    async def _domain_scope(self, conn: AsyncConnection, user: Named, spec: Any) -> tuple[Named, list[tuple[str, str]]]:
        """The domain of a domain scope ({id} or {name}) and the user's roles there (none: 401)."""
        if isinstance(spec, dict) and spec.get("id"):
            clause = domains.c.id == str(spec["id"])
        elif isinstance(spec, dict) and spec.get("name"):
            clause = domains.c.name == str(spec["name"])
        else:
            raise errors.Invalid("Invalid input for field 'scope/domain': 'id' or 'name' is required")
        row = (await conn.execute(select(domains.c.id, domains.c.name, domains.c.enabled).where(clause))).first()
        if row is None or not row.enabled:
            raise Unauthorized()
        role_rows = await self.domain_roles(conn, user.id, row.id)
        if not role_rows:
            raise Unauthorized(f"User {user.id} has no access to domain {row.id}")
        return Named(row.id, row.name), role_rows

    @staticmethod
    async def domain_roles(conn: AsyncConnection, user_id: str, domain_id: str) -> list[tuple[str, str]]:
        """The user's roles on the domain, implied ones included (empty: no access)."""
        return await TokenService._with_implied_rows(conn, granted_domain_role_ids(user_id, domain_id))

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

    async def roles_on(self, conn: AsyncConnection, user_id: str, project_id: str) -> list[tuple[str, str]]:
        """The user's roles on the project, implied ones included (empty: no access)."""
        return await self._roles(conn, user_id, project_id)

    @staticmethod
    async def _roles(conn: AsyncConnection, user_id: str, project_id: str) -> list[tuple[str, str]]:
        return await TokenService._with_implied_rows(conn, granted_role_ids(user_id, project_id))

    @staticmethod
    async def _with_implied_rows(conn: AsyncConnection, granted_ids: Any) -> list[tuple[str, str]]:
        """(id, name) of the granted roles and those they imply, by name (unique across the cloud); a
        domain-specific role is never carried, only the global roles it implies (as Keystone)."""
        assigned = (await conn.execute(
            select(roles.c.id, roles.c.name).where(roles.c.id.in_(granted_ids)))).all()
        if not assigned:
            return []
        names = _with_implied({r.name for r in assigned}, await implications(conn))
        rows = (await conn.execute(select(roles.c.id, roles.c.name).where(
            roles.c.name.in_(names), roles.c.domain_id.is_(None)))).all()
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
        ud, pd, sd = domains.alias("ud"), domains.alias("pd"), domains.alias("sd")
        query = (select(tokens, users.c.name.label("user_name"), users.c.domain_id.label("user_domain_id"),
                        ud.c.name.label("user_domain_name"), projects.c.name.label("project_name"),
                        projects.c.domain_id.label("project_domain_id"), pd.c.name.label("project_domain_name"),
                        users.c.enabled.label("user_enabled"), ud.c.enabled.label("user_domain_enabled"),
                        projects.c.enabled.label("project_enabled"), pd.c.enabled.label("project_domain_enabled"),
                        sd.c.name.label("scope_domain_name"), sd.c.enabled.label("scope_domain_enabled"))
                 .join(users, users.c.id == tokens.c.user_id)
                 .join(ud, ud.c.id == users.c.domain_id)
                 .outerjoin(projects, projects.c.id == tokens.c.project_id)
                 .outerjoin(pd, pd.c.id == projects.c.domain_id)
                 .outerjoin(sd, sd.c.id == tokens.c.domain_id)
                 .where(tokens.c.id_hash == key))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None or not (row.user_enabled and row.user_domain_enabled):
                raise Unauthorized()
            scoped_to = row.project_id
            if row.system:
                scoped_to = (await conn.execute(select(projects.c.id).where(
                    projects.c.name == ADMIN_PROJECT[0], projects.c.domain_id == ADMIN_PROJECT[1]))).scalar()
            elif row.project_id is not None and not (row.project_enabled and row.project_domain_enabled):
                raise Unauthorized()
            if row.domain_id is not None:
                # a disabled or deleted domain, or a role taken away there, ends its domain-scoped tokens
                current = {name for _, name in await self.domain_roles(conn, row.user_id, row.domain_id)}
                if not row.scope_domain_enabled or not {r["name"] for r in row.roles} <= current:
                    raise Unauthorized()
            if scoped_to is not None:
                # Keystone revokes a user's tokens on a project when one of their roles there is removed
                current = {name for _, name in await self._roles(conn, row.user_id, scoped_to)}
                if not {r["name"] for r in row.roles} <= current:
                    raise Unauthorized()
            if row.app_cred_id is not None and not await appcred_auth.alive(conn, row.app_cred_id):
                raise Unauthorized()  # the credential was deleted or expired: its tokens die with it
        project = None
        if row.project_id is not None:
            project = Named(row.project_id, row.project_name or "", row.project_domain_id or "",
                            row.project_domain_name or "")
        return Token(user=Named(row.user_id, row.user_name, row.user_domain_id, row.user_domain_name),
                     project=project, roles=tuple((r["id"], r["name"]) for r in row.roles),
                     methods=tuple(row.methods), audit_id=row.audit_id, issued_at=row.issued_at,
                     expires_at=row.expires_at, system=bool(row.system), app_cred_id=row.app_cred_id,
                     domain=Named(row.domain_id, row.scope_domain_name) if row.domain_id else None)

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
