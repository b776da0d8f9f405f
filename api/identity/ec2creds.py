"""Keystone's EC2 credentials: /v3/users/{user_id}/credentials/OS-EC2 and the ec2
entries of /v3/credentials.

An EC2 credential is an (access, secret) pair bound to a user and a project;
the /ec2 API verifies SigV4 signatures with the secret and acts as that user
in that project. A user manages their own credentials (for a project they have
a role on); admins anyone's.

The secret is stored sealed (Fernet: AES-CBC + HMAC-SHA256) under a key derived
from the cluster secret `ec2_credential_key` (<state>/secrets.json, 0600), so a
copy of the API DB signs nothing. Rows from before are sealed when the API starts.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db.schema import ec2_credentials
from api.http import json_body
from api.identity.tokens import Token, granted_role_ids
from api.keys import CLUSTER, ENGINE, POLICY, TOKENS, public_url
from api.policy.enforce import denied_message
from api.timeutil import utcnow
from cells import errors
from cells.config import ClusterConfig

LOG = logging.getLogger(__name__)
SEALED = "fernet:"  # the prefix of a sealed secret; a row without it is from before (plaintext)
KEY_NAME = "ec2_credential_key"


@dataclass(frozen=True)
class Credential:
    access: str
    secret: str  # unsealed
    user_id: str
    project_id: str


@functools.lru_cache(maxsize=4)
def _fernet_for(key: str) -> Fernet:
    derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"cellcloud ec2 credential secrets").derive(
        key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(derived))


def _fernet(cluster: ClusterConfig) -> Fernet:
    key = cluster.secrets.get(KEY_NAME)
    if not key:
        raise errors.CellcloudError(f"the cluster secrets lack {KEY_NAME} (cellctl up makes it)")
    return _fernet_for(key)


def seal(cluster: ClusterConfig, secret: str) -> str:
    return SEALED + _fernet(cluster).encrypt(secret.encode("utf-8")).decode("ascii")


def unseal(cluster: ClusterConfig, stored: str) -> str:
    if not stored.startswith(SEALED):
        return stored  # not sealed yet: only until seal_plaintext_rows runs at this API's start
    try:
        return _fernet(cluster).decrypt(stored[len(SEALED):].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise errors.CellcloudError("an EC2 credential is sealed with another ec2_credential_key") from None


def _credential(cluster: ClusterConfig, row: Any) -> Credential:
    return Credential(row.access, unseal(cluster, row.secret), row.user_id, row.project_id)


async def seal_plaintext_rows(engine: AsyncEngine, cluster: ClusterConfig) -> int:
    """Seal the rows stored in plaintext (before sealing existed); how many. Each row is updated only
    if it is still the plaintext read, so API workers starting together seal it once."""
    if not cluster.secrets.get(KEY_NAME):
        LOG.error("cluster secrets lack %s: EC2 credentials cannot be sealed or used", KEY_NAME)
        return 0
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ec2_credentials.c.access, ec2_credentials.c.secret)
                                   .where(ec2_credentials.c.secret.not_like(SEALED + "%")))).all()
    done = 0
    for row in rows:
        async with engine.begin() as conn:
            result = await conn.execute(update(ec2_credentials).where(and_(
                ec2_credentials.c.access == row.access, ec2_credentials.c.secret == row.secret))
                .values(secret=seal(cluster, row.secret)))
            done += result.rowcount
    if done:
        LOG.info("sealed %d EC2 credential secret(s) stored in plaintext", done)
    return done
from cells.context import IMAGE_READER


class CredentialNotFound(errors.NotFound):
    code, msg = "credential_not_found", "Could not find credential: {credential_id}."


async def _caller(request: web.Request) -> Token:
    token_id = request.headers.get("X-Auth-Token")
    if not token_id:
        raise errors.Unauthorized()
    return await request.config_dict[TOKENS].validate(token_id)


def _may_manage(request: web.Request, token: Token, user_id: str, action: str) -> None:
    """The policy's identity:ec2_`action` (the owner, or an admin) on `user_id`'s credentials."""
    rule = f"identity:ec2_{action}"
    # the image reader (the compute hosts' credential) gets no EC2 keys: they would act in its project
    if IMAGE_READER in token.role_names and not token.is_admin_project:
        raise errors.Forbidden(denied_message(rule))
    request.config_dict[POLICY].enforce(rule, token.credentials(),
                                        {"user_id": user_id, "target.credential.user_id": user_id})


def _ec2_view(base: str, row: Credential) -> dict[str, Any]:
    return {"user_id": row.user_id, "tenant_id": row.project_id, "access": row.access, "secret": row.secret,
            "trust_id": None,
            "links": {"self": f"{base}/identity/v3/users/{row.user_id}/credentials/OS-EC2/{row.access}"}}


def _credential_view(base: str, row: Credential) -> dict[str, Any]:
    blob = json.dumps({"access": row.access, "secret": row.secret, "trust_id": None})
    return {"id": row.access, "type": "ec2", "user_id": row.user_id, "project_id": row.project_id, "blob": blob,
            "links": {"self": f"{base}/identity/v3/credentials/{row.access}"}}


async def lookup(request: web.Request, access: str) -> Credential | None:
    """The credential of an access key, its secret unsealed, or None (the /ec2 API's signature check)."""
    async with request.config_dict[ENGINE].connect() as conn:
        row = (await conn.execute(select(ec2_credentials).where(ec2_credentials.c.access == access))).first()
    return None if row is None else _credential(request.config_dict[CLUSTER], row)


async def create(request: web.Request) -> web.Response:
    token = await _caller(request)
    user_id = request.match_info["user_id"]
    _may_manage(request, token, user_id, "create_credential")
    body = await json_body(request)
    project = body.get("tenant_id") if isinstance(body, dict) else None
    if not isinstance(project, str) or not project:
        raise errors.Invalid("Invalid input for field 'tenant_id': 'tenant_id' is a required property")
    engine = request.config_dict[ENGINE]
    async with engine.begin() as conn:
        has_role = (await conn.execute(granted_role_ids(user_id, project))).first()  # directly or by a group
        if has_role is None:
            raise errors.Forbidden(f"User {user_id} has no role on project {project}.")
        access, secret = secrets.token_hex(16), secrets.token_hex(16)
        await conn.execute(insert(ec2_credentials).values(access=access, secret=seal(request.config_dict[CLUSTER],
                                                                                      secret),
                                                          user_id=user_id, project_id=project,
                                                          created_at=utcnow()))
    return web.json_response({"credential": _ec2_view(public_url(request), Credential(access, secret, user_id,
                                                                                       project))}, status=201)


async def _rows(request: web.Request, user_id: str | None) -> list[Credential]:
    query = select(ec2_credentials).order_by(ec2_credentials.c.created_at)
    if user_id is not None:
        query = query.where(ec2_credentials.c.user_id == user_id)
    async with request.config_dict[ENGINE].connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_credential(request.config_dict[CLUSTER], r) for r in rows]


