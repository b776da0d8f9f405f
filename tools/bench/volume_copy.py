"""Snapshot and clone benchmark (issue 18): the file backend's snapshot of a volume plus a volume cloned
from that snapshot (node/volume/backends/file.py), beside a plain full copy of the same file
(shutil.copyfile), in the same run and on the same filesystem, for each volume size (`--gib`, default 1
and 4 GiB) with `--written` MiB of data spread over it (the rest holes, as a volume a guest partly wrote).
Two backends are timed: the one this filesystem gets (`cow`: reflink copies where `cp --reflink=always`
works, else qcow2 overlays) and the sparse copy (`cp --reflink=auto --sparse=always`) the backend did
before. Prints seconds (median of rounds) and each one's ratio to the plain copy; the issue's goal is
<= 0.1x.

    .venv/bin/python -m tools.bench.volume_copy [--gib 1,4] [--written 256] [--rounds 3] [--dir DIR]
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


async def snapshot_and_clone(backend: FileBackend, vid: str) -> float:
    sid, cid = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    start = time.perf_counter()
    snap = await backend.create_snapshot(sid, vid)
    await backend.clone(cid, snap, 1)
    took = time.perf_counter() - start
    await backend.delete(cid)
    await backend.delete_snapshot(sid, vid)
    return took


async def one_round(directory: str, gib: int, written: int) -> dict[str, float]:
    backend = FileBackend(directory, "raw", capacity_gb=gib * 4)
    await backend.check()
    copying = FileBackend(directory, "raw", capacity_gb=gib * 4)
    await copying.check()
    copying.cow = "copy"  # the sparse copy of before, for comparison
    vid = str(uuidlib.uuid4())
    volume = await backend.create(vid, gib)
    await asyncio.to_thread(fill, volume.path, written, gib * GIB)
    out: dict[str, float] = {}
    start = time.perf_counter()
    await asyncio.to_thread(shutil.copyfile, volume.path, volume.path + ".plain")
    out["plain copy"] = time.perf_counter() - start
    os.unlink(volume.path + ".plain")
    out["sparse copy"] = await snapshot_and_clone(copying, vid)
    out[backend.cow] = await snapshot_and_clone(backend, vid)
    await backend.delete(vid)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", default="1,4", help="volume sizes in GiB")
    parser.add_argument("--written", type=int, default=256, help="MiB of data written into each volume")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the volumes go (default: a temp dir under var/)")
    args = parser.parse_args()
    base = args.dir or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                    "var")
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-volume-copy-") as directory:
        print(f"raw volumes on {directory}, {args.written} MiB written in each; snapshot + clone, "
              f"median of {args.rounds} rounds")
        for gib in (int(g) for g in args.gib.split(",")):
            rounds = [await one_round(directory, gib, args.written) for _ in range(args.rounds)]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            plain = med.pop("plain copy")
            cells = "  ".join(f"{k} {v:.3f}s ({v / plain:.3f}x)" for k, v in med.items())
            print(f"{gib:>3} GiB  plain copy {plain:.3f}s  {cells}")


if __name__ == "__main__":
    asyncio.run(main())
