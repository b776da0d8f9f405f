"""Name-filter flood benchmark: the API's request rate while a member floods GET /servers
with pathological name patterns, as a ratio to the rate without the flood.

Brings up a throw-away one-cell cluster (real processes, libvirt's test hypervisor),
boots servers whose names are the worst case for a backtracking matcher
("aaa...a!", 250 a's) beside ordinary ones, then measures for --seconds each:
  - baseline: --clients clients each doing GET /servers/{id} back to back
  - flood:    the same clients while --flooders more clients (same project) send
              GET /servers/detail?name=<pattern> back to back, cycling over
              (a+)+$, (a|aa)*b, (a*)*$, a*a*a*a*a*a*a*a*a*a*b, (\\w+\\s?)*$
and prints the clients' rate under the flood / their rate without it (goal >= 0.8).
With Python's re, the first flood request would hold the conductor for longer than the run.

    .venv/bin/python -m tools.bench.name_filter [--servers 20] [--clients 8] [--flooders 1] [--seconds 5] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

from tools.bench.boot import TEST_NODE, Api, image_id, lift_quota, token_for
from tools.devcluster import RunningCluster, running_cluster

EVIL_NAME = "a" * 250 + "!"
PATTERNS = [r"(a+)+$", r"(a|aa)*b", r"(a*)*$", r"a*a*a*a*a*a*a*a*a*a*b", r"(\w+\s?)*$"]


async def _hammer(api: Api, path: str, until: float) -> int:
    done = 0
    while time.monotonic() < until:
        async with api.s.get(api.base + path, headers=api.h) as r:
            assert r.status == 200, await r.text()
            await r.read()
        done += 1
    return done


async def _flood(api: Api, until: float) -> int:
    done = 0
    for pattern in itertools.cycle(PATTERNS):
        if time.monotonic() >= until:
            return done
        async with api.s.get(f"{api.base}/servers/detail?name={quote(pattern)}", headers=api.h) as r:
            assert r.status == 200, await r.text()
            await r.read()
        done += 1
    return done


async def _rate(api: Api, targets: list[str], clients: int, flooders: int, seconds: float) -> tuple[float, int]:
    until = time.monotonic() + seconds
    started = time.monotonic()
    counts = await asyncio.gather(*[_hammer(api, f"/servers/{targets[i % len(targets)]}", until)
                                    for i in range(clients)], *[_flood(api, until) for _ in range(flooders)])
    elapsed = time.monotonic() - started
    return sum(counts[:clients]) / elapsed, sum(counts[clients:])


async def measure(cluster: RunningCluster, servers: int, clients: int, flooders: int,
                  seconds: float, rounds: int) -> dict[str, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        token, project = await token_for(session, cluster)
        await lift_quota(session, cluster, project)
        api = Api(session, cluster, token)
        image = await image_id(session, cluster, token)
        ids = [await api.boot(EVIL_NAME if i % 2 == 0 else f"web-{i}", image) for i in range(servers)]
        await asyncio.gather(*(api.wait_active(i) for i in ids))
        await _rate(api, ids, clients, 0, 1.0)  # warm-up
        base: list[float] = []
        flooded: list[float] = []
        floods = 0
        for _ in range(rounds):  # interleaved A/B: a shared machine's drift hits both sides alike
            base.append((await _rate(api, ids, clients, 0, seconds))[0])
            rate, answered = await _rate(api, ids, clients, flooders, seconds)
            flooded.append(rate)
            floods += answered
        return {"base": sum(base) / rounds, "flooded": sum(flooded) / rounds, "floods": floods / (rounds * seconds),
                "spread": (max(base) - min(base)) / max(base)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=20, help="servers to boot, half named aaa...a!")
    parser.add_argument("--clients", type=int, default=8, help="clients doing GET /servers/{id}")
    parser.add_argument("--flooders", type=int, default=1, help="clients flooding the name filter")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (without, then with the flood)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cellcloud-bench-") as tmp:
        node = Path(tmp) / "testnode.xml"
        node.write_text(TEST_NODE)  # a test hypervisor big enough for the servers
        with running_cluster(Path(tmp) / "cluster", virt_uri=f"test://{node}") as cluster:
            r = asyncio.run(measure(cluster, args.servers, args.clients, args.flooders, args.seconds,
                                     args.rounds))
    print(f"GET /servers/{{id}} by {args.clients} clients, {args.servers} servers (half named 'a'*250+'!'), "
          f"{args.rounds} x {args.seconds:.0f} s per side, interleaved")
    print(f"  without the flood:        {r['base']:8.1f} req/s   (spread between rounds {r['spread']:.0%})")
    print(f"  while {args.flooders} member(s) flood: {r['flooded']:8.1f} req/s   "
          f"({r['floods']:.1f} pathological name filters/s answered)")
    print(f"  ratio flooded / without: {r['flooded'] / r['base']:.2f}   (goal >= 0.8)")


if __name__ == "__main__":
    main()
