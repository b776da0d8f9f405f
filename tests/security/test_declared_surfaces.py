"""One RPC table per service: every declared method has exactly one handler, every public
handler method is declared, and every method says who may call it."""
from __future__ import annotations

import inspect

import pytest

from cells.conductor.manager import ConductorManager
from cells.network.controller import NetworkController
from cells.objects.versions import OBJECTS
from cells.router_service import SURFACE as ROUTER_SURFACE
from cells.router_service import CellRouterService
from cells.rpc import wire
from cells.rpc.principal import KINDS
from cells.rpcapi.compute import SURFACE as COMPUTE_SURFACE
from cells.rpcapi.conductor import SURFACE as CONDUCTOR_SURFACE
from cells.rpcapi.network import SURFACE as NETWORK_SURFACE
from cells.rpcapi.scheduler import SURFACE as SCHEDULER_SURFACE
from cells.rpcapi.volume import SURFACE as VOLUME_SURFACE
from cells.scheduler.manager import SchedulerManager
from node.compute.manager import ComputeManager
from node.volume.manager import VolumeManager

# what tools/serve.py runs: (surface, handler class) per service kind
SERVICES: dict[str, tuple[dict[str, wire.Method], type]] = {
    "router": (ROUTER_SURFACE, CellRouterService),
    "conductor": (CONDUCTOR_SURFACE, ConductorManager),
    "scheduler": (SCHEDULER_SURFACE, SchedulerManager),
    "network": (NETWORK_SURFACE, NetworkController),
    "compute": (COMPUTE_SURFACE, ComputeManager),
    "volume": (VOLUME_SURFACE, VolumeManager),
}
# process hooks, not RPC: cells/service_process.py's, and the compute's until_ready that tools/serve_simulated.py
# awaits to pace its hosts' start
LIFECYCLE = {"start", "stop", "background", "until_ready"}


def _public_handlers(cls: type) -> set[str]:
    return {name for name, fn in inspect.getmembers(cls)
            if not name.startswith("_") and inspect.iscoroutinefunction(fn)} - LIFECYCLE


@pytest.mark.parametrize("kind", sorted(SERVICES))
def test_every_declared_method_has_its_handler_and_every_handler_is_declared(kind: str) -> None:
    surface, cls = SERVICES[kind]
    handlers = _public_handlers(cls)
    assert sorted(set(surface) - handlers) == [], f"{kind}: declared without a handler"
    assert sorted(handlers - set(surface)) == [], f"{kind}: public handler methods not in its RPC table"


@pytest.mark.parametrize("kind", sorted(SERVICES))
def test_every_method_declares_its_callers_among_the_principal_kinds(kind: str) -> None:
    surface, _ = SERVICES[kind]
    for method in surface.values():
        assert method.callers, f"{kind}.{method.name} declares no caller"
        assert method.callers <= KINDS, f"{kind}.{method.name}: {sorted(method.callers)}"


@pytest.mark.parametrize("kind", sorted(SERVICES))
def test_every_codec_names_a_versioned_object(kind: str) -> None:
    """A method's object arguments and result are declared with it, and name objects that exist."""
    surface, _ = SERVICES[kind]
    for method in surface.values():
        named = [*method.args.values(), *method.plain_args.values()]
        if method.result is not None:
            named.append(method.result.partition("@")[0].removesuffix("[]"))
        assert set(named) <= set(OBJECTS), f"{kind}.{method.name}: {named}"


def test_a_table_refuses_a_method_declared_twice_or_without_callers() -> None:
    once = wire.Method("x", callers=frozenset({"api"}))
    with pytest.raises(ValueError, match="declared twice"):
        wire.surface(once, once)
    with pytest.raises(ValueError, match="no caller"):
        wire.surface(wire.Method("y"))
