"""Each RPC method is callable only by the principals it declares (Method.callers), as the
CURVE key of the caller says; a host's worker speaks for its own host only."""
from __future__ import annotations

import pytest
from sqlalchemy import Connection

from cells import errors
from cells.context import RequestContext, admin_context
from cells.db import claims
from cells.objects.instance import VmState
from tests.security.curve_cell import CurveCell
from tests.unit.test_conductor import FLAVOR, USER

NODE1 = "cell1/compute/node1"
RESOURCES = {"vcpus": 64, "memory_mb": 1 << 20, "local_gb": 9999}


async def test_a_compute_key_cannot_call_api_only_conductor_methods(cell: CurveCell) -> None:
    """instance_list and build_instances are the API's: a compute's key is refused (rpc_forbidden),
    and no instance is made; the API's key gets the answer."""
    inst = {"uuid": "7d9a3c1e-0000-4000-8000-000000000001", "name": "x", "project_id": "p1", "user_id": "u1",
            "flavor": FLAVOR, "image": {"id": "img-1"}}
    with pytest.raises(errors.RpcForbidden) as refused:
        await cell.call_as(NODE1, "cell1/conductor", "build_instances",
                           {"instances": [inst], "request_spec": {"flavor": FLAVOR, "num_instances": 1}}, USER)
    assert refused.value.code == "rpc_forbidden" and "compute@node1" in refused.value.message
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/conductor", "instance_list", {"filters": {}}, USER)
    assert await cell.call_as("api", "cell1/conductor", "instance_list", {"filters": {}}, USER) == []


async def test_instance_keys_is_the_apis_and_a_member_sees_only_its_project(cell: CurveCell) -> None:
    """instance_keys (the keys-first listing's round 1) refuses a compute's key; with the API's key a member
    of p1 gets the key rows of p1's server only (another project's uuid never appears, even asked for by a
    uuid filter), an admin both."""
    own, other = await cell.boot("mine"), await cell.boot("theirs", project="p2")
    args = {"filters": {}, "sort_keys": ["created_at", "uuid"], "sort_dirs": ["desc", "desc"], "limit": 10}
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/conductor", "instance_keys", args, USER)
    rows = await cell.call_as("api", "cell1/conductor", "instance_keys", args, USER)
    assert rows == [[own["created_at"], own["uuid"]]]
    asked = {**args, "filters": {"uuid": [other["uuid"], own["uuid"]]}}
    assert [r[-1] for r in await cell.call_as("api", "cell1/conductor", "instance_keys", asked, USER)] == [own["uuid"]]
    everyone = await cell.call_as("api", "cell1/conductor", "instance_keys", args, admin_context())
    assert sorted(r[-1] for r in everyone) == sorted([own["uuid"], other["uuid"]])


async def test_instance_list_views_is_the_apis_and_a_member_sees_only_its_project(cell: CurveCell) -> None:
    """instance_list_views (a detail listing's records round) refuses a compute's key; with the API's key a
    member of p1 gets its own server only, with its (empty) volumes and group names, even asking for the other
    project's uuid; a non-boolean `groups` is a 400."""
    own, other = await cell.boot("mine"), await cell.boot("theirs", project="p2")
    args = {"filters": {"uuid": [other["uuid"], own["uuid"]]}, "sort_keys": ["created_at", "uuid"],
            "sort_dirs": ["desc", "desc"], "limit": 10, "groups": True}
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/conductor", "instance_list_views", args, USER)
    listed = await cell.call_as("api", "cell1/conductor", "instance_list_views", args, USER)
    assert [(r["uuid"], r["volumes_attached"], r["security_groups"]) for r in listed] == [(own["uuid"], [], [])]
    with pytest.raises(errors.Invalid):
        await cell.call_as("api", "cell1/conductor", "instance_list_views", {**args, "groups": 1}, USER)


async def test_a_compute_key_cannot_call_the_scheduler(cell: CurveCell) -> None:
    """select_destinations (it claims resources) is the conductor's alone."""
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/scheduler", "select_destinations",
                           {"request_spec": {"flavor": FLAVOR}, "instance_uuids": ["u"], "exclude_hosts": []},
                           RequestContext())
    assert await cell.db.read(lambda conn: claims.claim_of(conn, "u")) is None


async def test_a_compute_reports_resources_for_its_own_host_only(cell: CurveCell) -> None:
    """compute_node_update for another host is refused and that host's record is unchanged;
    for its own host it is taken."""
    node2_before = await cell.db.read(lambda conn: _vcpus(conn, "node2"))
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/conductor", "compute_node_update", {"host": "node2", "resources": RESOURCES})
    assert await cell.db.read(lambda conn: _vcpus(conn, "node2")) == node2_before
    await cell.call_as(NODE1, "cell1/conductor", "compute_node_update", {"host": "node1", "resources": RESOURCES})
    assert await cell.db.read(lambda conn: _vcpus(conn, "node1")) == RESOURCES["vcpus"]


async def test_a_compute_updates_only_instances_on_its_host(cell: CurveCell) -> None:
    """instance_update of an instance on the other host is refused and the record is unchanged."""
    rec = await cell.boot()
    active = await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    other = "node2" if active["host"] == "node1" else "node1"
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(f"cell1/compute/{other}", "cell1/conductor", "instance_update",
                           {"uuid": rec["uuid"], "values": {"vm_state": VmState.ERROR}})
    with pytest.raises(errors.RpcForbidden):  # nor hand it over to itself
        await cell.call_as(f"cell1/compute/{active['host']}", "cell1/conductor", "instance_update",
                           {"uuid": rec["uuid"], "values": {"host": other}})
    after = await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    assert (after["vm_state"], after["host"]) == (VmState.ACTIVE, active["host"])


def _vcpus(conn: Connection, host: str) -> int | None:
    state = claims.get_host(conn, host)
    return None if state is None else int(state.vcpus)
