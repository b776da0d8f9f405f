"""Server actions on the compute worker (mixed into ComputeManager): stop, start,
reboot, pause, unpause, suspend, resume, rebuild, and console output.

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
from cells.context import RequestContext, admin_context
from cells.lifecycle import USER_ACTIONS
from cells.objects.instance import PowerState, VmState
from cells.rpcapi.conductor import ConductorAPI
from node.compute.driver import LibvirtDriver
from node.imagecache import ImageCache
from node.locks import KeyedLocks
from node.network.agent import NetworkAgent

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


class ComputeActions:
    """Needs, from ComputeManager: host, driver, images, conductor, _locks, shutdown_timeout."""

    host: str
    driver: LibvirtDriver
    images: ImageCache
    network: NetworkAgent
    _locks: KeyedLocks
    shutdown_timeout: float = SHUTDOWN_TIMEOUT

    @property
    def conductor(self) -> ConductorAPI:
        raise NotImplementedError

    # --- RPC surface (cells/rpcapi/compute.py) ---------------------------------------

    async def run_instance_action(self, ctx: RequestContext, instance: dict[str, Any], action: str,
                                  args: dict[str, Any]) -> None:
        uuid = str(instance["uuid"])
        if action not in USER_ACTIONS:
            LOG.error("unknown action %r for %s ignored", action, uuid)
            return
        ctx = dataclasses.replace(ctx, deadline=None)  # the cast's deadline bounded its delivery only
        async with self._locks(uuid):
            await self._run_action(ctx, instance, action, dict(args or {}))

    async def get_console_output(self, ctx: RequestContext, uuid: str, length: int | None = None) -> str:
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
            raise errors.Invalid(reason=f"length must be a non-negative integer or null, not {length!r}")
        return await self.driver.console_output(uuid, None if length is None else min(length, MAX_CONSOLE_LINES))

    # --- shared with the build ---------------------------------------------------------

    async def _spawn_guest(self, instance: dict[str, Any], disk_ready: bool = False) -> None:
        """Fetch the image (and an AMI's kernel and ramdisk: hash-verified through the cache),
        then define and start the domain (`disk_ready`: on a disk a move copied here)."""
        image: dict[str, Any] = instance.get("image") or {}
        image_path = await self.images.fetch(image) if image.get("id") else None
        props: dict[str, Any] = image.get("properties") or {}
        kernel = ramdisk = None
        if props.get("kernel_id"):  # Nova's AMI: direct kernel boot
            kernel = await self._companion(image, "kernel", "kernel_id")
            if props.get("ramdisk_id"):
                ramdisk = await self._companion(image, "ramdisk", "ramdisk_id")
        vifs = await self.network.plug(admin_context(), instance)  # node/network/agent.py: taps before the domain
        if vifs:
            instance = {**instance, "vifs": vifs}
        await self.driver.spawn(instance, image_path, kernel=kernel, ramdisk=ramdisk, disk_ready=disk_ready)

    async def _companion(self, image: dict[str, Any], key: str, prop: str) -> str:
        """The cached kernel or ramdisk of an AMI: the record the API resolved with the requester's
        visibility (api/image/images.py boot_snapshot_of). Instances recorded before the API did
        that carry only the property's id: those are looked up by id, as they always were."""
        record = image.get(key)
        if isinstance(record, dict) and record.get("id") == (image.get("properties") or {}).get(prop):
            return await self.images.fetch(record)
        return await self.images.fetch_by_id(str(image["properties"][prop]))

    async def _prune_image_cache(self) -> None:
        """Remove cached bases that no guest here uses and nobody fetched for a while."""
        await self.images.prune(await self.driver.bases_in_use())

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
            values: dict[str, Any] = {"power_state": await self._observed_power(uuid)}
            if action == "rebuild" or (action == "reboot_hard" and values["power_state"] != PowerState.RUNNING):
                values["vm_state"] = VmState.ERROR  # the guest is gone or half made: say so
            await self._report(ctx, uuid, action, False, values, fault_of(exc))
            return
        await self._report(ctx, uuid, action, True,
                           {"vm_state": vm_state, "power_state": await self._observed_power(uuid)}, None)

    async def _act(self, instance: dict[str, Any], action: str, args: dict[str, Any]) -> str:
        """Carry out `action`; returns the vm_state the server is in afterwards."""
        uuid = str(instance["uuid"])
        d = self.driver
        if action == "stop":
            await d.power_off(uuid, self.shutdown_timeout)
            return VmState.STOPPED
        if action == "start":
            await d.power_on(uuid)
            return VmState.ACTIVE
        if action in ("reboot", "reboot_hard"):
            how = await d.reboot(uuid, hard=action == "reboot_hard", clean_timeout=self.shutdown_timeout)
            LOG.info("instance %s rebooted (%s)", uuid, how)
            return VmState.ACTIVE
        if action == "pause":
            await d.pause(uuid)
            return VmState.PAUSED
        if action == "unpause":
            await d.unpause(uuid)
            return VmState.ACTIVE
        if action == "suspend":
            await d.suspend(uuid)
            return VmState.SUSPENDED
        if action == "resume":
            await d.resume(uuid)
            return VmState.ACTIVE
        if action == "rebuild":
            return await self._rebuild(instance)
        raise errors.Invalid(reason=f"unknown action {action!r}")

    async def _rebuild(self, instance: dict[str, Any]) -> str:
        """A fresh guest from the (maybe new) image: the old domain and overlay go first.
        A server that was stopped stays stopped, as Nova."""
        uuid = str(instance["uuid"])
        was_stopped = instance.get("vm_state") == VmState.STOPPED
        await self.driver.destroy(uuid)
        await self.driver.remove_files(uuid)
        await self._spawn_guest(instance)
        if was_stopped:
            await self.driver.power_off(uuid)
            return VmState.STOPPED
        return VmState.ACTIVE

    async def _observed_power(self, uuid: str) -> int:
        try:
            return await self.driver.power_state(uuid)
        except errors.InstanceNotFound:
            return PowerState.NOSTATE
        except Exception as exc:  # noqa: BLE001 - a report without the power state is still a report
            LOG.warning("power state of %s unknown: %s", uuid, exc)
            return PowerState.NOSTATE

    async def _report(self, ctx: RequestContext, uuid: str, action: str, ok: bool, values: dict[str, Any],
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
