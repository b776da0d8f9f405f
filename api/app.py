"""The API cell's HTTP server: one aiohttp app, one port, a path per service.

    /identity  Keystone v3 (tokens and the catalog)
    /compute   Nova v2.1 (flavors, servers), routed to the child cells
    /image     Glance v2 (image records and their bits)
    /network   Neutron v2.0 (networks, subnets, ports, security groups), routed to the cells
    /volume    Cinder v3 (volumes, limits, quota sets), routed to the cells

`make_app` builds it (tests drive it with aiohttp's test client); `serve`
runs it until SIGTERM/SIGINT. Startup opens the API DB, the image store and
the cell router; shutdown closes them in reverse order (cleanup_ctx).
"""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from api.cell_router import CellRouter
from api.compute import boot_sweep, deferred_delete, server_snapshots, shelve
from api.compute.routes import make_compute_app
from api.dashboard import make_dashboard_app
from api.db.engine import make_database, make_engine
from api.ec2.app import make_ec2_app
from api.http import MAX_BODY
from api.identity import ec2creds
from api.identity.handlers import make_identity_app
from api.identity.tokens import TokenService
from api.image import leases
from api.image.handlers import make_image_app
from api.image.store import ImageStore
from api.keys import CLUSTER, DB, ENGINE, POLICY, ROUTER, STORE, TOKENS
from api.middleware import AccessLogger, request_id
from api.network.routes import make_network_app
from api.policy.enforce import Policy
from api.volume.routes import make_volume_app
from api.workers import host_port, worker_index
from cells import metrics
from cells.config import ClusterConfig, ServiceSpec
from cells.service_process import process_keys

LOG = logging.getLogger(__name__)


def make_app(cluster: ClusterConfig, router: CellRouter | None = None, service_id: str = "api") -> web.Application:
    """The whole API. `router` replaces the cell router built from `cluster` (tests);
    `service_id` names this process's CURVE keys when the cluster runs CURVE."""
    # request bodies read whole stop at MAX_BODY (413); image uploads stream and are bounded on their own
    app = web.Application(middlewares=[request_id], client_max_size=MAX_BODY)
    app[CLUSTER] = cluster
    app[STORE] = ImageStore(cluster.api.image_dir)
    app[POLICY] = Policy(cluster.state_dir)

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(cluster.api.db)
        app[ENGINE] = engine
        app[DB] = make_database(cluster.api.db)
        app[TOKENS] = TokenService(engine)
        await ec2creds.seal_plaintext_rows(engine, cluster)  # rows from before sealing existed
        yield
        await app[DB].close()
        await engine.dispose()

    async def cells(app: web.Application) -> AsyncIterator[None]:
        app[ROUTER] = router or CellRouter.from_cluster(cluster, process_keys(cluster, service_id))
        app[ROUTER].start()
        yield
        await app[ROUTER].stop()

    async def upload_sweep(app: web.Application) -> AsyncIterator[None]:
        # images a dead upload left `saving` go back to `queued` now and whenever one is found later
        task = asyncio.create_task(leases.sweep_forever(app[ENGINE], cluster.api.image_dir))
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # boot_sweep.sweeper: half-made boots (issue 14); deferred_delete.sweeper: soft-deleted servers reclaimed
    # server_snapshots.cleanup: createImage's background work (issue 16), stopped before the cells and DB go
    # shelve.sweeper: shelves whose API process died (issue 16)
    app.cleanup_ctx.extend([database, upload_sweep, cells, boot_sweep.sweeper, deferred_delete.sweeper,
                            server_snapshots.cleanup, shelve.sweeper])
    app.add_subapp("/identity", make_identity_app())
    app.add_subapp("/compute", make_compute_app())
    app.add_subapp("/image", make_image_app())
    app.add_subapp("/ec2", make_ec2_app())
    app.add_subapp("/network", make_network_app())
    app.add_subapp("/volume", make_volume_app())
    app.add_subapp("/dashboard", make_dashboard_app(cluster, service_id))  # the operator's web dashboard (issue 20)
    return app


async def serve(cluster: ClusterConfig, spec: ServiceSpec, stop: asyncio.Event | None = None,
                on_serving: Callable[[], None] | None = None) -> None:
    """Listen on spec.bind ("127.0.0.1:8774") until SIGTERM/SIGINT (or `stop` is set); `on_serving` runs once
    the app is built and listening."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(cluster, service_id=spec.id), access_log=LOG,
                           access_log_class=AccessLogger)
    await runner.setup()
    metrics_runner: web.AppRunner | None = None
    try:
        host, port = host_port(spec.bind)
        # several API workers share the port (cluster.yaml api.workers): the kernel spreads connections
        shared = int(spec.options.get("workers", 1)) > 1
        site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=shared or None)
        await site.start()
        if on_serving is not None:
            on_serving()
        LOG.info("API serving on http://%s:%d (public %s)", host, port, cluster.api.public_url)
        if cluster.api.metrics_listen:
            mhost, mport = host_port(cluster.api.metrics_listen)
            mport += worker_index(spec.id)
            metrics_runner = await metrics.start_listener(mhost, mport)
            LOG.info("metrics on http://%s:%d/metrics", mhost, mport)
        await stop.wait()
        LOG.info("API stopping")
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()  # stops the site, then runs cleanup_ctx in reverse
