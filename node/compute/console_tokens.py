"""Console tokens of a compute host (Nova's console_auth_tokens, kept where the console is): a secret the
API hands out in a console URL, valid for one server, its project and one console type, until it expires.
Only the secret's hash is kept; every mismatch gets the same answer, so a guess learns nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cells import errors

TOKEN_TTL = 600.0  # seconds a console URL stays usable (Nova's [consoleauth] token_ttl)
MAX_TOKENS = 1024  # unexpired tokens kept on a host; the oldest goes first (a tenant asking in a loop)


@dataclass(frozen=True)
class Grant:
    uuid: str
    project: str
    console_type: str
    expires: float


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ConsoleGrants:
    def __init__(self) -> None:
        self._grants: OrderedDict[str, Grant] = OrderedDict()  # sha256(secret) -> grant

    def grant(self, uuid: str, project: str, console_type: str) -> str:
        """A new secret for the console `console_type` of server `uuid` in `project`."""
        self.forget_expired()
        while len(self._grants) >= MAX_TOKENS:
            self._grants.popitem(last=False)
        secret = secrets.token_urlsafe(32)
        self._grants[_hash(secret)] = Grant(uuid, str(project), console_type, time.monotonic() + TOKEN_TTL)
        return secret

    def check(self, uuid: str, project: str, secret: Any, console_type: str) -> Grant:
        """The grant `secret` names, if it is for this server, project and console type and still valid."""
        grant = self._grants.get(_hash(secret)) if isinstance(secret, str) else None
        if grant is None or grant.expires <= time.monotonic() or not hmac.compare_digest(grant.uuid, uuid) \
                or not hmac.compare_digest(grant.project, str(project)) or grant.console_type != console_type:
            raise errors.Unauthorized("The console token is invalid or has expired.")
        return grant

    def forget_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, g in self._grants.items() if g.expires <= now]:
            del self._grants[key]
