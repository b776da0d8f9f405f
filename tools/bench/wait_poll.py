"""How long a functional test's wait_for (tools/devcluster.py) takes to see what it waits for: the fixed
pause it used (`interval`, 0.5 s) against its doubling pauses (poll_pauses, from FIRST_POLL up to
`interval`), on one real cluster (cellctl up, test:///default), alternating, so the machine's load falls
on both alike.

Each round boots a server through the compute API and waits for ACTIVE, then deletes it and waits for
the 404, each wait polled by GET /servers/{id} as the tests poll: the figure is the wall time from the
request to the wait's return, and the GETs it made. Prints the mean of each, and the ratio to the fixed
pause's.

    .venv/bin/python -m tools.bench.wait_poll [--rounds 10]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

import requests

from tools.devcluster import RunningCluster, poll_pauses, running_cluster

INTERVAL = 0.5  # wait_for's default


def fixed(interval: float) -> Iterator[float]:
    return repeat(interval)


Pauses = Callable[[float], Iterator[float]]
STRATEGIES: dict[str, Pauses] = {"fixed 0.5 s": fixed, "doubling": poll_pauses}


def waited(pauses: Pauses, predicate: Callable[[], bool], timeout: float = 60) -> int:
    """Polls until `predicate` holds; how many times it asked."""
    deadline = time.monotonic() + timeout
    for asked, pause in enumerate(pauses(INTERVAL), start=1):
        if predicate():
            return asked
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster never got there")
        time.sleep(pause)
    raise AssertionError("unreachable")


def one_round(cluster: RunningCluster, headers: dict[str, str], image: str, pauses: Pauses) -> dict[str, float]:
    compute = cluster.endpoint + "/compute/v2.1"

    def status(sid: str) -> tuple[int, str]:
        r = requests.get(f"{compute}/servers/{sid}", headers=headers, timeout=10)
        return r.status_code, r.json()["server"]["status"] if r.status_code == 200 else ""

    started = time.monotonic()
    r = requests.post(f"{compute}/servers", headers=headers, timeout=30, json={
        "server": {"name": "poll", "flavorRef": "1", "imageRef": image}})
    assert r.status_code == 202, r.text
    sid = r.json()["server"]["id"]
    boot_gets = waited(pauses, lambda: status(sid) == (200, "ACTIVE"))
    booted = time.monotonic()
    assert requests.delete(f"{compute}/servers/{sid}", headers=headers, timeout=30).status_code == 204
    delete_gets = waited(pauses, lambda: status(sid)[0] == 404)
    return {"boot_s": booted - started, "delete_s": time.monotonic() - booted,
            "gets": float(boot_gets + delete_gets)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="boot+delete rounds per strategy")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in STRATEGIES}
    with tempfile.TemporaryDirectory() as tmp, running_cluster(Path(tmp), name="waitpoll") as cluster:
        headers = {"X-Auth-Token": cluster.token("demo")}
        image = requests.get(cluster.endpoint + "/image/v2/images?name=tiny-raw", headers=headers,
                             timeout=10).json()["images"][0]["id"]
        names = list(STRATEGIES)
        for i in range(args.rounds):
            for name in names if i % 2 == 0 else reversed(names):  # alternate who goes first
                results[name].append(one_round(cluster, headers, image, STRATEGIES[name]))
    base: dict[str, Any] = {}
    print(f"{'strategy':<14} {'boot->ACTIVE s':>15} {'delete->404 s':>14} {'GETs':>6}   (mean of {args.rounds})")
    for name, rows in results.items():
        means = {k: statistics.mean(r[k] for r in rows) for k in ("boot_s", "delete_s", "gets")}
        base = base or means
        ratios = " ".join(f"{means[k] / base[k]:.2f}x" for k in ("boot_s", "delete_s", "gets"))
        print(f"{name:<14} {means['boot_s']:>15.3f} {means['delete_s']:>14.3f} {means['gets']:>6.1f}   "
              f"ratio to fixed: {ratios}")


if __name__ == "__main__":
    main()
