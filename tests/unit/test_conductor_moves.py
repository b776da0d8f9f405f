"""Moves against real conductors, a real scheduler, a real cell DB and real ZeroMQ, with
compute workers faked at the process boundary (they keep their guests as a compute does,
node/compute/guest_moves.py): a delete in VERIFY_RESIZE or mid-move releases both claims and
both copies; a move whose conductor dies is finished or rolled back by the other one,
noticed on the directory's leave event or by the sweep; same-host resize only where the
cell allows it; a migration with no other host with room leaves the server where it was; a
volume attached to a server whose move's conductor dies is carried again by the adopter, and one whose move
fails at the destination is carried back and plugged into the source guest again (a real volume worker, file
backend, behind a one-initiator network target without its daemon)."""
from __future__ import annotations

import asyncio
import dataclasses
import uuid as uuidlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from cells import errors
from cells.conductor.flows import moves
from cells.config import ServiceSpec
from cells.context import RequestContext, admin_context
from cells.db import action_records, claims
from cells.db import instances as idb
from cells.db import volumes as vdb
from cells.db.claims import Resources
from cells.db.schema import migrations
from cells.objects import versions
from cells.objects.instance import PowerState, VmState, utcnow_iso
from cells.rpcapi.move_methods import DISK_COPY_VERSION, MoveConductorAPI
from cells.rpcapi.volume import SURFACE as VOLUME
from cells.rpcapi.volume import VolumeConductorAPI
from cells.service_process import Service
from node.imagecache import ImageCache
from node.volume.backends import VolumeStorage
from node.volume.backends.file import FileBackend
from node.volume.manager import VolumeManager
from node.volume.targets.local import LocalTarget
from tests.compute_fakes import FakeFetcher
from tests.unit.claim_support import claim
from tests.unit.test_conductor import FLAVOR, USER, Cell, FakeCompute, until_async
from tools.devcluster import free_port

SMALL = {"id": "2", "name": "m1.small", "vcpus": 1, "ram": 1024, "disk": 2, "ephemeral": 0, "swap": 0}
FULL = {"id": "9", "name": "whole-host", "vcpus": 1, "ram": 2048, "disk": 1, "ephemeral": 0, "swap": 0}
ADMIN = RequestContext(project="p1", user="admin", roles=("admin",))


class MovingCompute(FakeCompute):
    """Keeps its guests (uuid -> flavor id, running) and serves the move steps as the real
    compute does, one step at a time per instance. A step named in `hold` waits for
    `release` (a compute slow to finish it); `entered` tells a test the step began."""

    def __init__(self, host: str) -> None:
        super().__init__(host, "ok")
        self.guests: dict[str, dict[str, Any]] = {}
        self.disk_from: dict[str, str | None] = {}  # uuid -> the host finish_move was asked to copy from
        self.hold: set[str] = set()
        self.fail: set[str] = set()  # steps that fail here, as a compute whose step raised answers
        self.plugged: dict[tuple[str, str], dict[str, Any]] = {}  # (instance, volume) -> its connection_info
        self.release = asyncio.Event()
        self.entered: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def _gate(self, step: str) -> None:
        self.entered[step].set()
        if step in self.hold:
            await self.release.wait()
        if step in self.fail:
            raise errors.Conflict(reason=f"{step} failed on {self.host}")

    async def build_and_run_instance(self, ctx: RequestContext, instance: dict[str, Any]) -> None:
        self.guests[instance["uuid"]] = {"flavor": instance["flavor"]["id"], "running": True}
        await super().build_and_run_instance(ctx, instance)

    async def terminate_instance(self, ctx: RequestContext, instance: dict[str, Any]) -> None:
        async with self._locks[instance["uuid"]]:
            self.guests.pop(instance["uuid"], None)
        await super().terminate_instance(ctx, instance)

    @staticmethod
    def _same(mig: dict[str, Any]) -> bool:
        return bool(mig["source_host"] == mig["dest_host"])

    async def prep_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        async with self._locks[instance["uuid"]]:
            await self._gate("prep_move")
            if instance["uuid"] in self.guests:
                self.guests[instance["uuid"]]["running"] = False
            return PowerState.SHUTDOWN

    async def finish_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any],
                          disk_source: str | None = None) -> int | dict[str, int]:
        async with self._locks[instance["uuid"]]:
            await self._gate("finish_move")
            self.guests[instance["uuid"]] = {"flavor": migration["new_flavor"]["id"], "running": True}
            self.disk_from[instance["uuid"]] = disk_source
            # as a test hypervisor's compute: no disk files on the source to copy
            return PowerState.RUNNING if disk_source is None else {"power_state": PowerState.RUNNING,
                                                                   "files": 0, "bytes": 0}

    async def confirm_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        async with self._locks[instance["uuid"]]:
            await self._gate("confirm_move")
            if not self._same(migration):
                self.guests.pop(instance["uuid"], None)
            return PowerState.NOSTATE

    async def revert_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        async with self._locks[instance["uuid"]]:
            await self._gate("revert_move")
            if not self._same(migration):
                self.guests.pop(instance["uuid"], None)
            elif instance["uuid"] in self.guests:
                self.guests[instance["uuid"]] = {"flavor": migration["old_flavor"]["id"], "running": False}
            return PowerState.NOSTATE

    async def finish_revert(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        async with self._locks[instance["uuid"]]:
            await self._gate("finish_revert")
            if instance["uuid"] not in self.guests and self._same(migration):
                return PowerState.NOSTATE
            self.guests[instance["uuid"]] = {"flavor": migration["old_flavor"]["id"], "running": True}
            return PowerState.RUNNING

    async def attach_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str,
                            connection_info: dict[str, Any], device: str | None = None) -> dict[str, Any]:
        """Idempotent as the real compute's: plugging what is plugged again keeps one disk."""
        self.plugged[(instance_uuid, volume_id)] = connection_info
        return {"device": device}


