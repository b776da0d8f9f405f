"""Volume flows in the conductor against a real cell DB (SQLite) and a real volume
worker (file backend, local target) in the same process; the compute side is a
fake hypervisor that can be told to fail. The RPC hop is a direct call."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cells import errors
from cells.conductor.flows import volumes as flows
from cells.conductor.flows.delete import delete_locally
from cells.context import RequestContext
from cells.db import instances as idb
from cells.objects.instance import utcnow_iso
from tests.volume_fakes import VolumeCell, volume_cell

DEMO = RequestContext(project="demo", user="u", roles=("member",))
OTHER = RequestContext(project="other", user="o", roles=("member",))


@pytest.fixture
async def env(tmp_path: Path, db_url: str) -> AsyncIterator[VolumeCell]:
    cell = await volume_cell(tmp_path, db_url=db_url)
    yield cell
    await cell.close()


Env = VolumeCell


async def status(env: Env, vid: str) -> str:
    return str((await flows.volume_get(env.env, DEMO, vid))["status"])


async def add_instance(env: Env, project: str = "demo", vm_state: str = "active") -> str:
    uid = str(uuid.uuid4())
    now = utcnow_iso()
    row: dict[str, Any] = {"uuid": uid, "name": "vm", "project_id": project, "user_id": "u", "host": "node1", "flavor": {},
           "image": {}, "vm_state": vm_state, "task_state": None, "power_state": 1, "created_at": now,
           "updated_at": now, "deleted": False, "metadata": {}, "addresses": {}, "retry_hosts": [], "progress": 0}
    await env.env.db.write(lambda conn: conn.execute(idb.INSERT, row))
    return uid


async def create(env: Env, size: int = 1, name: str = "v1") -> str:
    vid = str(uuid.uuid4())
    rec = await flows.volume_create(env.env, DEMO, {"id": vid, "project_id": "demo", "size": size, "name": name})
    assert rec["status"] == "creating"
    await env.settle()
    return vid


async def test_create_attach_detach_delete_cycle(env: Env) -> None:
    vid = await create(env)
    assert await status(env, vid) == "available"
    uid = await add_instance(env)
    att = await flows.volume_attach(env.env, DEMO, vid, uid)
    assert att["device"] == "/dev/vdb" and await status(env, vid) == "attaching"
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "in-use" and vol["attachments"][0]["instance_uuid"] == uid
    assert env.compute.plugged[vid]["info"]["driver_volume_type"] == "local"
    with pytest.raises(errors.VolumeInvalidState):  # in use: delete refused, nothing changes
        await flows.volume_delete(env.env, DEMO, vid)
    assert await status(env, vid) == "in-use"
    await flows.volume_detach(env.env, DEMO, vid, uid)
    await env.settle()
    assert await status(env, vid) == "available" and vid not in env.compute.plugged
    await flows.volume_delete(env.env, DEMO, vid)
    await env.settle()
    with pytest.raises(errors.VolumeNotFound):
        await flows.volume_get(env.env, DEMO, vid)
    with pytest.raises(errors.VolumeNotFound):
        await env.worker.backend.locate(vid)


async def test_concurrent_attaches_have_exactly_one_winner(env: Env) -> None:
    vid = await create(env)
    a, b = await add_instance(env), await add_instance(env)
    results = await asyncio.gather(*(flows.volume_attach(env.env, DEMO, vid, u) for u in (a, b, a, b)),
                                   return_exceptions=True)
    wins = [r for r in results if isinstance(r, dict)]
    assert len(wins) == 1
    assert all(isinstance(r, errors.VolumeInvalidState) and r.http_status == 400 for r in results if r not in wins)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "in-use" and len(vol["attachments"]) == 1


async def test_failed_hot_plug_rolls_back_to_available_with_the_reason(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    env.compute.fail = "boom in libvirt"
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "available" and vol["attachments"] == []
    assert "boom in libvirt" in str(vol["error"])
    assert await env.worker.targets["local"].exported() == set()  # the export was taken down too


async def test_failed_unplug_leaves_the_volume_in_use(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    env.compute.fail = "guest holds the disk"
    await flows.volume_detach(env.env, DEMO, vid, uid)
    await env.settle()
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "in-use" and "guest holds the disk" in str(vol["error"])


async def test_bad_requests_change_nothing(env: Env) -> None:
    for size in (0, -1, 10 ** 9, "1", True):
        with pytest.raises(errors.Invalid):
            await flows.volume_create(env.env, DEMO, {"id": str(uuid.uuid4()), "project_id": "demo", "size": size})
    assert await flows.volume_list(env.env, DEMO, {}, None) == []
    vid = await create(env)
    other_server = await add_instance(env, project="other")
    with pytest.raises(errors.InstanceNotFound):  # another project's server is a 404
        await flows.volume_attach(env.env, DEMO, vid, other_server)
    with pytest.raises(errors.InstanceNotFound):
        await flows.volume_attach(env.env, DEMO, vid, str(uuid.uuid4()))
    with pytest.raises(errors.VolumeNotFound):  # and another project's volume too
        await flows.volume_get(env.env, OTHER, vid)
    assert await status(env, vid) == "available"


async def test_no_room_puts_the_volume_in_error(env: Env) -> None:
    vid = await create(env, size=6)  # the host has 5 GiB
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "error" and "No valid backend" in str(vol["error"])
    await flows.volume_delete(env.env, DEMO, vid)  # an error volume can be deleted
    assert await flows.volume_list(env.env, DEMO, {}, None) == []


async def test_capacity_is_taken_and_given_back(env: Env) -> None:
    first = await create(env, size=3)
    second = await create(env, size=3)
    assert await status(env, first) == "available" and await status(env, second) == "error"
    await flows.volume_delete(env.env, DEMO, first)
    await env.settle()
    third = await create(env, size=3)
    assert await status(env, third) == "available"


async def test_restarted_worker_reexports_in_use_volumes(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    target = env.worker.targets["local"]
    await target.stop()  # a restart: exports are torn down with the worker...
    assert await target.exported() == set()
    await env.worker._reestablish_exports()  # ...and come back from the conductor's records
    assert await target.exported() == {vid}


async def test_deleting_the_server_releases_its_volumes_and_the_host_drops_the_export(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    target = env.worker.targets["local"]
    assert await status(env, vid) == "in-use" and await target.exported() == {vid}
    assert await env.worker._remove_stale_exports() == 0  # in use: its export stays
    await delete_locally(env.env, uid)  # the server is deleted with the volume attached
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "available" and vol["attachments"] == []
    assert await env.worker._remove_stale_exports() == 1 and await target.exported() == set()
    other = await add_instance(env)  # and it attaches again elsewhere
    await flows.volume_attach(env.env, DEMO, vid, other)
    await env.settle()
    assert await status(env, vid) == "in-use" and env.compute.plugged[vid]["instance"] == other


async def test_a_server_deleted_while_attaching_keeps_its_volume_available(env: Env) -> None:
    vid = await create(env)
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)  # reserved; export and hot-plug still to run
    await delete_locally(env.env, uid)
    await env.settle()  # the attach flow finds its attachment gone and leaves the volume alone
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "available" and vol["attachments"] == []


async def test_the_target_a_volume_asks_for_is_used_or_the_attach_rolls_back(env: Env) -> None:
    vid = str(uuid.uuid4())
    await flows.volume_create(env.env, DEMO, {"id": vid, "project_id": "demo", "size": 1,
                                              "metadata": {flows.TARGET_KEY: "nbd"}})
    await env.settle()
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()  # this host offers only local: the export fails and the volume is available again
    vol = await flows.volume_get(env.env, DEMO, vid)
    assert vol["status"] == "available" and vol["attachments"] == []
    assert "no export target" in str(vol["error"]) and vid not in env.compute.plugged
    await flows.volume_update(env.env, DEMO, vid, {"metadata": {flows.TARGET_KEY: "local"}})
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    assert await status(env, vid) == "in-use"
    assert env.compute.plugged[vid]["info"]["driver_volume_type"] == "local"


async def test_a_rescued_servers_volumes_stay_attached_and_refuse_attach_and_detach(env: Env) -> None:
    """The rescue guest holds none of the server's volumes (issue 16): Nova's 409 for both, nothing changes."""
    vid, spare = await create(env), await create(env, name="v2")
    uid = await add_instance(env)
    await flows.volume_attach(env.env, DEMO, vid, uid)
    await env.settle()
    await env.env.db.write(lambda conn: idb.update_row(conn, uid, {"vm_state": "rescued"}))
    with pytest.raises(errors.InstanceInvalidState, match=f"Cannot 'detach_volume' instance {uid} while it is in "
                                                          "vm_state rescued") as exc:
        await flows.volume_detach(env.env, DEMO, vid, uid)
    assert exc.value.http_status == 409
    with pytest.raises(errors.InstanceInvalidState, match="vm_state rescued"):
        await flows.volume_attach(env.env, DEMO, spare, uid)
    assert (await status(env, vid), await status(env, spare)) == ("in-use", "available")
