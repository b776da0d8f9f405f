"""tools/tempest.py's policy options: --legacy-admin and --policy FILE write the cluster's <state>/policy.yaml,
which the API's policy engine loads with the rule overridden; a file the engine would refuse stops the run before
any cluster starts. And its passes: RUN_UNDER_LEGACY_ADMIN's tests run in a pass of their own under the legacy
admin rule, everything else under the cloud's own rules."""
from __future__ import annotations

import re
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


# test ids as `stestr list` gives them (with the [id-...] suffix): some of RUN_UNDER_LEGACY_ADMIN's, some of the
# same classes that pass under the cloud's rules and so stay with the rest, some of elsewhere
LEGACY = ["tempest.api.compute.admin.test_quotas.QuotasAdminTestJSON.test_delete_quota[id-07d2e342]",
          "tempest.api.compute.admin.test_quotas.QuotasAdminTestV236.test_get_updated_quotas[id-4268b5c9]",
          "tempest.api.identity.admin.v3.test_domains.DomainsTestJSON.test_list_domains[id-8cf51629,smoke]",
          "tempest.api.identity.admin.v3.test_users.UsersV3TestJSON.test_get_user[id-c10dcd90]"]
STRICT = ["tempest.api.compute.admin.test_quotas.QuotasAdminTestJSON.test_get_default_quotas[id-3b0a7c8f,smoke]",
          "tempest.api.compute.admin.test_quotas.QuotaClassesAdminTestJSON.test_update_default_quotas[id-7932ab0f]",
          ("tempest.api.identity.admin.v3.test_users.UsersV3TestJSON.test_password_history_not_enforced_in_admin_"
           "reset[id-568cd46c]"),
          ("tempest.api.identity.admin.v3.test_domains_negative.DomainsNegativeTestJSON.test_create_domain_with_"
           "empty_name[id-37b1bbf2]"),
          "tempest.api.compute.servers.test_servers.ServersTestJSON.test_create_specify_keypair[id-f9e15296]"]


def test_the_cloud_rules_pass_and_the_legacy_admin_pass_split_the_selection() -> None:
    """By default the run's tests are split: RUN_UNDER_LEGACY_ADMIN's run under LEGACY_ADMIN, everything else
    (other tests of the same classes too) under the cloud's own rules (no policy.yaml); each test in one pass."""
    first, second = tempest.passes([*STRICT, *LEGACY], {})
    assert (first.tests, first.policy) == (STRICT, {})
    assert (second.tests, second.policy) == (LEGACY, tempest.LEGACY_ADMIN)
    assert "legacy admin" in second.rule and "legacy" not in first.rule


def test_a_pass_with_nothing_selected_is_left_out() -> None:
    """A --regex choosing none of RUN_UNDER_LEGACY_ADMIN runs one pass (no second cluster), one choosing only
    them runs only the legacy admin pass, and nothing selected is no pass at all."""
    [only] = tempest.passes(STRICT, {})
    assert (only.tests, only.policy) == (STRICT, {})
    [legacy] = tempest.passes(LEGACY[:1], {})
    assert (legacy.tests, legacy.policy) == (LEGACY[:1], tempest.LEGACY_ADMIN)
    assert tempest.passes([], {}) == []


def test_under_legacy_admin_or_an_operator_policy() -> None:
    """--legacy-admin runs everything in one pass under it; an operator's --policy runs the first pass under
    that file's rules and the second under them with LEGACY_ADMIN on top."""
    [one] = tempest.passes([*STRICT, *LEGACY], tempest.policy_overrides(legacy_admin=True))
    assert (one.tests, one.policy) == ([*STRICT, *LEGACY], tempest.LEGACY_ADMIN)
    operator = {"identity:list_projects": "role:reader"}
    first, second = tempest.passes([*STRICT, *LEGACY], operator)
    assert (first.tests, first.policy) == (STRICT, operator)
    assert (second.tests, second.policy) == (LEGACY, {**operator, **tempest.LEGACY_ADMIN})


def test_every_legacy_admin_entry_names_tests_tempest_has(tmp_path: Path) -> None:
    """Each RUN_UNDER_LEGACY_ADMIN entry selects at least one test of the installed Tempest (`stestr list`, no
    cluster), none of them NOT_SERVED's: an entry that stopped matching would silently move nothing."""
    pytest.importorskip("tempest", reason="the tempest extra is not installed (pip install -e .[tempest])")
    ids = tempest.listed(r"^tempest\.api\.(compute\.admin\.test_quotas|identity\.admin\.v3\.)", tmp_path)
    for pattern in tempest.RUN_UNDER_LEGACY_ADMIN:
        assert any(re.search(pattern, test) for test in ids), pattern
    moved = [test for test in ids if tempest.under_legacy_admin(test)]
    assert len(moved) == 34, moved  # the 23 failures under the cloud's rules, 3 of them whole classes (14 tests)


def test_the_run_image_is_a_raw_disk_of_cirros_size(tmp_path: Path) -> None:
    """image_ref's data: CIRROS_BYTES (devstack's CirrOS disk, 21 MB) that the image service's format inspection
    takes as a plain raw disk; two runs get different bytes (random: nothing on the way shrinks them)."""
    from cells import imageformat
    data = tempest.cirros_sized()
    assert len(data) == tempest.CIRROS_BYTES == 21 * 1024 * 1024
    (tmp_path / "disk").write_bytes(data)
    found = imageformat.inspect_file(str(tmp_path / "disk"))
    assert (found.format, found.unsafe) == ("raw", None)
    assert tempest.cirros_sized()[512:] != data[512:]
