"""Issue 19's last identity and image leftovers with the unmodified `openstack` CLI: project tags (create,
set, unset, the list filters), a domain-specific role (created in a domain, listed there, granted in it,
refused outside it), a group's system role, and an image made by Glance's interoperable import
(`image create --import`: stage, then glance-direct), whose data downloads byte for byte."""
from __future__ import annotations

import hashlib
from pathlib import Path

from tests.unit.api_support import SECRETS
from tests.unit.test_api_cli_identity import _fails, _ok, _password_env, _run, pytestmark, two_workers

__all__ = ["pytestmark"]


async def test_tags_domain_roles_group_system_grant_and_import(tmp_path: Path) -> None:
    async with two_workers(tmp_path, "tcp://127.0.0.1:1") as (one, _two):
        admin = _password_env(one, "admin", SECRETS["admin_password"], "admin")
        demo = _password_env(one, "demo", SECRETS["demo_password"], "demo")

        await _ok(tmp_path, admin, "project", "create", "--tag", "blue", "--tag", "prod", "tagged")
        await _ok(tmp_path, admin, "project", "create", "plain")
        await _ok(tmp_path, admin, "project", "set", "--tag", "green", "tagged")
        shown = await _ok(tmp_path, admin, "project", "show", "tagged", "-f", "json")
        assert sorted(shown["tags"]) == ["blue", "green", "prod"]

        def names(rows: list[dict[str, str]]) -> set[str]:
            return {r["Name"] for r in rows} & {"tagged", "plain"}
        assert names(await _ok(tmp_path, admin, "project", "list", "--tags", "blue,green", "-f", "json")) == {"tagged"}
        assert names(await _ok(tmp_path, admin, "project", "list", "--not-tags-any", "prod", "-f", "json")) == \
            {"plain"}
        await _ok(tmp_path, admin, "project", "set", "--remove-tag", "prod", "tagged")
        assert sorted((await _ok(tmp_path, admin, "project", "show", "tagged", "-f", "json"))["tags"]) == \
            ["blue", "green"]
        assert "403" in await _fails(tmp_path, demo, "project", "set", "--tag", "mine", "demo")

        await _ok(tmp_path, admin, "domain", "create", "acme")
        team = await _ok(tmp_path, admin, "project", "create", "--domain", "acme", "acme-team", "-f", "json")
        await _ok(tmp_path, admin, "user", "create", "--domain", "acme", "--password", "ann-pw", "ann")
        role = await _ok(tmp_path, admin, "role", "create", "--domain", "acme", "acme-operator", "-f", "json")
        assert role["domain_id"] == (await _ok(tmp_path, admin, "domain", "show", "acme", "-f", "json"))["id"]
        listed = await _ok(tmp_path, admin, "role", "list", "--domain", "acme", "-f", "json")
        assert [r["Name"] for r in listed] == ["acme-operator"]
        await _ok(tmp_path, admin, "role", "add", "--user", "ann", "--user-domain", "acme", "--project", "acme-team",
                  "--project-domain", "acme", "--role-domain", "acme", "acme-operator")
        # outside its domain the API answers 403 (this CLI then still exits 0): no grant is made
        await _run(tmp_path, admin, "role", "add", "--user", "ann", "--user-domain", "acme", "--project", "demo",
                   "--role-domain", "acme", "acme-operator")
        granted = await _ok(tmp_path, admin, "role", "assignment", "list", "--user", "ann", "--user-domain", "acme",
                            "-f", "json")
        assert [(g["Role"], g["Project"]) for g in granted] == [(role["id"], team["id"])]

        await _ok(tmp_path, admin, "group", "create", "auditors")
        await _ok(tmp_path, admin, "user", "create", "--password", "sam-pw", "sam")
        await _ok(tmp_path, admin, "group", "add", "user", "auditors", "sam")
        await _ok(tmp_path, admin, "role", "add", "--group", "auditors", "--system", "all", "reader")
        sam = {"OS_AUTH_URL": f"{one}/identity/v3", "OS_USERNAME": "sam", "OS_PASSWORD": "sam-pw",
               "OS_USER_DOMAIN_NAME": "Default", "OS_SYSTEM_SCOPE": "all", "OS_IDENTITY_API_VERSION": "3",
               "OS_REGION_NAME": "RegionOne"}
        assert (await _ok(tmp_path, sam, "token", "issue", "-f", "json"))["id"]

        data = tmp_path / "disk.raw"
        data.write_bytes(b"\x00" * 65536 + b"imported" * 1000)
        made = await _ok(tmp_path, demo, "image", "create", "--import", "--disk-format", "raw", "--container-format",
                         "bare", "--file", str(data), "imported", "-f", "json")
        shown = await _ok(tmp_path, demo, "image", "show", made["id"], "-f", "json")
        assert (shown["status"], shown["size"]) == ("active", data.stat().st_size)
        await _ok(tmp_path, demo, "image", "save", "--file", str(tmp_path / "back"), made["id"])
        assert hashlib.sha256((tmp_path / "back").read_bytes()).digest() == hashlib.sha256(data.read_bytes()).digest()
