"""The policy engine (api/policy): the rule language as oslo.policy reads it, the defaults' meaning of
admin (only from the admin project or system scope), the operator's <state>/policy.yaml taking effect
on a running API without a restart, a broken file refused with the previous rules kept, and
`cellctl policy list` printing the effective rules."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.policy import enforce
from api.policy.enforce import Policy
from api.policy.engine import PolicyError, evaluate, parse
from cells.context import RequestContext
from tests.unit.api_support import admin_headers, client, cluster, demo_headers

__all__ = ["admin_headers", "client", "cluster", "demo_headers"]  # fixtures used by name
ROOT = Path(__file__).resolve().parents[2]


def _ok(rule: str, creds: dict[str, Any], target: dict[str, Any], rules: dict[str, str] | None = None) -> bool:
    return evaluate(parse(rule), creds, target, rules or {})


def test_the_rule_language() -> None:
    member = {"roles": ("member", "reader"), "project_id": "p1", "user_id": "u1"}
    assert _ok("role:member and project_id:%(project_id)s", member, {"project_id": "p1"})
    assert not _ok("role:member and project_id:%(project_id)s", member, {"project_id": "p2"})
    assert not _ok("project_id:%(project_id)s", member, {})  # a target key that is absent never matches
    assert _ok("role:admin or (role:reader and 'public':%(visibility)s)", member, {"visibility": "public"})
    assert not _ok("role:admin or (role:reader and 'public':%(visibility)s)", member, {"visibility": "private"})
    assert _ok("not role:admin", member, {}) and _ok("@", member, {}) and _ok("", member, {})
    assert not _ok("!", member, {})
    assert _ok("rule:m", member, {"project_id": "p1"}, {"m": "role:member and project_id:%(project_id)s"})
    assert _ok("user_id:%(target.user.id)s", member, {"target.user.id": "u1"})
    for broken in ("role:admin and", "(role:admin", "role", "role:a or or role:b"):
        with pytest.raises(PolicyError):
            parse(broken)


def test_admin_only_from_the_admin_project_or_system_scope() -> None:
    policy = Policy(None)
    team_admin = RequestContext(project="team2", user="u", roles=("admin", "member", "reader"),
                                is_admin_project=False)
    cloud_admin = RequestContext(project="adminp", user="a", roles=("admin", "member", "reader"),
                                 is_admin_project=True)
    system_admin = RequestContext(project=None, user="a", roles=("admin",), is_admin_project=False,
                                  system_scope=True)
    assert not team_admin.is_admin and cloud_admin.is_admin and system_admin.is_admin
    assert not policy.check("context_is_admin", team_admin)
    assert policy.check("context_is_admin", cloud_admin) and policy.check("context_is_admin", system_admin)
    # the team's admin still acts on its own project as a member does, not on another's
    assert policy.check("modify_image", team_admin, {"owner": "team2"})
    assert not policy.check("modify_image", team_admin, {"owner": "demo"})
    assert policy.check("modify_image", cloud_admin, {"owner": "demo"})
    reader = RequestContext(project="team2", user="r", roles=("reader",), is_admin_project=False)
    assert policy.check("get_image", reader, {"owner": "team2", "visibility": "private"})
    assert not policy.check("modify_image", reader, {"owner": "team2"})


def test_an_override_of_context_is_admin_reaches_the_cells(tmp_path: Path) -> None:
    """A context carrying the API's engine is admin as the engine's context_is_admin says, and sends that verdict
    over the wire, so a cell (no engine) judges the same: the legacy "role:admin" makes a project's admin a cloud
    admin in both; the defaults make it one in neither; a member is none under either."""
    team_admin = RequestContext(project="team2", user="u", roles=("admin", "member", "reader"),
                                is_admin_project=False)
    member = RequestContext(project="team2", user="m", roles=("member", "reader"), is_admin_project=False)
    strict = Policy(None)
    (tmp_path / enforce.POLICY_FILE).write_text('context_is_admin: "role:admin"\n')
    legacy = Policy(tmp_path)
    for policy, admin in ((strict, False), (legacy, True)):
        at_api = replace(team_admin, policy=policy)
        in_cell = RequestContext.from_wire(at_api.to_wire())
        assert at_api.is_admin is admin and in_cell.is_admin is admin
        assert not RequestContext.from_wire(replace(member, policy=policy).to_wire()).is_admin
    assert RequestContext.from_wire(team_admin.to_wire()).is_admin_project is False  # no engine: as issued


def test_a_system_reader_reads_identity_and_changes_none() -> None:
    """Keystone's SYSTEM_READER: reader on a system-scoped token may show and list users, projects, roles,
    groups, domains and grants, and create or change none of them; a reader of a project other than the
    admin one gets none of those reads, and a system reader is no cloud admin."""
    policy = Policy(None)
    system_reader = RequestContext(project=None, user="r", roles=("reader",), is_admin_project=False,
                                   system_scope=True)
    project_reader = RequestContext(project="team2", user="r", roles=("reader",), is_admin_project=False)
    reads = ("identity:list_roles", "identity:get_role", "identity:list_domains", "identity:list_groups",
             "identity:list_role_assignments", "identity:list_system_grants_for_user", "identity:list_implied_roles")
    for action in reads:
        assert policy.check(action, system_reader), action
        assert not policy.check(action, project_reader), action
    user = {"target.user.id": "u2", "target.user.domain_id": "default"}
    project = {"target.project.id": "p2", "target.project.domain_id": "default"}
    assert policy.check("identity:get_user", system_reader, user)
    assert policy.check("identity:get_project", system_reader, project)
    assert policy.check("identity:list_grants", system_reader, {**user, **project})
    for write, target in (("identity:create_user", user), ("identity:create_project", project),
                          ("identity:create_role", {}), ("identity:create_domain", {}),
                          ("identity:create_grant", {**user, **project}),
                          ("identity:create_system_grant_for_user", user), ("identity:delete_group", {})):
        assert not policy.check(write, system_reader, target), write
    assert not policy.check("context_is_admin", system_reader)


def test_every_default_parses_and_every_rule_reference_resolves() -> None:
    rules = enforce.merged({})
    assert len(rules) > 50
    with pytest.raises(PolicyError, match="undefined rule"):
        enforce.merged({"identity:list_projects": "rule:nope"})


async def test_an_override_takes_effect_on_a_running_api(client: TestClient[Any, Any], cluster: Any,
                                                         demo_headers: dict[str, str],
                                                         admin_headers: dict[str, str]) -> None:
    assert (await client.get("/identity/v3/projects", headers=demo_headers)).status == 403
    path = Path(cluster.state_dir) / "policy.yaml"
    path.write_text('"identity:list_projects": "role:reader"\n')
    os.utime(path, (time.time() + 5, time.time() + 5))  # an mtime the policy has not seen, whatever the clock
    enforce_recheck = enforce.RECHECK_EVERY
    deadline = time.monotonic() + enforce_recheck + 3
    status = 403
    while time.monotonic() < deadline and status != 200:
        status = (await client.get("/identity/v3/projects", headers=demo_headers)).status
    assert status == 200
    # a broken file is refused: the previous rules stay (demo still may list, admin still may)
    path.write_text('"identity:list_projects": "role:reader and ("\n')
    os.utime(path, (time.time() + 10, time.time() + 10))
    await asyncio.sleep(enforce_recheck + 0.1)
    assert (await client.get("/identity/v3/projects", headers=demo_headers)).status == 200
    assert (await client.get("/identity/v3/projects", headers=admin_headers)).status == 200
    # and an override that shuts something: creating images
    path.write_text('"add_image": "!"\n')
    os.utime(path, (time.time() + 15, time.time() + 15))
    await asyncio.sleep(enforce_recheck + 0.1)
    resp = await client.post("/image/v2/images", headers=admin_headers,
                             json={"name": "x", "disk_format": "raw", "container_format": "bare"})
    assert resp.status == 403 and "add_image" in (await resp.json())["message"]


def test_cellctl_policy_list_prints_the_effective_rules(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text('"os_compute_api:os-flavor-manage:create": "role:admin"\n'
                                          '"get_images": "role:reader"\n')
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "tools.cellctl", "policy", "list", "--state", str(tmp_path),
                           "--json"], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    rules = {r["name"]: r for r in json.loads(done.stdout)}
    assert rules["get_images"] == {"name": "get_images", "rule": "role:reader", "overridden": True}
    assert rules["identity:create_domain"] == {"name": "identity:create_domain", "rule": "rule:admin_required",
                                                "overridden": False}
    text = subprocess.run([sys.executable, "-m", "tools.cellctl", "policy", "list", "--state", str(tmp_path)],
                          capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout
    assert "get_images" in text and "(overridden in" in text
    (tmp_path / "policy.yaml").write_text("get_images: [not, a, rule]\n")
    refused = subprocess.run([sys.executable, "-m", "tools.cellctl", "policy", "list", "--state", str(tmp_path)],
                             capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    assert refused.returncode == 1 and "refused" in refused.stderr


async def test_a_reader_lists_and_shows_and_changes_nothing(client: TestClient[Any, Any],
                                                            admin_headers: dict[str, str]) -> None:
    """A user with only the reader role on demo: flavors and images list, a key pair or an image create
    is 403 (project_member_or_admin); the same user made a member may create both."""
    async def get_id(path: str, key: str, name: str) -> str:
        resp = await client.get(f"/identity/v3/{path}?name={name}", headers=admin_headers)
        found: str = (await resp.json())[key][0]["id"]
        return found

    resp = await client.post("/identity/v3/users", headers=admin_headers,
                             json={"user": {"name": "rita", "password": "rita-pw-123"}})
    assert resp.status == 201, await resp.text()
    rita, demo = (await resp.json())["user"]["id"], await get_id("projects", "projects", "demo")
    reader, member = await get_id("roles", "roles", "reader"), await get_id("roles", "roles", "member")
    grant = f"/identity/v3/projects/{demo}/users/{rita}/roles"
    assert (await client.put(f"{grant}/{reader}", headers=admin_headers)).status == 204
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "rita", "domain": {"id": "default"}, "password": "rita-pw-123"}}},
        "scope": {"project": {"id": demo}}}}
    resp = await client.post("/identity/v3/auth/tokens", json=body)
    headers = {"X-Auth-Token": resp.headers["X-Subject-Token"]}
    assert (await client.get("/compute/v2.1/flavors", headers=headers)).status == 200
    assert (await client.get("/image/v2/images", headers=headers)).status == 200
    keypair = {"keypair": {"name": "k1"}}
    image = {"name": "x", "disk_format": "raw", "container_format": "bare"}
    refused = await client.post("/compute/v2.1/os-keypairs", headers=headers, json=keypair)
    assert refused.status == 403 and "project_member_or_admin" in await refused.text()
    assert (await client.post("/image/v2/images", headers=headers, json=image)).status == 403

    assert (await client.put(f"{grant}/{member}", headers=admin_headers)).status == 204
    resp = await client.post("/identity/v3/auth/tokens", json=body)
    headers = {"X-Auth-Token": resp.headers["X-Subject-Token"]}
    assert (await client.post("/compute/v2.1/os-keypairs", headers=headers, json=keypair)).status == 200
    assert (await client.post("/image/v2/images", headers=headers, json=image)).status == 201


async def test_helpers_ask_named_rules_an_override_changes(client: TestClient[Any, Any], cluster: Any,
                                                            demo_headers: dict[str, str],
                                                            admin_headers: dict[str, str]) -> None:
    """Who sees a private flavor is os_compute_api:os-flavor-access (admins by default), asked by the
    flavor lookup itself: granting it to members in policy.yaml lets the demo member find one."""
    made = await client.post("/compute/v2.1/flavors", headers=admin_headers, json={"flavor": {
        "name": "private-one", "ram": 64, "vcpus": 1, "disk": 1, "os-flavor-access:is_public": False}})
    assert made.status == 200, await made.text()
    flavor_id = (await made.json())["flavor"]["id"]
    assert (await client.get(f"/compute/v2.1/flavors/{flavor_id}", headers=admin_headers)).status == 200
    assert (await client.get(f"/compute/v2.1/flavors/{flavor_id}", headers=demo_headers)).status == 404
    path = Path(cluster.state_dir) / "policy.yaml"
    path.write_text('"os_compute_api:os-flavor-access": "role:member"\n')
    os.utime(path, (time.time() + 5, time.time() + 5))  # an mtime the policy has not seen, whatever the clock
    deadline = time.monotonic() + enforce.RECHECK_EVERY + 3
    status = 404
    while time.monotonic() < deadline and status != 200:
        status = (await client.get(f"/compute/v2.1/flavors/{flavor_id}", headers=demo_headers)).status
    assert status == 200
