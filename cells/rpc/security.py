"""CURVE keys and the ZAP allowlist.

Every service has its own key pair: the public half is in cluster.json (and so
known to every member of the cluster), the secret half only in
<state>/keys/<service>.secret (0600). Each process runs a ZAP handler that
accepts only clients whose public key belongs to the cluster, so a peer with a
foreign key never gets an answer.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

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


_authenticator: ThreadAuthenticator | None = None


def start_allowlist(public_keys: set[str]) -> None:
    """Run this process's ZAP handler, accepting only `public_keys` (z85)."""
    global _authenticator
    if _authenticator is not None:
        _authenticator.stop()
    auth = ThreadAuthenticator(context())
    auth.start()
    auth.configure_curve_callback("*", credentials_provider=_Allowlist({k.encode() for k in public_keys}))
    _authenticator = auth


def stop_allowlist() -> None:
    global _authenticator
    if _authenticator is not None:
        _authenticator.stop()
        _authenticator = None
