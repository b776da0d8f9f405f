"""Server groups on a real cluster (cellctl up, two compute hosts on libvirt's test driver)
with the unmodified `openstack` CLI: anti-affinity members on distinct hosts and a member
with no host left in ERROR with Nova's fault, affinity members stacked on one host,
members listed and leaving on delete, a bad group hint, the server_groups quota."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tools.devcluster import RunningCluster, running_cluster, wait_for

pytestmark = pytest.mark.slow
BOOT = ("server", "create", "--flavor", "m1.tiny", "--image", "tiny-raw")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path_factory.mktemp("servergroups"), hosts=2) as c:
        yield c


def settled(cluster: RunningCluster, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The servers (admin's listing: Status and Host), once none of them is building."""
    def poll() -> dict[str, dict[str, Any]] | None:
        rows = {s["ID"]: s for s in cluster.ok("server", "list", "--long", "--all-projects", "-f", "json",
                                                 who="admin") if s["ID"] in ids}
        return rows if len(rows) == len(ids) and all(r["Status"] != "BUILD" for r in rows.values()) else None
    return dict(wait_for(f"servers {ids} built", poll))


def boot(cluster: RunningCluster, name: str, group: str | None = None, count: int = 1) -> list[str]:
    hint = ("--hint", f"group={group}") if group else ()
    made = cluster.ok(*BOOT, *hint, "--min", str(count), "--max", str(count), name, "-f", "json")
    if count == 1:
        return [made["id"]]
    return [s["ID"] for s in cluster.ok("server", "list", "--name", f"^{name}-", "-f", "json")]


def members(cluster: RunningCluster, group: str) -> list[str]:
    return list(cluster.ok("server", "group", "show", group, "-f", "json")["members"])


def test_anti_affinity_members_take_distinct_hosts_until_they_run_out(cluster: RunningCluster) -> None:
    group = cluster.ok("server", "group", "create", "--policy", "anti-affinity", "spread", "-f", "json")
    # the CLI negotiates our newest microversion: from 2.64 a group has one policy and its rules
    assert (group["name"], group["policy"], group["rules"], group["members"]) == ("spread", "anti-affinity", {}, [])
    pair = boot(cluster, "anti", group["id"], count=2)  # one request, two members
    built = settled(cluster, pair)
    assert [s["Status"] for s in built.values()] == ["ACTIVE", "ACTIVE"]
    assert sorted(s["Host"] for s in built.values()) == ["node1", "node2"]

    [third] = boot(cluster, "anti3", group["id"])
    assert settled(cluster, [third])[third]["Status"] == "ERROR"
    fault = cluster.ok("server", "show", third, "-f", "json")["fault"]
    assert fault["message"] == "No valid host was found. There are not enough hosts available."
    assert sorted(members(cluster, "spread")) == sorted([*pair, third])  # an ERROR member stays one (Nova)

    # members gone free their host for the group
    cluster.ok("server", "delete", "--wait", third, pair[0])
    assert members(cluster, "spread") == [pair[1]]
    [again] = boot(cluster, "anti4", group["id"])
    built = settled(cluster, [again, pair[1]])
    assert built[again]["Status"] == "ACTIVE" and built[again]["Host"] != built[pair[1]]["Host"]
    listed = {g["ID"]: g for g in cluster.ok("server", "group", "list", "--long", "-f", "json")}
    assert sorted(listed[group["id"]]["Members"]) == sorted([pair[1], again])
    cluster.ok("server", "delete", "--wait", pair[1], again)
    cluster.ok("server", "group", "delete", "spread")
    assert group["id"] not in {g["ID"] for g in cluster.ok("server", "group", "list", "-f", "json")}


def test_affinity_members_stack_on_one_host(cluster: RunningCluster) -> None:
    group = cluster.ok("server", "group", "create", "--policy", "affinity", "stack", "-f", "json")
    first = boot(cluster, "aff0", group["id"])
    settled(cluster, first)
    # one at a time: the scheduler would spread them (as it does the plain boot), the group stacks them
    ids = first + boot(cluster, "aff1", group["id"]) + boot(cluster, "aff2", group["id"]) + boot(cluster, "plain")
    built = settled(cluster, ids)
    assert all(s["Status"] == "ACTIVE" for s in built.values())
    assert len({built[s]["Host"] for s in ids[:3]}) == 1 and built[ids[3]]["Host"] != built[ids[0]]["Host"]
    assert members(cluster, group["id"]) == ids[:3]
    cluster.ok("server", "delete", "--wait", *ids)
    assert members(cluster, group["id"]) == []
    cluster.ok("server", "group", "delete", group["id"])


def test_bad_hints_and_the_server_groups_quota(cluster: RunningCluster) -> None:
    unknown = str(uuid.uuid4())
    done = cluster.cli(*BOOT, "--hint", f"group={unknown}", "nogroup")
    assert done.returncode != 0 and f"Instance group {unknown} could not be found." in done.stderr
    assert "nogroup" not in cluster.ok("server", "list", "-f", "value", "-c", "Name")

    cluster.ok("quota", "set", "--server-groups", "1", "demo", who="admin")
    try:
        cluster.ok("server", "group", "create", "--policy", "affinity", "one")
        done = cluster.cli("server", "group", "create", "--policy", "affinity", "two")
        assert done.returncode != 0 and "Quota exceeded, too many server groups." in done.stderr
        assert [g["Name"] for g in cluster.ok("server", "group", "list", "-f", "json")] == ["one"]
    finally:
        cluster.ok("quota", "set", "--server-groups", "10", "demo", who="admin")
        cluster.cli("server", "group", "delete", "one")
