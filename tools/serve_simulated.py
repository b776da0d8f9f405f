"""Serve the simulated compute hosts of one process (cluster.yaml `hosts: {simulated: N}`, resolved by
tools/simulated_hosts.py): `python -m tools.serve --cluster <state>/cluster.json <cell>/sim-<k>`.

Each host runs the real compute manager (node/compute/manager.py) in a cells.service_process.Service of its
own, so the cell sees exactly what a real host shows it. Shared by the process's hosts, and why:
- the event loop, the heap and the imports (what makes a host cost kilobytes, not a 56 MB process);
- zmq's context with its one I/O thread, and the ZAP handler (one allowlist for the process);
- the libvirt thread pool (SHARED_POOL threads for the process instead of 4 per host) and
  libvirt's event thread;
- the image store's client: one login as the image reader and one HTTP session for the process.
  A login per host made a cold burst across 400 hosts a login storm (400 scrypt checks at the API,
  ~50 ms of CPU each): logins waited up to 57 s, past the client's 15 s, and every build whose host
  timed out was rescheduled to another cold host, logging in again (`make scale`: 1,481 logins,
  684 of 800 servers ERROR, each after 3 hosts failed "service login failed").
- the heartbeat and the routing table (cells/rpc/beat_group.py): one `heartbeats` message a beat
  carries every host's member, and one table serves them all. At 1,000 hosts a beat each cost the
  cell's router more than its share of a loaded box: it dropped beats past their deadline and hosts
  flapped suspect (tools/bench/heartbeats.py measures the router's CPU per beat either way).
Each host's own: its CURVE key and so its sockets (a ROUTER bound at its fixed port, DEALERs to the
peers it talks to): a key is the principal compute@<host>, and a compute may speak for its own host
only (the directory takes the batched beat only for the hosts of the sender's own process); its
directory member and liveness, resource report, hypervisor (a private test driver), image cache (its
files), locks and flows.
- the start: hosts start a random pause apart (up to START_SPREAD) and at most START_IN_FLIGHT at once,
  each holding its place until it is ready (reported and reconciled with the conductor) or START_HOLD
  passed. All 1,000 hosts of a cell starting in the same second made every process of the cell miss its
  own beats on a loaded box and the conductor drop thousands of reports (issue 21).
A host whose service fails takes the process down with it (the TaskGroup), and the supervisor
restarts the chunk: its hosts fail together, as the hosts of one rack behind one switch would.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random

from cells.config import ClusterConfig, ServiceSpec
from cells.rpc.beat_group import GroupView
from cells.rpcapi.compute import SURFACE as COMPUTE
from cells.service_process import Service, stop_on_signals
from node.compute.manager import ComputeManager
from node.imagecache import image_store_client

LOG = logging.getLogger(__name__)
SHARED_POOL = 8  # libvirt threads of a whole simulated-host process (the test driver answers in microseconds)
START_IN_FLIGHT = 25  # hosts of one process starting at once
START_SPREAD = 2.0  # seconds: a host's random pause before it queues to start, so processes don't start in step
START_HOLD = 30.0  # seconds a starting host holds its place at most (no conductor answering: the rest start anyway)


async def serve(cluster: ClusterConfig, specs: list[ServiceSpec]) -> None:
    stop = stop_on_signals()
    pool = concurrent.futures.ThreadPoolExecutor(SHARED_POOL, thread_name_prefix="libvirt")
    images = image_store_client(cluster)
    try:
        cell = cluster.cell(specs[0].cell or "")
        beats = GroupView(cell.router, cluster.heartbeat_interval, cluster.router_key(cell.path))
        hosts = [ComputeManager(cluster, spec, pool=pool, fetcher=images) for spec in specs]
        services = [Service(cluster, spec, host, COMPUTE, (f"compute.{spec.host}",), beats)
                    for spec, host in zip(specs, hosts, strict=True)]
        LOG.info("serving %d simulated hosts", len(services))
        gate = asyncio.Semaphore(START_IN_FLIGHT)
        async with asyncio.TaskGroup() as tg:
            beating = tg.create_task(beats.run())
            await asyncio.gather(*(tg.create_task(_start_then_serve(tg, gate, service, host, stop))
                                   for service, host in zip(services, hosts, strict=True)))
            beating.cancel()  # every host has left the directory
    finally:
        await images.close()
        pool.shutdown(wait=False)


async def _start_then_serve(tg: asyncio.TaskGroup, gate: asyncio.Semaphore, service: Service,
                            host: ComputeManager, stop: asyncio.Event) -> None:
    await asyncio.sleep(random.uniform(0, START_SPREAD))
    async with gate:
        if stop.is_set():
            return  # stopped before it started: it never joined
        serving = tg.create_task(service.run(stop))
        ready = asyncio.ensure_future(host.until_ready())
        await asyncio.wait((serving, ready), timeout=START_HOLD, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
    await serving
