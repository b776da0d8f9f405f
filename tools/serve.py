"""Run one service of a resolved cluster in this process.

    python -m tools.serve --cluster <state>/cluster.json SERVICE_ID

The supervisor starts one of these per service; stderr (the log) goes to
<state>/log/<service>.log. Each kind's handler is imported only when needed,
so a service pays for its own imports only.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from cells import logtrail
from cells.config import ClusterConfig, ServiceSpec
from tools import simulated_hosts

# kinds whose process holds nothing outside itself once stopped (sockets and DB connections go with it; a
# SQLite write is durable through kill -9): they skip the interpreter's teardown, a full garbage collection
# of every imported library's objects, measured 1-2.5 s per process after SIGTERM on this 2-core box. So does
# a compute on libvirt's test hypervisor (in-process); one on QEMU and the volume workers exit the usual way:
# they hold libvirt connections and export targets.
SKIP_TEARDOWN = ("api", "router", "conductor", "scheduler", "network")


def _skips_teardown(spec: ServiceSpec) -> bool:
    return spec.kind in SKIP_TEARDOWN or (spec.kind == "compute"
                                          and str(spec.options.get("virt_uri", "")).startswith("test:"))


def _cell_service(cluster: ClusterConfig, spec: ServiceSpec) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    """(handler, surface, topics) for a cell-side service kind."""
    if spec.kind == "router":
        from cells.router_service import SURFACE, CellRouterService
        return CellRouterService(cluster, spec), SURFACE, ("router",)
    if spec.kind == "conductor":
        from cells.conductor.manager import ConductorManager
        from cells.rpcapi.conductor import SURFACE as CONDUCTOR
        return ConductorManager(cluster, spec), CONDUCTOR, ("conductor",)
    if spec.kind == "scheduler":
        from cells.rpcapi.scheduler import SURFACE as SCHEDULER
        from cells.scheduler.manager import SchedulerManager
        return SchedulerManager(cluster, spec), SCHEDULER, ("scheduler",)
    if spec.kind == "network":
        from cells.network.controller import NetworkController
        from cells.rpcapi.network import SURFACE as NETWORK
        from node.network.network_host import NetworkHost  # routers and floating IPs, on a netns host
        return NetworkController(cluster, spec, plumbing=NetworkHost.for_controller(cluster, spec)), NETWORK, \
            ("network",)
    if spec.kind == "compute":
        from cells.rpcapi.compute import SURFACE as COMPUTE
        from node.compute.manager import ComputeManager
        return ComputeManager(cluster, spec), COMPUTE, (f"compute.{spec.host}",)
    if spec.kind == "volume":
        from cells.rpcapi.volume import SURFACE as VOLUME
        from node.volume.manager import VolumeManager
        return VolumeManager(cluster, spec), VOLUME, (f"volume.{spec.host}",)
    raise SystemExit(f"service {spec.id}: unknown kind {spec.kind!r}")


def _freeze_startup_heap() -> None:
    """What start-up made (imported modules, table metadata, compiled statements, the handler) lives as
    long as the process: gc.freeze moves it out of the collector's sight, so a full collection walks only
    what serving made since. Measured on the boot bench (h7, issue 22): without it the full collections
    cost 0.37 / 0.20 / 0.09 ms of CPU per server in api / conductor / compute (150-200k start-up objects);
    with it, a few microseconds. Nothing is exempt from collection that serving makes."""
    gc.freeze()


async def run(cluster: ClusterConfig, spec: ServiceSpec) -> None:
    if spec.kind == "api":
        from api.app import serve
        await serve(cluster, spec, on_serving=_freeze_startup_heap)
        return
    from cells.objects.versions import pin_from_env
    from cells.service_process import Service
    pin_from_env(spec.id)  # rolling-upgrade tests run one service as the previous release
    handler, surface, topics = _cell_service(cluster, spec)
    _freeze_startup_heap()
    await Service(cluster, spec, handler, surface, topics).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True, help="resolved cluster: <state>/cluster.json")
    parser.add_argument("--log-level", default=os.environ.get("CELLCLOUD_LOG_LEVEL", "INFO"))
    parser.add_argument("--log-format", choices=logtrail.FORMATS,
                        help="text (the default) or json, one object a line for shipping; default: cluster.yaml "
                             "logging.format")
    parser.add_argument("--log-file", default=os.environ.get("CELLCLOUD_LOG_FILE"),
                        help="log here, rotated by size (cluster.yaml logging); default: stderr. The supervisor "
                             "passes its log file for the service in CELLCLOUD_LOG_FILE")
    parser.add_argument("service_id", help='e.g. "api", "cell1/conductor", "cell1/compute/node1"')
    args = parser.parse_args(argv)
    cluster = ClusterConfig.load(args.cluster)
    logtrail.setup(args.service_id, args.log_level, args.log_file, args.log_format or cluster.log_format,
                   cluster.log_max_bytes, cluster.log_backups)
    log = logging.getLogger("tools.serve")
    simulated = simulated_hosts.services_of(cluster, args.service_id)
    if simulated:  # a process of simulated hosts (tools/serve_simulated.py: imports the compute, so only then)
        from tools import serve_simulated
        log.info("starting %s: %d simulated hosts (pid %d)", args.service_id, len(simulated), os.getpid())
        return _run_logged(log, args.service_id, serve_simulated.serve(cluster, simulated))
    try:
        spec = cluster.service(args.service_id)
    except KeyError as exc:
        log.error("%s", exc.args[0])
        return 2
    log.info("starting %s (%s on %s, pid %d)", spec.id, spec.kind, spec.bind, os.getpid())
    code = _run_logged(log, spec.id, run(cluster, spec))
    if _skips_teardown(spec):
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """Exit once the service has stopped: logs and stdio flushed, no interpreter teardown."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_logged(log: logging.Logger, service_id: str, main: Coroutine[Any, Any, None]) -> int:
    profile = _profiler()
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("%s crashed", service_id)
        return 1
    finally:
        if profile is not None:  # dev only: CELLCLOUD_PROFILE=DIR writes DIR/<service>.prof on stop
            profile.disable()
            profile.dump_stats(os.path.join(os.environ["CELLCLOUD_PROFILE"], service_id.replace("/", "_") + ".prof"))
    log.info("%s stopped", service_id)
    return 0


def _profiler() -> Any:
    """cProfile for the whole service, its threads included (DB and libvirt threads do much of the
    work), when CELLCLOUD_PROFILE names a directory: `python -m pstats DIR/api.prof` shows the CPU
    per call. None otherwise, at no cost."""
    if not os.environ.get("CELLCLOUD_PROFILE"):
        return None
    import cProfile
    import pstats
    import threading
    profiles = [cProfile.Profile()]

    def in_new_thread(*_: Any) -> None:  # the first event of each new thread starts its own profiler
        sys.setprofile(None)
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()

    class Merged:
        def disable(self) -> None:
            threading.setprofile(None)
            profiles[0].disable()

        def dump_stats(self, path: str) -> None:
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                profile.create_stats()
                stats.add(profile)
            stats.dump_stats(path)

    threading.setprofile(in_new_thread)
    profiles[0].enable()
    return Merged()


if __name__ == "__main__":
    sys.exit(main())
