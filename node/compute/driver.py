"""The libvirt driver: the only virt driver. The URI picks the backend.

  test:///default           libvirt's in-process test hypervisor (the default, no QEMU)
  qemu:///embed?root=DIR    real QEMU guests, in-process driver, no daemon
  qemu:///system            libvirtd
  sim                       a simulated host (cluster.yaml `hosts: {simulated: N}`): a private
                            instance of the test hypervisor, sized as a big host (SIM_NODE), one per
                            host even when many hosts share a process (test:///default is shared
                            by every connection of a process; test:///FILE is not)

Every blocking libvirt call runs in a small bounded thread pool with a
timeout, so the event loop never waits on the hypervisor. Mechanism only:
what to do when something fails is the manager's business.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import grp
import hashlib
import json
import logging
import os
import pwd
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import libvirt  # type: ignore[import-untyped]

from cells import errors, logtrail
from cells.config import SIM_URI
from cells.objects.instance import PowerState
from node.compute import diagnostics, domain_schema, domain_xml
from node.compute.calls import CallTracker
from node.compute.disks import QEMU_IMG_TIMEOUT, GuestDisks, grow_disk, qemu_img, root_disk_bytes, virtual_size
from node.compute.domain_xml import DomainPaths
from node.compute.hotplug import VolumeHotplug
from node.compute.power import GuestPower, test_guest_booted

LOG = logging.getLogger(__name__)
T = TypeVar("T")

CALL_TIMEOUT = 30.0  # seconds for one libvirt call (QEMU's first capabilities probe takes ~4 s)
POOL_SIZE = 4
EMBED_USER = "libvirt-qemu"
BASES_FILE = "bases.json"  # in each instance dir: the cached images the guest needs
EMBED_ALIAS_DIR = "/run/cellcloud/embed"  # short symlinks to long embed roots (socket path limit)
EMBED_SOCKET_SUFFIX = len("/lib/qemu/domain-9999-cc-01234567-0123-012/monitor.sock")
# what qemu:///embed needs to run guests as root without a daemon (see HOST_NOTES)
EMBED_QEMU_CONF = 'user = "root"\ngroup = "root"\nstdio_handler = "file"\nremember_owner = 0\n'
SIM_NODE_FILE = "sim-node.xml"  # beside the host's instances dir
# what a simulated host's hypervisor reports: 64 cores, 256 GiB (the test driver's node definition)
SIM_NODE = """<?xml version="1.0"?>
<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><active>64</active><nodes>1</nodes>
       <sockets>1</sockets><cores>64</cores><threads>1</threads></cpu>
  <memory>268435456</memory>
</node>
"""

# Nova's mapping of libvirt states to the power states users see
POWER_STATES: dict[int, int] = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}

_event_loop_lock = threading.Lock()
_event_loop_started = False


def start_libvirt_event_loop() -> None:
    """Register libvirt's default event loop once per process and run it in a daemon
    thread: domain events and the embed driver's monitor need it."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # errors still raise libvirtError; this only stops libvirt printing them to stderr
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def hardware_virt_usable(dev_kvm: str = "/dev/kvm", cpuinfo: str = "/proc/cpuinfo") -> bool:
    """KVM only where the CPU shows vmx/svm: a /dev/kvm backed by a software nested
    hypervisor (kvm_pvm) exists without them, and guests crash on it."""
    if not os.path.exists(dev_kvm):
        return False
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            if flags & {"vmx", "svm"}:
                return True
    return False


def resolve_virt_type(uri: str, virt_type: str) -> str:
    if virt_type != "auto":
        if virt_type not in domain_xml.VIRT_TYPES:
            raise errors.Invalid(reason=f"virt_type must be auto, kvm, qemu or test, not {virt_type!r}")
        return virt_type
    if uri.startswith("test:") or uri == SIM_URI:
        return "test"
    return "kvm" if hardware_virt_usable() else "qemu"


