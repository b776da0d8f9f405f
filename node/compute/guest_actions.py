"""Server actions on the compute worker (ComputeManager.actions): stop, start,
reboot, pause, unpause, suspend, resume, rebuild, rescue, unrescue (node/compute/rescue.py),
soft_delete and restore (the guest powered off and on), shelve (powered off), shelve_offload (the
guest and its disk removed), unshelve (started, or made from the shelve image), and console output.

Each action is validate -> lock (the instance's) -> act (driver) -> report to the
conductor with instance_action_done, which checks the task_state is still the
action's (a delete that raced it wins). Whatever goes wrong ends in a report:
the server never stays in a task state forever.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from cells import errors
from cells.context import RequestContext
from cells.lifecycle import USER_ACTIONS
from cells.objects.instance import PowerState, VmState
from cells.rpcapi.conductor import ConductorAPI
from node.compute.driver import LibvirtDriver
from node.compute.rescue import GuestRescue
from node.compute.spawner import GuestSpawner
from node.locks import KeyedLocks

LOG = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT = 60.0  # seconds a guest gets to power off cleanly (Nova's shutdown_timeout)
MAX_CONSOLE_LINES = 100_000


def fault_of(exc: BaseException) -> dict[str, Any]:
    """A server's fault, as Nova's exception_to_dict: an error of the tree shows its message; anything
    else (libvirt's, the OS's: paths, host names) shows its class name, its text goes to the details,
    which the API shows admins only."""
    if isinstance(exc, errors.CellcloudError):
        return {"code": 500, "message": exc.message, "details": ""}
    return {"code": 500, "message": type(exc).__name__, "details": str(exc)}


class GuestActions:
    def __init__(self, host: str, driver: LibvirtDriver, spawner: GuestSpawner, conductor: ConductorAPI,
                 locks: KeyedLocks, shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> None:
        self.host = host
        self.driver = driver
        self.spawner = spawner
        self.conductor = conductor
        self.locks = locks  # the manager's per-instance locks
        self.shutdown_timeout = shutdown_timeout
        self.rescuer = GuestRescue(driver, spawner)

    # --- RPC surface (cells/rpcapi/compute.py), through ComputeManager ----------------

    async def run(self, ctx: RequestContext, instance: dict[str, Any], action: str, args: dict[str, Any]) -> None:
        uuid = str(instance["uuid"])
        if action not in USER_ACTIONS:
            LOG.error("unknown action %r for %s ignored", action, uuid)
            return
        ctx = dataclasses.replace(ctx, deadline=None)  # the cast's deadline bounded its delivery only
        async with self.locks(uuid):
            await self._run_action(ctx, instance, action, dict(args or {}))
        if action == "shelve_offload":  # the host was cleared: the sync drops the guest's taps and DHCP entries
            try:
                await self.spawner.network.unplug()
            except Exception as exc:  # noqa: BLE001 - the guest is gone either way; the next sync repairs it
                LOG.error("network unplug after the offload of %s failed: %s", uuid, exc)

    async def console_output(self, ctx: RequestContext, uuid: str, length: int | None = None) -> str:
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
            raise errors.Invalid(reason=f"length must be a non-negative integer or null, not {length!r}")
        return await self.driver.power.console_output(uuid, None if length is None else min(length, MAX_CONSOLE_LINES))

    # --- the actions ---------------------------------------------------------------------

    async def _run_action(self, ctx: RequestContext, instance: dict[str, Any], action: str,
                          args: dict[str, Any]) -> None:
        uuid = str(instance["uuid"])
        try:
            vm_state = await self._act(instance, action, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the task state must end
            LOG.warning("%s of %s failed: %s", action, uuid, exc)
            values: dict[str, Any] = {"power_state": await self.observed_power(uuid)}
            if action in ("rebuild", "rescue", "unrescue") or (action == "reboot_hard" and values["power_state"] != PowerState.RUNNING):
                values["vm_state"] = VmState.ERROR  # the guest is gone or half made: say so
            await self.report(ctx, uuid, action, False, values, fault_of(exc))
            return
        await self.report(ctx, uuid, action, True,
                           {"vm_state": vm_state, "power_state": await self.observed_power(uuid)}, None)

    async def _act(self, instance: dict[str, Any], action: str, args: dict[str, Any]) -> str:
        """Carry out `action`; returns the vm_state the server is in afterwards."""
        uuid = str(instance["uuid"])
        d = self.driver
        if action in ("stop", "soft_delete"):  # Nova's soft delete powers the guest off (driver.soft_delete)
            await d.power.power_off(uuid, self.shutdown_timeout)
            return VmState.STOPPED if action == "stop" else VmState.SOFT_DELETED
        if action == "restore":
            await d.power.power_on(uuid)
            return VmState.ACTIVE
        if action == "rescue":
            await self.rescuer.rescue(instance, dict(args["image"]))
            return VmState.RESCUED
        if action == "unrescue":
            await self.rescuer.unrescue(instance)
            return VmState.ACTIVE
        if action == "start":
            await d.power.power_on(uuid)
            return VmState.ACTIVE
        if action in ("reboot", "reboot_hard"):
            how = await d.power.reboot(uuid, hard=action == "reboot_hard", clean_timeout=self.shutdown_timeout)
            LOG.info("instance %s rebooted (%s)", uuid, how)
            return VmState.ACTIVE
        if action == "pause":
            await d.power.pause(uuid)
            return VmState.PAUSED
        if action == "unpause":
            await d.power.unpause(uuid)
            return VmState.ACTIVE
        if action == "suspend":
            await d.power.suspend(uuid)
            return VmState.SUSPENDED
        if action == "resume":
            await d.power.resume(uuid)
            return VmState.ACTIVE
        if action == "rebuild":
            return await self._rebuild(instance)
        if action == "shelve":  # the shelve image holds the disk already (the API took it)
            await d.power.power_off(uuid, self.shutdown_timeout)
            return VmState.SHELVED
        if action == "shelve_offload":  # nothing of the guest stays on this host
            await d.destroy(uuid)
            await d.remove_files(uuid)
            return VmState.SHELVED_OFFLOADED
        if action == "unshelve":
            return await self._unshelve(instance, args.get("image"))
        raise errors.Invalid(reason=f"unknown action {action!r}")

    async def _unshelve(self, instance: dict[str, Any], image: Any) -> str:
        """A shelved guest starts where it is; an offloaded one is made here from its shelve image (a guest
        half made is removed: the conductor gives the claim back)."""
        uuid = str(instance["uuid"])
        if image is None:
            await self.driver.power.power_on(uuid)
            return VmState.ACTIVE
        if not isinstance(image, dict) or not (image.get("id") or image.get("root_volume_id")):
            raise errors.Invalid(reason="unshelve needs the shelve image's record (or the server's root volume)")
        await self.driver.destroy(uuid)
        await self.driver.remove_files(uuid)
        try:
            await self.spawner.spawn({**instance, "image": dict(image)})
        except BaseException:
            await asyncio.shield(self._remove(uuid))
            raise
        return VmState.ACTIVE

    async def _remove(self, uuid: str) -> None:
        try:
            await self.driver.destroy(uuid)
            await self.driver.remove_files(uuid)
        except Exception as exc:  # noqa: BLE001 - the failure being reported matters more
            LOG.error("cleanup of the failed unshelve of %s: %s", uuid, exc)

    async def _rebuild(self, instance: dict[str, Any]) -> str:
        """A fresh guest from the (maybe new) image: the old domain and overlay go first.
        A server that was stopped stays stopped, as Nova."""
        uuid = str(instance["uuid"])
        was_stopped = instance.get("vm_state") == VmState.STOPPED
        await self.driver.destroy(uuid)
        await self.driver.remove_files(uuid)
        await self.spawner.spawn(instance)
        if was_stopped:
            await self.driver.power.power_off(uuid)
            return VmState.STOPPED
        return VmState.ACTIVE

    async def observed_power(self, uuid: str) -> int:
        try:
            return await self.driver.power_state(uuid)
        except errors.InstanceNotFound:
            return PowerState.NOSTATE
        except Exception as exc:  # noqa: BLE001 - a report without the power state is still a report
            LOG.warning("power state of %s unknown: %s", uuid, exc)
            return PowerState.NOSTATE

    async def report(self, ctx: RequestContext, uuid: str, action: str, ok: bool, values: dict[str, Any],
                      fault: dict[str, Any] | None) -> None:
        for attempt in range(3):
            try:
                await self.conductor.instance_action_done(ctx, uuid, self.host, action, ok, values, fault)
                return
            except errors.RpcError as exc:
                LOG.warning("reporting %s of %s failed (attempt %d): %s", action, uuid, attempt + 1, exc)
                await asyncio.sleep(0.2 * 2 ** attempt)
            except errors.CellcloudError as exc:  # e.g. deleted meanwhile: the delete owns it now
                LOG.info("%s of %s not recorded: %s", action, uuid, exc)
                return
        LOG.error("%s of %s: could not report the result; the power sweep will correct the record", action, uuid)
