"""Register the tiny guest in a cluster's image store, as Nova/EC2 registered AMIs:

    tiny-linux-kernel   disk_format aki   the Debian cloud kernel
    tiny-linux-ramdisk  disk_format ari   the busybox initramfs (prints CELLCLOUD-GUEST-UP ...)
    tiny-linux          disk_format ami   a 1 MiB raw root disk; properties kernel_id, ramdisk_id,
                                          os_command_line point the compute host at the other two

Built by tools/guestimage.py from Debian packages (no other download), uploaded
through the Image API as the cluster's admin. Idempotent: an active tiny-linux
is left alone. Stdlib HTTP only: this runs inside `cellctl`, whose imports stay lean.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = "tiny-linux"
KERNEL_NAME, RAMDISK_NAME = f"{NAME}-kernel", f"{NAME}-ramdisk"
COMMAND_LINE = "console=ttyS0 quiet panic=-1"
ROOT_SIZE = 1 << 20
ROOT_MARKER = b"CELLCLOUD tiny-linux root disk v1\n"
TIMEOUT = 60.0


def root_disk() -> bytes:
    """The machine image's bits: a raw disk the guest sees as /dev/vda, marked so it can be recognised."""
    return ROOT_MARKER.ljust(ROOT_SIZE, b"\0")


class RegisterError(Exception):
    pass


@dataclass
class ImageClient:
    """Just enough Keystone and Glance for the registration, over urllib."""
    api_url: str
    token: str = ""

    def login(self, user: str, password: str, project: str) -> None:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        req = urllib.request.Request(f"{self.api_url}/identity/v3/auth/tokens", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with self._open(req) as resp:
            self.token = resp.headers["X-Subject-Token"]

    def _open(self, req: urllib.request.Request) -> Any:
        try:
            return urllib.request.urlopen(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            raise RegisterError(f"{req.get_method()} {req.full_url}: HTTP {exc.code} "
                                f"{exc.read().decode(errors='replace')[:300]}") from None
        except OSError as exc:
            raise RegisterError(f"{req.get_method()} {req.full_url}: {exc}") from None

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}/image/v2{path}", data=data, method=method,
                                     headers={"X-Auth-Token": self.token, "Content-Type": "application/json"})
        with self._open(req) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def find(self, name: str) -> dict[str, Any] | None:
        found = self._json("GET", "/images?" + urllib.parse.urlencode({"name": name}))["images"]
        active = [i for i in found if i["status"] == "active"]
        return active[0] if active else (found[0] if found else None)

    def create(self, name: str, disk_format: str, data: bytes, **extra: Any) -> dict[str, Any]:
        image = self._json("POST", "/images", {"name": name, "disk_format": disk_format,
                                               "container_format": disk_format, "visibility": "public", **extra})
        req = urllib.request.Request(f"{self.api_url}/image/v2/images/{image['id']}/file", data=data, method="PUT",
                                     headers={"X-Auth-Token": self.token,
                                              "Content-Type": "application/octet-stream"})
        with self._open(req):
            pass
        return dict(self._json("GET", f"/images/{image['id']}"))

    def delete(self, image_id: str) -> None:
        self._json("DELETE", f"/images/{image_id}")


def register(api_url: str, admin_password: str, build_dir: Path, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the guest in `build_dir` and register the three images; returns tiny-linux's record."""
    from tools import guestimage

    client = ImageClient(api_url.rstrip("/"))
    client.login("admin", admin_password, "admin")
    existing = client.find(NAME)
    if existing is not None and existing["status"] == "active" and not force:
        return existing
    kernel_path, initrd_path = guestimage.build(build_dir)
    for name in (NAME, KERNEL_NAME, RAMDISK_NAME):  # replace whatever a failed or forced run left
        while (old := client.find(name)) is not None:
            client.delete(old["id"])
    kernel = client.create(KERNEL_NAME, "aki", kernel_path.read_bytes())
    ramdisk = client.create(RAMDISK_NAME, "ari", initrd_path.read_bytes())
    return client.create(NAME, "ami", root_disk(), kernel_id=kernel["id"], ramdisk_id=ramdisk["id"],
                         os_command_line=COMMAND_LINE)
