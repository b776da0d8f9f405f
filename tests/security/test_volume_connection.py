"""A compute plugs only what the conductor recorded for the attachment being made to an instance
on its own host: it asks for the connection (volume_connection) and ignores whatever its caller
sends; the conductor answers only the compute of the instance's host."""
from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import libvirt  # type: ignore[import-untyped]
import pytest

from cells import errors
from cells.context import RequestContext
from cells.db import volumes as vdb
from cells.objects.instance import TaskState, VmState, utcnow_iso
from node.compute.manager import ComputeManager
from node.imagecache import ImageCache
from tests.compute_fakes import FakeConductor, FakeFetcher, cluster_config
from tests.security.curve_cell import CurveCell

CTX = RequestContext(project="p", user="u")
RECORDED_PATH, FORGED_PATH = "/var/lib/cellcloud/volumes/v1.img", "/etc/shadow"
RECORDED: dict[str, Any] = {"driver_volume_type": "local", "data": {"path": RECORDED_PATH, "format": "raw"}}
FORGED: dict[str, Any] = {"driver_volume_type": "local", "data": {"path": FORGED_PATH, "format": "raw"}}


async def _attaching(cell: CurveCell, instance_uuid: str, host: str) -> str:
    volume_id = str(uuidlib.uuid4())
    now = utcnow_iso()
    row = {"id": str(uuidlib.uuid4()), "volume_id": volume_id, "instance_uuid": instance_uuid, "instance_host": host,
           "device": "/dev/vdb", "status": "attaching", "connection_info": RECORDED, "created_at": now,
           "updated_at": now}
    await cell.db.write(lambda conn: vdb.insert_attachment(conn, row))
    return volume_id


async def test_the_conductor_gives_a_volumes_connection_to_the_instances_host_only(cell: CurveCell) -> None:
    rec = await cell.boot()
    host = (await cell.wait_state(rec["uuid"], VmState.ACTIVE))["host"]
    other = "node2" if host == "node1" else "node1"
    volume_id = await _attaching(cell, rec["uuid"], host)
    args = {"volume_id": volume_id, "instance_uuid": rec["uuid"]}
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(f"cell1/compute/{other}", "cell1/conductor", "volume_connection", args)
    with pytest.raises(errors.RpcForbidden):  # and never to the API
        await cell.call_as("api", "cell1/conductor", "volume_connection", args)
    with pytest.raises(errors.VolumeNotFound):  # not for another instance than the attachment's
        await cell.call_as(f"cell1/compute/{host}", "cell1/conductor", "volume_connection",
                           {**args, "instance_uuid": str(uuidlib.uuid4())})
    assert await cell.call_as(f"cell1/compute/{host}", "cell1/conductor", "volume_connection", args) == RECORDED


async def test_an_attached_volumes_connection_goes_to_the_host_its_attachment_names_only(cell: CurveCell) -> None:
    """Attached (a move carried it: cells/conductor/flows/move_volumes.py), the connection is answered to the
    host the attachment names and holding the instance; a host that only claims it, or the API, gets nothing."""
    rec = await cell.boot()
    host = (await cell.wait_state(rec["uuid"], VmState.ACTIVE))["host"]
    other = "node2" if host == "node1" else "node1"
    volume_id = await _attaching(cell, rec["uuid"], host)
    await cell.db.write(lambda conn: vdb.update_attachment(conn, volume_id, {"status": "attached"}))
    args = {"volume_id": volume_id, "instance_uuid": rec["uuid"]}
    assert await cell.call_as(f"cell1/compute/{host}", "cell1/conductor", "volume_connection", args) == RECORDED
    with pytest.raises(errors.VolumeNotFound):  # attached elsewhere: not this host's to open
        await cell.call_as(f"cell1/compute/{other}", "cell1/conductor", "volume_connection", args)
    await cell.db.write(lambda conn: vdb.update_attachment(conn, volume_id, {"instance_host": other}))
    with pytest.raises(errors.RpcForbidden):  # named, but the instance is not on it
        await cell.call_as(f"cell1/compute/{other}", "cell1/conductor", "volume_connection", args)
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as("api", "cell1/conductor", "volume_connection", args)


@pytest.fixture
async def compute(tmp_path: Path) -> AsyncIterator[tuple[ComputeManager, FakeConductor]]:
    cluster = cluster_config(str(tmp_path))
    conductor = FakeConductor()
    m = ComputeManager(cluster, cluster.service("cell1/compute/node1"),
                       images=ImageCache(str(tmp_path / "images"), FakeFetcher({})))
    await m.start(conductor)
    await m._sync_with_conductor()
    try:
        yield m, conductor
    finally:
        for uuid in await m.driver.list_instance_uuids():  # test:///default is shared by the whole process
            await m.driver.destroy(uuid)
        await m.stop()


def _sources(uuid: str) -> list[str]:
    conn = libvirt.open("test:///default")
    try:
        xml = conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    return [s.get("file", "") for s in ET.fromstring(xml).iter("source") if s.get("file")]


async def test_a_compute_plugs_the_recorded_connection_not_the_one_it_is_sent(
        compute: tuple[ComputeManager, FakeConductor]) -> None:
    m, conductor = compute
    rec = conductor.add(str(uuidlib.uuid4()), image={}, task_state=TaskState.NETWORKING)
    await m.build_and_run_instance(CTX, dict(rec))
    volume_id = str(uuidlib.uuid4())
    with pytest.raises(errors.VolumeNotFound):  # nothing recorded: nothing plugged, whatever it is sent
        await m.attach_volume(CTX, rec["uuid"], volume_id, FORGED, "vdb")
    conductor.connections[(volume_id, rec["uuid"])] = RECORDED
    assert await m.attach_volume(CTX, rec["uuid"], volume_id, FORGED, "vdb") == {"device": "/dev/vdb"}
    plugged = _sources(rec["uuid"])
    assert RECORDED_PATH in plugged and FORGED_PATH not in plugged
