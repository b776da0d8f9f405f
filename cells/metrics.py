"""Prometheus metrics of one process (prometheus_client's registry) and the listener that serves them.

Metrics are served on a listener of their own, never on the public API port: Prometheus scrapes
without a Keystone token, tenants never see operational data (route rates are reconnaissance), and
each API worker sharing the API port (SO_REUSEPORT) gets its own stable scrape target.
Labels take bounded values only: route templates, never raw ids (unbounded cardinality is a DoS).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from cells.logtrail import BARE

if TYPE_CHECKING:  # every RPC peer imports the metrics; only the processes that serve them need aiohttp
    from aiohttp import web

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # a path no route serves (a 404 or 405 before any handler)

API_REQUESTS = Counter("cellcloud_api_requests", "API requests by method, route template and status",
                       ("method", "route", "status"))
API_LATENCY = Histogram("cellcloud_api_request_seconds", "API request latency by method and route template",
                        ("method", "route"),
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))

# RPC as its caller sees it: method names come from the declared surfaces (a bounded set)
RPC_CALLS = Counter("cellcloud_rpc_calls", "RPC calls sent, by method and outcome (ok, error, timeout)",
                    ("method", "outcome"))
RPC_CALL_LATENCY = Histogram("cellcloud_rpc_call_seconds", "RPC call latency until the reply, by method",
                             ("method",), buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                                   2.5, 5.0, 10.0, 30.0))
RPC_CASTS = Counter("cellcloud_rpc_casts", "RPC casts sent, by method", ("method",))

SCHEDULER_PLACEMENTS = Counter("cellcloud_scheduler_placements", "Instances the scheduler placed and claimed")
SCHEDULER_NO_VALID_HOST = Counter("cellcloud_scheduler_no_valid_host",
                                  "Selections that found no host (all or nothing: nothing was claimed)")

# server flows as the cell's conductor ends them, counted once their write commits (cells/db/commit_hooks.py)
BOOTS = Counter("cellcloud_boots", "Builds ended, by outcome (active, error)", ("outcome",))
DELETES = Counter("cellcloud_deletes", "Deletes ended, by outcome (deleted, error)", ("outcome",))
MOVES = Counter("cellcloud_moves", "Resizes, migrations and evacuations ended, by kind and outcome (done, error)",
                ("kind", "outcome"))

# the cell DB's writer (cells/db/group_commit.py); `db` is the database file's name (one per cell)
DB_WRITE_LOCK_WAIT = Histogram("cellcloud_db_write_lock_wait_seconds",
                               "Time a write batch waited for the DB's writer lock (SQLite flock, PostgreSQL advisory lock)",
                               ("db",),
                               buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1.0, 2.5, 5.0, 10.0, 30.0))
DB_WRITE_RETRIES = Counter("cellcloud_db_write_retries",
                           "Concurrent write units run again after PostgreSQL rolled them back (deadlock, "
                           "serialization failure)", ("db", "reason"))
DB_WRITE_BATCH = Histogram("cellcloud_db_write_batch_units", "Units of work committed together (group commit)",
                           ("db",), buckets=(1, 2, 4, 8, 16, 32))

# states, as each service sees them now (set by its periodic loop, never computed at scrape time)
DIRECTORY_MEMBERS = Gauge("cellcloud_directory_members",
                          "Members of this router's directory by service and state (alive: beat within an "
                          "interval; late: missed a beat, not yet removed)", ("service", "state"))
COMPUTE_HOSTS = Gauge("cellcloud_compute_hosts", "The cell's compute hosts by liveness as its conductor sees them "
                      "(alive, suspect, dead, fenced)", ("state",))
HOST_CAPACITY = Gauge("cellcloud_host_capacity", "A compute host's capacity (vcpus, memory_mb, local_gb), "
                      "before allocation ratios", ("host", "resource"))
HOST_USED = Gauge("cellcloud_host_used", "A compute host's claimed use (vcpus, memory_mb, local_gb)",
                  ("host", "resource"))
SERVERS = Gauge("cellcloud_servers", "The cell's servers by vm_state (deleted ones left out)", ("state",))
GUESTS = Gauge("cellcloud_guests", "Guests on this compute host's hypervisor by power state", ("state",))
IMAGE_CACHE_BYTES = Gauge("cellcloud_image_cache_bytes", "Bytes of verified bases in this host's image cache")
IMAGE_CACHE_FILES = Gauge("cellcloud_image_cache_files", "Verified bases in this host's image cache")
VOLUME_CAPACITY_GB = Gauge("cellcloud_volume_capacity_gb", "A volume host's backend capacity, as it last reported",
                           ("host", "backend"))
VOLUME_ALLOCATED_GB = Gauge("cellcloud_volume_allocated_gb", "GiB of volumes allocated on a volume host's backend",
                            ("host", "backend"))


class _Off:
    """A metric that records nothing: every metric of a process started with CELLCLOUD_BENCH_BARE=1
    (cells/logtrail.py BARE; benchmarks only), so what recording costs can be measured."""

    def labels(self, *values: str) -> _Off:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def clear(self) -> None:
        pass


if BARE:  # before any other module imports a metric by name
    for _name, _metric in list(globals().items()):
        if isinstance(_metric, Counter | Gauge | Histogram):
            globals()[_name] = _Off()


def set_states(gauge: Gauge, counts: dict[tuple[str, ...], float], known: tuple[tuple[str, ...], ...] = ()) -> None:
    """Replace `gauge`'s values by `counts` (label values -> value), `known` label sets at 0 when not counted: a
    state that emptied reads 0 or disappears, never its last count. Called on the event loop, as the scrape
    handler is, so a scrape never sees it half done."""
    gauge.clear()
    for labels in (*known, *counts):
        gauge.labels(*labels).set(counts.get(labels, 0))


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


async def _metrics(_request: web.Request) -> web.Response:
    from aiohttp import web
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_app() -> web.Application:
    from aiohttp import web
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    return app


async def start_listener(host: str, port: int) -> web.AppRunner:
    """Serve GET /metrics on host:port until the returned runner is cleaned up."""
    from aiohttp import web
    runner = web.AppRunner(metrics_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
