"""Instance quotas counted inside the API DB's write unit (issue 14), so they hold across API
worker processes; resize counts the new flavor; half-made boots are swept.

Real API DB (SQLite). The race runs two real processes against one API DB file; the
API tests run the real API against a fake cell over real ZeroMQ (tests/unit/api_fake_cell.py)."""
from __future__ import annotations

import asyncio
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from api import quota
from api.compute import boot_sweep, mappings
from api.compute.down_cells import queue_delete
from api.db.engine import make_database, make_engine
from api.db.schema import create_schema, instance_mappings
from api.keys import DB, ROUTER
from api.timeutil import utcnow
from cells import errors
from cells.context import RequestContext
from tests.unit.api_fake_cell import FakeConductor
from tests.unit.test_api_servers import Cloud, open_cloud

TINY = {"vcpus": 1, "ram": 512}
GRACE = 60.0  # the sweep's grace (cluster.yaml api.half_made_boot_grace)
RACER = textwrap.dedent("""
    import asyncio, sys, time, uuid
    from api import quota
    from api.compute import mappings
    from api.db.engine import make_database

    async def main(url: str, boots: int, start: float) -> None:
        db = make_database(url)
        admission = quota.Admission({"instances": 5, "cores": -1, "ram": -1}, quota.per_server({"vcpus": 1, "ram": 512}))
        await asyncio.sleep(max(0.0, start - time.time()))

        async def boot(i: int) -> int:
            rec = {"uuid": str(uuid.uuid4()), "project_id": "p1", "user_id": "u", "name": f"vm{i}",
                   "flavor": {"vcpus": 1, "ram": 512}}
            try:
                return len(await mappings.add(db, [rec], "cell1", admission))
            except quota.TooManyInstances:
                return 0
        print(sum(await asyncio.gather(*(boot(i) for i in range(boots)))))
        await db.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
""")


VOLUME_RACER = textwrap.dedent("""
    import asyncio, sys, time, uuid
    from api import quota
    from api.db.engine import make_database

    async def main(url: str, creates: int, start: float) -> None:
        db = make_database(url)
        await asyncio.sleep(max(0.0, start - time.time()))

        async def create() -> int:
            vid = str(uuid.uuid4())
            try:  # the cells list nothing yet: only reservations count
                await db.write(lambda conn: quota.reserve_volume(conn, "p1", vid, 1, {}, set()))
                return 1
            except quota.VolumeOverLimit:
                return 0
        print(sum(await asyncio.gather(*(create() for _ in range(creates)))))
        await db.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
""")


async def race(script: str, api_db: str, each: int) -> list[int]:
    start = time.time() + 1.5  # both processes are up (imports take ~0.5 s) before either acts
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", script, api_db, str(each), str(start),
                                                  stdout=PIPE, stderr=PIPE) for _ in range(2)]
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    return [int(o[0].strip()) for o in outs]


def record(project: str = "p1", flavor: dict[str, int] = TINY) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "project_id": project, "user_id": "u", "name": "vm", "flavor": flavor}


@pytest_asyncio.fixture
async def api_db(tmp_path: Path) -> AsyncIterator[str]:
    url = f"sqlite:///{tmp_path}/api.db"
    await create_schema(url)
    yield url


async def test_two_api_processes_racing_for_the_last_instances_admit_exactly_the_quota(api_db: str) -> None:
    """Quota 5 instances, two processes each firing 10 single boots at the same moment: exactly 5 admitted."""
    admitted = await race(RACER, api_db, 10)
    assert sum(admitted) == 5, admitted
    db = make_database(api_db)
    try:
        assert await db.read(lambda conn: quota.usage_of(conn, "p1")) == {"instances": 5, "cores": 5, "ram": 2560}
    finally:
        await db.close()


async def test_two_api_processes_racing_for_the_last_volumes_reserve_exactly_the_quota(api_db: str) -> None:
    """Volumes quota 3, two processes each creating 6 at the same moment: exactly 3 reserved."""
    engine = make_engine(api_db)
    try:
        await quota.set_limits(engine, "p1", {"volumes": 3})
    finally:
        await engine.dispose()
    reserved = await race(VOLUME_RACER, api_db, 6)
    assert sum(reserved) == 3, reserved


async def test_a_reservation_counts_until_its_cell_lists_the_volume_and_not_twice(api_db: str) -> None:
    db = make_database(api_db)
    engine = make_engine(api_db)
    try:
        await quota.set_limits(engine, "p1", {"volumes": 2, "gigabytes": 100})
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v1", 10, {}, set()))
        listed = {"volumes": 1, "gigabytes": 10}  # the cell lists v1 now: its reservation is not counted again
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v2", 10, listed, {"v1"}))
        with pytest.raises(quota.VolumeOverLimit) as over:  # v1 listed + v2 reserved (not listed yet) = 2
            await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v3", 10, listed, {"v1"}))
        assert over.value.http_status == 413
        await db.write(lambda conn: quota.release_volume(conn, "v2"))  # v2's create was refused
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v3", 10, listed, {"v1"}))
    finally:
        await db.close()
        await engine.dispose()


