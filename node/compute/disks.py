"""A stopped guest's disk files moving to another host (resize and cold migration, issue 8),
LibvirtDriver.disks. Mechanism only, as power.py:

  source       disk_files(uuid): name, size and sha256 of each disk file of the guest,
               refused while the guest runs (the copy must be of a disk nobody writes);
               read_disk(uuid, name, offset, length): one chunk of one of those files
  destination  receive_disks(uuid, files, read, base, base_format): each file pulled chunk
               by chunk (the next one asked for while this one is written) into the
               instance dir under a temporary name, its size and sha256 checked, then
               renamed into place; the qcow2 root overlay rebased onto this
               host's own cached copy of its base image (`qemu-img rebase -u`: both hosts
               cache the same verified bits, named by the image's hash)

Hosts share nothing: the bytes travel over RPC (`read` fetches a chunk with the source's
read_disk), two chunks in memory at the most. The test hypervisor keeps no disk files:
disk_files is empty there and the destination makes the disk from the image as a build does.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import uuid as uuidlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

from cells import errors, imageformat
from node.compute.hypervisor import Hypervisor
from node.imagecache import _discard, _flush_and_close, _write_and_hash
from node.volume import proc

T = TypeVar("T")

DISK_NAMES = ("disk",)  # the instance dir's files that are guest disks (driver._disk_paths makes them)
CHUNK = 4 * 1024 * 1024  # bytes per read_disk call: milliseconds on a LAN, far inside its timeout
MAX_CHUNK = 16 * 1024 * 1024  # the most one read_disk answers (bounds the source's memory per call)
FILE_TIMEOUT = 600.0  # seconds to hash one disk file (the source) or to verify and place it (the destination)
QEMU_IMG_TIMEOUT = 60.0
QEMU_IMG_MAX_ADDRESS_SPACE = 1 << 30  # bytes (Nova's QEMU_IMG_LIMITS: 1 GiB of address space, 30 s of CPU)
QEMU_IMG_MAX_CPU_SECONDS = 30
GIB = 1 << 30
PARTIAL = ".part"
SHA256 = re.compile(r"^[0-9a-f]{64}$")

ChunkReader = Callable[[str, int, int], Awaitable[bytes]]  # (name, offset, length) -> at most length bytes


def _fail(uuid: str, reason: str) -> errors.DiskCopyFailed:
    return errors.DiskCopyFailed(instance_id=uuid, reason=reason)


def checked_uuid(uuid: Any) -> str:
    """An instance uuid fit to name a directory (RPC input: never a path)."""
    try:
        if str(uuidlib.UUID(str(uuid))) == str(uuid):
            return str(uuid)
    except ValueError:
        pass
    raise errors.Invalid(reason=f"{uuid!r} is not an instance uuid")


def disk_path(inst_dir: str, name: Any) -> str:
    if name not in DISK_NAMES:
        raise errors.Invalid(reason=f"{name!r} is not a guest disk (known: {', '.join(DISK_NAMES)})")
    return os.path.join(inst_dir, str(name))


def describe(inst_dir: str) -> list[dict[str, Any]]:
    """[{name, size, sha256}] of the guest disks present in `inst_dir` (blocking)."""
    files = []
    for name in DISK_NAMES:
        try:
            with open(os.path.join(inst_dir, name), "rb") as f:
                digest = hashlib.file_digest(f, "sha256")
                files.append({"name": name, "size": os.fstat(f.fileno()).st_size, "sha256": digest.hexdigest()})
        except FileNotFoundError:
            continue
    return files


def read_chunk(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


async def read_checked_chunk(path: str, offset: int, length: int) -> bytes:
    """One chunk of a file a peer reads over RPC: offset and length are remote input, checked, and
    the length bounded by MAX_CHUNK. FileNotFoundError is the caller's to name."""
    for what, value, low in (("offset", offset, 0), ("length", length, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise errors.Invalid(reason=f"{what} must be an integer >= {low}, not {value!r}")
    if length > MAX_CHUNK:
        raise errors.Invalid(reason=f"length {length} is over {MAX_CHUNK} bytes: read in chunks")
    return await asyncio.to_thread(read_chunk, path, offset, length)


def _spec(uuid: str, spec: Any) -> tuple[str, int, str]:
    """(name, size, sha256) of one entry of the source's disk_files, checked: it is remote input."""
    if not isinstance(spec, dict):
        raise _fail(uuid, f"bad disk description {spec!r}")
    name, size, sha = spec.get("name"), spec.get("size"), spec.get("sha256")
    if name not in DISK_NAMES or isinstance(size, bool) or not isinstance(size, int) or size < 0 \
            or not isinstance(sha, str) or not SHA256.match(sha):
        raise _fail(uuid, f"bad disk description {spec!r}")
    return str(name), size, sha


async def _chunks(uuid: str, name: str, size: int, read: ChunkReader) -> AsyncGenerator[bytes, None]:
    """The file's bytes in order, checked; the next chunk is already on its way while the
    caller writes this one (two chunks in memory at the most)."""
    def ask(offset: int) -> asyncio.Future[bytes]:
        return asyncio.ensure_future(read(name, offset, min(CHUNK, size - offset)))
    offset = 0
    nxt = ask(0) if size else None
    try:
        while nxt is not None:
            data, asked = await nxt, min(CHUNK, size - offset)
            if not isinstance(data, bytes) or not data or len(data) > asked:
                got = len(data) if isinstance(data, bytes) else type(data).__name__
                raise _fail(uuid, f"{name}: asked {asked} bytes at {offset}, got {got}")
            offset += len(data)
            nxt = ask(offset) if offset < size else None
            yield data
    finally:
        if nxt is not None:  # the copy failed or was cancelled: the read ahead is not wanted
            nxt.cancel()
            await asyncio.gather(nxt, return_exceptions=True)


async def receive(uuid: str, inst_dir: str, files: list[Any], read: ChunkReader) -> int:
    """Pull `files` (the source's disk_files) into `inst_dir`; returns the bytes copied. A file
    is in place only once its size and sha256 match; on any failure its partial copy goes."""
    total = 0
    for spec in files:
        name, size, want = _spec(uuid, spec)
        path = disk_path(inst_dir, name)
        tmp = path + PARTIAL
        f = await asyncio.to_thread(open, tmp, "wb")
        digest = hashlib.sha256()
        try:
            async with aclosing(_chunks(uuid, name, size, read)) as chunks:
                async for data in chunks:
                    await asyncio.to_thread(_write_and_hash, f, [data], digest)
            async with asyncio.timeout(FILE_TIMEOUT):
                await asyncio.to_thread(_flush_and_close, f)
            if digest.hexdigest() != want:
                raise _fail(uuid, f"{name}: sha256 {digest.hexdigest()} does not match the source's {want}")
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(_discard, f, tmp))
            raise
        total += size
    return total


class GuestDisks:
    """A guest's disk files (LibvirtDriver.disks): grown in place, described and read for a move's
    destination, received from a move's source."""

    def __init__(self, hypervisor: Hypervisor) -> None:
        self.hv = hypervisor

    async def grow_root(self, uuid: str, flavor: dict[str, Any]) -> bool:
        """A resize in place (same host): the stopped guest's root overlay grows to the new flavor's disk."""
        path = os.path.join(self.hv.instance_dir(uuid), "disk")
        if self.hv.is_test or not await self.hv._run(os.path.isfile, path):
            return False
        return await grow_disk(path, root_disk_bytes(flavor))

    def _running(self, uuid: str) -> bool:
        try:
            return bool(self.hv.domain(uuid).isActive())
        except errors.InstanceNotFound:  # no domain (lost with a restart): its files may still be here
            return False

    async def disk_files(self, uuid: str) -> list[dict[str, Any]]:
        """The stopped guest's disk files to copy ([] on the test hypervisor: it keeps none)."""
        uuid = checked_uuid(uuid)
        if self.hv.is_test:
            return []
        if await self.hv._run(self._running, uuid):
            raise errors.InstanceInvalidState(action="copy the disks of", instance_id=uuid, attr="power_state",
                                              state="running")
        async with asyncio.timeout(FILE_TIMEOUT):
            return await asyncio.to_thread(describe, self.hv.instance_dir(uuid))

    async def read_disk(self, uuid: str, name: str, offset: int, length: int) -> bytes:
        path = disk_path(self.hv.instance_dir(checked_uuid(uuid)), name)
        try:
            return await read_checked_chunk(path, offset, length)
        except FileNotFoundError:
            raise errors.InstanceNotFound(instance_id=uuid) from None

    async def receive_disks(self, uuid: str, files: list[Any], read: ChunkReader, base: str | None,
                            base_format: str) -> int:
        """Copy the source's `files` here (see receive); the root overlay then rests on `base`,
        this host's cached image. Returns the bytes copied."""
        inst_dir = self.hv.instance_dir(checked_uuid(uuid))
        await asyncio.to_thread(os.makedirs, inst_dir, 0o755, True)
        total = await receive(uuid, inst_dir, files, read)
        if any(isinstance(f, dict) and f.get("name") == "disk" for f in files):
            await _check_overlay(uuid, os.path.join(inst_dir, "disk"))
            if base is not None:
                await rebase_overlay(os.path.join(inst_dir, "disk"), base, base_format)
        return total


async def _check_overlay(uuid: str, path: str) -> None:
    """A peer's copy of a guest's root overlay is a plain qcow2 overlay, or it goes: an external data
    file or unknown features in it would have QEMU open host files here (every peer is suspect)."""
    found = await asyncio.to_thread(imageformat.inspect_file, path, overlay=True)
    reason = found.unsafe or (None if found.format == "qcow2" else f"it is {found.format}, not a qcow2 overlay")
    if reason:
        await asyncio.to_thread(_unlink_quietly, path)
        raise _fail(uuid, f"the copied disk is refused: {reason}")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def limited(argv: list[str]) -> list[str]:
    """`argv` under Nova's qemu-img limits (address space, CPU seconds): a crafted image header
    must not make qemu-img eat the host. prlimit (util-linux) sets them on the child alone."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise RuntimeError("prlimit (util-linux) is missing: qemu-img does not run without its resource limits")
    return [prlimit, f"--as={QEMU_IMG_MAX_ADDRESS_SPACE}", f"--cpu={QEMU_IMG_MAX_CPU_SECONDS}", *argv]


async def qemu_img(*args: str, timeout: float = QEMU_IMG_TIMEOUT) -> str:
    """Run `qemu-img ARGS` under limited(), returning its output; RuntimeError with its message
    when it fails, is killed by a limit or takes too long."""
    try:
        return await proc.run(limited(["qemu-img", *args]), timeout)
    except proc.CommandFailed as exc:
        what = f"timed out after {timeout}s" if exc.returncode is None else f"failed: {exc.stderr.strip()}"
        raise RuntimeError(f"qemu-img {args[0]} {what}") from None


def root_disk_bytes(flavor: dict[str, Any]) -> int:
    """The root disk a flavor gives (0: as big as the image, Nova's disk=0)."""
    return int(flavor.get("disk") or 0) * GIB


async def virtual_size(path: str, fmt: str) -> int:
    """What the guest sees of a disk file: a raw file's length, a qcow2 header's size."""
    if fmt == "raw":
        return (await asyncio.to_thread(os.stat, path)).st_size
    return int(json.loads(await qemu_img("info", "--output=json", "-f", fmt, path))["virtual-size"])


async def grow_disk(path: str, size: int) -> bool:
    """Grow a qcow2 disk to `size` bytes when it is smaller: a resize to a larger flavor gets the
    larger root disk (the guest grows its filesystem itself); never shrunk, as Nova."""
    if not size or size <= await virtual_size(path, "qcow2"):
        return False
    await qemu_img("resize", "-q", "-f", "qcow2", path, str(size))
    return True


async def rebase_overlay(overlay: str, base: str, base_format: str, timeout: float = QEMU_IMG_TIMEOUT) -> None:
    """Point a copied qcow2 overlay at this host's copy of its base. Unsafe mode (-u) only
    rewrites the header: right because the new base holds the same bits as the old one."""
    await qemu_img("rebase", "-q", "-u", "-f", "qcow2", "-b", base, "-F", base_format, overlay, timeout=timeout)