class OneInitiatorTarget:
    """A network target's rule (tgt's ACL, the NBD gate) without its daemon: an export admits the one host
    it was made for, a re-export moves it; every export is recorded."""
    name = "net"
    formats: tuple[str, ...] = ("raw", "qcow2")

    def __init__(self) -> None:
        self.admitted: dict[str, str] = {}
        self.exports: list[tuple[str, str]] = []  # (volume id, host) per export call

    def reaches(self, connector: dict[str, Any]) -> bool:
        return True

    async def start(self) -> None:
        pass

    async def export(self, storage: VolumeStorage, connector: dict[str, Any]) -> dict[str, Any]:
        host = str(connector["host"])
        self.admitted[storage.volume_id] = host
        self.exports.append((storage.volume_id, host))
        return {"driver_volume_type": "net", "data": {"target": self.name, "host": host, "path": storage.path}}

    async def unexport(self, volume_id: str) -> None:
        self.admitted.pop(volume_id, None)

    async def exported(self) -> set[str]:
        return set(self.admitted)

    async def stop(self) -> None:
        self.admitted.clear()


class VolumeMovingCell(Cell):
    """A moving cell whose node1 is a volume host too (a real VolumeManager behind OneInitiatorTarget)."""

    def __init__(self, tmp_path: Path, modes: dict[str, str], db_url: str | None = None) -> None:
        super().__init__(tmp_path, modes, db_url)
        spec = ServiceSpec("cell1/volume/node1", "volume", "node1", f"tcp://127.0.0.1:{free_port()}", "cell1")
        self.cluster = dataclasses.replace(self.cluster, services=(*self.cluster.services, spec))
        self.target = OneInitiatorTarget()
        self.worker = VolumeManager(self.cluster, spec, backend=FileBackend(str(tmp_path / "vols"), "raw", capacity_gb=5),
                                    targets={"net": self.target},
                                    images=ImageCache(str(tmp_path / "volume-images"), FakeFetcher()))

    def _service(self, name: str) -> Service:
        if name == "volume/node1":
            return Service(self.cluster, self.cluster.service("cell1/volume/node1"), self.worker, VOLUME,
                           ("volume.node1",))
        return super()._service(name)


def moving_cell(tmp_path: Path, hosts: tuple[str, ...] = ("node1", "node2"), conductors: int = 1,
                same_host: bool = False, db_url: str | None = None, kind: type[Cell] = Cell) -> Cell:
    c = kind(tmp_path, {h: "ok" for h in hosts}, db_url)
    c.computes = {h: MovingCompute(h) for h in hosts}
    extra = tuple(ServiceSpec(f"cell1/conductor-{n}", "conductor", "ctl", f"tcp://127.0.0.1:{free_port()}", "cell1")
                  for n in range(2, conductors + 1))
    cells = tuple(dataclasses.replace(s, allow_resize_to_same_host=same_host) for s in c.cluster.cells)
    c.cluster = dataclasses.replace(c.cluster, services=(*c.cluster.services, *extra), cells=cells)
    return c


async def started(c: Cell, conductors: int = 1) -> Cell:
    await c.start()
    for n in range(2, conductors + 1):
        c.run(f"conductor-{n}")
    await until_async(lambda: _live_conductors(c, conductors))
    return c


async def _live_conductors(c: Cell, n: int) -> bool:
    return len(c.api.view.members("conductor")) == n


@pytest.fixture
async def cell(tmp_path: Path, db_url: str) -> AsyncIterator[Cell]:
    c = await started(moving_cell(tmp_path, db_url=db_url))
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def two(tmp_path: Path, db_url: str) -> AsyncIterator[Cell]:
    c = await started(moving_cell(tmp_path, conductors=2, db_url=db_url), conductors=2)
    try:
        yield c
    finally:
        await c.close()