async def test_a_deleted_volume_stops_counting_once_a_later_listing_misses_it(api_db: str) -> None:
    """A project at its volumes quota deletes a volume and makes another at once (Cinder gives the room back
    on delete): the reservation of a volume whose create returned (volume_made) counts no more for a listing
    begun after that which does not show it. A listing begun before it may predate the volume's row: there it
    still counts, as does a reservation whose create has not returned."""
    db = make_database(api_db)
    engine = make_engine(api_db)
    try:
        await quota.set_limits(engine, "p1", {"volumes": 1, "gigabytes": 100})
        before = utcnow() - timedelta(seconds=1)
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v1", 10, {}, set(), listed_since=before))
        with pytest.raises(quota.VolumeOverLimit):  # v1's create has not returned: listed nowhere, it counts
            await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v2", 10, {}, set(), listed_since=utcnow()))
        await db.write(lambda conn: quota.volume_made(conn, "v1"))
        with pytest.raises(quota.VolumeOverLimit):  # a listing begun before v1 was made may just not show it yet
            await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v2", 10, {}, set(), listed_since=before))
        # v1 deleted: a listing begun now does not show it, and it counts no more
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v2", 10, {}, set(), listed_since=utcnow()))
        with pytest.raises(quota.VolumeOverLimit):  # v2 holds the room now
            await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v3", 10, {}, set(), listed_since=utcnow()))
    finally:
        await db.close()
        await engine.dispose()


async def test_a_listing_that_shows_a_volume_marks_it_made(api_db: str) -> None:
    """A reservation whose create never said so (a boot's volumes, made by the cell) is marked made once a
    listing shows the volume; after that, a later listing that misses it (deleted) no longer counts it."""
    db = make_database(api_db)
    engine = make_engine(api_db)
    try:
        await quota.set_limits(engine, "p1", {"volumes": 2, "gigabytes": 100})
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v1", 10, {}, set(), listed_since=utcnow()))
        listed = {"volumes": 1, "gigabytes": 10}
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v2", 10, listed, {"v1"},
                                                         listed_since=utcnow()))
        # v1 deleted; v2 not listed yet (its create has not returned): v2 counts, v1 does not
        await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v3", 10, {}, set(), listed_since=utcnow()))
        with pytest.raises(quota.VolumeOverLimit):
            await db.write(lambda conn: quota.reserve_volume(conn, "p1", "v4", 10, {}, set(), listed_since=utcnow()))
    finally:
        await db.close()
        await engine.dispose()


async def test_a_multi_create_is_cut_to_what_fits_and_refused_below_min_count(api_db: str) -> None:
    db = make_database(api_db)
    try:
        limits = {"instances": 4, "cores": -1, "ram": 2048}  # ram admits 4 tiny servers, instances 4
        admission = quota.Admission(limits, quota.per_server(TINY), min_count=2)
        made = await mappings.add(db, [record() for _ in range(3)], "cell1", admission)
        assert len(made) == 3
        with pytest.raises(quota.TooManyInstances) as refused:  # 1 left, min_count 2
            await mappings.add(db, [record() for _ in range(3)], "cell1", admission)
        assert "Quota exceeded for instances, ram" in refused.value.message
        assert (await db.read(lambda conn: quota.usage_of(conn, "p1")))["instances"] == 3  # nothing half-made
        cut = await mappings.add(db, [record() for _ in range(3)], "cell1", quota.Admission(limits, quota.per_server(TINY)))
        assert len(cut) == 1  # max 3, min 1: as many as fit
        other = await mappings.add(db, [record("p2")], "cell1", admission)  # another project counts apart
        assert len(other) == 1
    finally:
        await db.close()


async def test_a_deleted_server_no_longer_counts(api_db: str) -> None:
    db = make_database(api_db)
    try:
        admission = quota.Admission({"instances": 1, "cores": -1, "ram": -1}, quota.per_server(TINY))
        [first] = await mappings.add(db, [record()], "cell1", admission)
        with pytest.raises(quota.TooManyInstances):
            await mappings.add(db, [record()], "cell1", admission)
        await queue_delete(db, first["uuid"])  # what DELETE /servers/{id} records once the cell accepted it
        assert len(await mappings.add(db, [record()], "cell1", admission)) == 1
    finally:
        await db.close()


# --- through the API: resize, and the half-made boot sweep ---------------------------------

