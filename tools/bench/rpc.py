"""RPC benchmark: our call round trip beside raw pyzmq, measured in the same run.

Each side's echo server runs in its own process (as services do). Prints p50/p99
round trip for sequential calls, pipelined calls/s and one-way casts/s, and the
ratios ours/raw. Goal (issue 2): p50 within 1.5x of the raw zmq.asyncio round trip.

    .venv/bin/python tools/bench/rpc.py [--calls 5000]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from typing import Any

import zmq
import zmq.asyncio

from cells.context import RequestContext
from cells.rpc import wire
from cells.rpc.client import RpcClient
from cells.rpc.principal import CONDUCTOR, callers
from cells.rpc.server import RpcServer
from tools.devcluster import free_port

SURFACE = wire.surface(wire.Method("echo", callers=callers(CONDUCTOR)),
                       wire.Method("note", cast=True, callers=callers(CONDUCTOR)))
PAYLOAD = {"uuid": "9d9f2a4e-1c5b-4b3a-8f7e-0a1b2c3d4e5f", "vm_state": "active", "task_state": None,
           "power_state": 1, "host": "node1", "flavor": {"vcpus": 1, "ram": 512, "disk": 1}}


class Echo:
    def __init__(self) -> None:
        self.notes = 0

    async def echo(self, ctx: RequestContext, value: Any) -> Any:
        return value

    async def note(self, ctx: RequestContext, value: Any) -> int:
        self.notes += 1
        return self.notes


def run_our_server(address: str) -> None:
    async def main() -> None:
        server = RpcServer(address, Echo(), SURFACE)
        await server.start()
        await asyncio.Event().wait()
    asyncio.run(main())


def run_raw_server(address: str) -> None:
    async def main() -> None:
        sock = zmq.asyncio.Context().socket(zmq.ROUTER)
        sock.bind(address)
        while True:
            frames = await sock.recv_multipart()
            await sock.send_multipart(frames)
    asyncio.run(main())


def pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


async def bench_raw(address: str, calls: int) -> dict[str, float]:
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.connect(address)
    body = wire.pack({"v": 1, "id": 0, "method": "echo", "args": {"value": PAYLOAD}})
    for _ in range(200):  # warm-up and connection set-up
        await sock.send(body)
        await sock.recv()
    rtts = []
    for _ in range(calls):
        t = time.perf_counter()
        await sock.send(body)
        wire.unpack(await sock.recv())
        rtts.append(time.perf_counter() - t)
    start = time.perf_counter()
    for _ in range(calls):
        await sock.send(body)
    for _ in range(calls):
        await sock.recv()
    pipelined = calls / (time.perf_counter() - start)
    sock.close(linger=0)
    return {"p50": pct(rtts, 0.5), "p99": pct(rtts, 0.99), "pipelined": pipelined}


async def bench_ours(address: str, calls: int) -> dict[str, float]:
    client = RpcClient()
    ctx = RequestContext(project="p")
    for _ in range(200):
        await client.call_address(address, "echo", {"value": PAYLOAD}, ctx, 5.0)
    rtts = []
    for _ in range(calls):
        t = time.perf_counter()
        await client.call_address(address, "echo", {"value": PAYLOAD}, ctx, 5.0)
        rtts.append(time.perf_counter() - t)
    start = time.perf_counter()
    await asyncio.gather(*(client.call_address(address, "echo", {"value": PAYLOAD}, ctx, 30.0)
                           for _ in range(calls)))
    pipelined = calls / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(calls):
        client.cast_address(address, "note", {"value": PAYLOAD}, ctx)
    # a call after the casts returns once the server has read everything before it
    await client.call_address(address, "echo", {"value": 0}, ctx, 30.0)
    casts = calls / (time.perf_counter() - start)
    client.close()
    return {"p50": pct(rtts, 0.5), "p99": pct(rtts, 0.99), "pipelined": pipelined, "casts": casts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate raw/ours this many times")
    args = parser.parse_args()
    raw_addr, our_addr = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    procs = [multiprocessing.Process(target=run_raw_server, args=(raw_addr,), daemon=True),
             multiprocessing.Process(target=run_our_server, args=(our_addr,), daemon=True)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    raw_runs, our_runs = [], []
    try:
        for _ in range(args.rounds):  # interleave so machine noise hits both alike
            raw_runs.append(asyncio.run(bench_raw(raw_addr, args.calls)))
            our_runs.append(asyncio.run(bench_ours(our_addr, args.calls)))
    finally:
        for p in procs:
            p.terminate()
    raw = {k: statistics.median(r[k] for r in raw_runs) for k in raw_runs[0]}
    ours = {k: statistics.median(r[k] for r in our_runs) for k in our_runs[0]}
    print(f"rpc round trip, {args.calls} calls x {args.rounds} rounds, server in another process, tcp loopback")
    print(f"  raw pyzmq (zmq.asyncio)  p50 {raw['p50'] * 1e6:7.0f} us  p99 {raw['p99'] * 1e6:7.0f} us"
          f"  pipelined {raw['pipelined']:8.0f}/s")
    print(f"  cellcloud rpc call       p50 {ours['p50'] * 1e6:7.0f} us  p99 {ours['p99'] * 1e6:7.0f} us"
          f"  pipelined {ours['pipelined']:8.0f}/s  casts {ours['casts']:8.0f}/s")
    print(f"  ratio ours/raw: p50 {ours['p50'] / raw['p50']:.2f}x (goal <= 1.5x)  p99 {ours['p99'] / raw['p99']:.2f}x"
          f"  pipelined throughput {ours['pipelined'] / raw['pipelined']:.2f}x")


if __name__ == "__main__":
    main()