def guests(c: Cell, uuid: str) -> dict[str, dict[str, Any]]:
    """host -> that host's copy of the instance."""
    return {h: comp.guests[uuid] for h, comp in c.computes.items()  # type: ignore[attr-defined]
            if uuid in comp.guests}  # type: ignore[attr-defined]


def computes(c: Cell) -> list[MovingCompute]:
    return [comp for comp in c.computes.values() if isinstance(comp, MovingCompute)]


async def usage(c: Cell) -> dict[str, tuple[int, int, int]]:
    return {h.host: (h.vcpus_used, h.memory_mb_used, h.local_gb_used) for h in await claims.load_hosts(c.db)}


async def claims_of(c: Cell, *consumers: str) -> dict[str, tuple[str, int]]:
    out = {}
    for consumer in consumers:
        claim = await c.claim(consumer)
        if claim is not None:
            out[consumer] = (claim["host"], claim["memory_mb"])
    return out


async def migration(c: Cell, uuid: str) -> dict[str, Any]:
    row = await c.db.read(lambda conn: conn.execute(select(migrations).where(
        migrations.c.instance_uuid == uuid).order_by(migrations.c.created_at.desc())).first())
    assert row is not None
    return dict(row._mapping)


async def events(c: Cell, uuid: str, action: str) -> list[tuple[str, str | None, str | None]]:
    acts = await c.db.read(lambda conn: action_records.actions_of(conn, uuid))
    [act] = [a for a in acts if a["action"] == action][-1:]
    return [(e["event"], e["result"], e["details"]) for e in act["events"]]


async def wait_task(c: Cell, uuid: str, task: str | None, vm_state: str | None = None, timeout: float = 5.0
                    ) -> dict[str, Any]:
    rec: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal rec
        rec = dict(await c.conductor.instance_get(admin_context(), uuid))
        return bool(rec["task_state"] == task and (vm_state is None or rec["vm_state"] == vm_state))
    await until_async(reached, timeout)
    return rec


async def resized(c: Cell, flavor: dict[str, Any] = SMALL) -> tuple[str, str, str]:
    """A server resized to `flavor`, awaiting confirm: (uuid, source, destination)."""
    uuid = (await c.boot("mover"))["uuid"]
    source = (await c.wait_state(uuid, VmState.ACTIVE))["host"]
    await MoveConductorAPI(c.api).move_instance(USER, uuid, "resize", flavor)
    dest = (await wait_task(c, uuid, None, "resized"))["host"]
    return uuid, source, dest


# --- delete during a move (the destination claim and copy must not leak) ---------------------

async def test_delete_in_verify_resize_releases_both_claims_and_both_copies(cell: Cell) -> None:
    before = await usage(cell)
    uuid, source, dest = await resized(cell)
    mig = await migration(cell, uuid)
    assert source != dest and set(guests(cell, uuid)) == {source, dest}
    assert await claims_of(cell, uuid, mig["uuid"]) == {uuid: (source, 512), mig["uuid"]: (dest, 1024)}
    await cell.conductor.instance_delete(USER, uuid)
    await cell.wait_state(uuid, VmState.DELETED)
    await until_async(lambda: _no_copies(cell, uuid))
    assert await claims_of(cell, uuid, mig["uuid"]) == {}
    assert await usage(cell) == before  # every host back to what it had before the boot
    assert (await migration(cell, uuid))["status"] == "confirmed"  # Nova confirms a resize on delete


async def _no_copies(c: Cell, uuid: str) -> bool:
    return not guests(c, uuid)


async def test_delete_mid_move_releases_the_destination(cell: Cell) -> None:
    before = await usage(cell)
    uuid = (await cell.boot("mover"))["uuid"]
    source = (await cell.wait_state(uuid, VmState.ACTIVE))["host"]
    for comp in computes(cell):
        comp.hold.add("finish_move")  # the destination is slow to make its copy
    await MoveConductorAPI(cell.api).move_instance(USER, uuid, "resize", SMALL)
    dest = "node2" if source == "node1" else "node1"
    await asyncio.wait_for(cell.computes[dest].entered["finish_move"].wait(), 30)  # type: ignore[attr-defined]
    await cell.conductor.instance_delete(USER, uuid)
    for comp in computes(cell):
        comp.release.set()
    await cell.wait_state(uuid, VmState.DELETED)
    await until_async(lambda: _no_copies(cell, uuid))  # the copy made after the delete goes too
    closed = ("compute_finish_resize", "Error", "Instance was deleted during the resize")
    # the flow records the end after removing the copy: waited for, not raced
    await until_async(lambda: _has_event(cell, uuid, "resize", closed))
    mig = await migration(cell, uuid)
    assert mig["status"] == "error" and await claims_of(cell, uuid, mig["uuid"]) == {}
    assert await usage(cell) == before
    rec = await cell.db.read(lambda conn: idb.get_row(conn, uuid))
    assert rec is not None and rec.vm_state == VmState.DELETED and rec.host == source  # never marked resized


