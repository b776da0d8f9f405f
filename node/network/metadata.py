"""The metadata service (EC2 /latest and OpenStack /openstack/latest) for guests,
served on a network host at 169.254.169.254:80. A guest is known only by the
source address of its request: its fixed IP, which the conductor maps to the
live instance holding it (instance_by_address, admin/service only).

Paths served:
  /latest/meta-data/                 index; instance-id, hostname, local-hostname,
                                     local-ipv4, instance-type, placement/availability-zone,
                                     public-keys/ (0/openssh-key when the record carries key data)
  /latest/user-data                  the raw user data (404 when there is none)
  /openstack/latest/meta_data.json   uuid, name, hostname, project_id, availability_zone, meta, keys
  /openstack/latest/user_data
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cells import errors
from cells.context import admin_context

LOG = logging.getLogger(__name__)
METADATA_ADDRESS = "169.254.169.254"
METADATA_PORT = 80
Lookup = Callable[[str], Awaitable[dict[str, Any]]]
LOOKUP_KEY: web.AppKey[Lookup] = web.AppKey("lookup")


def hostname(instance: dict[str, Any]) -> str:
    """Nova's sanitised hostname: the display name lowered, anything but [a-z0-9-] made '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", str(instance.get("name") or "").lower()).strip("-")[:63]
    return name or f"server-{instance['uuid']}"


def user_data(instance: dict[str, Any]) -> bytes | None:
    raw = instance.get("user_data")
    if not raw:
        return None
    try:
        return base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        return str(raw).encode()  # stored unencoded by an older writer: give it back as it is


def public_keys(instance: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, key) pairs: the record's key data when the boot carried it."""
    key = instance.get("key_data")
    return [(str(instance.get("key_name") or "key"), str(key))] if key else []


def meta_data(instance: dict[str, Any], source: str) -> dict[str, str]:
    """The flat EC2 meta-data leaves (public-keys are a directory of their own)."""
    flavor = instance.get("flavor") or {}
    return {"instance-id": str(instance["uuid"]), "hostname": hostname(instance),
            "local-hostname": hostname(instance), "local-ipv4": source,  # the fixed IP the lookup found it by
            "instance-type": str(flavor.get("name") or ""), "ami-launch-index": "0",
            "placement/availability-zone": str(instance.get("availability_zone") or "nova")}


def openstack_meta_data(instance: dict[str, Any]) -> dict[str, Any]:
    keys = public_keys(instance)
    return {"uuid": instance["uuid"], "name": instance.get("name"), "hostname": hostname(instance),
            "project_id": instance.get("project_id"), "launch_index": 0,
            "availability_zone": instance.get("availability_zone") or "nova",
            "meta": dict(instance.get("metadata") or {}),
            "public_keys": dict(keys), "keys": [{"name": n, "type": "ssh", "data": k} for n, k in keys]}


async def _instance(request: web.Request) -> dict[str, Any]:
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


async def index(request: web.Request) -> web.Response:
    return _text("latest\nopenstack\n")


def make_app(lookup: Lookup) -> web.Application:
    app = web.Application()
    app[LOOKUP_KEY] = lookup
    app.router.add_get("/", index)
    for prefix in ("/latest", "/2009-04-04"):
        app.router.add_get(prefix + "/meta-data{path:/?.*}", ec2_meta_data)
        app.router.add_get(prefix + "/user-data", ec2_user_data)
    for prefix in ("/openstack/latest", "/openstack/2012-08-10"):
        app.router.add_get(prefix + "/meta_data.json", os_meta_data)
        app.router.add_get(prefix + "/user_data", ec2_user_data)
    return app


class MetadataServer:
    """The listener on the network host: 169.254.169.254/32 on `lo` (the guest's packets to
    it arrive on the bridge and are delivered locally), the app bound to it once."""

    def __init__(self, conductor: Any, address: str = METADATA_ADDRESS, port: int = METADATA_PORT) -> None:
        self.conductor = conductor
        self.address = address
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _lookup(self, source: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.conductor.instance_by_address(admin_context(), source)
        return found

    async def ensure(self) -> None:
        if self._runner is not None:
            return
        await asyncio.get_running_loop().run_in_executor(None, _ensure_loopback_address, self.address)
        runner = web.AppRunner(make_app(self._lookup), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.address, self.port, reuse_address=True).start()
        self._runner = runner
        LOG.info("metadata service listening on %s:%d", self.address, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _ensure_loopback_address(address: str) -> None:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=lo, family=2)}
        if address not in have:
            ipr.addr("add", index=lo, address=address, prefixlen=32)
