"""Moves on the compute worker (mixed into ComputeManager): the steps the conductor drives
for resize, cold migration and evacuation (cells/conductor/flows/moves.py, evacuate.py).

Every step runs under the instance's lock and is idempotent, so a conductor that adopts
a move, or retries a step, never makes a second guest or loses the only one:
  prep_move          source: power the guest off, keep it (revert starts it again)
  finish_move        destination: make the guest with the new flavor (the disk is made
                     again from the image: there is no shared storage or disk copy yet)
  confirm_move       source: destroy the old guest and its files
  revert_move        destination: destroy the new guest and its files
  finish_revert      source: start the old guest again (unless it was stopped before)
  rebuild_evacuated  destination: a new guest from the image for a server of a dead host
Each returns the guest's power state afterwards.

A resize that stays on its host (the cell's allow_resize_to_same_host) has one guest:
finish_move changes its vCPUs and memory in place (disks and NICs kept), revert_move
changes them back (stopped), confirm_move has nothing to remove, and finish_revert never
makes the guest again (a guest that is gone was deleted or lost with the host).
"""
from __future__ import annotations

import logging
from typing import Any

from cells import errors
from cells.context import RequestContext
from cells.objects.instance import PowerState, VmState
from node.compute.driver import LibvirtDriver
from node.locks import KeyedLocks

LOG = logging.getLogger(__name__)


def same_host(migration: dict[str, Any]) -> bool:
    return migration.get("source_host") is not None and migration.get("source_host") == migration.get("dest_host")


class ComputeMoves:
    """Needs, from ComputeManager: host, driver, _locks, spawn_guest, shutdown_timeout."""

    host: str
    driver: LibvirtDriver
    _locks: KeyedLocks
    shutdown_timeout: float

    async def spawn_guest(self, instance: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _power(self, uuid: str) -> int:
        try:
            return await self.driver.power_state(uuid)
        except errors.InstanceNotFound:
            return PowerState.NOSTATE

    async def prep_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        uuid = str(instance["uuid"])
        async with self._locks(uuid):
            if await self._power(uuid) == PowerState.RUNNING:
                await self.driver.power_off(uuid, self.shutdown_timeout)
            LOG.info("move %s of %s: source guest stopped on %s", migration["uuid"], uuid, self.host)
            return await self._power(uuid)

    async def finish_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        if same_host(migration):
            return await self._reflavor(str(instance["uuid"]), migration["new_flavor"],
                                        start=migration.get("old_vm_state") != VmState.STOPPED, missing_ok=False)
        return await self._new_guest(instance, migration, "moved here")

    async def _reflavor(self, uuid: str, flavor: dict[str, Any], *, start: bool, missing_ok: bool) -> int:
        async with self._locks(uuid):
            power = await self._power(uuid)
            if power == PowerState.NOSTATE:
                if missing_ok:
                    return power
                raise errors.InstanceNotFound(instance_id=uuid)
            if power == PowerState.RUNNING:
                await self.driver.power_off(uuid, self.shutdown_timeout)
            await self.driver.set_flavor(uuid, flavor)
            if start:
                await self.driver.power_on(uuid)
            LOG.info("instance %s on %s: flavor %s in place", uuid, self.host, flavor.get("name") or flavor.get("id"))
            return await self._power(uuid)

    async def rebuild_evacuated(self, ctx: RequestContext, instance: dict[str, Any],
                                migration: dict[str, Any]) -> int:
        return await self._new_guest(instance, migration, "evacuated here")

    async def _new_guest(self, instance: dict[str, Any], migration: dict[str, Any], what: str) -> int:
        uuid = str(instance["uuid"])
        async with self._locks(uuid):
            LOG.info("move %s of %s: making the guest on %s", migration["uuid"], uuid, self.host)
            await self.driver.destroy(uuid)  # a half-made guest of an earlier try goes first
            await self.driver.remove_files(uuid)
            try:
                await self.spawn_guest(instance)
                if migration.get("old_vm_state") == VmState.STOPPED:
                    await self.driver.power_off(uuid)
            except Exception as exc:  # nothing may stay behind; the conductor rolls back
                await self.driver.destroy(uuid)
                await self.driver.remove_files(uuid)
                if isinstance(exc, errors.CellcloudError):
                    raise
                raise errors.SpawnFailed(instance_id=uuid, reason=str(exc)) from exc
            LOG.info("instance %s %s (%s, migration %s)", uuid, what, self.host, migration["uuid"])
            return await self._power(uuid)

    async def confirm_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        if same_host(migration):  # the one guest is the resized one: nothing to remove
            return await self._power(str(instance["uuid"]))
        return await self._drop(instance, "old guest removed after confirm")

    async def revert_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        if same_host(migration):
            return await self._reflavor(str(instance["uuid"]), migration["old_flavor"], start=False, missing_ok=True)
        return await self._drop(instance, "new guest removed by revert")

    async def _drop(self, instance: dict[str, Any], what: str) -> int:
        uuid = str(instance["uuid"])
        async with self._locks(uuid):
            await self.driver.destroy(uuid)
            await self.driver.remove_files(uuid)
            LOG.info("instance %s on %s: %s", uuid, self.host, what)
            return PowerState.NOSTATE

    async def finish_revert(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        uuid = str(instance["uuid"])
        async with self._locks(uuid):
            if await self._power(uuid) == PowerState.NOSTATE:
                if same_host(migration):  # the one guest is gone: deleted, or lost with the host
                    return PowerState.NOSTATE
                await self.spawn_guest(instance)  # the old guest is gone (lost with a restart): make it again
                if migration.get("old_vm_state") == VmState.STOPPED:
                    await self.driver.power_off(uuid)
            elif migration.get("old_vm_state") != VmState.STOPPED and await self._power(uuid) != PowerState.RUNNING:
                await self.driver.power_on(uuid)
            return await self._power(uuid)
