"""CURVE keys and the ZAP allowlist.

Every service has its own key pair: the public half is in cluster.json (and so
known to every member of the cluster), the secret half only in
<state>/keys/<service>.secret (0600). Each process runs a ZAP handler that
accepts only clients whose public key belongs to the cluster, so a peer with a
foreign key never gets an answer, and names the principal each key belongs to
(cells/rpc/principal.py) as the connection's ZAP User-Id (its service id):
`principal_of(user_id)` is what the RPC server reads for every message.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import zmq
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

from cells.rpc.principal import Principal
from cells.rpc.transport import CurveKeys, context

LOG = logging.getLogger(__name__)
OPERATOR = "operator"  # the key cellctl and other tools use to talk to the cluster


def key_path(state_dir: str | Path, owner: str) -> Path:
    return Path(state_dir) / "keys" / (owner.replace("/", "_") + ".secret")


def ensure_keypair(state_dir: str | Path, owner: str) -> str:
    """Create the owner's key pair once; return its public key (z85 text)."""
    path = key_path(state_dir, owner)
    if path.exists():
        public, _ = path.read_bytes().split(b"\n")[:2]
        return public.decode()
    public, secret = zmq.curve_keypair()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(public + b"\n" + secret + b"\n")
    return public.decode()


def load_keys(state_dir: str | Path, owner: str) -> CurveKeys:
    public, secret = key_path(state_dir, owner).read_bytes().split(b"\n")[:2]
    return CurveKeys(public=public, secret=secret)


def throwaway_keys() -> CurveKeys:
    """A key pair no cluster knows (probing a cluster whose keys were never made)."""
    public, secret = zmq.curve_keypair()
    return CurveKeys(public=public, secret=secret)


class _Allowlist:
    def __init__(self, keys: set[bytes]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            LOG.warning("refused a ZeroMQ peer with a key foreign to this cluster: %s", key.decode(errors="replace"))
        return allowed


class _PrincipalAuthenticator(ThreadAuthenticator):
    """The ZAP handler: an accepted key's User-Id is the id of the principal it belongs to."""

    def __init__(self, table: dict[bytes, Principal]) -> None:
        super().__init__(context())
        self.table = table

    def curve_user_id(self, client_public_key: bytes) -> str:
        principal = self.table.get(zmq.utils.z85.encode(client_public_key))
        return principal.id if principal is not None else ""  # not reached: the allowlist refused it


_authenticator: ThreadAuthenticator | None = None
_principals: dict[str, Principal] = {}  # principal id (the User-Id) -> principal


def start_allowlist(principals: dict[str, Principal]) -> None:
    """Run this process's ZAP handler, accepting only the keys of `principals` (z85 public key ->
    the principal it belongs to: cells/rpc/principal.py principals_of). A running one takes the new
    table in place (several services of one process, in tests, each start it)."""
    global _authenticator, _principals
    table = {key.encode(): p for key, p in principals.items()}
    _principals = {p.id: p for p in principals.values()}
    if isinstance(_authenticator, _PrincipalAuthenticator) and _authenticator.is_alive():
        _authenticator.table = table
        _authenticator.configure_curve_callback("*", credentials_provider=_Allowlist(set(table)))
        return
    if _authenticator is not None:  # a stopped or dead one may still hold the ZAP address
        _authenticator.stop()
    for attempt in range(40):
        auth = _PrincipalAuthenticator(table)
        try:
            auth.start()
            break
        except zmq.ZMQError as exc:
            # the previous handler's socket is closed by zmq's I/O thread a moment after it stops
            if getattr(auth, "zap_socket", None) is not None:
                auth.zap_socket.close(linger=0)
            if exc.errno != zmq.EADDRINUSE or attempt == 39:
                raise
            time.sleep(0.05)
    auth.configure_curve_callback("*", credentials_provider=_Allowlist(set(table)))
    _authenticator = auth


def principal_of(user_id: str) -> Principal | None:
    """The principal whose key the ZAP handler accepted with this User-Id (None: unknown)."""
    return _principals.get(user_id)


def stop_allowlist() -> None:
    global _authenticator, _principals
    if _authenticator is not None:
        _authenticator.stop()
        _authenticator = None
    _principals = {}