async def _has_event(c: Cell, uuid: str, action: str, event: tuple[str, str | None, str | None]) -> bool:
    return event in await events(c, uuid, action)


# --- a conductor dies while it owns a move ----------------------------------------------------

async def resize_held_at_finish_move(c: Cell, uuid: str, source: str) -> tuple[dict[str, Any], str]:
    """Start a resize whose destination holds finish_move, so the move stays midway:
    (its migration record, its owning conductor)."""
    for comp in computes(c):
        comp.hold.add("finish_move")
    await MoveConductorAPI(c.api).move_instance(USER, uuid, "resize", SMALL)
    dest = "node2" if source == "node1" else "node1"
    await asyncio.wait_for(c.computes[dest].entered["finish_move"].wait(), 30)  # type: ignore[attr-defined]
    mig = await migration(c, uuid)
    return mig, str(mig["conductor_id"])


async def test_conductor_killed_mid_resize_the_other_drives_it_on(two: Cell) -> None:
    """Accepted work ends as asked: the adopter asks the source's prep and the destination's
    finish again (both idempotent) and the server ends VERIFY_RESIZE with one copy per host."""
    before = await usage(two)
    uuid = (await two.boot("mover"))["uuid"]
    source = (await two.wait_state(uuid, VmState.ACTIVE))["host"]
    mig, owner = await resize_held_at_finish_move(two, uuid, source)
    dest = str(mig["dest_host"])
    assert mig["status"] == "migrating" and guests(two, uuid) == {source: {"flavor": "1", "running": False}}
    await two.crash(owner.split("/", 1)[1])  # no goodbye: the directory notices the missed beats
    for comp in computes(two):
        comp.release.set()  # the dead owner's last call completes: a copy on the destination
    rec = await wait_task(two, uuid, None, "resized", timeout=10)
    assert (rec["host"], rec["flavor"]["id"]) == (dest, "2")
    assert guests(two, uuid) == {source: {"flavor": "1", "running": False}, dest: {"flavor": "2", "running": True}}
    done = await migration(two, uuid)
    assert done["status"] == "finished" and done["conductor_id"] != owner
    assert await claims_of(two, uuid, mig["uuid"]) == {uuid: (source, 512), mig["uuid"]: (dest, 1024)}
    assert await usage(two) != before
    evs = await events(two, uuid, "resize")
    assert any(e == "conductor_adopt_move" and f"from {owner}" in (d or "") for e, _, d in evs), evs
    assert ("compute_finish_resize", "Success") in [(e, r) for e, r, _ in evs], evs


async def _only_copy(c: Cell, uuid: str, host: str) -> bool:
    return set(guests(c, uuid)) == {host}


