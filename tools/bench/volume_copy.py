"""Snapshot and clone benchmark (issue 18): the file backend's snapshot of a 1 GiB volume and a volume
cloned from that snapshot (node/volume/backends/file.py: cp --reflink=auto --sparse=always, a .part
renamed when whole) beside a plain full copy of the same file (shutil.copyfile), in the same run and
on the same filesystem. Each is timed for a volume with `--written` MiB of data spread over it (the rest
holes, as a volume a guest has partly written). Prints seconds (median of rounds) and the ratio to the
plain copy; the issue's goal is <= 0.1x (copy-on-write). On a filesystem without reflinks (ext4) a
snapshot copies the written blocks: the ratio follows the data written, not the volume's size.

    .venv/bin/python -m tools.bench.volume_copy [--gib 1] [--written 0,64,512] [--rounds 3] [--dir DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid as uuidlib

from node.volume.backends.file import GIB, FileBackend

MIB = 1 << 20


def fill(path: str, written_mib: int, size: int) -> None:
    """`written_mib` MiB of random data in 1 MiB pieces spread evenly over the file; holes elsewhere."""
    if written_mib <= 0:
        return
    step = size // written_mib
    with open(path, "r+b") as f:
        for i in range(written_mib):
            f.seek(i * step)
            f.write(os.urandom(MIB))
        f.flush()
        os.fsync(f.fileno())


async def one_round(directory: str, gib: int, written: int) -> dict[str, float]:
    backend = FileBackend(directory, "raw", capacity_gb=gib * 4)
    await backend.check()
    vid, sid, cid = (str(uuidlib.uuid4()) for _ in range(3))
    volume = await backend.create(vid, gib)
    await asyncio.to_thread(fill, volume.path, written, gib * GIB)
    out: dict[str, float] = {}
    start = time.perf_counter()
    await asyncio.to_thread(shutil.copyfile, volume.path, volume.path + ".plain")
    out["plain copy"] = time.perf_counter() - start
    start = time.perf_counter()
    snap = await backend.create_snapshot(sid, vid)
    out["snapshot"] = time.perf_counter() - start
    start = time.perf_counter()
    await backend.clone(cid, snap, gib)
    out["clone from snapshot"] = time.perf_counter() - start
    for path in (volume.path + ".plain",):
        os.unlink(path)
    await backend.delete_snapshot(sid)
    await backend.delete(vid)
    await backend.delete(cid)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=int, default=1)
    parser.add_argument("--written", default="0,64,512", help="MiB of data written into the volume, per case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the volumes go (default: a temp dir under var/)")
    args = parser.parse_args()
    base = args.dir or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                    "var")
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-volume-copy-") as directory:
        print(f"{args.gib} GiB raw volume on {directory}; median of {args.rounds} rounds")
        print(f"{'written':>9} {'plain copy':>11} {'snapshot':>10} {'ratio':>6} {'clone':>8} {'ratio':>6}")
        for written in (int(w) for w in args.written.split(",")):
            rounds = [await one_round(directory, args.gib, written) for _ in range(args.rounds)]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            plain = med["plain copy"]
            print(f"{written:>6} MiB {plain:>10.3f}s {med['snapshot']:>9.3f}s {med['snapshot'] / plain:>5.2f}x "
                  f"{med['clone from snapshot']:>7.3f}s {med['clone from snapshot'] / plain:>5.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
