"""The kill matrix: for each service kind, `kill -9` it in the middle of a burst of boots and deletes
(and, workloads attach and resize, of volume attaches/detaches or resizes: tools/chaos_workloads.py)
on a throw-away cluster (two test-driver hosts, node1 also a volume host), then print per service the
recovery time (kill to serving again), how much was in flight at the kill (requests unanswered, accepted
boots not yet built), and what became of the requests: accepted, final, errored, shutoff,
rescheduled, refused, unacknowledged, stuck (still transitional after the settle time) and leaked
(what deleting left behind: rows, claims, ports, IPs, volumes, quota usage). tools/chaos.py runs
each case; tests/chaos/ asserts on them.

    python -m tools.bench.chaos [--workloads burst,attach,resize] [--kinds api,conductor,...] [--boots 8]
                                [--deletes 3]

--kinds limits each workload to those of its kinds listed (default: all of them).

Exit code 1 when a case left something stuck or leaked, failed a build (ERROR), or its service never came
back: what tests/chaos asserts.
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

from tools import chaos, chaos_workloads
from tools.devcluster import running_cluster

COLUMNS = ("kind", "recovery s", "in flight", "accepted", "final", "errored", "shutoff", "resched", "refused",
           "unacked", "stuck", "leaked", "case s")


def row(r: chaos.KillResult) -> tuple[str, ...]:
    recovery = "never" if r.recovery is None else f"{r.recovery:.1f}"
    counts = (r.in_flight, r.accepted, r.final, r.errored, r.shutoff, r.rescheduled, r.refused, r.unacknowledged,
              len(r.stuck), len(r.leaked))
    return (r.kind, recovery, *map(str, counts), f"{r.seconds:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="burst,attach,resize", help="workloads to run, in order")
    parser.add_argument("--kinds", default=",".join(chaos.KINDS), help="service kinds to kill, in order")
    parser.add_argument("--boots", type=int, default=chaos.BOOTS)
    parser.add_argument("--deletes", type=int, default=chaos.DELETES)
    args = parser.parse_args(argv)
    cases = chaos_workloads.runners()
    burst_kinds, _ = cases["burst"]
    cases["burst"] = (burst_kinds, functools.partial(chaos.run_case, boots=args.boots, deletes=args.deletes))
    unknown = set(args.workloads.split(",")) - set(cases)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}: choose from {sorted(cases)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="cc-chaos-") as tmp:
        root = Path(tmp)
        with running_cluster(root / "cluster", **chaos.chaos_cluster_options(root)) as cluster:
            chaos.wait_healthy(cluster)
            chaos.warm_up(cluster)
            for workload in args.workloads.split(","):
                kinds, runner = cases[workload]
                for kind in (k for k in args.kinds.split(",") if k in kinds):
                    chaos.wait_healthy(cluster)
                    result = runner(cluster, kind)
                    results.append(result)
                    print(result.describe(), flush=True)
    widths = [max(len(c), *(len(row(r)[i]) for r in results)) for i, c in enumerate(COLUMNS)]
    print()
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for r in results:
        print("  ".join(v.ljust(w) for v, w in zip(row(r), widths, strict=True)))
    return 0 if all(r.clean and not r.errored for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
