"""The compute worker (topic `compute.<host>`): strategy over the libvirt driver.

It never opens a database: every state change goes to the cell conductor over
RPC. Each instance flow is validate -> lock (per instance) -> check (the
conductor's expected_task_state) -> act (driver).

Start-up order: `start()` connects the hypervisor (a host that cannot run
guests fails here, loudly). The conductor may start after us, and
cells.service_process.Service only joins the directory after `start()`, so the first
conductor exchange (resource report, reconciliation) is the first thing
`background()` does, retrying until the conductor answers. Builds that arrive
meanwhile wait for it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from cells import errors, metrics
from cells.config import ClusterConfig, ServiceSpec
from cells.context import RequestContext, admin_context
from cells.lifecycle import USER_ACTIONS, Event, State, observed_power
from cells.objects.instance import PowerState, TaskState, VmState
from cells.objects.records import InstanceRecord
from cells.rpc.liveness import FENCED
from cells.rpcapi import Caller
from cells.rpcapi.conductor import ConductorAPI
from cells.rpcapi.move_methods import DiskCopyAPI
from cells.rpcapi.volume import VolumeConductorAPI
from node.compute.driver import LibvirtDriver, embed_uri_for_host
from node.compute.guest_actions import SHUTDOWN_TIMEOUT, GuestActions, fault_of
from node.compute.guest_moves import GuestMoves
from node.compute.guest_volumes import VolumeAttachments
from node.compute.interface_hotplug import GuestInterfaces
from node.compute.remote_consoles import ConsoleHandlers, RemoteConsoles
from node.compute.server_snapshots import GuestSnapshots
from node.compute.spawner import GuestSpawner
from node.imagecache import ImageCache, ImageFetcher, image_store_client
from node.locks import KeyedLocks
from node.network.agent import NetworkAgent

LOG = logging.getLogger(__name__)
T = TypeVar("T")

SYNC_INTERVAL = 5.0  # seconds between power-state sweeps (the safety net behind domain events)
MIN_SYNC_GAP = 1.0  # a burst of domain events costs at most one sweep per this many seconds
REPORT_INTERVAL = 60.0  # resources are re-reported so a conductor that lost them learns them again
RETRY_MAX_DELAY = 5.0
CONDUCTOR_WAIT = 60.0  # seconds a build's report waits for an unreachable (restarting) conductor
INTERRUPTED = "Build interrupted: compute service restarted"
ACTION_INTERRUPTED = "{action} interrupted: compute service restarted"
HEALTHY = "ok"  # the heartbeat's meta "health" when the driver's calls are not stuck
# task state of a server action -> the action (a restart clears the ones it no longer holds)
ACTION_OF_TASK = {a.task_state: name for name, a in USER_ACTIONS.items()}
# a guest lost with the process is defined again (a soft-deleted one too: a restore starts it)
REDEFINABLE = (VmState.ACTIVE, VmState.STOPPED, "resized", VmState.SOFT_DELETED, VmState.SHELVED)
_RESULT_POWER = {VmState.ACTIVE: PowerState.RUNNING, VmState.STOPPED: PowerState.SHUTDOWN,
                 VmState.PAUSED: PowerState.PAUSED, VmState.SOFT_DELETED: PowerState.SHUTDOWN,
                 VmState.SHELVED: PowerState.SHUTDOWN, VmState.SHELVED_OFFLOADED: PowerState.NOSTATE}
# actions that swap the guest's definition for another: interrupted, the power state cannot tell which runs
SWAPPING = frozenset({"rescue", "unrescue"})


def interrupted_action(action: str, actual: int | None) -> tuple[bool, dict[str, Any]]:
    """(ok, values) to report for a server action a previous process left in flight, from
    the domain as it is now (`actual` None: no domain). Pure. It succeeded when the guest
    is where the action leads (a stop whose guest is off); else it failed, and a rebuild
    that left no running guest is in error, as a failed rebuild is. An interrupted rescue or unrescue
    is in error whatever runs: the running guest may be either definition."""
    observed = PowerState.NOSTATE if actual is None else actual
    for result in USER_ACTIONS[action].results:
        if _RESULT_POWER.get(result) == observed and action not in SWAPPING:
            return True, {"vm_state": result, "power_state": observed}
    if action == "rebuild" or action in SWAPPING:
        return False, {"vm_state": VmState.ERROR, "power_state": observed}
    return False, {"power_state": observed}
# failures that would fail the same way on any host: no point rescheduling
NOT_RETRYABLE: tuple[type[Exception], ...] = (errors.ImageChecksumMismatch, errors.ImageNotFound, errors.Invalid)


def power_differs(inst: Mapping[str, Any], actual: int | None) -> bool:
    """Whether the hypervisor's view (`actual` None: no domain) changes the record: the lifecycle's
    policy (cells/lifecycle.py observed_power), asked before a power_observed event is sent."""
    state = State(str(inst.get("vm_state") or ""), inst.get("task_state"), int(inst.get("power_state") or 0))
    return observed_power(state, actual) != state


def _is_deleted(inst: Mapping[str, Any]) -> bool:
    return bool(inst.get("deleted")) or inst.get("vm_state") == VmState.DELETED \
        or inst.get("task_state") == TaskState.DELETING


class ComputeManager(ConsoleHandlers):  # console_*: node/compute/remote_consoles.py
    """The worker's own flows (build, delete, reconciliation, power sweeps) and its collaborators,
    made when the service starts (they talk to the conductor and other computes):
    server actions (node/compute/guest_actions.py), moves (node/compute/guest_moves.py), volume
    attachments (node/compute/guest_volumes.py). RPC methods of theirs delegate to them."""

    actions: GuestActions
    moves: GuestMoves
    volumes: VolumeAttachments

    def __init__(self, cluster: ClusterConfig, spec: ServiceSpec, *, driver: LibvirtDriver | None = None,
                 images: ImageCache | None = None, pool: concurrent.futures.ThreadPoolExecutor | None = None,
                 fetcher: ImageFetcher | None = None) -> None:
        """`pool`, `fetcher`: the libvirt thread pool and the image store's client (its one login), shared by
        the simulated hosts of one process (tools/serve_simulated.py); the process closes them."""
        self.host = spec.host
        opts = spec.options
        base = os.path.join(cluster.state_dir, "hosts", spec.host)
        self.driver = driver or LibvirtDriver(embed_uri_for_host(str(opts.get("virt_uri") or "test:///default"),
                                                                 os.path.abspath(base)),
                                              str(opts.get("virt_type") or "auto"),
                                              instances_dir=os.path.join(base, "instances"), pool=pool)
        self.images = images or ImageCache(
            os.path.join(base, "images"), fetcher or image_store_client(cluster), owns_fetcher=fetcher is None)
        host_spec = next((h for h in cluster.hosts if h.name == spec.host), None)
        self.network = NetworkAgent.from_options(  # VIF plugging: node/network/agent.py
            spec.host, os.path.join(base, "network"), opts, str(opts.get("virt_uri") or "test:///default"),
            host_spec.address if host_spec is not None else "127.0.0.1")
        self.sync_interval = float(opts.get("sync_interval", SYNC_INTERVAL))
        self.shutdown_timeout = float(opts.get("shutdown_timeout", SHUTDOWN_TIMEOUT))
        self._conductor: ConductorAPI | None = None
        self._view: Any = None  # our directory view (cells/rpc/directory.py): fence verdicts in, health out
        self.heartbeat_interval = cluster.heartbeat_interval
        self._locks = KeyedLocks()
        self.spawner = GuestSpawner(self.driver, self.images, self.network)  # builds, rebuilds, moves
        self.snapshots = GuestSnapshots(self.driver, self._locks)  # createImage
        self.consoles = RemoteConsoles(self.driver)  # serial and VNC consoles, relayed by the API
        self._building: set[str] = set()  # builds received, from arrival to end (guards reconciliation)
        self._ready = asyncio.Event()  # set once the start-up reconciliation is done
        self._wake = asyncio.Event()  # a domain event asks for an early power sweep

    @property
    def conductor(self) -> ConductorAPI:
        if self._conductor is None:
            raise errors.RpcError(reason="compute manager not started")
        return self._conductor

    # --- service hooks -------------------------------------------------------

    async def start(self, service: Caller) -> None:
        self._conductor = ConductorAPI(service)
        self._view = getattr(service, "view", None)
        self.actions = GuestActions(self.host, self.driver, self.spawner, self._conductor, self._locks,
                                    self.shutdown_timeout)
        self.moves = GuestMoves(self.host, self.driver, self.spawner, self.images, self.network,
                                DiskCopyAPI(service), self._locks, self.shutdown_timeout)
        self.volumes = VolumeAttachments(self.driver.volumes, VolumeConductorAPI(service), self._locks)
        self.interfaces = GuestInterfaces(self.driver, self.network, self._locks)  # os-interface
        self.spawner.volumes = VolumeConductorAPI(service)  # a boot-from-volume's root export
        await self.driver.connect()
        await self.images.start()
        self.driver.on_lifecycle = self._on_lifecycle
        await self.network.start(service, self._conductor)

    async def background(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._report_health())
            await self._sweeps()

    async def _sweeps(self) -> None:
        await self._sync_with_conductor()
        await self.images.publish_usage()
        last_report = time.monotonic()
        while True:
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel racing the event
                async with asyncio.timeout(self.sync_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if self.fenced():
                    await self._rejoin()
                await self._sync_power_states()
                await self.driver.power.trim_console_logs()  # a guest writing forever must not fill the disk
                await self.consoles.sweep()  # sessions whose API process went away
                if time.monotonic() - last_report > REPORT_INTERVAL:
                    await self._report_resources()
                    await self.network.refresh()  # repairs what a lost refresh_network cast left stale
                    await self.spawner.prune_image_cache()
                    last_report = time.monotonic()
            except Exception:  # the sweep is a safety net: it must never take the worker down
                LOG.exception("power state sweep failed")
            await asyncio.sleep(MIN_SYNC_GAP)

    async def _report_health(self) -> None:
        """Every heartbeat: whether our libvirt calls are stuck (meta "health" on the next beat),
        so the scheduler avoids this host and status shows why, instead of it beating as fine."""
        last = ""
        while True:
            health = self.driver.health() or HEALTHY
            if health != last and self._view is not None:
                if health != HEALTHY:
                    LOG.error("compute %s unhealthy: %s", self.host, health)
                elif last:
                    LOG.warning("compute %s healthy again", self.host)
                self._view.set_meta(health=health)
                last = health
            await asyncio.sleep(self.heartbeat_interval)

    def fenced(self) -> bool:
        """A conductor says we were declared dead (its heartbeat's meta "hosts")."""
        if self._view is None:
            return False
        return any((m.meta.get("hosts") or {}).get(self.host) == FENCED for m in self._view.members("conductor"))

    async def _rejoin(self) -> None:
        """Declared dead while we were away (frozen, partitioned): our builds went elsewhere, our
        servers may have been evacuated or deleted. Reconcile with the cell DB (guests whose
        records are finished elsewhere are destroyed) before serving again, then say so."""
        LOG.warning("compute %s was declared dead: reconciling before it serves again", self.host)
        await self._reconcile()
        await self.conductor.host_rejoined(admin_context(), self.host)
        LOG.warning("compute %s reconciled and rejoined", self.host)

    def _on_lifecycle(self, uuid: str) -> None:
        """A domain changed state: sweep early, unless one of our own flows changed it (a build
        starting its guest, a delete destroying it): the sweep skips instances in a flow anyway, and
        a burst of boots would otherwise re-read every instance of the host each MIN_SYNC_GAP."""
        if uuid not in self._building and not self._locks.busy(uuid):
            self._wake.set()

    async def stop(self) -> None:
        """Close connections; guests keep running (they outlive the worker)."""
        self.driver.on_lifecycle = None
        await self.consoles.close_all()
        await self.network.stop()
        await self.images.close()
        await self.driver.close()

    async def _sync_with_conductor(self) -> None:
        """Report resources, then reconcile the host with the records: retried until the conductor answers."""
        await self._until_answered("resource report", self._report_resources)
        await self._until_answered("reconciliation", self._reconcile)
        await self._until_answered("rejoin", self._rejoined)  # fenced while we were down: no longer
        await self._until_answered("network sync", self.network.report_and_sync)
        self._ready.set()
        LOG.info("compute %s ready", self.host)

    async def _rejoined(self) -> None:
        try:
            await self.conductor.host_rejoined(admin_context(), self.host)
        except errors.UnknownMethod:  # a conductor of an older release: it fences nobody
            pass
        except errors.RpcError:
            raise  # not answered: asked again
        except errors.CellcloudError as exc:  # answered, and refused: serving matters more than the fence
            LOG.error("compute %s: host_rejoined refused: %s", self.host, exc)

    async def _report_resources(self) -> None:
        resources = await self.driver.host_resources()
        await self.conductor.compute_node_update(admin_context(), self.host, resources)

    # --- RPC surface (cells/rpcapi/compute.py) ---------------------------------

    async def build_and_run_instance(self, ctx: RequestContext, instance: dict[str, Any]) -> None:
        uuid = str(instance["uuid"])
        self._building.add(uuid)
        try:
            await self._ready.wait()
            async with self._locks(uuid):
                await self._build(_no_deadline(ctx), instance)
        finally:
            self._building.discard(uuid)

    async def refresh_network(self, ctx: RequestContext) -> None:
        await self.network.refresh()

    async def sync_network(self, ctx: RequestContext) -> None:
        if not self.network.enabled:
            raise errors.Conflict(reason=f"network plumbing is off on {self.host}: {self.network.reason}")
        await self.network.sync()

    async def terminate_instance(self, ctx: RequestContext, instance: dict[str, Any]) -> None:
        uuid = str(instance["uuid"])
        async with self._locks(uuid):
            await self._terminate(_no_deadline(ctx), uuid)

    async def run_instance_action(self, ctx: RequestContext, instance: dict[str, Any], action: str,
                                  args: dict[str, Any]) -> None:
        await self.actions.run(ctx, instance, action, args)

    async def get_console_output(self, ctx: RequestContext, uuid: str, length: int | None = None) -> str:
        return await self.actions.console_output(ctx, uuid, length)

    async def get_diagnostics(self, ctx: RequestContext, uuid: str) -> dict[str, Any]:
        """os-server-diagnostics: what the hypervisor says of the guest now (node/compute/diagnostics.py)."""
        return await self.driver.diagnostics(uuid)

    # createImage (node/compute/server_snapshots.py): the API makes, reads and drops the disk's snapshot file
    async def make_snapshot(self, ctx: RequestContext, uuid: str, image_id: str) -> dict[str, Any]:
        await self._ready.wait()
        return await self.snapshots.make_snapshot(uuid, image_id)

    async def read_snapshot(self, ctx: RequestContext, uuid: str, image_id: str, offset: int, length: int) -> bytes:
        return await self.snapshots.read_snapshot(uuid, image_id, offset, length)

    async def drop_snapshot(self, ctx: RequestContext, uuid: str, image_id: str) -> None:
        await self.snapshots.drop_snapshot(uuid, image_id)

    # moves (node/compute/guest_moves.py): each returns the guest's power state afterwards. A step
    # (and a volume's, below) resent after our restart waits for the start-up reconciliation: the
    # guest a previous process lost is defined again by then
    async def prep_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        await self._ready.wait()
        return await self.moves.prep_move(ctx, instance, migration)

    async def finish_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any],
                          disk_source: str | None = None) -> int | dict[str, int]:
        await self._ready.wait()
        return await self.moves.finish_move(ctx, instance, migration, disk_source)

    async def disk_info(self, ctx: RequestContext, uuid: str) -> list[dict[str, Any]]:
        return await self.moves.disk_info(ctx, uuid)

    async def read_disk(self, ctx: RequestContext, uuid: str, name: str, offset: int, length: int) -> bytes:
        return await self.moves.read_disk(ctx, uuid, name, offset, length)

    async def confirm_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        await self._ready.wait()
        return await self.moves.confirm_move(ctx, instance, migration)

    async def revert_move(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        await self._ready.wait()
        return await self.moves.revert_move(ctx, instance, migration)

    async def finish_revert(self, ctx: RequestContext, instance: dict[str, Any], migration: dict[str, Any]) -> int:
        await self._ready.wait()
        return await self.moves.finish_revert(ctx, instance, migration)

    async def rebuild_evacuated(self, ctx: RequestContext, instance: dict[str, Any],
                                migration: dict[str, Any]) -> int:
        await self._ready.wait()
        return await self.moves.rebuild_evacuated(ctx, instance, migration)

    # volumes (node/compute/guest_volumes.py)
    async def attach_interface(self, ctx: RequestContext, instance_uuid: str, vif: dict[str, Any]) -> None:
        await self._ready.wait()
        await self.interfaces.attach(ctx, instance_uuid, vif)

    async def detach_interface(self, ctx: RequestContext, instance_uuid: str, vif: dict[str, Any]) -> None:
        await self._ready.wait()
        await self.interfaces.detach(ctx, instance_uuid, vif)

    async def attach_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str,
                            connection_info: Any = None, device: str | None = None) -> dict[str, Any]:
        """`connection_info` is ignored (callers before RPC 1.4 send it): the conductor's record is used."""
        await self._ready.wait()
        return await self.volumes.attach(ctx, instance_uuid, volume_id, device)

    async def detach_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str) -> None:
        await self._ready.wait()
        await self.volumes.detach(ctx, instance_uuid, volume_id)

    async def extend_volume(self, ctx: RequestContext, instance_uuid: str, volume_id: str, new_size: int) -> None:
        await self._ready.wait()
        await self.volumes.extend(ctx, instance_uuid, volume_id, new_size)

    async def guest_inventory(self, ctx: RequestContext) -> dict[str, int]:
        """Instance uuid -> power state of every guest of ours the hypervisor holds (the operator's)."""
        return await self.driver.power_states()

    # --- flows -----------------------------------------------------------------

    async def _build(self, ctx: RequestContext, instance: dict[str, Any]) -> None:
        uuid = str(instance["uuid"])

        def report(event: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
            return lambda: self.conductor.instance_event(ctx, uuid, self.host, event)

        try:  # check: the lifecycle refuses when a delete (or anything else) raced the build; a resent
            # spawning finds the state its lost first send already set, which the lifecycle accepts
            await self._through_conductor_restart(f"build of {uuid}", report(Event.SPAWNING))
        except (errors.Conflict, errors.NotFound) as exc:
            LOG.info("build of %s abandoned: %s", uuid, exc)
            return
        except errors.CellcloudError as exc:  # conductor unreachable: the record stays building
            LOG.error("build of %s: cannot reach the conductor: %s", uuid, exc)
            return
        try:
            await self.spawner.spawn(instance)  # image (and an AMI's kernel/ramdisk) fetched and verified
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the build must end in a report
            await self._build_failed(ctx, uuid, exc)
            return
        try:  # resent, a spawned the lost first send applied is a Conflict: the record is ACTIVE already
            await self._through_conductor_restart(f"build of {uuid}", report(Event.SPAWNED))
        except errors.Conflict as exc:  # deleted while spawning: the terminate request (queued on our lock) cleans up
            LOG.info("instance %s changed while spawning: %s", uuid, exc)
        except errors.NotFound:
            LOG.info("instance %s vanished while spawning: removing its guest", uuid)
            await self._cleanup(uuid)
        except errors.CellcloudError as exc:
            await self._build_failed(ctx, uuid, exc)
        else:
            LOG.info("instance %s active on %s", uuid, self.host)

    async def _build_failed(self, ctx: RequestContext, uuid: str, exc: Exception) -> None:
        retryable = not isinstance(exc, NOT_RETRYABLE)
        LOG.warning("build of %s failed (%s): %s", uuid, "will reschedule" if retryable else "final", exc)
        await self._cleanup(uuid)
        try:  # resent, a report the lost first send applied is ignored as stale (flows/boot.py)
            await self._through_conductor_restart(f"failed build of {uuid}", lambda: self.conductor.instance_event(
                ctx, uuid, self.host, Event.SPAWN_FAILED, fault=fault_of(exc), retryable=retryable))
        except errors.CellcloudError as rpc_exc:
            LOG.error("could not report the failed build of %s: %s", uuid, rpc_exc)

    async def _terminate(self, ctx: RequestContext, uuid: str) -> None:
        try:
            await self.driver.destroy(uuid)
            await self.driver.remove_files(uuid)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the record in ERROR, not deleting forever
            LOG.error("could not destroy %s: %s", uuid, exc)
            try:
                await self.conductor.instance_event(ctx, uuid, self.host, Event.DELETE_FAILED, fault=fault_of(exc))
            except errors.CellcloudError as rpc_exc:
                LOG.error("could not record the failed delete of %s: %s", uuid, rpc_exc)
            return
        await self._retrying(lambda: self._destroyed(ctx, uuid), f"instance destroyed ({uuid})")
        await self._unplug()

    async def _destroyed(self, ctx: RequestContext, uuid: str) -> None:
        await self.conductor.instance_event(ctx, uuid, self.host, Event.DESTROYED)

    async def _unplug(self) -> None:
        try:  # the released ports' taps and DHCP entries go; a failure is repaired by the next start's sync
            await self.network.unplug()
        except Exception as exc:  # noqa: BLE001 - the guest is gone either way
            LOG.error("network unplug failed: %s", exc)

    async def _cleanup(self, uuid: str) -> None:
        try:
            await self.driver.destroy(uuid)
            await self.driver.remove_files(uuid)
        except Exception as exc:  # noqa: BLE001 - the failure being reported matters more; the sweep retries
            LOG.error("cleanup of %s failed: %s", uuid, exc)

    # --- reconciliation and power sync -------------------------------------------

    async def _reconcile(self) -> None:
        """After a restart: finish what the previous process left half done."""
        ctx = admin_context()
        instances = await self.conductor.instances_on_host(ctx, self.host)
        domains = set(await self.driver.list_instance_uuids())
        for inst in instances:
            uuid = str(inst["uuid"])
            if uuid in self._building:  # a build request already arrived for it: it is live, not interrupted
                continue
            try:
                async with self._locks(uuid):
                    await self._reconcile_one(ctx, inst, uuid in domains)
            except errors.RpcError:
                raise  # the conductor went away: start over once it answers
            except Exception:
                LOG.exception("reconciling %s failed", uuid)
        for uuid in domains - {str(i["uuid"]) for i in instances}:
            try:
                await self._reap_orphan(ctx, uuid)
            except errors.RpcError:
                raise
            except Exception:  # one stuck guest must not keep the worker from serving
                LOG.exception("reaping orphan domain %s failed", uuid)

    async def _reconcile_one(self, ctx: RequestContext, inst: InstanceRecord, has_domain: bool) -> None:
        uuid = str(inst["uuid"])
        if _is_deleted(inst):
            LOG.info("reconcile: %s was deleted: removing its guest", uuid)
            await self._terminate(ctx, uuid)
        elif inst.get("vm_state") == VmState.BUILDING:
            LOG.warning("reconcile: build of %s was interrupted: another host will try it", uuid)
            await self._cleanup(uuid)
            await self.conductor.instance_event(ctx, uuid, self.host, Event.SPAWN_FAILED, retryable=True,
                                                fault={"code": 500, "message": INTERRUPTED, "details": ""})
        elif inst.get("task_state") in ACTION_OF_TASK:
            await self._end_interrupted_action(ctx, inst, has_domain)
        elif not has_domain and inst.get("task_state") is None and inst.get("vm_state") in REDEFINABLE:
            await self._define_lost_guest(inst)
            if inst.get("vm_state") == VmState.ACTIVE:
                LOG.warning("reconcile: guest of active instance %s is gone: marking it stopped", uuid)
                await self.conductor.instance_event(ctx, uuid, self.host, Event.POWER_OBSERVED,
                                                    power_state=await self.actions.observed_power(uuid))

    async def _define_lost_guest(self, inst: Mapping[str, Any]) -> None:
        """A guest its record says is here whose definition the hypervisor lost (libvirt's test
        driver keeps its domains in the compute process: they die with it) is defined again from
        the record, shut off, as Nova's _init_instance makes a guest from the DB on a host's boot:
        a later start, attach or resize of the server then finds it. Only on the test hypervisor:
        a real one keeps its persistent definitions, and one that lost a guest's definition may
        have lost its disk too (defining it on a fresh disk would hide that); there the server
        stays SHUTOFF for the operator."""
        uuid = str(inst["uuid"])
        if not self.driver.is_test:
            LOG.error("reconcile: instance %s has no domain on %s: left stopped", uuid, self.host)
            return
        try:
            await self.spawner.spawn(dict(inst), start=False)  # the driver reads a plain copy
        except Exception as exc:  # noqa: BLE001 - one guest must not keep the worker from serving
            LOG.error("reconcile: could not define the lost guest of %s again: %s", uuid, exc)
        else:
            LOG.warning("reconcile: guest of %s was lost with the previous process: defined again, shut off", uuid)

    async def _end_interrupted_action(self, ctx: RequestContext, inst: InstanceRecord, has_domain: bool) -> None:
        """A server action the previous process held when it died: its task state would stay
        forever. End it as the domain is now."""
        uuid, action = str(inst["uuid"]), ACTION_OF_TASK[str(inst.get("task_state"))]
        actual = await self.actions.observed_power(uuid) if has_domain else None
        ok, values = interrupted_action(action, actual)
        LOG.warning("reconcile: %s of %s was interrupted: ending it (%s, %s)", action, uuid,
                    "done" if ok else "failed", values)
        fault = None if ok else {"code": 500, "message": ACTION_INTERRUPTED.format(action=action), "details": ""}
        await self.actions.report(ctx, uuid, action, ok, values, fault)

    async def _reap_orphan(self, ctx: RequestContext, uuid: str) -> None:
        """A domain of ours that no record on this host claims: destroy it once the
        conductor confirms (a build may have finished since the listing)."""
        if uuid in self._building or self._locks.busy(uuid):
            return
        async with self._locks(uuid):
            try:
                inst = await self.conductor.instance_get(ctx, uuid)
            except errors.InstanceNotFound:
                inst = None
            if inst is not None and inst.get("host") == self.host and not _is_deleted(inst):
                return
            # the source copy of a resize awaiting confirm (vm_state resized), or a move's new guest before the
            # record names this host (a task in flight): the confirm, revert or move decides, not the sweep
            if inst is not None and not _is_deleted(inst) and (
                    inst.get("vm_state") == "resized" or inst.get("task_state") is not None):
                return
            LOG.warning("destroying orphan domain of instance %s", uuid)
            await self._cleanup(uuid)
            if inst is not None and _is_deleted(inst) and inst.get("host") == self.host:
                await self._destroyed(ctx, uuid)

    async def _sync_power_states(self) -> None:
        """Compare every guest with its record and report differences (safety net behind events)."""
        ctx = admin_context()
        instances = await self.conductor.instances_on_host(ctx, self.host)
        actual = await self.driver.power_states()
        publish_guests(actual)
        for inst in instances:
            uuid = str(inst["uuid"])
            # an instance in a flow belongs to that flow; building/deleted ones are the reconciler's
            if uuid in self._building or self._locks.busy(uuid) or inst.get("task_state") is not None \
                    or inst.get("vm_state") in (VmState.BUILDING, VmState.DELETED) or _is_deleted(inst):
                continue
            observed = actual.get(uuid)
            if not power_differs(inst, observed):
                continue
            LOG.info("power sync: %s is %s", uuid, "gone" if observed is None else f"in power state {observed}")
            try:
                await self.conductor.instance_event(ctx, uuid, self.host, Event.POWER_OBSERVED, power_state=observed)
            except (errors.Conflict, errors.NotFound) as exc:  # an operation started meanwhile: it wins
                LOG.debug("power sync of %s skipped: %s", uuid, exc)
        for uuid in set(actual) - {str(i["uuid"]) for i in instances}:
            await self._reap_orphan(ctx, uuid)

    # --- helpers -------------------------------------------------------------------

    async def _until_answered(self, what: str, func: Callable[[], Awaitable[T]]) -> T:
        """Retried with a doubling, jittered pause: the hosts that a slow conductor failed together
        must not all ask again in the same instant (issue 21's start-up storm: ~2,000 dropped calls)."""
        delay = 0.1
        while True:
            try:
                return await func()
            except errors.CellcloudError as exc:
                pause = delay * random.uniform(0.5, 1.5)
                LOG.info("%s: conductor not answering yet (%s); retrying in %.1fs", what, exc, pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, RETRY_MAX_DELAY)

    async def until_ready(self) -> None:
        """Returns once the host has reported and reconciled with the conductor (serves builds from then)."""
        await self._ready.wait()

    async def _through_conductor_restart(self, what: str, func: Callable[[], Awaitable[T]]) -> T:
        """A build's report to the conductor, sent again while the conductor is unreachable (killed
        and restarting: its supervisor brings it back within seconds) for up to CONDUCTOR_WAIT. A
        build dropped here would stay BUILD for good: the restarted conductor's re-cast of it carries
        the key this worker has seen, so it is not run again."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + CONDUCTOR_WAIT
        delay = 0.2
        while True:
            try:
                return await func()
            except errors.RpcError as exc:
                if loop.time() + delay >= give_up:
                    raise
                LOG.warning("%s: conductor unreachable (%s); sending again in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)

    async def _retrying(self, func: Callable[[], Awaitable[None]], what: str, attempts: int = 3) -> None:
        """For retry-safe conductor calls whose loss would leave a record wrong."""
        for attempt in range(attempts):
            try:
                await func()
                return
            except errors.RpcError as exc:
                LOG.warning("%s failed (attempt %d): %s", what, attempt + 1, exc)
                await asyncio.sleep(0.2 * 2 ** attempt)
            except errors.CellcloudError as exc:  # answered, but refused: retrying will not change that
                LOG.info("%s: %s", what, exc)
                return
        LOG.error("%s: giving up after %d attempts", what, attempts)


def _no_deadline(ctx: RequestContext) -> RequestContext:
    """The cast's deadline bounded its delivery; the build itself (image download,
    QEMU start) may take longer. Keep the request id for tracing."""
    return dataclasses.replace(ctx, deadline=None)


POWER_STATE_NAMES = {v: k.lower() for k, v in vars(PowerState).items() if k.isupper()}


def publish_guests(power_states: dict[str, int]) -> None:
    """This host's guests by power state on its /metrics (every state shown, 0 when none)."""
    counts: dict[tuple[str, ...], float] = {}
    for state in power_states.values():
        key = (POWER_STATE_NAMES.get(state, "nostate"),)
        counts[key] = counts.get(key, 0) + 1
    metrics.set_states(metrics.GUESTS, counts, tuple((name,) for name in POWER_STATE_NAMES.values()))
