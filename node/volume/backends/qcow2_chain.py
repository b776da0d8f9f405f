"""qcow2 backing chains in the file backend's directory: read, walk and collect (blocking: run in a thread).

Names the chains use (all in one directory, so a backing file is named without a path):

    volume-<id>.raw|qcow2      a volume's current file (a qcow2 overlay once snapshotted or cloned)
    snapshot-<id>.raw|qcow2    a snapshot: the volume's data frozen when it was taken, read-only
    snapshot-<id>.deleted      the snapshot was deleted but a volume still reads through its file
    base-<id>.raw|qcow2        a volume's data frozen when a clone (<id>) was made from the volume
    *.part                     a step not finished (removed by reconcile at start-up)

Only files named `.qcow2` are parsed: a raw volume holds guest bytes, which may look like anything.
"""
from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Sequence

from node.volume.proc import CommandFailed

QCOW2_MAGIC = b"QFI\xfb"
TOMBSTONE = ".deleted"
BASE_PREFIX = "base-"
SNAPSHOT_PREFIX = "snapshot-"
PART = ".part"
MAX_BACKING_NAME = 1023  # qcow2's own limit


def header(path: str) -> tuple[str | None, int]:
    """(backing file name or None, virtual size) from a qcow2 file's header."""
    with open(path, "rb") as f:
        head = f.read(32)
        if len(head) < 32 or head[:4] != QCOW2_MAGIC:
            raise ValueError(f"{path} is not a qcow2 file")
        offset, size = struct.unpack(">QI", head[8:20])
        virtual = struct.unpack(">Q", head[24:32])[0]
        if not offset or not size or size > MAX_BACKING_NAME:
            return None, virtual
        f.seek(offset)
        return f.read(size).decode(errors="replace"), virtual


def backing_of(path: str) -> str | None:
    try:
        return header(path)[0]
    except (OSError, ValueError):
        return None


def virtual_size(path: str, fmt: str) -> int:
    return header(path)[1] if fmt == "qcow2" else os.path.getsize(path)


def is_qcow2_name(name: str) -> bool:
    return name.endswith((".qcow2", ".qcow2" + PART))


def backings(directory: str) -> dict[str, str | None]:
    """Every qcow2 file (unfinished ones too: they are about to read through their backing) -> its backing."""
    return {n: backing_of(os.path.join(directory, n)) for n in os.listdir(directory) if is_qcow2_name(n)}


def chain(directory: str, name: str, through_bases: bool = True) -> list[str]:
    """`name` and the files it reads through, top first (stops at a missing file or a loop; before a clone
    base unless `through_bases`: below it is the history of the volume the clone was made from)."""
    out: list[str] = []
    current: str | None = name
    while current and current not in out and os.path.exists(os.path.join(directory, current)):
        if not through_bases and current.startswith(BASE_PREFIX):
            break
        out.append(current)
        current = backing_of(os.path.join(directory, current)) if current.endswith(".qcow2") else None
    return out


def stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def collect(directory: str) -> list[str]:
    """Remove the deleted snapshots' and the clone bases' files that nothing reads through any more (a chain
    at a time, to a fixpoint), and the tombstones left without a file; the names removed."""
    removed: list[str] = []
    while True:
        names = set(os.listdir(directory))
        referenced = {b for b in backings(directory).values() if b}
        files = {stem(n): n for n in names if not n.endswith(PART) and not n.endswith(TOMBSTONE)}
        doomed = [n for n in names if not n.endswith(PART) and not n.endswith(TOMBSTONE) and n not in referenced
                  and (n.startswith(BASE_PREFIX) or (n.startswith(SNAPSHOT_PREFIX) and stem(n) + TOMBSTONE in names))]
        doomed += [n for n in names if n.endswith(TOMBSTONE) and stem(n) not in files]
        if not doomed:
            return removed
        for n in doomed:
            unlink_quietly(os.path.join(directory, n))
            removed.append(n)


def qemu_img(args: Sequence[str], timeout: float) -> None:
    argv = ["qemu-img", *args]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CommandFailed(argv, None, "") from None
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr.decode(errors="replace"))


def make_overlay(path: str, backing: str, backing_fmt: str, size: int) -> None:
    """A qcow2 at `path` reading through `backing` (a name in the same directory), `size` bytes large.
    -u: the backing is not opened (it may be renamed into place just after); the size is given."""
    qemu_img(["create", "-q", "-f", "qcow2", "-F", backing_fmt, "-b", backing, "-u", path, str(size)], timeout=60)


def reflinks_work(directory: str) -> bool:
    """Whether `cp --reflink=always` clones a file here (XFS, btrfs: yes; ext4, tmpfs: no)."""
    probe = os.path.join(directory, ".reflink-probe")
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
        done = subprocess.run(["cp", "--reflink=always", probe, probe + ".copy"], capture_output=True,
                              timeout=30, check=False)
        return done.returncode == 0
    finally:
        unlink_quietly(probe)
        unlink_quietly(probe + ".copy")


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
