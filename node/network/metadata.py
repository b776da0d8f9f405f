"""The metadata service (EC2 /latest and OpenStack /openstack/latest) for guests,
served on a network host at 169.254.169.254:80.

A guest is known by where its request came from: the network whose bridge it
arrived on and its source IP. Each network with its gateway here gets its own
listener, bound to its bridge (SO_BINDTODEVICE; 169.254.169.254 itself sits on
`lo`), and asks the conductor for the instance whose port on that network holds
the source address (instance_for_metadata, through the port table). An IP alone
is not an identity: another network may use the same one, and a guest may forge
its source address but not the bridge its packets cross. No match, several, or a
stale one (server gone, port unbound) is a 404. Each source is rate-limited (a
token bucket per network and address): past it, 429.

Paths served:
  /latest/meta-data/                 index; instance-id, hostname, local-hostname,
                                     local-ipv4, instance-type, placement/availability-zone,
                                     public-keys/ (0/openssh-key when the record carries key data)
  /latest/user-data                  the raw user data (404 when there is none)
  /openstack/latest/meta_data.json   uuid, name, hostname, project_id, availability_zone, meta, keys
  /openstack/latest/user_data
  POST /openstack/latest/password    the guest's password, once (os-server-password; 256 bytes at most)
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from cells import errors
from cells.context import admin_context

LOG = logging.getLogger(__name__)
METADATA_ADDRESS = "169.254.169.254"
METADATA_PORT = 80
Lookup = Callable[[str], Awaitable[Mapping[str, Any]]]
LOOKUP_KEY: web.AppKey[Lookup] = web.AppKey("lookup")
# (source address, password): the guest's password stored (conductor password_post); the server's uuid
PasswordPost = Callable[[str, str], Awaitable[str]]
PASSWORD_KEY: web.AppKey[PasswordPost | None] = web.AppKey("password_post")
MAX_PASSWORD = 256  # bytes a guest may post (Nova's metadata password handler)
RATE, BURST = 10.0, 50  # per source: cloud-init's first run asks a few dozen paths at once
CLONE_NEWNET = 0x40000000


class RateLimiter:
    """A token bucket per key (the source address of one network's listener): `burst` at once,
    then `rate` per second. Full buckets are forgotten when many keys are held, so a flood of
    forged sources cannot grow it without bound."""

    MAX_KEYS = 4096

    def __init__(self, rate: float = RATE, burst: int = BURST, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def allow(self, key: str) -> bool:
        now = self.clock()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.MAX_KEYS:
            self._forget_full(now)
        return allowed

    def _forget_full(self, now: float) -> None:
        for key, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[key]
        if len(self._buckets) > self.MAX_KEYS // 2:  # still crowded: the oldest half goes (bounded work)
            for key in list(self._buckets)[:len(self._buckets) - self.MAX_KEYS // 2]:
                del self._buckets[key]


LIMITER_KEY: web.AppKey[RateLimiter | None] = web.AppKey("limiter")


def hostname(instance: Mapping[str, Any]) -> str:
    """Nova's sanitised hostname: the display name lowered, anything but [a-z0-9-] made '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", str(instance.get("name") or "").lower()).strip("-")[:63]
    return name or f"server-{instance['uuid']}"


def user_data(instance: Mapping[str, Any]) -> bytes | None:
    raw = instance.get("user_data")
    if not raw:
        return None
    try:
        return base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        return str(raw).encode()  # stored unencoded by an older writer: give it back as it is


def public_keys(instance: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, key) pairs: the record's key data when the boot carried it."""
    key = instance.get("key_data")
    return [(str(instance.get("key_name") or "key"), str(key))] if key else []


def meta_data(instance: Mapping[str, Any], source: str) -> dict[str, str]:
    """The flat EC2 meta-data leaves (public-keys are a directory of their own)."""
    flavor = instance.get("flavor") or {}
    return {"instance-id": str(instance["uuid"]), "hostname": hostname(instance),
            "local-hostname": hostname(instance), "local-ipv4": source,  # the fixed IP the lookup found it by
            "instance-type": str(flavor.get("name") or ""), "ami-launch-index": "0",
            "placement/availability-zone": str(instance.get("availability_zone") or "nova")}


def openstack_meta_data(instance: Mapping[str, Any]) -> dict[str, Any]:
    keys = public_keys(instance)
    return {"uuid": instance["uuid"], "name": instance.get("name"), "hostname": hostname(instance),
            "project_id": instance.get("project_id"), "launch_index": 0,
            "availability_zone": instance.get("availability_zone") or "nova",
            "meta": dict(instance.get("metadata") or {}),
            "public_keys": dict(keys), "keys": [{"name": n, "type": "ssh", "data": k} for n, k in keys]}


async def _instance(request: web.Request) -> Mapping[str, Any]:
    source = request.remote or ""
    try:
        return await request.app[LOOKUP_KEY](source)
    except errors.NotFound:
        raise web.HTTPNotFound(text=f"no instance has the address {source}\n") from None
    except errors.CellcloudError as exc:  # the conductor is unreachable: the guest may retry
        LOG.warning("metadata lookup of %s failed: %s", source, exc)
        raise web.HTTPServiceUnavailable(text="metadata lookup failed, retry later\n") from None


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain")


async def ec2_meta_data(request: web.Request) -> web.Response:
    inst = await _instance(request)
    leaves = meta_data(inst, request.remote or "")
    path = request.match_info.get("path", "").strip("/")
    if path == "":
        dirs = sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in leaves} | {"public-keys/"})
        return _text("\n".join(dirs))
    if path in leaves:
        return _text(leaves[path])
    if path == "placement":
        return _text("availability-zone")
    keys = public_keys(inst)
    if path == "public-keys":
        return _text("\n".join(f"{i}={name}" for i, (name, _) in enumerate(keys)))
    m = re.fullmatch(r"public-keys/(\d+)(?:/(openssh-key)?)?", path)
    if m and int(m.group(1)) < len(keys):
        return _text(keys[int(m.group(1))][1] + "\n" if m.group(2) else "openssh-key")
    raise web.HTTPNotFound()


