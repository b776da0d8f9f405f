"""The conductor's read-only queries for quotas, instance actions and the
metadata service, against a real cell (tests/unit/test_conductor.py's Cell)."""
from __future__ import annotations

import uuid as uuidlib

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from cells import errors
from cells.context import RequestContext, admin_context
from cells.db.schema import instances
from cells.objects.instance import VmState
from node.network import metadata
from tests.unit.test_conductor import FLAVOR, USER, Cell, cell_fixture

cell = pytest.fixture(cell_fixture({"node1": "ok"}))
BIG = dict(FLAVOR, id="2", vcpus=2, ram=2048)


async def test_project_usage_counts_live_instances_and_their_flavors(cell: Cell) -> None:
    assert await cell.conductor.project_usage(USER, "p1") == {"instances": 0, "cores": 0, "ram": 0}
    a = await cell.boot("a")
    await cell.boot("b", flavor=BIG)
    await cell.boot("other", project="p2")
    assert await cell.conductor.project_usage(USER, "p1") == {"instances": 2, "cores": 3, "ram": 2560}
    await cell.wait_state(a["uuid"], VmState.ACTIVE)
    await cell.conductor.instance_delete(USER, a["uuid"])
    await cell.wait_state(a["uuid"], VmState.DELETED)
    assert await cell.conductor.project_usage(USER, "p1") == {"instances": 1, "cores": 2, "ram": 2048}
    with pytest.raises(errors.Forbidden):  # a tenant counts only its own project
        await cell.conductor.project_usage(USER, "p2")
    assert (await cell.conductor.project_usage(admin_context(), "p2"))["instances"] == 1


async def test_instance_actions_with_events_and_project_scope(cell: Cell) -> None:
    rec = await cell.boot("a")
    await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    acts = await cell.conductor.instance_actions(USER, rec["uuid"])
    assert [a["action"] for a in acts] == ["create"]
    assert acts[0]["finish_time"] and acts[0]["request_id"]
    assert [(e["event"], e["result"]) for e in acts[0]["events"]] == [
        ("conductor_schedule_and_build_instances", "Success"), ("compute_build_and_run_instance", "Success")]
    stranger = RequestContext(project="p2", user="u2", roles=("member",))
    with pytest.raises(errors.InstanceNotFound):
        await cell.conductor.instance_actions(stranger, rec["uuid"])


async def test_instance_by_address_finds_the_fixed_ip_holder(cell: Cell) -> None:
    rec = await cell.boot("a")
    await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    addresses = {"private": [{"addr": "10.0.0.7", "version": 4, "OS-EXT-IPS:type": "fixed"},
                             {"addr": "172.24.4.9", "version": 4, "OS-EXT-IPS:type": "floating"}]}
    await cell.db.write(lambda conn: conn.execute(update(instances).where(instances.c.uuid == rec["uuid"])
                                                  .values(addresses=addresses)))
    found = await cell.conductor.instance_by_address(admin_context(), "10.0.0.7")
    assert found["uuid"] == rec["uuid"]
    with pytest.raises(errors.InstanceNotFound):  # a floating IP is not the guest's own source address
        await cell.conductor.instance_by_address(admin_context(), "172.24.4.9")
    with pytest.raises(errors.Forbidden):  # tenants cannot look up other guests by address
        await cell.conductor.instance_by_address(USER, "10.0.0.7")


async def test_the_boot_key_reaches_the_metadata_service(cell: Cell) -> None:
    """key_name and key_data are kept with the instance, instance_by_address returns them and the
    metadata app serves them (EC2 public-keys and OpenStack meta_data.json)."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqQ1k9eYpXhjUuwgN4v9cX0cWQ5mXv3ZyJkq6u3T1Lk me@laptop"
    inst = {"uuid": str(uuidlib.uuid4()), "name": "keyed", "project_id": "p1", "user_id": "u1", "flavor": FLAVOR,
            "image": {"id": "img-1"}, "key_name": "mine", "key_data": key}
    [rec] = await cell.conductor.build_instances(USER, [inst], {"flavor": FLAVOR, "num_instances": 1})
    await cell.wait_state(rec["uuid"], VmState.ACTIVE)
    addresses = {"private": [{"addr": "10.0.0.8", "version": 4, "OS-EXT-IPS:type": "fixed"}]}
    await cell.db.write(lambda conn: conn.execute(update(instances).where(instances.c.uuid == rec["uuid"])
                                                  .values(addresses=addresses)))
    found = await cell.conductor.instance_by_address(admin_context(), "10.0.0.8")
    assert (found["uuid"], found["key_name"], found["key_data"]) == (rec["uuid"], "mine", key)

    # the test reaches the app from loopback: stand in for the guest's source address, as a NAT would
    app = metadata.make_app(lambda source: cell.conductor.instance_by_address(
        admin_context(), {"127.0.0.1": "10.0.0.8"}[source]))
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/latest/meta-data/public-keys")).text() == "0=mine"
        assert await (await client.get("/latest/meta-data/public-keys/0/openssh-key")).text() == key + "\n"
        doc = await (await client.get("/openstack/latest/meta_data.json")).json()
    assert doc["public_keys"] == {"mine": key} and doc["keys"] == [{"name": "mine", "type": "ssh", "data": key}]
