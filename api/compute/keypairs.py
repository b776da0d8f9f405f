"""/compute/v2.1/os-keypairs: Nova 2.1 key pairs (per user), shared with EC2's key pair calls.
Microversions: 2.2 types (ssh, x509), create 201 and delete 204; 2.10 an admin names another user
(`user_id` in the query, or in the create body); 2.35 listing pages (limit, marker: a key name);
2.92 import only (public_key required: no key is generated).

A key pair is imported (the caller gives an OpenSSH public key) or generated
here (RSA 2048; the private key is returned once and never stored). The
fingerprint is the MD5 of the key blob in colon-separated hex, as Nova and
ssh-keygen -l -E md5 print it. The key_pairs quota (per user, as Nova) is
checked under the user's quota lock together with the insert.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import datetime
import hashlib
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import and_, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from api import quota
from api.compute.microversions import Microversion, version_of
from api.compute.schemas import NAME
from api.db.schema import key_pairs
from api.http import authorize, context, json_body
from api.keys import ENGINE, public_url
from api.timeutil import iso_naive_micro, utcnow
from api.validation import validate
from cells import errors

_SAFE_CHARS = frozenset(string.digits + string.ascii_letters + "-_ ")
KEYGEN_TIMEOUT = 30.0

KEYPAIR_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {"keypair": {"type": "object",
                               "properties": {"name": NAME, "public_key": {"type": "string"}},
                               "required": ["name"], "additionalProperties": False}},
    "required": ["keypair"],
    "additionalProperties": False,
}
# 2.2: a key pair has a type; x509 ones hold a PEM certificate
KEYPAIR_CREATE_2_2: dict[str, Any] = {
    **KEYPAIR_CREATE,
    "properties": {"keypair": {**KEYPAIR_CREATE["properties"]["keypair"], "properties": {
        **KEYPAIR_CREATE["properties"]["keypair"]["properties"],
        "type": {"type": "string", "enum": ["ssh", "x509"]}}}},
}


def _create_schema(version: Microversion) -> dict[str, Any]:
    """The create body at `version`: 2.2 type, 2.10 user_id (admins), 2.92 public_key required."""
    if version < (2, 2):
        return KEYPAIR_CREATE
    schema = copy.deepcopy(KEYPAIR_CREATE_2_2)
    keypair = schema["properties"]["keypair"]
    if version >= (2, 10):
        keypair["properties"]["user_id"] = {"type": "string"}
    if version >= (2, 92):
        keypair["required"] = ["name", "public_key"]
    return schema


class InvalidKeypair(errors.Invalid):
    code, msg = "invalid_keypair", "Keypair data is invalid: {reason}"


class KeyPairExists(errors.Conflict):
    code, msg = "keypair_exists", "Key pair '{key_name}' already exists."


class KeypairNotFound(errors.NotFound):
    code, msg = "keypair_not_found", "Keypair {name} not found for user {user_id}"


@dataclass(frozen=True)
class KeyPair:
    id: int
    user_id: str
    name: str
    fingerprint: str
    public_key: str
    created_at: Any
    type: str = "ssh"


def fingerprint(public_key: str) -> str:
    """MD5 of the key blob, colon-hex; InvalidKeypair when it is not an OpenSSH public key."""
    try:
        serialization.load_ssh_public_key(public_key.strip().encode("utf-8"))
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (ValueError, IndexError, UnicodeError, binascii.Error, TypeError):
        raise InvalidKeypair(reason="failed to generate fingerprint") from None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def x509_fingerprint(certificate: str) -> str:
    """SHA-1 of the DER certificate, colon-hex (Nova's x509 key pair fingerprint); InvalidKeypair otherwise."""
    try:
        cert = x509.load_pem_x509_certificate(certificate.strip().encode("utf-8"))
    except (ValueError, UnicodeError, TypeError):
        raise InvalidKeypair(reason="failed to generate X509 fingerprint") from None
    digest = cert.fingerprint(hashes.SHA1()).hex()  # Nova's fingerprint format, not a security check
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _generate_x509(name: str) -> tuple[str, str]:
    """(private key PEM, self-signed certificate PEM), as Nova generates an x509 key pair."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode("ascii")
    return private, cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _generate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode("ascii")
    return private, public + " Generated-by-Nova"


async def generate(key_type: str = "ssh", name: str = "") -> tuple[str, str]:
    """(private PEM, OpenSSH public key or x509 certificate); RSA generation is CPU work, kept off the loop."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(KEYGEN_TIMEOUT):
        if key_type == "x509":
            return await loop.run_in_executor(None, _generate_x509, name)
        return await loop.run_in_executor(None, _generate)


def check_name(name: str) -> None:
    if not 1 <= len(name) <= 255:
        raise InvalidKeypair(reason="Keypair name must be string and between 1 and 255 characters long")
    if not set(name) <= _SAFE_CHARS:
        raise InvalidKeypair(reason="Keypair name contains unsafe characters")


def _keypair(row: Any) -> KeyPair:
    return KeyPair(row.id, row.user_id, row.name, row.fingerprint, row.public_key, row.created_at, row.type)


async def create(engine: AsyncEngine, user_id: str, project_id: str, name: str,
                 public_key: str | None, key_type: str = "ssh") -> tuple[KeyPair, str | None]:
    """validate -> lock -> check (quota, uniqueness) -> insert. Returns (key pair, private key or None).
    The limit is the project's key_pairs quota, counted per user (as Nova)."""
    check_name(name)
    private = None
    if public_key is None:
        private, public_key = await generate(key_type, name)
    fp = x509_fingerprint(public_key) if key_type == "x509" else fingerprint(public_key)
    async with quota.project_lock(f"user:{user_id}"):
        allowed = (await quota.limits(engine, project_id)).get("key_pairs", -1)
        if allowed >= 0 and await quota.keypair_count(engine, user_id) >= allowed:
            raise quota.KeypairLimitExceeded(resource="key_pairs", requested=1, limit=allowed)
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(key_pairs).values(
                    user_id=user_id, name=name, fingerprint=fp, public_key=public_key, type=key_type,
                    created_at=utcnow()))
                row = (await conn.execute(select(key_pairs).where(
                    and_(key_pairs.c.user_id == user_id, key_pairs.c.name == name)))).one()
        except IntegrityError:
            raise KeyPairExists(key_name=name) from None
    return _keypair(row), private