async def list_ec2(request: web.Request) -> web.Response:
    token = await _caller(request)
    user_id = request.match_info["user_id"]
    _may_manage(request, token, user_id, "list_credentials")
    base = public_url(request)
    rows = await _rows(request, user_id)
    return web.json_response({"credentials": [_ec2_view(base, r) for r in rows],
                              "links": {"self": str(request.url), "previous": None, "next": None}})


async def _own_row(request: web.Request, action: str) -> Credential:
    token = await _caller(request)
    user_id = request.match_info["user_id"]
    _may_manage(request, token, user_id, action)
    row = await lookup(request, request.match_info["access"])
    if row is None or row.user_id != user_id:
        raise CredentialNotFound(credential_id=request.match_info["access"])
    return row


async def show_ec2(request: web.Request) -> web.Response:
    row = await _own_row(request, "get_credential")
    return web.json_response({"credential": _ec2_view(public_url(request), row)})


async def delete_ec2(request: web.Request) -> web.Response:
    row = await _own_row(request, "delete_credential")
    async with request.config_dict[ENGINE].begin() as conn:
        await conn.execute(delete(ec2_credentials).where(ec2_credentials.c.access == row.access))
    return web.Response(status=204)


async def list_credentials(request: web.Request) -> web.Response:
    """/v3/credentials: only ec2 credentials exist here. Non-admins see their own."""
    token = await _caller(request)
    wanted_type = request.query.get("type")
    user_id = request.query.get("user_id")
    if not request.config_dict[POLICY].allowed("identity:ec2_list_credentials", token.credentials(),
                                               {"user_id": user_id}):  # not anyone's: one's own only
        user_id = token.user.id if user_id in (None, token.user.id) else "\x00nobody"
    rows = [] if wanted_type not in (None, "ec2") else await _rows(request, user_id)
    base = public_url(request)
    return web.json_response({"credentials": [_credential_view(base, r) for r in rows],
                              "links": {"self": str(request.url), "previous": None, "next": None}})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v3/users/{user_id}/credentials/OS-EC2", create)
    app.router.add_get("/v3/users/{user_id}/credentials/OS-EC2", list_ec2)
    app.router.add_get("/v3/users/{user_id}/credentials/OS-EC2/{access}", show_ec2)
    app.router.add_delete("/v3/users/{user_id}/credentials/OS-EC2/{access}", delete_ec2)
    app.router.add_get("/v3/credentials", list_credentials)