async def ec2_user_data(request: web.Request) -> web.Response:
    data = user_data(await _instance(request))
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type="application/octet-stream")


async def os_meta_data(request: web.Request) -> web.Response:
    return web.json_response(openstack_meta_data(await _instance(request)))


async def os_password(request: web.Request) -> web.Response:
    """A guest posts its password (encrypted with its key pair) once; os-server-password shows it.
    400 past 256 bytes, 409 when one is kept, as Nova's metadata service."""
    post = request.app[PASSWORD_KEY]
    if post is None:
        raise web.HTTPNotFound()
    if (request.content_length or 0) > MAX_PASSWORD:
        raise web.HTTPBadRequest(text="Request is too large.\n")
    data = await request.content.read(MAX_PASSWORD + 1)
    if len(data) > MAX_PASSWORD:
        raise web.HTTPBadRequest(text="Request is too large.\n")
    try:
        await post(request.remote or "", data.decode())
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="The password must be text.\n") from None
    except errors.NotFound:
        raise web.HTTPNotFound(text=f"no instance has the address {request.remote}\n") from None
    except errors.Conflict:
        raise web.HTTPConflict(text="A password is set already.\n") from None
    except errors.Invalid as exc:
        raise web.HTTPBadRequest(text=exc.message + "\n") from None
    except errors.CellcloudError as exc:  # the conductor is unreachable: the guest may retry
        LOG.warning("metadata password of %s not stored: %s", request.remote, exc)
        raise web.HTTPServiceUnavailable(text="password not stored, retry later\n") from None
    return web.Response(status=200)


async def index(request: web.Request) -> web.Response:
    return _text("latest\nopenstack\n")


@web.middleware
async def _rate_limited(request: web.Request, handler: Handler) -> web.StreamResponse:
    limiter = request.app[LIMITER_KEY]
    if limiter is not None and not limiter.allow(request.remote or ""):
        raise web.HTTPTooManyRequests(text="too many metadata requests, slow down\n")
    return await handler(request)


def make_app(lookup: Lookup, limiter: RateLimiter | None = None,
             post_password: PasswordPost | None = None) -> web.Application:
    """`lookup(source address)`: the instance for one listener's network; `limiter`: per source;
    `post_password(source, password)`: where a guest's password goes (None: not served)."""
    app = web.Application(middlewares=[_rate_limited])
    app[LOOKUP_KEY] = lookup
    app[LIMITER_KEY] = limiter
    app[PASSWORD_KEY] = post_password
    app.router.add_get("/", index)
    for prefix in ("/latest", "/2009-04-04"):
        app.router.add_get(prefix + "/meta-data{path:/?.*}", ec2_meta_data)
        app.router.add_get(prefix + "/user-data", ec2_user_data)
    for prefix in ("/openstack/latest", "/openstack/2012-08-10"):
        app.router.add_get(prefix + "/meta_data.json", os_meta_data)
        app.router.add_get(prefix + "/user_data", ec2_user_data)
    for prefix in ("/openstack/latest", "/openstack/2013-04-04"):  # Nova serves the password from 2013-04-04
        app.router.add_post(prefix + "/password", os_password)
    return app