async def test_an_owner_taken_for_dead_leaves_the_move_to_its_adopter(two: Cell,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The owner stalled (not dead) and was adopted: when its late step returns it must not
    finish the move the adopter drives on (one copy per host, the adopter's record)."""
    uuid = (await two.boot("mover"))["uuid"]
    source = (await two.wait_state(uuid, VmState.ACTIVE))["host"]
    mig, owner = await resize_held_at_finish_move(two, uuid, source)
    dest = str(mig["dest_host"])
    adopter = next(n for n in ("conductor", "conductor-2") if f"cell1/{n}" != owner)
    env = two.services[adopter].handler.env
    await moves.adopt(env, [owner])  # as if the owner had missed its beats
    for comp in computes(two):
        comp.release.set()  # the owner's finish_move returns: a copy made on the destination
    rec = await wait_task(two, uuid, None, "resized")
    assert (rec["host"], rec["flavor"]["id"]) == (dest, "2")
    assert guests(two, uuid) == {source: {"flavor": "1", "running": False}, dest: {"flavor": "2", "running": True}}
    assert await claims_of(two, uuid, mig["uuid"]) == {uuid: (source, 512), mig["uuid"]: (dest, 1024)}
    assert (await migration(two, uuid))["conductor_id"] == f"cell1/{adopter}"
    await until_async(lambda: _logged(caplog, "no longer ours"))


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_conductor_killed_during_confirm_the_other_finishes_it(two: Cell) -> None:
    uuid, source, dest = await resized(two)
    mig = await migration(two, uuid)
    for comp in computes(two):
        comp.hold.add("confirm_move")
    await MoveConductorAPI(two.api).confirm_move(USER, uuid)
    await asyncio.wait_for(two.computes[source].entered["confirm_move"].wait(), 30)  # type: ignore[attr-defined]
    owner = str((await migration(two, uuid))["conductor_id"])
    await two.crash(owner.split("/", 1)[1])
    for comp in computes(two):
        comp.release.set()
    rec = await wait_task(two, uuid, None, VmState.ACTIVE, timeout=10)
    assert (rec["host"], rec["flavor"]["id"]) == (dest, "2")
    assert guests(two, uuid) == {dest: {"flavor": "2", "running": True}}
    assert await claims_of(two, uuid, mig["uuid"]) == {uuid: (dest, 1024)}
    assert (await migration(two, uuid))["status"] == "confirmed"


async def test_sweep_adopts_a_move_whose_owner_never_left_in_our_sight(cell: Cell) -> None:
    """The owner died before this conductor saw it (no leave event): the sweep finds it."""
    uuid = (await cell.boot("mover"))["uuid"]
    source = (await cell.wait_state(uuid, VmState.ACTIVE))["host"]
    dest = "node2" if source == "node1" else "node1"
    mig_uuid = "0b8e4a3c-0000-4000-8000-00000000abcd"
    cell.computes[source].guests[uuid]["running"] = False  # type: ignore[attr-defined]
    cell.computes[dest].guests[uuid] = {"flavor": "2", "running": True}  # type: ignore[attr-defined]
    assert await claim(cell.db, dest, mig_uuid, Resources.from_flavor(SMALL))

    def orphan(conn: Any) -> None:  # a resize 'cell1/conductor-9' was driving when it died
        now = utcnow_iso()
        conn.execute(insert(migrations).values(
            uuid=mig_uuid, instance_uuid=uuid, migration_type="resize", status="migrating", source_host=source,
            dest_host=dest, old_flavor=FLAVOR, new_flavor=SMALL, old_vm_state=VmState.ACTIVE,
            conductor_id="cell1/conductor-9", created_at=now, updated_at=now))
        action_records.start_action(conn, USER, uuid, "resize", "p1")
        idb.update_row(conn, uuid, {"task_state": "resize_migrating"})
    await cell.db.write(orphan)
    rec = await wait_task(cell, uuid, None, "resized", timeout=15)  # adopted and driven on
    assert (rec["host"], rec["flavor"]["id"]) == (dest, "2")
    assert guests(cell, uuid) == {source: {"flavor": "1", "running": False}, dest: {"flavor": "2", "running": True}}
    assert await claims_of(cell, uuid, mig_uuid) == {uuid: (source, 512), mig_uuid: (dest, 1024)}
    done = await migration(cell, uuid)
    assert (done["status"], done["conductor_id"]) == ("finished", "cell1/conductor")


# --- same host, no room --------------------------------------------------------------------------

@pytest.mark.parametrize("same_host", [False, True])
async def test_resize_on_a_one_host_cell_only_where_allowed(tmp_path: Path, same_host: bool) -> None:
    c = await started(moving_cell(tmp_path, hosts=("node1",), same_host=same_host))
    try:
        before = await usage(c)
        uuid = (await c.boot("mover"))["uuid"]
        await c.wait_state(uuid, VmState.ACTIVE)
        booted = await usage(c)
        await MoveConductorAPI(c.api).move_instance(USER, uuid, "resize", SMALL)
        if not same_host:  # Nova's default: no other host, so no valid host; the server stays as it was
            rec = await wait_task(c, uuid, None, VmState.ACTIVE)
            assert rec["flavor"]["id"] == "1" and await usage(c) == booted
            assert any(r == "Error" and "No valid host" in (d or "") for _, r, d in await events(c, uuid, "resize"))
            return
        rec = await wait_task(c, uuid, None, "resized")
        mig = await migration(c, uuid)
        assert rec["host"] == "node1" and rec["flavor"]["id"] == "2"
        assert await claims_of(c, uuid, mig["uuid"]) == {uuid: ("node1", 512), mig["uuid"]: ("node1", 1024)}
        assert guests(c, uuid) == {"node1": {"flavor": "2", "running": True}}  # one guest, resized in place
        await MoveConductorAPI(c.api).revert_move(USER, uuid)
        rec = await wait_task(c, uuid, None, VmState.ACTIVE)
        assert rec["flavor"]["id"] == "1" and await usage(c) == booted
        assert guests(c, uuid) == {"node1": {"flavor": "1", "running": True}}
        await MoveConductorAPI(c.api).move_instance(USER, uuid, "resize", SMALL)
        await wait_task(c, uuid, None, "resized")
        await MoveConductorAPI(c.api).confirm_move(USER, uuid)
        rec = await wait_task(c, uuid, None, VmState.ACTIVE)
        assert rec["flavor"]["id"] == "2" and guests(c, uuid) == {"node1": {"flavor": "2", "running": True}}
        assert await claims_of(c, uuid) == {uuid: ("node1", 1024)}
        await MoveConductorAPI(c.api).move_instance(ADMIN, uuid, "migrate")  # a migration never stays
        rec = await wait_task(c, uuid, None, VmState.ACTIVE)
        assert rec["host"] == "node1" and guests(c, uuid) == {"node1": {"flavor": "2", "running": True}}
        await c.conductor.instance_delete(USER, uuid)
        await c.wait_state(uuid, VmState.DELETED)
        assert await usage(c) == before
    finally:
        await c.close()


async def test_migrate_with_no_other_host_with_room_stays_active_with_a_fault(cell: Cell) -> None:
    filler = (await cell.boot("filler", flavor=FULL))["uuid"]
    full = (await cell.wait_state(filler, VmState.ACTIVE))["host"]
    uuid = (await cell.boot("mover"))["uuid"]
    source = (await cell.wait_state(uuid, VmState.ACTIVE))["host"]
    assert source != full  # the only other host has no room left
    booted = await usage(cell)
    await MoveConductorAPI(cell.api).move_instance(ADMIN, uuid, "migrate")
    rec = await wait_task(cell, uuid, None, VmState.ACTIVE)
    assert rec["host"] == source and rec["power_state"] == PowerState.RUNNING
    assert guests(cell, uuid) == {source: {"flavor": "1", "running": True}}
    assert await usage(cell) == booted
    evs = await events(cell, uuid, "migrate")
    assert any(r == "Error" and "No valid host" in (d or "") for _, r, d in evs), evs
    faults = await cell.db.read(lambda conn: action_records.faults_of(conn, uuid))
    assert faults and "No valid host" in faults[-1]["message"]
    assert (await migration(cell, uuid))["status"] == "error"


# --- the guest's disks: copied from the source where both computes speak RPC 1.2 ---------------

async def test_a_resize_asks_the_destination_to_copy_the_disks_from_the_source(cell: Cell) -> None:
    uuid, source, dest = await resized(cell)
    assert cell.computes[dest].disk_from[uuid] == source  # type: ignore[attr-defined]
    finish = [e for e in await events(cell, uuid, "resize") if e[0] == moves.EV_FINISH]
    # this fake is a test hypervisor's compute: nothing to copy, said so on the event
    assert finish == [(moves.EV_FINISH, "Success", f"No disk files on {source} to copy: disk made from the image")]


async def test_a_source_of_the_previous_release_gets_its_disk_made_from_the_image(
        cell: Cell, caplog: pytest.LogCaptureFixture) -> None:
    uuid = (await cell.boot("mover"))["uuid"]
    source = (await cell.wait_state(uuid, VmState.ACTIVE))["host"]
    old = versions.RELEASES["2"]  # speaks RPC 1.1: no disk_info, no read_disk
    cell.services[f"compute/{source}"].view.set_meta(versions={"rpc": old.rpc_cap, "objects": old.objects})
    conductor = cell.services["conductor"].view
    await until_async(lambda: _speaks(conductor.pinned_rpc(f"compute.{source}"), "1.1"))
    await MoveConductorAPI(cell.api).move_instance(USER, uuid, "resize", SMALL)
    dest = (await wait_task(cell, uuid, None, "resized"))["host"]
    assert cell.computes[dest].disk_from[uuid] is None  # type: ignore[attr-defined]
    why = f"compute {source} speaks RPC 1.1; copying needs {DISK_COPY_VERSION}"
    finish = [e for e in await events(cell, uuid, "resize") if e[0] == moves.EV_FINISH]
    assert finish == [(moves.EV_FINISH, "Success", f"Disk re-created from the image: {why}")]
    assert any("made again from the image" in r.getMessage() and why in r.getMessage() for r in caplog.records)


async def _speaks(have: str | None, want: str) -> bool:
    return have == want


# --- the compute of a move dies ------------------------------------------------------------------

async def _held_at_destination(c: Cell) -> tuple[str, str, str, dict[str, Any]]:
    """A server whose resize waits in the destination's finish_move: (uuid, source, dest, migration)."""
    uuid = (await c.boot("mover"))["uuid"]
    source = (await c.wait_state(uuid, VmState.ACTIVE))["host"]
    mig, _ = await resize_held_at_finish_move(c, uuid, source)
    return uuid, source, str(mig["dest_host"]), mig


async def test_a_finish_whose_compute_restarted_is_sent_again_and_the_resize_completes(cell: Cell) -> None:
    """The destination's compute is killed in finish_move and restarted before its host is dead:
    the step is sent again to the new process and the resize ends as asked."""
    uuid, source, dest, mig = await _held_at_destination(cell)
    await cell.crash(f"compute/{dest}")  # the finish_move in flight dies with it
    for comp in computes(cell):
        comp.release.set()
    cell.run(f"compute/{dest}")  # its supervisor starts it again
    rec = await wait_task(cell, uuid, None, "resized", timeout=10)
    assert (rec["host"], rec["flavor"]["id"]) == (dest, "2")
    assert guests(cell, uuid) == {source: {"flavor": "1", "running": False}, dest: {"flavor": "2", "running": True}}
    assert (await migration(cell, uuid))["status"] == "finished"
    assert await claims_of(cell, uuid, mig["uuid"]) == {uuid: (source, 512), mig["uuid"]: (dest, 1024)}


async def test_a_move_whose_destination_died_is_rolled_back_once_the_host_is_dead(cell: Cell) -> None:
    """The destination's compute dies in finish_move and does not come back: nothing is undone while
    the host is only suspect; once it is dead (the cell's grace) the move is rolled back: the server
    ACTIVE on its source with its old flavor, the migration 'error', its claim released, the
    failure on the resize action."""
    before = await usage(cell)
    uuid, source, dest, mig = await _held_at_destination(cell)
    await cell.crash(f"compute/{dest}")
    await asyncio.sleep(0.8)  # past the 3 missed beats: suspect, not dead yet (DEAD_AFTER 1.6 s)
    assert (await migration(cell, uuid))["status"] == "migrating"
    rec = await wait_task(cell, uuid, None, VmState.ACTIVE, timeout=10)
    assert (rec["host"], rec["flavor"]["id"]) == (source, "1")
    assert guests(cell, uuid)[source] == {"flavor": "1", "running": True}  # the source guest started again
    assert (await migration(cell, uuid))["status"] == "error"
    assert await claims_of(cell, uuid, mig["uuid"]) == {uuid: (source, 512)}
    assert (await usage(cell))[dest] == before[dest]  # the destination's claim went back
    evs = await events(cell, uuid, "resize")
    assert any(e == "compute_finish_resize" and r == "Error" and f"{dest} is dead" in (d or "")
               for e, r, d in evs), evs


# --- placement: the API's aggregates bound where a move goes ------------------------------------

async def test_a_moves_placement_is_kept_with_the_row_and_bounds_the_destination(cell: Cell) -> None:
    """The API's placement (its aggregates' hosts) is refused when malformed, kept in the row's request
    spec (an adopting conductor schedules the same way), and the scheduler keeps to it: only the source
    allowed -> no host, the server stays where it was; the bound lifted -> it moves."""
    uuid = (await cell.boot("zoned"))["uuid"]
    source = (await cell.wait_state(uuid, VmState.ACTIVE))["host"]
    mover = MoveConductorAPI(cell.api)
    for bad in ({"only_hosts": "node1"}, {"only_hosts": [1]}, {"zone": ["x"]}):
        with pytest.raises(errors.Invalid):
            await mover.move_instance(ADMIN, uuid, "migrate", None, bad)  # type: ignore[arg-type]
    await mover.move_instance(ADMIN, uuid, "migrate", None, {"only_hosts": [source]})
    rec = await wait_task(cell, uuid, None, VmState.ACTIVE)
    assert rec["host"] == source
    spec = await cell.db.read(lambda conn: moves.placement_of(conn, uuid))
    assert spec == {"only_hosts": [source]}
    await mover.move_instance(ADMIN, uuid, "migrate", None, {"excluded_hosts": []})
    moved = await wait_task(cell, uuid, None, "resized")
    assert moved["host"] != source
    assert await cell.db.read(lambda conn: moves.placement_of(conn, uuid)) == {"excluded_hosts": []}


async def _volume_host_ready(c: Cell) -> bool:
    """node1's volume worker is live in the conductors' directory and has reported its capacity."""
    live = all(svc.view.members("volume.node1") for name, svc in c.services.items() if name.startswith("conductor"))
    return live and bool(await c.db.read(vdb.nodes))


async def _volume_status(c: Cell, vid: str, status: str) -> bool:
    return bool((await VolumeConductorAPI(c.api).volume_get(USER, vid))["status"] == status)


async def test_a_conductor_killed_mid_move_with_a_volume_attached_the_adopter_carries_it_again(
        tmp_path: Path, db_url: str) -> None:
    """The dead owner exported the volume to the destination before it died; the adopter exports it there
    again (idempotent), the attachment names the destination and its connection, only the destination is
    admitted, and the guest made there has it plugged with that connection."""
    two = moving_cell(tmp_path, conductors=2, db_url=db_url, kind=VolumeMovingCell)
    assert isinstance(two, VolumeMovingCell)
    await started(two, conductors=2)
    try:
        two.run("volume/node1")
        await until_async(lambda: _volume_host_ready(two), 10)  # a volume made before would find no host
        volumes = VolumeConductorAPI(two.api)
        uuid = (await two.boot("mover"))["uuid"]
        source = (await two.wait_state(uuid, VmState.ACTIVE))["host"]
        vid = str(uuidlib.uuid4())
        await volumes.volume_create(USER, {"id": vid, "size": 1, "name": "data", "project_id": USER.project})
        await until_async(lambda: _volume_status(two, vid, "available"), 10)
        await volumes.volume_attach(USER, vid, uuid)
        await until_async(lambda: _volume_status(two, vid, "in-use"), 10)
        assert two.target.exports == [(vid, source)]

        mig, owner = await resize_held_at_finish_move(two, uuid, source)
        dest = str(mig["dest_host"])
        assert two.target.exports == [(vid, source), (vid, dest)]  # the owner carried it before it died
        await two.crash(owner.split("/", 1)[1])
        for comp in computes(two):
            comp.release.set()
        await wait_task(two, uuid, None, "resized", timeout=10)
        assert two.target.exports == [(vid, source), (vid, dest), (vid, dest)]  # the adopter carried it again
        assert two.target.admitted == {vid: dest}
        [att] = (await volumes.volume_attachments(USER, [uuid]))[uuid]
        assert att["instance_host"] == dest and att["status"] == "attached"
        assert att["connection_info"]["data"]["host"] == dest
        assert two.computes[dest].plugged == {(uuid, vid): att["connection_info"]}  # type: ignore[attr-defined]
        assert (await migration(two, uuid))["conductor_id"] != owner
    finally:
        await two.close()


async def test_a_move_failing_at_the_destination_carries_its_volume_back_and_plugs_it_at_the_source(
        tmp_path: Path, db_url: str) -> None:
    """The destination's finish_move fails after the volume was exported there: the roll back exports it to
    the source again (the only host admitted), the attachment names the source and its new connection, and the
    source guest, started again, has it plugged with that connection (move_volumes.carry_back, then plug);
    the server is ACTIVE on its source with its old flavor, the migration in error."""
    cell = moving_cell(tmp_path, db_url=db_url, kind=VolumeMovingCell)
    assert isinstance(cell, VolumeMovingCell)
    await started(cell)
    try:
        cell.run("volume/node1")
        await until_async(lambda: _volume_host_ready(cell), 10)
        volumes = VolumeConductorAPI(cell.api)
        uuid = (await cell.boot("mover"))["uuid"]
        source = (await cell.wait_state(uuid, VmState.ACTIVE))["host"]
        dest = "node2" if source == "node1" else "node1"
        vid = str(uuidlib.uuid4())
        await volumes.volume_create(USER, {"id": vid, "size": 1, "name": "data", "project_id": USER.project})
        await until_async(lambda: _volume_status(cell, vid, "available"), 10)
        await volumes.volume_attach(USER, vid, uuid)
        await until_async(lambda: _volume_status(cell, vid, "in-use"), 10)
        source_compute = cell.computes[source]
        assert isinstance(source_compute, MovingCompute)
        source_compute.plugged.clear()  # what follows must plug it again
        cell.computes[dest].fail.add("finish_move")  # type: ignore[attr-defined]

        await MoveConductorAPI(cell.api).move_instance(USER, uuid, "resize", SMALL)
        await until_async(lambda: _migration_status(cell, uuid, "error"), 10)
        rec = await wait_task(cell, uuid, None, VmState.ACTIVE, timeout=10)
        assert (rec["host"], rec["flavor"]["id"]) == (source, "1")
        assert cell.target.exports == [(vid, source), (vid, dest), (vid, source)]  # there, and back
        assert cell.target.admitted == {vid: source}
        [att] = (await volumes.volume_attachments(USER, [uuid]))[uuid]
        assert att["instance_host"] == source and att["status"] == "attached"
        assert att["connection_info"]["data"]["host"] == source
        await until_async(lambda: _plugged(source_compute, uuid, vid), 10)
        assert source_compute.plugged == {(uuid, vid): att["connection_info"]}
        assert guests(cell, uuid) == {source: {"flavor": "1", "running": True}}
        assert await _volume_status(cell, vid, "in-use")
    finally:
        await cell.close()


async def _migration_status(c: Cell, uuid: str, status: str) -> bool:
    return bool((await migration(c, uuid))["status"] == status)


async def _plugged(compute: MovingCompute, uuid: str, vid: str) -> bool:
    return (uuid, vid) in compute.plugged


async def test_a_volume_exported_by_another_target_leaves_the_previous_one(tmp_path: Path) -> None:
    """A volume carried between a host its local target serves and one a network target serves is
    exported by one target at a time: the previous host is admitted nowhere (not until the stale-export
    sweep)."""
    net, local = OneInitiatorTarget(), LocalTarget("node1")
    cell = moving_cell(tmp_path)
    spec = ServiceSpec("cell1/volume/node1", "volume", "node1", "tcp://127.0.0.1:9", "cell1")
    worker = VolumeManager(cell.cluster, spec, backend=FileBackend(str(tmp_path / "vols"), "raw", capacity_gb=5),
                           targets={"local": local, "net": net},
                           images=ImageCache(str(tmp_path / "volume-images"), FakeFetcher()))
    vid = str(uuidlib.uuid4())
    volume = {"id": vid, "size": 1}
    await worker.backend.check()
    await worker.create_volume(ADMIN, volume)
    info = await worker.export_volume(ADMIN, volume, {"host": "node2", "ip": "127.0.0.1"})
    assert info["data"]["target"] == "net" and await net.exported() == {vid} and await local.exported() == set()
    info = await worker.export_volume(ADMIN, volume, {"host": "node1", "ip": "127.0.0.1"})
    assert info["data"]["target"] == "local" and await local.exported() == {vid} and await net.exported() == set()
    await worker.export_volume(ADMIN, volume, {"host": "node2", "ip": "127.0.0.1"})
    assert await net.exported() == {vid} and await local.exported() == set()