class MovingConductor(FakeConductor):
    """The fake cell, also taking resizes: the record goes to the new flavor (VERIFY_RESIZE as Nova)."""

    refuse = False

    async def move_instance(self, ctx: RequestContext, uuid: str, action: str, flavor: dict[str, Any] | None = None,
                            placement: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.refuse:
            raise errors.Invalid("Resizing to a smaller disk flavor is not allowed.")
        assert flavor is not None
        self.records[uuid].update(flavor=flavor, vm_state="resized", old_flavor=self.records[uuid]["flavor"])
        return dict(self.records[uuid])


@pytest_asyncio.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with open_cloud(tmp_path, MovingConductor("cell1")) as running:
        yield running


async def set_quota(cloud: Cloud, **limits: int) -> None:
    pid = (await (await cloud.client.get("/identity/v3/auth/projects", headers=cloud.demo)).json())["projects"]
    demo = next(p["id"] for p in pid if p["name"] == "demo")
    resp = await cloud.client.put(f"/compute/v2.1/os-quota-sets/{demo}", json={"quota_set": limits},
                                  headers=cloud.admin)
    assert resp.status == 200, await resp.text()


async def resize(cloud: Cloud, sid: str, flavor: str, headers: dict[str, str] | None = None) -> Any:
    return await cloud.client.post(f"/compute/v2.1/servers/{sid}/action", json={"resize": {"flavorRef": flavor}},
                                   headers=headers or cloud.demo)


async def counted_as(cloud: Cloud, sid: str) -> tuple[int, int]:
    row = await cloud.client.app[DB].read(lambda conn: conn.execute(
        select(instance_mappings.c.vcpus, instance_mappings.c.ram)
        .where(instance_mappings.c.instance_uuid == sid)).first())
    return int(row.vcpus), int(row.ram)


async def test_resize_counts_the_new_flavor(cloud: Cloud) -> None:
    await set_quota(cloud, cores=3)
    small = await cloud.boot(cloud.demo, "small")  # m1.tiny: 1 vcpu
    assert await counted_as(cloud, small["id"]) == (1, 512)
    assert (await resize(cloud, small["id"], "3")).status == 202  # m1.medium: 2 vcpus, 1 -> 2 fits in 3
    assert await counted_as(cloud, small["id"]) == (2, 4096)
    other = await cloud.boot(cloud.demo, "other")  # 3 of 3 cores now
    resp = await resize(cloud, other["id"], "3")  # +1 core: over
    assert resp.status == 403 and "cores" in (await resp.json())["forbidden"]["message"]
    assert await counted_as(cloud, other["id"]) == (1, 512)
    body = {"server": {"name": "third", "flavorRef": "1", "imageRef": cloud.image_id}}
    assert (await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)).status == 403


async def test_an_admins_resize_counts_against_the_servers_project(cloud: Cloud) -> None:
    """Tempest's test_resize_server_using_overlimit_*: the owner's quota bounds it, not the admin's project's."""
    await set_quota(cloud, cores=1)
    server = await cloud.boot(cloud.demo, "owned")
    resp = await resize(cloud, server["id"], "3", headers=cloud.admin)
    assert resp.status == 403 and "cores" in (await resp.json())["forbidden"]["message"]
    assert await counted_as(cloud, server["id"]) == (1, 512)


async def test_a_resize_the_cell_refuses_counts_the_old_flavor_again(cloud: Cloud) -> None:
    await set_quota(cloud, cores=5)
    server = await cloud.boot(cloud.demo, "s")
    cloud.cell.conductor.refuse = True  # type: ignore[attr-defined]
    assert (await resize(cloud, server["id"], "3")).status == 400
    assert await counted_as(cloud, server["id"]) == (1, 512)


async def test_the_sweep_removes_a_mapping_its_cell_never_got_and_confirms_the_others(cloud: Cloud) -> None:
    db = cloud.client.app[DB]
    built = await cloud.boot(cloud.demo, "built")
    orphan = record(project="x")  # the API died after writing this mapping, before the cell heard of it
    young = record(project="x")  # a boot in flight: its cell has not answered yet
    await mappings.add(db, [orphan, young], "cell1")
    old = utcnow() - timedelta(seconds=GRACE + 5)

    def age(conn: Any) -> None:
        m = instance_mappings.c
        conn.execute(update(instance_mappings).where(m.instance_uuid.in_([orphan["uuid"], built["id"]]))
                     .values(created_at=old, built=False))  # `built` as if its mark was lost with its process
    await db.write(age)
    gone, confirmed = await boot_sweep.sweep_once(db, cloud.client.app[ROUTER], GRACE)
    assert gone == [orphan["uuid"]] and confirmed == [built["id"]]
    left = await db.read(lambda conn: {r.instance_uuid: r.built for r in conn.execute(select(instance_mappings))})
    assert left == {built["id"]: True, young["uuid"]: False}
    assert (await db.read(lambda conn: quota.usage_of(conn, "x")))["instances"] == 1  # the orphan counts no more
    assert await boot_sweep.sweep_once(db, cloud.client.app[ROUTER], GRACE) == ([], [])  # nothing left to do


async def test_a_boot_is_marked_built_once_its_cell_took_it(cloud: Cloud) -> None:
    server = await cloud.boot(cloud.demo, "s")
    engine = make_engine(cloud.cluster.api.db)
    try:
        async def built() -> bool:
            async with engine.connect() as conn:
                return bool((await conn.execute(select(instance_mappings.c.built).where(
                    instance_mappings.c.instance_uuid == server["id"]))).scalar())
        for _ in range(100):
            if await built():
                break
            await asyncio.sleep(0.02)
        assert await built()
    finally:
        await engine.dispose()
