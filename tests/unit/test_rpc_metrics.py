"""RPC metrics as the caller counts them (cells/metrics.py): calls by method and outcome with their
latency, casts by method, over real ZeroMQ sockets (the cell fixture of tests/unit/test_rpc.py)."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from cells import errors
from cells.context import RequestContext
from tests.unit.test_rpc import SURFACE, Cell, cell

__all__ = ["cell"]  # the fixture, used by name


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_calls_are_counted_by_method_and_outcome(cell: Cell) -> None:
    """Two good echoes, one failing call and one timeout move their counters by exactly that much."""
    await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    before = {o: sample("cellcloud_rpc_calls_total", method=m, outcome=o)
              for m, o in (("echo", "ok"), ("fail", "error"), ("sleep", "timeout"))}
    latency_before = sample("cellcloud_rpc_call_seconds_count", method="echo")
    for value in (1, 2):
        await cell.client.call(cell.view, "work", SURFACE["echo"], {"value": value}, RequestContext())
    with pytest.raises(errors.InstanceNotFound):
        await cell.client.call(cell.view, "work", SURFACE["fail"], {"instance_id": "x"}, RequestContext())
    with pytest.raises(errors.RpcTimeout):
        await cell.client.call(cell.view, "work", SURFACE["sleep"], {"seconds": 2}, RequestContext(), timeout=0.1)
    assert sample("cellcloud_rpc_calls_total", method="echo", outcome="ok") - before["ok"] == 2
    assert sample("cellcloud_rpc_calls_total", method="fail", outcome="error") - before["error"] == 1
    assert sample("cellcloud_rpc_calls_total", method="sleep", outcome="timeout") - before["timeout"] == 1
    assert sample("cellcloud_rpc_call_seconds_count", method="echo") - latency_before == 2


async def test_casts_are_counted_by_method(cell: Cell) -> None:
    await cell.add_member("w1", ("work",))
    await cell.wait_for("work", 1)
    before = sample("cellcloud_rpc_casts_total", method="note")
    for value in ("a", "b", "c"):
        await cell.client.cast(cell.view, "work", SURFACE["note"], {"value": value}, RequestContext())
    assert sample("cellcloud_rpc_casts_total", method="note") - before == 3