def embed_root(uri: str) -> str | None:
    """ROOT of a qemu:///embed?root=ROOT URI, None for any other URI."""
    parts = urlsplit(uri)
    if parts.scheme != "qemu" or parts.path != "/embed":
        return None
    roots = parse_qs(parts.query).get("root")
    if not roots:
        raise errors.HypervisorUnavailable(uri=uri, reason="qemu:///embed needs ?root=DIR")
    return roots[0]


def embed_uri_for_host(uri: str, host_dir: str) -> str:
    """qemu:///embed without a root (or with a relative one) gets a root under the host's
    state dir: one embed root per compute worker, as libvirt wants."""
    parts = urlsplit(uri)
    if parts.scheme != "qemu" or parts.path != "/embed":
        return uri
    root = (parse_qs(parts.query).get("root") or ["embed"])[0]
    return f"qemu:///embed?root={os.path.join(host_dir, root)}" if not os.path.isabs(root) else uri


def prepare_embed_root(uri: str, root: str) -> None:
    """What the embedded QEMU driver needs before it can start guests."""
    for name, lookup in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
        try:
            lookup(EMBED_USER)
        except KeyError:
            raise errors.HypervisorUnavailable(
                uri=uri, reason=f"the {name} {EMBED_USER!r} does not exist (libvirt's QEMU driver needs it); "
                                f"create it with: groupadd --system {EMBED_USER}; useradd --system -g {EMBED_USER} "
                                f"-M -s /usr/sbin/nologin {EMBED_USER}") from None
    conf = Path(root) / "etc" / "qemu.conf"
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(EMBED_QEMU_CONF)


def short_embed_root(root: str, alias_dir: str = EMBED_ALIAS_DIR) -> str:
    """`root`, or a short symlink to it when QEMU's monitor socket under it would pass the
    108-byte limit of a UNIX socket path (ROOT/lib/qemu/domain-N-<name>/monitor.sock)."""
    root = os.path.abspath(root)
    if len(root) + EMBED_SOCKET_SUFFIX <= 107:
        return root
    os.makedirs(alias_dir, mode=0o700, exist_ok=True)
    alias = os.path.join(alias_dir, hashlib.sha256(root.encode()).hexdigest()[:16])
    if os.path.realpath(alias) != os.path.realpath(root):
        tmp = f"{alias}.{os.getpid()}"
        os.symlink(root, tmp)
        os.replace(tmp, alias)  # atomic: a stale alias of a vanished root is replaced
    return alias


def write_sim_node(host_dir: str) -> str:
    """The test-driver URI of a simulated host's private hypervisor, its node file written once."""
    node = Path(host_dir) / SIM_NODE_FILE
    if not node.exists():
        node.parent.mkdir(parents=True, exist_ok=True)
        node.write_text(SIM_NODE)
    return f"test://{node}"


