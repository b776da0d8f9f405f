"""Glance writes with the unmodified `openstack` CLI (issue 19): image set/unset of properties and tags
(JSON-patch), deactivate and reactivate, sharing an image with another project (members: add, accept,
and what each side sees), and download (`image save`) compared byte for byte with what was uploaded.
The version document lists only the versions served."""
from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp

from tests.unit.api_support import SECRETS
from tests.unit.test_api_cli_identity import _fails, _ok, _password_env, _token, pytestmark, two_workers

__all__ = ["pytestmark"]


async def test_image_set_unset_deactivate_share_and_save(tmp_path: Path) -> None:
    async with two_workers(tmp_path, "tcp://127.0.0.1:1") as (one, _two):
        admin = _password_env(one, "admin", SECRETS["admin_password"], "admin")
        demo = _password_env(one, "demo", SECRETS["demo_password"], "demo")
        data = tmp_path / "disk.raw"
        data.write_bytes(b"\x00" * 65536 + b"cellcloud" * 1000)
        await _ok(tmp_path, demo, "image", "create", "--disk-format", "raw", "--container-format", "bare",
                  "--file", str(data), "--shared", "pic", "-f", "json")
        await _ok(tmp_path, demo, "image", "set", "--property", "os_distro=debian", "--tag", "gold", "--min-ram",
                  "64", "pic")
        shown = await _ok(tmp_path, demo, "image", "show", "pic", "-f", "json")
        assert shown["properties"]["os_distro"] == "debian" and shown["tags"] == ["gold"] and shown["min_ram"] == 64
        await _ok(tmp_path, demo, "image", "unset", "--property", "os_distro", "--tag", "gold", "pic")
        shown = await _ok(tmp_path, demo, "image", "show", "pic", "-f", "json")
        assert "os_distro" not in (shown.get("properties") or {}) and shown["tags"] == []
        # a member may not make its image public (publicize_image is the admin's)
        assert "403" in await _fails(tmp_path, demo, "image", "set", "--public", "pic")

        await _ok(tmp_path, demo, "image", "set", "--deactivate", "pic")
        assert (await _ok(tmp_path, demo, "image", "show", "pic", "-f", "json"))["status"] == "deactivated"
        await _fails(tmp_path, demo, "image", "save", "--file", str(tmp_path / "x"), "pic")
        token = await _token(one, "demo", SECRETS["demo_password"], "demo")
        async with aiohttp.ClientSession() as http, \
                http.get(f"{one}/image/v2/images/{shown['id']}/file", headers={"X-Auth-Token": token}) as resp:
            assert resp.status == 403 and "deactivated" in (await resp.json())["message"]
        await _ok(tmp_path, demo, "image", "set", "--activate", "pic")
        await _ok(tmp_path, demo, "image", "save", "--file", str(tmp_path / "saved"), "pic")
        assert hashlib.sha256((tmp_path / "saved").read_bytes()).digest() == hashlib.sha256(data.read_bytes()).digest()

        # share with a new project: pending (seen by id, not listed) until its member accepts
        team2 = await _ok(tmp_path, admin, "project", "create", "team2", "-f", "json")
        await _ok(tmp_path, admin, "user", "create", "--project", "team2", "--password", "bob-pw", "bob")
        await _ok(tmp_path, admin, "role", "add", "--user", "bob", "--project", "team2", "member")
        bob = _password_env(one, "bob", "bob-pw", "team2")
        image_id = shown["id"]
        await _fails(tmp_path, bob, "image", "show", image_id)  # not a member yet: not found
        # by id: demo may not look team2's name up in the identity service
        member = await _ok(tmp_path, demo, "image", "add", "project", "pic", team2["id"], "-f", "json")
        assert member["status"] == "pending"
        assert "pic" not in [i["Name"] for i in await _ok(tmp_path, bob, "image", "list", "-f", "json")]
        assert (await _ok(tmp_path, bob, "image", "show", image_id, "-f", "json"))["name"] == "pic"
        await _ok(tmp_path, bob, "image", "set", "--accept", image_id)
        assert "pic" in [i["Name"] for i in await _ok(tmp_path, bob, "image", "list", "-f", "json")]
        members = await _ok(tmp_path, demo, "image", "member", "list", "pic", "-f", "json")
        assert [m["Status"] for m in members] == ["accepted"]
        # a member may read, not change, the image
        assert "403" in await _fails(tmp_path, bob, "image", "set", "--property", "k=v", image_id)
        await _ok(tmp_path, bob, "image", "save", "--file", str(tmp_path / "bob"), image_id)
        await _ok(tmp_path, demo, "image", "remove", "project", "pic", team2["id"])
        assert "pic" not in [i["Name"] for i in await _ok(tmp_path, bob, "image", "list", "-f", "json")]

        async with aiohttp.ClientSession() as http, http.get(f"{one}/image/versions") as resp:
            ids = [v["id"] for v in (await resp.json())["versions"]]
        assert ids == ["v2.8", "v2.7", "v2.6", "v2.3", "v2.1", "v2.0"]
