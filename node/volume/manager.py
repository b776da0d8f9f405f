"""The volume worker (topic `volume.<host>`): strategy over a storage backend and
export targets. It never opens a database: it reports to the conductor.

Options (cluster.yaml `hosts.<name>.volume`, passed in ServiceSpec.options):
    backend: file | lvm            (default file)
    format: raw | qcow2            (file backend; default raw: every target can serve it)
    volume_group: NAME             (lvm backend)
    capacity_gb: N                 (default: the size of the filesystem / volume group)
    targets: [local, tgt, nbd]     (preferred first; local only serves this host's computes)
    backend_name: NAME             (what a volume type's volume_backend_name matches; default the backend)
    iscsi_port / nbd_port: N       (fixed ports of the tgt/lio portal and the NBD server)

Start-up: the backend and every configured target are checked (a host that
cannot run one fails here, with the reason); then `background()` reports the
capacity and re-establishes the export of every volume attached or being
attached on this host, retrying until the conductor answers. With each report
it removes the exports no attachment needs any more (a server deleted with its
volumes attached releases them in the cell DB only).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Any

from cells import errors
from cells.config import ClusterConfig, ServiceSpec
from cells.context import RequestContext, admin_context
from cells.rpcapi import Caller
from cells.rpcapi.volume import VolumeConductorAPI
from node.imagecache import ImageCache, image_store_client
from node.locks import KeyedLocks
from node.volume.backends import Backend, VolumeStorage
from node.volume.backends.file import FileBackend
from node.volume.backends.lvm import LvmBackend
from node.volume.backends.qcow2_chain import unlink_quietly
from node.volume.proc import CommandFailed, run
from node.volume.targets import Target
from node.volume.targets.lio import LioTarget
from node.volume.targets.local import LocalTarget
from node.volume.targets.nbd import NbdTarget
from node.volume.targets.tgt import TgtTarget
from node.volume.upload import upload_file

LOG = logging.getLogger(__name__)
REPORT_INTERVAL = 30.0
RETRY_MAX_DELAY = 5.0
UPLOAD_CONVERT_TIMEOUT = 3600.0
DEFAULT_TARGETS = ("local", "tgt", "nbd")
DEFAULT_ISCSI_PORT = 3260
DEFAULT_NBD_PORT = 10809
TARGET_NAMES = ("local", "tgt", "nbd", "lio")
# volume states whose export must exist while the worker runs
EXPORTED_STATES = ("attaching", "in-use", "detaching")


def make_backend(opts: dict[str, Any], volumes_dir: str) -> Backend:
    kind = str(opts.get("backend") or "file")
    capacity = opts.get("capacity_gb")
    if kind == "file":
        return FileBackend(volumes_dir, str(opts.get("format") or "raw"),
                           int(capacity) if capacity is not None else None)
    if kind == "lvm":
        return LvmBackend(str(opts.get("volume_group") or "cellcloud"))
    raise errors.Invalid(reason=f"volume backend must be file or lvm, not {kind!r}")


def make_targets(opts: dict[str, Any], host: str, address: str, run_dir: str) -> dict[str, Target]:
    names = list(opts.get("targets") or DEFAULT_TARGETS)
    iscsi_port = int(opts.get("iscsi_port") or DEFAULT_ISCSI_PORT)
    nbd_port = int(opts.get("nbd_port") or DEFAULT_NBD_PORT)
    out: dict[str, Target] = {}
    for name in names:
        if name == "local":
            out[name] = LocalTarget(host)
        elif name == "tgt":
            out[name] = TgtTarget(address, iscsi_port, os.path.join(run_dir, "tgtd.log"))
        elif name == "nbd":
            out[name] = NbdTarget(address, nbd_port, os.path.join(run_dir, "nbd"))
        elif name == "lio":
            out[name] = LioTarget(address, iscsi_port)
        else:
            raise errors.Invalid(reason=f"volume target must be one of {', '.join(TARGET_NAMES)}, not {name!r}")
    if not out:
        raise errors.Invalid(reason="a volume host needs at least one export target")
    return out


class VolumeManager:
    def __init__(self, cluster: ClusterConfig, spec: ServiceSpec, *, backend: Backend | None = None,
                 targets: dict[str, Target] | None = None, images: ImageCache | None = None) -> None:
        self.host = spec.host
        opts = dict(spec.options)
        base = os.path.join(cluster.state_dir, "hosts", spec.host)
        self.addresses = {h.name: h.address for h in cluster.hosts}  # a connector admits its host's address
        address = self.addresses.get(spec.host, "127.0.0.1")
        self.backend = backend or make_backend(opts, os.path.join(base, "volumes"))
        self.targets = targets if targets is not None else make_targets(opts, spec.host, address,
                                                                        os.path.join(base, "run"))
        self.report_interval = float(opts.get("report_interval", REPORT_INTERVAL))
        self.backend_name = str(opts.get("backend_name") or self.backend.name)
        self.api_url = cluster.api.public_url
        # the images volumes are made from: fetched as the compute hosts fetch them, into its own cache
        self.images = images or ImageCache(os.path.join(base, "volume-images"), image_store_client(cluster))
        self._conductor: VolumeConductorAPI | None = None
        self._locks = KeyedLocks()
        self._started: list[Target] = []

    @property
    def conductor(self) -> VolumeConductorAPI:
        if self._conductor is None:
            raise errors.RpcError(reason="volume manager not started")
        return self._conductor

    # --- service hooks -----------------------------------------------------------

    async def start(self, service: Caller) -> None:
        self._conductor = VolumeConductorAPI(service)
        await self.backend.check()
        await self.backend.reconcile()
        await self.images.start()
        try:
            for target in self.targets.values():
                await target.start()
                self._started.append(target)
        except BaseException:
            await self.stop()
            raise
        LOG.info("volume host %s: backend %s, targets %s", self.host, self.backend.name, ", ".join(self.targets))

    async def background(self) -> None:
        await self._until_answered("capacity report", self._report)
        await self._until_answered("export re-establishment", self._reestablish_exports)
        while True:
            try:
                await self._remove_stale_exports()
            except errors.CellcloudError as exc:
                LOG.warning("stale export sweep failed: %s", exc)
            await asyncio.sleep(self.report_interval)
            try:
                await self._report()
            except errors.CellcloudError as exc:
                LOG.warning("capacity report failed: %s", exc)

    async def stop(self) -> None:
        """Tear down the exports and the daemons this worker started (they come back on the next start)."""
        for target in reversed(self._started):
            try:
                await target.stop()
            except Exception:
                LOG.exception("stopping target %s failed", target.name)
        self._started.clear()
        await self.images.close()

    async def _report(self) -> None:
        await self.conductor.volume_node_update(admin_context(), self.host, await self.volume_stats(admin_context()))

    async def _reestablish_exports(self) -> None:
        """After a (re)start: every volume attached here is exported again, by the target
        that served it (its connection_info stays valid: IQN, NBD name and paths are stable)."""
        ctx = admin_context()
        count = 0
        for vol in await self.conductor.volumes_on_host(ctx, self.host):
            if vol.get("status") not in EXPORTED_STATES:
                continue
            for att in vol.get("attachments") or []:
                info = att.get("connection_info") or {}
                name = (info.get("data") or {}).get("target")
                target = self.targets.get(str(name))
                if target is None:
                    continue  # the attach never got its export: its flow rolls back
                try:
                    async with self._locks(vol["id"]):
                        storage = await self.backend.locate(vol["id"])
                        host = att.get("instance_host")
                        await target.export(storage, {"host": host, "ip": self.addresses.get(str(host))})
                    count += 1
                except errors.CellcloudError as exc:
                    LOG.error("could not re-establish the export of volume %s: %s", vol["id"], exc)
        LOG.info("volume host %s: %d export(s) re-established", self.host, count)

    async def _remove_stale_exports(self) -> int:
        """Unexport what no attachment needs: the volume is not attaching/in-use/detaching any more, or
        its attachment went through another target. Each is re-checked under the volume's lock, which an
        export takes too: an attach that began after the first look keeps its export."""
        exported = [(vid, t) for t in self.targets.values() for vid in await t.exported()]
        if not exported:
            return 0
        ctx = admin_context()
        needed = _needed_exports(await self.conductor.volumes_on_host(ctx, self.host))
        removed = 0
        for vid, target in exported:
            if _needs(needed, vid, target.name):
                continue
            async with self._locks(vid):
                try:
                    again = _needed_exports([await self.conductor.volume_get(ctx, vid)])
                except errors.VolumeNotFound:
                    again = {}
                if _needs(again, vid, target.name):
                    continue
                await target.unexport(vid)
            removed += 1
            LOG.info("volume %s: stale %s export removed", vid, target.name)
        return removed

    # --- RPC surface (cells/rpcapi/volume.py SURFACE) -------------------------------

    async def volume_stats(self, ctx: RequestContext) -> dict[str, Any]:
        return {"capacity_gb": await self.backend.capacity_gb(), "backend": self.backend.name,
                "targets": list(self.targets), "backend_name": self.backend_name}

    async def create_volume(self, ctx: RequestContext, volume: dict[str, Any]) -> dict[str, Any]:
        """An empty volume, or a copy of the snapshot (`snapshot_id`) or volume (`source_volid`) it names,
        both on this host (the conductor places a copy beside its source)."""
        vid, size = str(volume["id"]), int(volume["size"])
        async with self._locks(vid):
            if volume.get("snapshot_id"):
                source = await self.backend.locate_snapshot(str(volume["snapshot_id"]))
                storage = await self.backend.clone(vid, source, size)
            elif volume.get("image"):  # downloaded into this worker's cache and verified first
                image = dict(volume["image"])
                path = await self.images.fetch(image)
                storage = await self.backend.import_image(vid, path, str(image.get("disk_format")), size)
            elif volume.get("source_volid"):
                src = str(volume["source_volid"])
                async with self._locks(src):
                    source = await self.backend.locate(src)
                    storage = await self.backend.clone(vid, source, size, live=await self._live(src))
            else:
                storage = await self.backend.create(vid, size)
        LOG.info("volume %s created (%d GiB, %s at %s)", vid, size, storage.disk_format, storage.path)
        return {"backend": self.backend.name, "disk_format": storage.disk_format}

    async def create_snapshot(self, ctx: RequestContext, snapshot: dict[str, Any]) -> None:
        sid, vid = str(snapshot["id"]), str(snapshot["volume_id"])
        async with self._locks(vid):
            storage = await self.backend.create_snapshot(sid, vid, live=await self._live(vid))
        LOG.info("snapshot %s of volume %s made at %s", sid, vid, storage.path)

    async def delete_snapshot(self, ctx: RequestContext, snapshot: dict[str, Any]) -> None:
        vid = str(snapshot.get("volume_id") or "") or None
        if vid is None:
            await self.backend.delete_snapshot(str(snapshot["id"]))
        else:
            async with self._locks(vid):  # it may be merged back into its volume
                await self.backend.delete_snapshot(str(snapshot["id"]), vid, live=await self._live(vid))
        LOG.info("snapshot %s deleted", snapshot["id"])

    async def _live(self, volume_id: str) -> bool:
        """Whether a guest or an export may be writing the volume now (then its file stays where it is).
        Asked under the volume's lock, which every export takes too."""
        for target in self.targets.values():
            if volume_id in await target.exported():
                return True
        try:
            vol = await self.conductor.volume_get(admin_context(), volume_id)
        except errors.VolumeNotFound:
            return False
        return vol.get("status") != "available"

    async def upload_volume(self, ctx: RequestContext, volume: dict[str, Any], image_id: str, api_url: str,
                            token: str, disk_format: str = "raw") -> None:
        """The volume's bytes PUT to the image API with the requesting user's token, as a raw or a qcow2
        image: the image store inspects, hashes and bounds them as any upload. Only to this cluster's own
        API."""
        vid = str(volume["id"])
        if api_url.rstrip("/") != self.api_url.rstrip("/"):
            raise errors.VolumeUploadFailed(volume_id=vid, reason="the image API named is not this cluster's")
        if disk_format not in ("raw", "qcow2"):
            raise errors.VolumeUploadFailed(volume_id=vid, reason=f"disk_format {disk_format!r} (raw or qcow2)")
        async with self._locks(vid):
            storage = await self.backend.locate(vid)
        url = f"{self.api_url.rstrip('/')}/image/v2/images/{image_id}/file"
        if storage.disk_format == "raw" and disk_format == "raw":
            await upload_file(storage.path, url, token, vid)
        else:  # a chain flattened (an image has no backing file), or raw bytes written as a standalone qcow2
            out = os.path.join(os.path.dirname(storage.path), f"upload-{vid}.{disk_format}.part")  # reconcile's if killed
            try:
                await run(["qemu-img", "convert", "-q", "-f", storage.disk_format, "-O", disk_format, storage.path,
                           out], timeout=UPLOAD_CONVERT_TIMEOUT)
                await upload_file(out, url, token, vid)
            except CommandFailed as exc:
                raise errors.VolumeUploadFailed(volume_id=vid, reason=f"converting to {disk_format} failed: {exc}") \
                    from None
            finally:
                await asyncio.to_thread(unlink_quietly, out)
        LOG.info("volume %s uploaded to image %s as %s", vid, image_id, disk_format)

    async def extend_volume(self, ctx: RequestContext, volume: dict[str, Any], new_size: int) -> None:
        vid = str(volume["id"])
        if isinstance(new_size, bool) or not isinstance(new_size, int) or new_size < 1:
            raise errors.Invalid(reason=f"new_size must be a positive number of GiB, not {new_size!r}")
        async with self._locks(vid):
            await self.backend.extend(vid, new_size)
        LOG.info("volume %s extended to %d GiB", vid, new_size)

    async def delete_volume(self, ctx: RequestContext, volume: dict[str, Any]) -> None:
        vid = str(volume["id"])
        async with self._locks(vid):
            for target in self.targets.values():
                await target.unexport(vid)
            await self.backend.delete(vid)
        LOG.info("volume %s deleted", vid)

    def choose_target(self, connector: dict[str, Any], disk_format: str = "raw") -> Target:
        """The first configured target that reaches the compute host (local only on this host) and serves
        the volume's format (one asked for by name is taken as is: it says why it cannot)."""
        wanted = connector.get("target")
        for name, target in self.targets.items():
            if wanted is None and disk_format not in target.formats:
                continue
            if (wanted is None or wanted == name) and target.reaches(connector):
                return target
        raise errors.VolumeExportFailed(volume_id="-", reason=f"no export target of {self.host} "
                                                              f"({', '.join(self.targets)}) reaches host "
                                                              f"{connector.get('host')!r} with a {disk_format} "
                                                              "volume")

    async def export_volume(self, ctx: RequestContext, volume: dict[str, Any],
                            connector: dict[str, Any]) -> dict[str, Any]:
        vid = str(volume["id"])
        async with self._locks(vid):
            storage: VolumeStorage = await self.backend.locate(vid)
            try:
                target = self.choose_target(connector, storage.disk_format)
            except errors.VolumeExportFailed as exc:
                raise errors.VolumeExportFailed(volume_id=vid, reason=exc.kwargs.get("reason", "")) from None
            info = await target.export(storage, connector)
            for other in self.targets.values():  # one host at a time: a move to a host another target
                if other is not target and vid in await other.exported():  # serves leaves nothing admitting
                    await other.unexport(vid)                              # the previous host
        LOG.info("volume %s exported by %s to %s", vid, target.name, connector.get("host"))
        return info

    async def unexport_volume(self, ctx: RequestContext, volume: dict[str, Any],
                              connection_info: dict[str, Any] | None) -> None:
        vid = str(volume["id"])
        name = ((connection_info or {}).get("data") or {}).get("target")
        async with self._locks(vid):
            for target in self.targets.values():
                if name is None or target.name == name:
                    await target.unexport(vid)

    # --- helpers ---------------------------------------------------------------------

    async def _until_answered(self, what: str, func: Any) -> None:
        delay = 0.1
        while True:
            try:
                await func()
                return
            except errors.RpcError as exc:
                LOG.info("%s: conductor not answering yet (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)


def _needed_exports(volumes: list[dict[str, Any]]) -> dict[str, set[str] | None]:
    """volume id -> the targets its attachment uses (None: any, its export is being made now)."""
    out: dict[str, set[str] | None] = {}
    for vol in volumes:
        if vol.get("status") not in EXPORTED_STATES:
            continue
        names: set[str] | None = set()
        for att in vol.get("attachments") or []:
            name = ((att.get("connection_info") or {}).get("data") or {}).get("target")
            if name is None:
                names = None
                break
            names.add(str(name))  # type: ignore[union-attr]
        out[str(vol["id"])] = names if vol.get("attachments") else None
    return out


def _needs(needed: dict[str, set[str] | None], volume_id: str, target: str) -> bool:
    if volume_id not in needed:
        return False
    names = needed[volume_id]
    return names is None or target in names


def _no_deadline(ctx: RequestContext) -> RequestContext:
    return dataclasses.replace(ctx, deadline=None)