def _is_no_domain(exc: libvirt.libvirtError) -> bool:
    return bool(exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def host_booted_at(stat: str = "/proc/stat") -> int | None:
    """When the host booted, epoch seconds (the kernel's btime); None where the kernel does not say."""
    try:
        with open(stat, encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class LibvirtDriver:
    """The connection, its bounded pool, domain definition and removal, and queries; the rest is
    its collaborators': `power` (node/compute/power.py), `disks` (node/compute/disks.py) and
    `volumes` (node/compute/hotplug.py)."""

    def __init__(self, uri: str = "test:///default", virt_type: str = "auto", *, instances_dir: str,
                 pool_size: int = POOL_SIZE, call_timeout: float = CALL_TIMEOUT,
                 pool: concurrent.futures.ThreadPoolExecutor | None = None) -> None:
        """`pool`: a pool shared with other drivers of this process (simulated hosts: a thread pool
        per host would be thousands of threads); it outlives this driver."""
        self.uri = uri
        self.virt_type = resolve_virt_type(uri, virt_type)
        self.instances_dir = instances_dir
        self.call_timeout = call_timeout
        self.is_test = uri.startswith("test:") or uri == SIM_URI
        self._owns_pool = pool is None
        self._pool = pool or concurrent.futures.ThreadPoolExecutor(pool_size, thread_name_prefix="libvirt")
        self._calls = CallTracker()
        self._conn: libvirt.virConnect | None = None
        self._callback_id: int | None = None
        # called on the event loop with the instance uuid when one of our domains changes state
        self.on_lifecycle: Callable[[str], None] | None = None
        self.power = GuestPower(self)
        self.disks = GuestDisks(self)
        self.volumes = VolumeHotplug(self)

    # --- plumbing ----------------------------------------------------------

    async def _run(self, func: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        loop = asyncio.get_running_loop()
        limit = timeout or self.call_timeout
        call_id, tracked = self._calls.track(func, limit)
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races the result
            async with asyncio.timeout(limit):
                # in the caller's context: what libvirt's thread logs carries the request id
                return await loop.run_in_executor(self._pool, logtrail.in_context(tracked), *args)
        finally:
            self._calls.given_up(call_id)

    def health(self) -> str:
        """"" when the hypervisor answers; else why not (calls stuck past their timeout, the pool full)."""
        return self._calls.health()

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            raise errors.HypervisorUnavailable(uri=self.uri, reason="not connected")
        return self._conn

    def instance_dir(self, uuid: str) -> str:
        return os.path.join(self.instances_dir, uuid)

    def domain(self, uuid: str) -> Any:
        """The instance's domain (blocking: run it in the pool); InstanceNotFound when there is none."""
        try:
            return self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                raise errors.InstanceNotFound(instance_id=uuid) from None
            raise

    # --- lifecycle of the driver -------------------------------------------

    async def connect(self) -> None:
        start_libvirt_event_loop()
        root = embed_root(self.uri)
        open_uri = self.uri
        if self.uri == SIM_URI:
            open_uri = await self._run(write_sim_node, os.path.dirname(os.path.abspath(self.instances_dir)))
        if root is not None:
            await self._run(prepare_embed_root, self.uri, root)
            open_uri = f"qemu:///embed?root={await self._run(short_embed_root, root)}"
        await self._run(os.makedirs, self.instances_dir, 0o755, True)
        try:
            self._conn = await self._run(libvirt.open, open_uri)
        except libvirt.libvirtError as exc:
            raise errors.HypervisorUnavailable(uri=self.uri, reason=str(exc)) from exc
        except TimeoutError:
            raise errors.HypervisorUnavailable(uri=self.uri, reason="connect timed out") from None
        loop = asyncio.get_running_loop()
        try:
            self._callback_id = await self._run(self._register_events, loop)
        except libvirt.libvirtError as exc:  # events are an optimisation: the periodic sync still runs
            LOG.warning("no domain events from %s: %s", self.uri, exc)
        LOG.info("connected to %s (virt_type %s)", self.uri, self.virt_type)

    def _register_events(self, loop: asyncio.AbstractEventLoop) -> int:
        def on_event(_conn: Any, dom: libvirt.virDomain, _event: int, _detail: int, _opaque: Any) -> None:
            uuid = domain_xml.uuid_from_name(dom.name())  # runs in libvirt's event thread
            if uuid is not None and self.on_lifecycle is not None:
                try:
                    loop.call_soon_threadsafe(self._emit, uuid)
                except RuntimeError:  # the loop closed: nobody is listening any more
                    pass

        return int(self.conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, None))

    def _emit(self, uuid: str) -> None:
        if self.on_lifecycle is not None:
            self.on_lifecycle(uuid)

    async def close(self) -> None:
        """Drop the connection; guests keep running (they outlive the worker)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            def close() -> None:
                if self._callback_id is not None:
                    try:
                        conn.domainEventDeregisterAny(self._callback_id)
                    except libvirt.libvirtError:
                        pass
                conn.close()
            try:
                await self._run(close)
            except (libvirt.libvirtError, TimeoutError) as exc:
                LOG.warning("closing %s: %s", self.uri, exc)
        if self._owns_pool:
            self._pool.shutdown(wait=False)

    # --- queries -------------------------------------------------------------

    async def host_resources(self) -> dict[str, int]:
        """The host's capacity, and when it booted (epoch seconds; os-hypervisors' uptime), where it says."""
        info = await self._run(self.conn.getInfo)  # [model, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
        usage = await self._run(shutil.disk_usage, self.instances_dir)
        booted_at = await self._run(host_booted_at)
        return {"vcpus": int(info[2]), "memory_mb": int(info[1]), "local_gb": int(usage.total // 1024 ** 3),
                **({"booted_at": booted_at} if booted_at is not None else {})}

    async def diagnostics(self, uuid: str) -> dict[str, Any]:
        """The guest's diagnostics in Nova's standard format (node/compute/diagnostics.py); InstanceNotFound
        when it has no domain."""
        def read() -> dict[str, Any]:
            return {**diagnostics.read(self.domain(uuid)), "hypervisor": str(self.conn.getType()).lower(),
                    "hypervisor_os": "linux"}
        return await self._run(read)

    async def power_state(self, uuid: str) -> int:
        """Raises InstanceNotFound when there is no domain for `uuid`."""
        def state() -> int:
            try:
                dom = self.conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError as exc:
                if _is_no_domain(exc):
                    raise errors.InstanceNotFound(instance_id=uuid) from None
                raise
            return POWER_STATES.get(dom.state()[0], PowerState.NOSTATE)
        return await self._run(state)

    async def power_states(self) -> dict[str, int]:
        """uuid -> power state of every domain of ours, in one pass (for the periodic sync)."""
        def states() -> dict[str, int]:
            out: dict[str, int] = {}
            for dom in self.conn.listAllDomains():
                uuid = domain_xml.uuid_from_name(dom.name())
                if uuid is None:
                    continue
                try:
                    out[uuid] = POWER_STATES.get(dom.state()[0], PowerState.NOSTATE)
                except libvirt.libvirtError as exc:
                    if not _is_no_domain(exc):  # vanished between list and state: skip it
                        raise
            return out
        return await self._run(states)

    async def list_instance_uuids(self) -> list[str]:
        """Instance uuids of our domains (running or not); foreign domains are ignored."""
        return sorted(await self.power_states())

    # --- actions -------------------------------------------------------------

    async def spawn(self, instance: dict[str, Any], image_path: str | None, *, kernel: str | None = None,
                    ramdisk: str | None = None, disk_ready: bool = False, start: bool = True,
                    root_volume: str | None = None) -> None:
        """Define and start the domain (`root_volume`: a volume's <disk> as the root disk, no image disk). On any failure whatever was made is removed
        and SpawnFailed raised. `disk_ready`: the root overlay is already in the instance dir
        (copied from a move's source, node/compute/disks.py, or kept from a guest whose
        definition was lost), resting on `image_path`. `start` False: defined, left shut off."""
        uuid = str(instance["uuid"])
        inst_dir = self.instance_dir(uuid)
        try:
            await self._run(os.makedirs, inst_dir, 0o755, True)
            paths = await self._disk_paths(instance, inst_dir, image_path, disk_ready)
            if root_volume is not None:
                paths = dataclasses.replace(paths, root_volume=root_volume)
            if kernel is not None:  # direct kernel boot (an AMI with kernel_id/ramdisk_id)
                props = (instance.get("image") or {}).get("properties") or {}
                paths = dataclasses.replace(paths, kernel=kernel, initrd=ramdisk,
                                            cmdline=str(props.get("os_command_line") or "console=ttyS0"))
            xml = domain_xml.build_domain_xml(instance, self.virt_type, paths)
            bases = [p for p in (image_path, kernel, ramdisk) if p]  # what the image cache must keep for us
            await self._run(self._note_bases_and_start, inst_dir, bases, xml, start)  # one thread hop for both
        except asyncio.CancelledError:
            raise  # the manager's restart reconciliation removes half-built guests
        except Exception as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            LOG.warning("spawn of %s failed: %s", uuid, reason)
            await self._cleanup_quietly(uuid)
            raise errors.SpawnFailed(instance_id=uuid, reason=reason) from exc

    def _note_bases_and_start(self, inst_dir: str, bases: list[str], xml: str, start: bool = True) -> None:
        Path(inst_dir, BASES_FILE).write_text(json.dumps(bases))
        self._define_and_start(xml, start)
        if start and self.is_test:
            test_guest_booted(inst_dir)

    def _define_and_start(self, xml: str, start: bool = True) -> None:
        # validated against libvirt's schema even on test:///, which would accept XML real QEMU refuses
        dom = domain_schema.define(self.conn, xml)
        if start:
            dom.create()

    async def _disk_paths(self, instance: dict[str, Any], inst_dir: str, image_path: str | None,
                          disk_ready: bool = False) -> DomainPaths:
        console = os.path.join(inst_dir, "console.log")
        if image_path is None:
            return DomainPaths(console_log=console)
        if not await self._run(os.path.isfile, image_path):
            raise FileNotFoundError(f"image file {image_path} is missing")
        fmt = base_format(instance)
        if self.is_test:  # the test hypervisor never reads disks: point at the cached base
            return DomainPaths(console_log=console, disk=image_path, disk_format=fmt)
        overlay = os.path.join(inst_dir, "disk")
        size = root_disk_bytes(instance.get("flavor") or {})
        if not disk_ready:
            base_size = await virtual_size(image_path, fmt)
            if size and size < base_size:  # a qcow2 image bigger inside than its file: the API saw only the file
                raise errors.Invalid(reason="Flavor's disk is too small for requested image.")
            await create_overlay(image_path, fmt, overlay, size)
        elif not await self._run(os.path.isfile, overlay):
            raise FileNotFoundError(f"the copied disk {overlay} is missing")
        else:
            await grow_disk(overlay, size)  # a resize to a larger flavor
        return DomainPaths(console_log=console, disk=overlay, disk_format="qcow2", backing=image_path,
                           backing_format=fmt)

    async def bases_in_use(self) -> set[str]:
        """Cached image files the guests of this host use (their overlays' bases, kernels, ramdisks)."""
        def scan() -> set[str]:
            used: set[str] = set()
            for bases in Path(self.instances_dir).glob(f"*/{BASES_FILE}"):
                try:
                    used.update(str(p) for p in json.loads(bases.read_text()))
                except (OSError, ValueError):
                    continue
            return used
        return await self._run(scan)

    async def destroy(self, uuid: str) -> None:
        """Stop and undefine the domain; a missing domain is fine (idempotent)."""
        await self._run(self._destroy_sync, uuid)

    def _destroy_sync(self, uuid: str) -> None:
        try:
            dom = self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if _is_no_domain(exc):
                return
            raise
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                # a suspended guest has a managed save image: it goes with the domain
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        except libvirt.libvirtError as exc:
            if not _is_no_domain(exc):  # gone meanwhile: that is what we wanted
                raise

    async def remove_files(self, uuid: str) -> None:
        """Remove the instance directory (overlay disk, console log)."""
        await self._run(shutil.rmtree, self.instance_dir(uuid), True)

    async def _cleanup_quietly(self, uuid: str) -> None:
        try:
            await self.destroy(uuid)
        except Exception as exc:  # noqa: BLE001 - keep the original failure: it is the one worth reporting
            LOG.warning("cleanup of domain %s failed: %s", uuid, exc)
        try:
            await self.remove_files(uuid)
        except Exception as exc:  # noqa: BLE001 - same: cleanup must not mask the failure
            LOG.warning("cleanup of files of %s failed: %s", uuid, exc)


async def create_overlay(base: str, base_format: str, overlay: str, size: int = 0,
                         timeout: float = QEMU_IMG_TIMEOUT) -> None:
    """A qcow2 overlay backed by the cached base image (which stays shared and untouched), `size`
    bytes big: the flavor's root disk (0: the base's size)."""
    await qemu_img("create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, overlay,
                   *([str(size)] if size else []), timeout=timeout)


def base_format(instance: dict[str, Any]) -> str:
    """The format libvirt and qemu-img read the instance's cached image in (unknown ones: raw)."""
    fmt = str((instance.get("image") or {}).get("disk_format") or "raw")
    return fmt if fmt in domain_xml.DISK_FORMATS else "raw"
