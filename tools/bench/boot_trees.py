"""The boot burst of tools/bench/boot.py on several source trees at once, alternated (issue 22).

Each tree (a git worktree with its own .venv, e.g. the commit before a refactor and main) brings up
its own throw-away cluster with its own code, and all stay up; then `--rounds` rounds of one burst
per tree, the order reversed every round (A B, B A, ...), so a drift of the shared machine's load
hits every tree alike. Per tree it prints each burst and the medians: boots/s to ACTIVE and the CPU
ms per server by process, during the burst and with its deletes. CPU per server moves much less with
the machine's load than boots/s; ratios are to the first tree.

    .venv/bin/python -m tools.bench.boot_trees --tree base=/work/wt/base22 --tree main=. [--rounds 8]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

CONCURRENCY = 32


def serve(name: str) -> None:
    """In a tree's own venv and directory: its cluster up, then one burst per 'burst N' line on stdin,
    answered with one JSON line."""
    sys.path.insert(0, os.getcwd())  # this tree's code, not the driving tree's
    from tools.bench import boot
    from tools.devcluster import running_cluster

    async def bursts(cluster: Any) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY + 4)) as session:
            token, project = await boot.token_for(session, cluster)
            await boot.lift_quota(session, cluster, project)
            api, image = boot.Api(session, cluster, token), await boot.image_id(session, cluster, token)
            await api.wait_active(await api.boot("warm-up", image))  # fills the host's image cache
            print(json.dumps({"ready": True}), flush=True)
            loop = asyncio.get_running_loop()
            while (line := await loop.run_in_executor(None, sys.stdin.readline)).startswith("burst"):
                n = int(line.split()[1])
                cpu0 = boot.cpu_seconds(cluster)
                rate, cpu, errors = await boot.burst(cluster, api, image, n, CONCURRENCY)
                with_deletes = boot.per_boot(cpu0, boot.cpu_seconds(cluster), n)
                print(json.dumps({"rate": rate, "errors": errors, "cpu": cpu, "with_deletes": with_deletes}),
                      flush=True)

    with tempfile.TemporaryDirectory(prefix="cellcloud-bench-trees-") as tmp:
        node = Path(tmp) / "testnode.xml"
        node.write_text(boot.TEST_NODE)
        with running_cluster(Path(tmp) / "cluster", virt_uri=f"test://{node}", name=f"bt{name}") as cluster:
            asyncio.run(bursts(cluster))


def _short(process: str) -> str:
    return process.replace("cell1_", "").replace("_node1", "")


def drive(trees: list[tuple[str, Path]], rounds: int, n: int) -> None:
    procs = {name: subprocess.Popen([str(path / ".venv/bin/python"), str(Path(__file__).resolve()), "--serve", name],
                                    cwd=path, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for name, path in trees}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    try:
        for name, proc in procs.items():
            assert proc.stdout is not None and json.loads(proc.stdout.readline())["ready"], name
        for r in range(rounds):
            order = [name for name, _ in trees][::-1 if r % 2 else 1]
            for name in order:
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(f"burst {n}\n")
                proc.stdin.flush()
                out = json.loads(proc.stdout.readline())
                results[name].append(out)
                print(f"  round {r} {name:8} {out['rate']:5.0f} boots/s, {out['errors']} in ERROR, CPU ms/server "
                      f"{sum(out['cpu'].values()) * 1e3:5.2f}: " + " ".join(
                          f"{_short(k)} {v * 1e3:.2f}" for k, v in sorted(out["cpu"].items())), flush=True)
    finally:
        for proc in procs.values():
            if proc.stdin is not None:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
        for proc in procs.values():
            proc.wait(timeout=180)
    report(results, rounds, n)


def report(results: dict[str, list[dict[str, Any]]], rounds: int, n: int) -> None:
    def med(runs: list[dict[str, Any]], key: str, process: str | None = None) -> float:
        return float(statistics.median(sum(x[key].values()) if process is None else x[key].get(process, 0.0)
                                 for x in runs))

    first = next(iter(results))
    processes = sorted({p for runs in results.values() for x in runs for p in x["cpu"]})
    print(f"medians of {rounds} alternated bursts of {n} boots ({CONCURRENCY} clients); ratios to {first}")
    print(f"  {'tree':8} {'boots/s':>8} {'CPU ms/server':>14} {'with deletes':>13}  " +
          " ".join(f"{_short(p):>9}" for p in processes))
    for name, runs in results.items():
        rate = statistics.median(x["rate"] for x in runs)
        base_rate = statistics.median(x["rate"] for x in results[first])
        print(f"  {name:8} {rate:8.0f} {med(runs, 'cpu') * 1e3:14.2f} {med(runs, 'with_deletes') * 1e3:13.2f}  " +
              " ".join(f"{med(runs, 'cpu', p) * 1e3:9.2f}" for p in processes) +
              f"   ({rate / base_rate:.2f}x boots/s, {med(runs, 'cpu') / med(results[first], 'cpu'):.2f}x CPU)")
    # the bursts of one round ran seconds apart: their ratios see the least of the machine's drift
    for name, runs in list(results.items())[1:]:
        pairs = list(zip(runs, results[first], strict=True))
        rates = sorted(x["rate"] / b["rate"] for x, b in pairs)
        cpus = sorted(sum(x["cpu"].values()) / sum(b["cpu"].values()) for x, b in pairs)
        print(f"  {name} / {first}, burst by burst of the same round: boots/s {' '.join(f'{r:.2f}' for r in rates)}"
              f" (median {statistics.median(rates):.2f}x); CPU per server {' '.join(f'{c:.2f}' for c in cpus)}"
              f" (median {statistics.median(cpus):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="a source tree with its own .venv (twice or more; the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=8, help="bursts per tree, alternated")
    parser.add_argument("--burst", type=int, default=150)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: one tree's side, run in that tree
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if not args.tree:  # `make bench` runs every bench bare: there is nothing to compare without trees
        print("boot_trees: no --tree NAME=DIR given, nothing to compare (see --help)")
        return
    trees = [(name, Path(path).resolve()) for name, _, path in (t.partition("=") for t in args.tree)]
    if len(trees) < 2 or any(not (path / ".venv/bin/python").exists() for _, path in trees):
        parser.error("give two or more --tree NAME=DIR, each a source tree with its own .venv")
    drive(trees, args.rounds, args.burst)


if __name__ == "__main__":
    main()
