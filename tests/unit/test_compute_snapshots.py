"""createImage on the compute worker against the real libvirt test hypervisor (tests/unit/test_compute_actions.py's
setup): the snapshot file, its description, its chunks, its removal, and what the RPC refuses."""
from __future__ import annotations

import hashlib
import os
import uuid as uuidlib

import pytest

from cells import errors
from node.compute.manager import ComputeManager
from node.compute.server_snapshots import snapshot_path
from tests.compute_fakes import FakeFetcher
from tests.unit.test_compute_actions import CTX, DISK, ActionConductor, _active, setup

__all__ = ["setup"]  # the fixture, used by name
Setup = tuple[ComputeManager, ActionConductor, FakeFetcher]


async def test_snapshot_is_the_booted_disk_read_in_chunks_then_dropped(setup: Setup) -> None:
    manager, conductor, _ = setup
    uuid = await _active(manager, conductor)
    image_id = str(uuidlib.uuid4())
    made = await manager.make_snapshot(CTX, uuid, image_id)
    assert made == {"size": len(DISK), "sha256": hashlib.sha256(DISK).hexdigest(), "disk_format": "raw"}
    first = await manager.read_snapshot(CTX, uuid, image_id, 0, 5)
    rest = await manager.read_snapshot(CTX, uuid, image_id, 5, 1 << 20)
    assert first + rest == DISK
    path = snapshot_path(manager.driver.instance_dir(uuid), image_id)
    assert os.path.isfile(path)
    await manager.drop_snapshot(CTX, uuid, image_id)
    await manager.drop_snapshot(CTX, uuid, image_id)  # idempotent
    assert not os.path.exists(path)
    with pytest.raises(errors.NotFound):
        await manager.read_snapshot(CTX, uuid, image_id, 0, 5)


async def test_snapshot_rpc_input_is_checked(setup: Setup) -> None:
    manager, conductor, _ = setup
    uuid = await _active(manager, conductor)
    with pytest.raises(errors.Invalid):  # an image id is never a path
        await manager.make_snapshot(CTX, uuid, "../../etc/passwd")
    with pytest.raises(errors.Invalid):
        await manager.read_snapshot(CTX, "not-a-uuid", str(uuidlib.uuid4()), 0, 5)
    with pytest.raises(errors.Invalid):
        await manager.read_snapshot(CTX, uuid, str(uuidlib.uuid4()), -1, 5)
    with pytest.raises(errors.Invalid):
        await manager.read_snapshot(CTX, uuid, str(uuidlib.uuid4()), 0, 64 << 20)
    with pytest.raises(errors.InstanceNotFound):  # no such guest on this host
        await manager.make_snapshot(CTX, str(uuidlib.uuid4()), str(uuidlib.uuid4()))
