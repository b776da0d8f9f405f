"""tools/tempest.py's policy options: --legacy-admin and --policy FILE write the cluster's <state>/policy.yaml,
which the API's policy engine loads with the rule overridden; a file the engine would refuse stops the run before
any cluster starts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.policy.enforce import POLICY_FILE, Policy
from api.policy.engine import PolicyError
from tools import tempest

# an admin of a project Tempest makes (dynamic credentials): the admin role, not the admin project
PROJECT_ADMIN: dict[str, Any] = {"roles": ("admin", "member", "reader"), "project_id": "team2", "user_id": "u",
                                 "is_admin_project": False, "system_scope": None}


def test_legacy_admin_makes_any_project_admin_a_cloud_admin(tmp_path: Path) -> None:
    """--legacy-admin writes context_is_admin: "role:admin"; the engine reading that state directory lets a
    project's admin create a project, which the defaults refuse it."""
    assert not Policy(tmp_path).allowed("identity:create_project", PROJECT_ADMIN)  # the default: strict
    tempest.write_policy(tmp_path, tempest.policy_overrides(legacy_admin=True))
    policy = Policy(tmp_path)
    assert policy.rules["context_is_admin"] == "role:admin"
    assert policy.allowed("identity:create_project", PROJECT_ADMIN)
    assert policy.allowed("os_compute_api:os-quota-sets:update", PROJECT_ADMIN, {"project_id": "other"})
    member = {**PROJECT_ADMIN, "roles": ("member", "reader")}
    assert not policy.allowed("identity:create_project", member)  # still the admin role only


def test_policy_file_is_written_with_legacy_admin_on_top(tmp_path: Path) -> None:
    """--policy FILE's rules reach the cluster's policy.yaml; --legacy-admin with it sets context_is_admin."""
    operator = tmp_path / "operator.yaml"
    operator.write_text('identity:list_projects: "role:reader"\ncontext_is_admin: "role:nobody"\n')
    state = tmp_path / "var"
    state.mkdir()
    tempest.write_policy(state, tempest.policy_overrides(operator, legacy_admin=True))
    rules = Policy(state).rules
    assert rules["identity:list_projects"] == "role:reader"
    assert rules["context_is_admin"] == "role:admin"


def test_no_option_writes_no_file(tmp_path: Path) -> None:
    """Without either option the cluster keeps its own rules: no policy.yaml is written."""
    assert not tempest.write_policy(tmp_path, tempest.policy_overrides())
    assert not (tmp_path / POLICY_FILE).exists()


@pytest.mark.parametrize("text, words", [
    ('context_is_admin: "rule:no_such_rule"\n', "undefined rule"),
    ("- a list\n", "must map rule names"),
    ('context_is_admin: "role:admin and"\n', "ends where a check was expected"),
])
def test_a_file_the_engine_would_refuse_stops_the_run(tmp_path: Path, text: str, words: str) -> None:
    """A policy file the API would refuse (and keep its defaults: a run under the wrong rules) is a PolicyError
    before any cluster starts; main() turns it into a usage error (exit 2)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(PolicyError, match=words):
        tempest.policy_overrides(bad)
    with pytest.raises(SystemExit) as exited:
        tempest.main(["--policy", str(bad)])
    assert exited.value.code == 2


def test_a_missing_policy_file_stops_the_run(tmp_path: Path) -> None:
    """--policy naming no file is refused, not read as "no overrides"."""
    with pytest.raises(PolicyError, match="no such policy file"):
        tempest.policy_overrides(tmp_path / "absent.yaml")