async def list_for(engine: AsyncEngine, user_id: str, names: list[str] | None = None) -> list[KeyPair]:
    query = select(key_pairs).where(key_pairs.c.user_id == user_id)
    if names is not None:
        query = query.where(key_pairs.c.name.in_(names))
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(key_pairs.c.name))).all()
    return [_keypair(r) for r in rows]


async def get(engine: AsyncEngine, user_id: str, name: str) -> KeyPair:
    async with engine.connect() as conn:
        row = (await conn.execute(select(key_pairs).where(
            and_(key_pairs.c.user_id == user_id, key_pairs.c.name == name)))).first()
    if row is None:
        raise KeypairNotFound(name=name, user_id=user_id)
    return _keypair(row)


async def remove(engine: AsyncEngine, user_id: str, name: str) -> None:
    async with engine.begin() as conn:
        result = await conn.execute(delete(key_pairs).where(
            and_(key_pairs.c.user_id == user_id, key_pairs.c.name == name)))
    if result.rowcount == 0:
        raise KeypairNotFound(name=name, user_id=user_id)


# --- Nova views and handlers ------------------------------------------------------

def _user(request: web.Request, named: Any = None, policy: str = "index") -> str:
    """The user whose key pairs the request is about: the caller's, or from 2.10 the one an admin names
    (`user_id` in the query, or `named` from the create body); 403 for a member naming another user."""
    ctx = context(request)
    user = ctx.user
    if not user:
        raise errors.Forbidden()
    wanted = named if named is not None else request.query.get("user_id")
    if wanted is not None and version_of(request) >= (2, 10) and wanted != user:
        authorize(request, f"os_compute_api:os-keypairs:{policy}", {"user_id": str(wanted)})
        return str(wanted)
    return user


def _typed(request: web.Request) -> bool:
    return version_of(request) >= (2, 2)


def _page(found: list[KeyPair], request: web.Request) -> tuple[list[KeyPair], int | None]:
    """2.35: the key pairs after `marker` (a name), at most `limit` of them; (page, limit or None)."""
    query = request.query
    limit = None
    if "limit" in query:
        raw = query["limit"]
        if not raw.isdigit():
            raise errors.Invalid(f"Invalid input for query parameters limit. Value: {raw}. "
                                 f"'{raw}' does not match '^[0-9]*$'")
        limit = int(raw)
    if "marker" in query:
        names = [k.name for k in found]
        if query["marker"] not in names:
            raise errors.Invalid(f"marker [{query['marker']}] not found")
        found = found[names.index(query["marker"]) + 1:]
    return (found[:limit] if limit is not None else found), limit


async def index(request: web.Request) -> web.Response:
    found = await list_for(request.config_dict[ENGINE], _user(request))
    limit = None
    if version_of(request) >= (2, 35):
        found, limit = _page(found, request)
    typed = _typed(request)
    views = []
    for k in found:
        view = {"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint}
        if typed:
            view["type"] = k.type
        views.append({"keypair": view})
    body: dict[str, Any] = {"keypairs": views}
    if limit and len(found) == limit:
        params = urlencode([(k, v) for k, v in request.query.items() if k != "marker"] + [("marker", found[-1].name)])
        body["keypairs_links"] = [{"rel": "next", "href": f"{public_url(request)}/compute/v2.1/os-keypairs?{params}"}]
    return web.json_response(body)


async def show(request: web.Request) -> web.Response:
    k = await get(request.config_dict[ENGINE], _user(request, policy="show"), request.match_info["name"])
    view: dict[str, Any] = {
        "public_key": k.public_key, "name": k.name, "fingerprint": k.fingerprint, "user_id": k.user_id,
        "deleted": False, "created_at": iso_naive_micro(k.created_at), "updated_at": None, "deleted_at": None,
        "id": k.id}
    if _typed(request):
        view["type"] = k.type
    return web.json_response({"keypair": view})


async def create_handler(request: web.Request) -> web.Response:
    body = await json_body(request)
    typed = _typed(request)
    validate(_create_schema(version_of(request)), body)
    spec = body["keypair"]
    k, private = await create(request.config_dict[ENGINE], _user(request, spec.get("user_id"), "create"),
                              str(context(request).project),
                              spec["name"], spec.get("public_key"), spec.get("type", "ssh"))
    out: dict[str, Any] = {"fingerprint": k.fingerprint, "name": k.name, "public_key": k.public_key,
                           "user_id": k.user_id}
    if typed:
        out["type"] = k.type
    if private is not None:
        out["private_key"] = private
    return web.json_response({"keypair": out}, status=201 if typed else 200)


async def delete_handler(request: web.Request) -> web.Response:
    await remove(request.config_dict[ENGINE], _user(request, policy="delete"), request.match_info["name"])
    return web.Response(status=204 if _typed(request) else 202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-keypairs", index)
    app.router.add_post("/v2.1/os-keypairs", create_handler)
    app.router.add_get("/v2.1/os-keypairs/{name}", show)
    app.router.add_delete("/v2.1/os-keypairs/{name}", delete_handler)
