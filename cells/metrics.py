"""Prometheus metrics of one process (prometheus_client's registry) and the listener that serves them.

Metrics are served on a listener of their own, never on the public API port: Prometheus scrapes
without a Keystone token, tenants never see operational data (route rates are reconnaissance), and
each API worker sharing the API port (SO_REUSEPORT) gets its own stable scrape target.
Labels take bounded values only: route templates, never raw ids (unbounded cardinality is a DoS).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

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
