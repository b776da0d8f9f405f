"""Moves on the compute worker (ComputeManager.moves): the steps the conductor drives
for resize, cold migration and evacuation (cells/conductor/flows/moves.py, evacuate.py).

Every step runs under the instance's lock and is idempotent, so a conductor that adopts
a move, or retries a step, never makes a second guest or loses the only one:
  prep_move          source: power the guest off, keep it (revert starts it again)
  finish_move        destination: make the guest with the new flavor on a copy of the
                     source's disks (`disk_source`, RPC 1.2: pulled with the source's
                     disk_info and read_disk, node/compute/disks.py), or on a disk made
                     from the image when the conductor asks for no copy (a compute of
                     the previous release is involved)
  disk_info,         source: what the stopped guest's disk files are, and their bytes in
  read_disk          chunks (compute to compute; hosts share no storage), served only to the
                     destination of the move prep_move stopped the guest for (a source that
                     restarted since refuses: the move fails and the conductor rolls it back)
  confirm_move       source: destroy the old guest and its files
  revert_move        destination: destroy the new guest and its files
  finish_revert      source: bind the guest's ports here again (the destination took them)
                     and start the old guest again (unless it was stopped before)
  rebuild_evacuated  destination: a new guest from the image for a server of a dead host
Each returns the guest's power state afterwards.

A resize that stays on its host (the cell's allow_resize_to_same_host) has one guest:
finish_move changes its vCPUs and memory in place (disks and NICs kept), revert_move
changes them back (stopped), confirm_move has nothing to remove, and finish_revert never
makes the guest again (a guest that is gone was deleted or lost with the host).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from cells import errors
from cells.context import RequestContext, admin_context
from cells.objects.instance import PowerState, VmState
from cells.rpc.principal import host_worker
from cells.rpcapi.move_methods import DiskCopyAPI
from node.compute.driver import LibvirtDriver, base_format
from node.compute.spawner import GuestSpawner
from node.imagecache import ImageCache
from node.locks import KeyedLocks
from node.network.agent import NetworkAgent

LOG = logging.getLogger(__name__)


def same_host(migration: dict[str, Any]) -> bool:
    return migration.get("source_host") is not None and migration.get("source_host") == migration.get("dest_host")


class GuestMoves:
    def __init__(self, host: str, driver: LibvirtDriver, spawner: GuestSpawner, images: ImageCache,
                 network: NetworkAgent, peers: DiskCopyAPI, locks: KeyedLocks, shutdown_timeout: float) -> None:
        self.host = host
        self.driver = driver
        self.spawner = spawner
        self.images = images
        self.network = network
        self.peers = peers  # other computes: a move's source serves its disks
        self.locks = locks  # the manager's per-instance locks
        self.shutdown_timeout = shutdown_timeout
        self.outgoing: dict[str, str] = {}  # instance uuid -> destination host of its move from here (prep_move)

    async def _power(self, uuid: str) -> int:
        try:
            return await self.driver.power_state(uuid)
        except errors.InstanceNotFound:
            return PowerState.NOSTATE

    async def prep_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        uuid = str(instance["uuid"])
        async with self.locks(uuid):
            if not same_host(migration) and migration.get("dest_host"):
                self.outgoing[uuid] = str(migration["dest_host"])  # the one host its disks may be read by
            if await self._power(uuid) == PowerState.RUNNING:
                await self.driver.power.power_off(uuid, self.shutdown_timeout)
            LOG.info("move %s of %s: source guest stopped on %s", migration["uuid"], uuid, self.host)
            return await self._power(uuid)

    async def finish_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any],
                          disk_source: str | None = None) -> int | dict[str, int]:
        """The power state; with `disk_source` (a conductor of RPC 1.2 or later) the disks are
        copied from that host and the answer is {power_state, files, bytes}."""
        copied = {"files": 0, "bytes": 0}
        if same_host(migration):
            power = await self._reflavor(str(instance["uuid"]), migration["new_flavor"],
                                         start=migration.get("old_vm_state") != VmState.STOPPED, missing_ok=False)
        else:
            power, copied = await self._new_guest(ctx, instance, migration, "moved here", disk_source)
        return power if disk_source is None else {"power_state": power, **copied}

    def _check_disk_reader(self, ctx: RequestContext, uuid: Any, what: str) -> None:
        """Only the destination of a move of this guest from here reads its disks."""
        reader = host_worker(ctx)
        if reader is not None and (not isinstance(uuid, str) or self.outgoing.get(uuid) != reader.host):
            raise errors.RpcForbidden(principal=reader.name, method=what,
                                      reason=f"no move of instance {uuid} from {self.host} to {reader.host} "
                                             f"is in progress")

    async def disk_info(self, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
        self._check_disk_reader(ctx, uuid, "disk_info")
        async with self.locks(str(uuid)):  # after a prep_move still stopping the guest
            return await self.driver.disks.disk_files(uuid)

    async def read_disk(self, ctx: RequestContext, uuid: str, name: str, offset: int, length: int) -> bytes:
        self._check_disk_reader(ctx, uuid, "read_disk")
        return await self.driver.disks.read_disk(uuid, name, offset, length)

    async def _copy_disks(self, ctx: RequestContext, source: str, instance: dict[str, Any]) -> dict[str, int]:
        """The stopped source guest's disks, copied into this host's instance dir and rebased
        onto this host's cached image; {files, bytes} (none on the test hypervisor)."""
        uuid = str(instance["uuid"])
        t0 = time.monotonic()
        try:
            files = await self.peers.disk_info(ctx, source, uuid)
            if not files:
                LOG.info("move of %s: no disk files on %s to copy: the disk is made from the image", uuid, source)
                return {"files": 0, "bytes": 0}
            image: dict[str, Any] = instance.get("image") or {}
            base = await self.images.fetch(image) if image.get("id") else None

            async def read(name: str, offset: int, length: int) -> bytes:
                return await self.peers.read_disk(ctx, source, uuid, name, offset, length)
            size = await self.driver.disks.receive_disks(uuid, files, read, base, base_format(instance))
        except errors.DiskCopyFailed:
            raise
        except (errors.CellcloudError, OSError, RuntimeError) as exc:  # RuntimeError: qemu-img
            reason = exc.message if isinstance(exc, errors.CellcloudError) else str(exc)
            raise errors.DiskCopyFailed(instance_id=uuid, reason=f"from {source}: {reason}") from exc
        LOG.info("move of %s: %d disk file(s), %d bytes copied from %s in %.2fs", uuid, len(files), size, source,
                 time.monotonic() - t0)
        return {"files": len(files), "bytes": size}

    async def _reflavor(self, uuid: str, flavor: dict[str, Any], *, start: bool, missing_ok: bool) -> int:
        async with self.locks(uuid):
            power = await self._power(uuid)
            if power == PowerState.NOSTATE:
                if missing_ok:
                    return power
                raise errors.InstanceNotFound(instance_id=uuid)
            if power == PowerState.RUNNING:
                await self.driver.power.power_off(uuid, self.shutdown_timeout)
            await self.driver.power.set_flavor(uuid, flavor)
            await self.driver.disks.grow_root(uuid, flavor)
            if start:
                await self.driver.power.power_on(uuid)
            LOG.info("instance %s on %s: flavor %s in place", uuid, self.host, flavor.get("name") or flavor.get("id"))
            return await self._power(uuid)

    async def rebuild_evacuated(self, ctx: RequestContext, instance: dict[str, Any],
                                migration: dict[str, Any]) -> int:
        return (await self._new_guest(ctx, instance, migration, "evacuated here"))[0]  # its source is down

    async def _new_guest(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any], what: str,
                         disk_source: str | None = None) -> tuple[int, dict[str, int]]:
        uuid = str(instance["uuid"])
        async with self.locks(uuid):
            LOG.info("move %s of %s: making the guest on %s", migration["uuid"], uuid, self.host)
            await self.driver.destroy(uuid)  # a half-made guest of an earlier try goes first
            await self.driver.remove_files(uuid)
            copied = {"files": 0, "bytes": 0}
            try:
                if disk_source is not None:
                    copied = await self._copy_disks(ctx, disk_source, instance)
                await self.spawner.spawn(instance, disk_ready=copied["files"] > 0)
                if migration.get("old_vm_state") == VmState.STOPPED:
                    await self.driver.power.power_off(uuid)
            except Exception as exc:  # nothing may stay behind; the conductor rolls back
                await self.driver.destroy(uuid)
                await self.driver.remove_files(uuid)
                if isinstance(exc, errors.CellcloudError):
                    raise
                raise errors.SpawnFailed(instance_id=uuid, reason=str(exc)) from exc
            LOG.info("instance %s %s (%s, migration %s)", uuid, what, self.host, migration["uuid"])
            return await self._power(uuid), copied

    async def confirm_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        self.outgoing.pop(str(instance["uuid"]), None)  # the move is over: its disks are read no more
        if same_host(migration):  # the one guest is the resized one: nothing to remove
            return await self._power(str(instance["uuid"]))
        return await self._drop(instance, "old guest removed after confirm")

    async def revert_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        if same_host(migration):
            return await self._reflavor(str(instance["uuid"]), migration["old_flavor"], start=False, missing_ok=True)
        return await self._drop(instance, "new guest removed by revert")

    async def _drop(self, instance: dict[str, Any], what: str) -> int:
        uuid = str(instance["uuid"])
        async with self.locks(uuid):
            await self.driver.destroy(uuid)
            await self.driver.remove_files(uuid)
            LOG.info("instance %s on %s: %s", uuid, self.host, what)
            return PowerState.NOSTATE

    async def finish_revert(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        uuid = str(instance["uuid"])
        self.outgoing.pop(uuid, None)
        async with self.locks(uuid):
            if await self._power(uuid) == PowerState.NOSTATE:
                if same_host(migration):  # the one guest is gone: deleted, or lost with the host
                    return PowerState.NOSTATE
                await self.spawner.spawn(instance)  # the old guest is gone (lost with a restart): make it again
                if migration.get("old_vm_state") == VmState.STOPPED:
                    await self.driver.power.power_off(uuid)
                return await self._power(uuid)
            if not same_host(migration):  # its ports went to the destination: bound here again, taps remade
                await self.network.plug(admin_context(), instance)
            if migration.get("old_vm_state") != VmState.STOPPED and await self._power(uuid) != PowerState.RUNNING:
                await self.driver.power.power_on(uuid)
            return await self._power(uuid)
