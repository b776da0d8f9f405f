"""The directory registers only the member a key belongs to, and lets a member leave only itself."""
from __future__ import annotations

import pytest

from cells import errors
from cells.rpc.directory import Member
from tests.security.curve_cell import CurveCell

NODE1 = "cell1/compute/node1"


def _table(cell: CurveCell) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The router's routing table: member id -> (address, topics)."""
    handler = cell.services["router"].handler
    return {m.id: (m.address, m.topics) for m in handler.liveness.members.values()}


async def test_a_compute_cannot_heartbeat_as_the_conductor(cell: CurveCell) -> None:
    """A compute's key registering the conductor's id (or the conductor topic under its own id) is
    refused, and the table still routes `conductor` to the real conductor only."""
    before = _table(cell)
    fake = Member(id="cell1/conductor", address="tcp://127.0.0.1:9", topics=("conductor",), host="node1",
                  service="conductor")
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/router", "heartbeat", {"member": fake.to_wire(), "version": -1})
    own_id = Member(id=NODE1, address="tcp://127.0.0.1:9", topics=("conductor", "compute.node1"), host="node1",
                    service="compute")
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/router", "heartbeat", {"member": own_id.to_wire(), "version": -1})
    other_host = Member(id=NODE1, address="tcp://127.0.0.1:9", topics=("compute.node2",), host="node2",
                        service="compute")
    with pytest.raises(errors.RpcForbidden):
        await cell.call_as(NODE1, "cell1/router", "heartbeat", {"member": other_host.to_wire(), "version": -1})
    after = _table(cell)
    assert after["cell1/conductor"] == before["cell1/conductor"]
    assert after[NODE1] == before[NODE1]
    assert [mid for mid, (_, topics) in after.items() if "conductor" in topics] == ["cell1/conductor"]


async def test_a_real_host_cannot_batch_beats_for_another(cell: CurveCell) -> None:
    """`heartbeats` is for the hosts of one simulated-host process: node1 (a host of its own) putting
    node2 in a batch, or even itself, is refused, and node2 stays as it was."""
    before = _table(cell)
    node2 = Member(id="cell1/compute/node2", address="tcp://127.0.0.1:9", topics=("compute.node2",), host="node2",
                   service="compute")
    itself = Member(id=NODE1, address="tcp://127.0.0.1:9", topics=("compute.node1",), host="node1", service="compute")
    for batch in ([node2], [itself, node2], [itself]):
        with pytest.raises(errors.RpcForbidden):
            await cell.call_as(NODE1, "cell1/router", "heartbeats",
                               {"members": [m.to_wire() for m in batch], "version": -1})
    assert _table(cell)["cell1/compute/node2"] == before["cell1/compute/node2"]
    assert _table(cell)[NODE1] == before[NODE1]


async def test_leave_is_for_oneself_only(cell: CurveCell) -> None:
    """A compute asking the directory to drop the conductor (or the other compute) is refused and
    both stay routed; the operator may evict a member."""
    for victim in ("cell1/conductor", "cell1/compute/node2"):
        with pytest.raises(errors.RpcForbidden):
            await cell.call_as(NODE1, "cell1/router", "leave", {"member_id": victim})
        assert victim in _table(cell)
    assert await cell.call_as("operator", "cell1/router", "leave", {"member_id": "cell1/compute/node2"}) is True
