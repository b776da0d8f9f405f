"""Disk copy benchmark (issue 8): a move's destination pulling a disk file from its source
over our RPC (node/compute/disks.py: read_disk chunks, written and sha256-checked as they
come), beside the same receive() reading the file directly (what the RPC costs), and a
plain shutil.copyfile (no check, no fsync) for reference, all in the same run.

The source's read_disk is served by its own process (as a compute is), over tcp loopback.
Prints MB/s for each chunk size and the ratio of RPC copy time to direct copy time.

    .venv/bin/python tools/bench/disk_copy.py [--mib 256] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from cells.context import RequestContext
from cells.rpc.client import RpcClient
from cells.rpc.server import RpcServer
from cells.rpcapi.move_methods import COMPUTE_METHODS
from node.compute import disks
from node.compute.driver import LibvirtDriver
from tools.devcluster import free_port

SURFACE = {m.name: m for m in COMPUTE_METHODS if m.name == "read_disk"}


class Source:
    """The source compute's read_disk, nothing else (the driver is never connected: reads are files)."""

    def __init__(self, instances_dir: str) -> None:
        self.driver = LibvirtDriver("test:///default", instances_dir=instances_dir)

    async def read_disk(self, ctx: RequestContext, uuid: str, name: str, offset: int, length: int) -> bytes:
        return await self.driver.disks.read_disk(uuid, name, offset, length)


def serve(address: str, instances_dir: str) -> None:
    async def main() -> None:
        server = RpcServer(address, Source(instances_dir), SURFACE)
        await server.start()
        await asyncio.Event().wait()
    asyncio.run(main())


async def rpc_copy(address: str, uuid: str, files: list[dict[str, object]], dest: Path, chunk: int) -> float:
    client = RpcClient()
    ctx = RequestContext(project="bench")

    async def read(name: str, offset: int, length: int) -> bytes:
        data = await client.call_address(address, "read_disk", {"uuid": uuid, "name": name, "offset": offset,
                                                                "length": length}, ctx, 30.0)
        assert isinstance(data, bytes)
        return data
    disks.CHUNK = chunk
    start = time.perf_counter()
    await disks.receive(uuid, str(dest), files, read)
    took = time.perf_counter() - start
    client.close()
    return took


def plain_copy(src: Path, dest: Path) -> float:
    start = time.perf_counter()
    shutil.copyfile(src, dest)
    return time.perf_counter() - start


async def direct_copy(src: Path, uuid: str, files: list[dict[str, object]], dest: Path, chunk: int) -> float:
    async def read(name: str, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(disks.read_chunk, str(src), offset, length)
    disks.CHUNK = chunk
    start = time.perf_counter()
    await disks.receive(uuid, str(dest), files, read)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="size of the disk file")
    parser.add_argument("--rounds", type=int, default=3, help="alternate local/RPC this many times")
    args = parser.parse_args()
    chunks = (1 << 20, disks.CHUNK, 8 << 20)
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        root, uuid = Path(tmp), str(uuidlib.uuid4())
        src = root / "src" / uuid / "disk"
        src.parent.mkdir(parents=True)
        block = os.urandom(1 << 20)  # incompressible; the same MiB repeated is fine for a copy
        with open(src, "wb") as f:
            f.writelines(block[i % 7:] + block[:i % 7] for i in range(args.mib))
        files = disks.describe(str(src.parent))
        address = f"tcp://127.0.0.1:{free_port()}"
        proc = multiprocessing.Process(target=serve, args=(address, str(root / "src")), daemon=True)
        proc.start()
        time.sleep(0.5)
        plain: list[float] = []
        direct: dict[int, list[float]] = {c: [] for c in chunks}
        rpc: dict[int, list[float]] = {c: [] for c in chunks}
        try:
            for n in range(args.rounds):  # interleaved so machine noise hits every kind alike
                plain.append(plain_copy(src, root / f"plain{n}"))
                (root / f"plain{n}").unlink()
                for c in chunks:
                    for runs, how in ((direct, "direct"), (rpc, "rpc")):
                        dest = root / f"{how}-{n}-{c}"
                        dest.mkdir()
                        runs[c].append(asyncio.run(rpc_copy(address, uuid, files, dest, c) if how == "rpc"
                                                   else direct_copy(src, uuid, files, dest, c)))
                        shutil.rmtree(dest)
        finally:
            proc.terminate()
    mb = args.mib * (1 << 20) / 1e6
    print(f"disk copy, {args.mib} MiB file, {args.rounds} rounds (medians), source in another process, tcp loopback")
    print(f"  shutil.copyfile (no check, no fsync)   {mb / statistics.median(plain):6.0f} MB/s")
    for c in chunks:
        took, base = statistics.median(rpc[c]), statistics.median(direct[c])
        print(f"  {c >> 20} MiB chunks: receive() reading the file {mb / base:6.0f} MB/s, over rpc read_disk"
              f" {mb / took:6.0f} MB/s, ratio rpc/direct time {took / base:4.2f}x")


if __name__ == "__main__":
    main()