@dataclass
class _Listener:
    bridge: str
    ifindex: int  # the bridge's: a bridge made again (new index) needs a new socket
    runner: web.AppRunner


class MetadataServer:
    """One listener per network whose gateway is on this host, each bound to the network's bridge;
    169.254.169.254/32 on `lo` (the guests' packets to it arrive on the bridge and are delivered
    locally). `conductor`: anything with instance_for_metadata (ConductorAPI). `netns`: make the
    sockets and the address inside that named namespace (tests; an agent runs inside its own)."""

    def __init__(self, conductor: Any, address: str = METADATA_ADDRESS, port: int = METADATA_PORT, *,
                 netns: str | None = None, rate: float = RATE, burst: int = BURST) -> None:
        self.conductor = conductor
        self.address = address
        self.port = port
        self.netns = netns
        self.rate, self.burst = rate, burst
        self._listeners: dict[str, _Listener] = {}
        self._address_ready = False

    def _password_for(self, network_id: str) -> PasswordPost:
        async def post(source: str, password: str) -> str:
            uuid: str = await self.conductor.password_post(admin_context(), network_id, source, password)
            return uuid
        return post

    def _lookup_for(self, network_id: str) -> Lookup:
        async def lookup(source: str) -> dict[str, Any]:
            found: dict[str, Any] = await self.conductor.instance_for_metadata(admin_context(), network_id, source)
            return found
        return lookup

    async def ensure(self, networks: Sequence[tuple[str, str]]) -> None:
        """Listen on exactly these (network id, bridge) pairs: new ones start, gone ones stop."""
        loop = asyncio.get_running_loop()
        if networks and not self._address_ready:
            await loop.run_in_executor(None, _ensure_loopback_address, self.address, self.netns)
            self._address_ready = True
        wanted = dict(networks)
        for net_id in [n for n in self._listeners if n not in wanted]:
            await self._close(net_id)
        for net_id, bridge in wanted.items():
            have = self._listeners.get(net_id)
            ifindex = await loop.run_in_executor(None, _ifindex, bridge, self.netns)
            if have is not None and (have.bridge, have.ifindex) == (bridge, ifindex):
                continue
            if have is not None:
                await self._close(net_id)
            if ifindex is None:
                LOG.warning("metadata: bridge %s of network %s is missing, not listening there", bridge, net_id)
                continue
            sock = await loop.run_in_executor(None, _listening_socket, self.address, self.port, bridge, self.netns)
            runner = web.AppRunner(make_app(self._lookup_for(net_id), RateLimiter(self.rate, self.burst),
                                            self._password_for(net_id)), access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._listeners[net_id] = _Listener(bridge, ifindex, runner)
            LOG.info("metadata service listening on %s:%d for network %s (%s)", self.address, self.port,
                     net_id, bridge)

    async def _close(self, net_id: str) -> None:
        listener = self._listeners.pop(net_id)
        await listener.runner.cleanup()

    async def stop(self) -> None:
        for net_id in list(self._listeners):
            await self._close(net_id)


@contextmanager
def _in_netns(netns: str | None) -> Iterator[None]:
    """Run the block in the named network namespace (this thread only: the caller's executor thread)."""
    if netns is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as own, open(f"/run/netns/{netns}") as target:
        if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
        try:
            yield
        finally:
            if libc.setns(own.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")


def _ifindex(bridge: str, netns: str | None) -> int | None:
    with _in_netns(netns):
        try:
            return socket.if_nametoindex(bridge)
        except OSError:
            return None


def _listening_socket(address: str, port: int, bridge: str, netns: str | None) -> socket.socket:
    """A TCP listener on address:port that hears only what arrives on `bridge`."""
    with _in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bridge.encode())
            sock.bind((address, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock


def _ensure_loopback_address(address: str, netns: str | None = None) -> None:
    from pyroute2 import IPRoute, NetNS  # type: ignore[import-untyped]
    with (NetNS(netns) if netns else IPRoute()) as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=lo, family=2)}
        if address not in have:
            ipr.addr("add", index=lo, address=address, prefixlen=32)
