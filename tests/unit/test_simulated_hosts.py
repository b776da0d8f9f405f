"""Simulated compute hosts (issue 21): cluster.yaml `hosts: {simulated: N}` resolves to N whole
compute hosts (own host entry, service, fixed port, key), grouped into the processes that serve them;
the supervisor starts one program per such process; a `sim` host's hypervisor is a private test
driver (tests/functional/test_simulated_hosts.py runs them)."""
from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from cells.config import SIM_URI, ClusterConfig
from node.compute.driver import LibvirtDriver
from node.network.agent import plumbing_decision
from tests.unit.test_clusterfile import cell, variant, write
from tools import clusterfile
from tools.clusterfile_fields import ClusterFileError
from tools.supervisor import programs_for


def test_a_simulated_block_beside_a_real_host_makes_whole_compute_hosts_grouped_by_process(tmp_path: Path) -> None:
    doc = variant(lambda d: cell(d).update(hosts=["node1", {"simulated": 5, "per_process": 2, "rpc_port": 7000}]))
    cfg = clusterfile.load(write(tmp_path, doc))
    sims = [s for s in cfg.services if s.options.get("process")]
    assert [(s.id, s.host, s.bind, s.options["process"]) for s in sims] == [
        ("cell1/compute/cell1-sim-1", "cell1-sim-1", "tcp://127.0.0.1:7000", "cell1/sim-1"),
        ("cell1/compute/cell1-sim-2", "cell1-sim-2", "tcp://127.0.0.1:7001", "cell1/sim-1"),
        ("cell1/compute/cell1-sim-3", "cell1-sim-3", "tcp://127.0.0.1:7002", "cell1/sim-2"),
        ("cell1/compute/cell1-sim-4", "cell1-sim-4", "tcp://127.0.0.1:7003", "cell1/sim-2"),
        ("cell1/compute/cell1-sim-5", "cell1-sim-5", "tcp://127.0.0.1:7004", "cell1/sim-3")]
    assert all(s.kind == "compute" and s.cell == "cell1" and s.options["virt_uri"] == SIM_URI for s in sims)
    hosts = {h.name: h for h in cfg.hosts}
    assert hosts["cell1-sim-3"].address == "127.0.0.1" and hosts["cell1-sim-3"].via == "local"
    assert cfg.service("cell1/compute/node1").options.get("process") is None  # the real host keeps its own


def test_supervisor_runs_one_program_per_simulated_process(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        cell(d).update(hosts=["node1", {"simulated": 5, "per_process": 2, "rpc_port": 7000}])
        d["security"] = {"curve": True}
    doc = variant(change)
    cluster = clusterfile.prepare(write(tmp_path, doc), state_dir=tmp_path / "var")
    path = tmp_path / "var" / "cluster.json"
    assert ClusterConfig.load(path) == cluster
    programs = {p.id: p for p in programs_for(path)}
    assert {"cell1/sim-1", "cell1/sim-2", "cell1/sim-3", "cell1/compute/node1"} <= set(programs)
    assert not any(pid.startswith("cell1/compute/cell1-sim") for pid in programs)
    assert programs["cell1/sim-2"].argv[-1] == "cell1/sim-2"
    assert programs["cell1/sim-2"].rank == programs["cell1/compute/node1"].rank
    # every simulated host has a key of its own: its principal is compute@<host>
    keys = {s.public_key for s in cluster.services if s.options.get("process")}
    assert len(keys) == 5 and "" not in keys


def test_simulated_hosts_alone_and_the_default_ports_of_later_blocks(tmp_path: Path) -> None:
    def two_cells(d: dict[str, Any]) -> None:
        cell(d).update(hosts={"simulated": 3})
        d["sites"][0]["cells"].append({"name": "c2", "services": {"router": "ctl:5620"}, "hosts": {"simulated": 2}})
    cfg = clusterfile.load(write(tmp_path, variant(two_cells)))
    binds = {s.host: s.bind for s in cfg.services if s.options.get("process")}
    assert binds == {"cell1-sim-1": "tcp://127.0.0.1:20000", "cell1-sim-2": "tcp://127.0.0.1:20001",
                     "cell1-sim-3": "tcp://127.0.0.1:20002", "c2-sim-1": "tcp://127.0.0.1:20003",
                     "c2-sim-2": "tcp://127.0.0.1:20004"}


@pytest.mark.parametrize("block, message", [
    ({"simulated": 0}, "sites[0].cells[0].hosts[1].simulated: expected an integer from 1 to 10000, got 0"),
    ({"simulated": 2, "color": 1}, "sites[0].cells[0].hosts[1].color: unknown key"),
    ({"simulated": 2, "on": "nowhere"}, "sites[0].cells[0].hosts[1].on: unknown host 'nowhere'"),
    ({"simulated": 2, "rpc_port": 65535}, "sites[0].cells[0].hosts[1].rpc_port: 2 hosts need ports 65535-65536"),
    ({"simulated": 2, "rpc_port": 5610}, "port 127.0.0.1:5610 of cell1/compute/cell1-sim-1 (sites[0].cells[0].hosts[1] (simulated, rpc_port 5610 + 0)) is already used by cell1/compute/node1"),
    ({"simulated": 2, "sync_interval": 0}, "sites[0].cells[0].hosts[1].sync_interval: expected seconds"),
])
def test_simulated_block_mistakes_name_the_field(tmp_path: Path, block: dict[str, Any], message: str) -> None:
    doc = variant(lambda d: cell(d).update(hosts=["node1", block]))
    with pytest.raises(ClusterFileError) as err:
        clusterfile.load(write(tmp_path, doc))
    assert message in str(err.value)


def test_a_host_may_say_virt_uri_sim(tmp_path: Path) -> None:
    doc = variant(lambda d: d["hosts"]["node1"].update(virt={"uri": "sim"}))
    cfg = clusterfile.load(write(tmp_path, doc))
    assert cfg.service("cell1/compute/node1").options["virt_uri"] == SIM_URI


def test_a_simulated_host_plugs_no_network() -> None:
    assert plumbing_decision("auto", SIM_URI, own_netns=True) == (False, "the test hypervisor has no guest NICs to plug")


def test_each_sim_driver_is_a_private_hypervisor_on_a_shared_pool(tmp_path: Path) -> None:
    """Two sim drivers of one process: each sees only its own domains (test:///default would share
    them), both reporting the simulated node's size, through one thread pool."""
    async def main() -> tuple[list[str], list[str], dict[str, int]]:
        pool = concurrent.futures.ThreadPoolExecutor(2)
        a = LibvirtDriver(SIM_URI, instances_dir=str(tmp_path / "a" / "instances"), pool=pool)
        b = LibvirtDriver(SIM_URI, instances_dir=str(tmp_path / "b" / "instances"), pool=pool)
        await a.connect()
        await b.connect()
        inst = {"uuid": "0b7f4c0e-4a43-4a5e-9d25-3c2d6a1b2c3d", "flavor": {"ram": 64, "vcpus": 1, "disk": 0}}
        await a.spawn(inst, None)
        seen = (await a.list_instance_uuids(), await b.list_instance_uuids(), await b.host_resources())
        await a.close()
        await b.close()
        assert not pool._shutdown  # the shared pool outlives its drivers
        pool.shutdown()
        return seen
    on_a, on_b, resources = asyncio.run(main())
    assert on_a == ["0b7f4c0e-4a43-4a5e-9d25-3c2d6a1b2c3d"] and on_b == []
    assert (resources["vcpus"], resources["memory_mb"]) == (64, 262144)
    assert a_virt_type() == "test"


def a_virt_type() -> str:
    return LibvirtDriver(SIM_URI, instances_dir="/nonexistent").virt_type


def test_the_scale_example_is_3000_simulated_hosts_in_30_cells_one_process_each() -> None:
    cfg = clusterfile.load(Path(__file__).resolve().parents[2] / "examples" / "scale.yaml")
    sims = [s for s in cfg.services if s.options.get("process")]
    assert len(sims) == 3000 and len(cfg.cells) == 30
    assert len({s.options["process"] for s in sims}) == 30
    assert {s.bind for s in sims} == {f"tcp://127.0.0.1:{p}" for p in range(20000, 23000)}


class _StartingHost:
    """Stands in for one simulated host's Service and ComputeManager (tools/serve_simulated.py drives only
    service.run and host.until_ready): ready `ready_after` seconds into its run, or never (None)."""

    running = 0
    most = 0

    def __init__(self, ready_after: float | None) -> None:
        self.ready_after = ready_after
        self.ready = asyncio.Event()
        self.started = False

    async def run(self, stop: asyncio.Event) -> None:
        self.started = True
        cls = type(self)
        cls.running += 1
        cls.most = max(cls.most, cls.running)
        if self.ready_after is None:  # starting for good
            await stop.wait()
            return
        await asyncio.sleep(self.ready_after)
        self.ready.set()
        cls.running -= 1  # from here it serves: no longer starting
        await stop.wait()

    async def until_ready(self) -> None:
        await self.ready.wait()


async def _start_all(hosts: list[_StartingHost], in_flight: int) -> None:
    from tools import serve_simulated
    gate, stop = asyncio.Semaphore(in_flight), asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        starts = [tg.create_task(serve_simulated._start_then_serve(tg, gate, h, h, stop))  # type: ignore[arg-type]
                  for h in hosts]
        for _ in range(200):
            if all(h.started for h in hosts):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*starts)


async def test_simulated_hosts_start_a_bounded_number_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """40 hosts arriving within 10 ms, 5 in flight: 5 start together, never more, and all start."""
    from tools import serve_simulated
    monkeypatch.setattr(serve_simulated, "START_SPREAD", 0.01)
    hosts = [_StartingHost(0.02) for _ in range(40)]
    await _start_all(hosts, 5)
    assert all(h.started for h in hosts)
    assert _StartingHost.most == 5


async def test_simulated_hosts_never_ready_hold_their_places_at_most_the_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """As many hosts as places never get ready (no conductor answers them): each lets the next in after
    START_HOLD, so every host of the process still starts."""
    from tools import serve_simulated
    monkeypatch.setattr(serve_simulated, "START_SPREAD", 0.0)
    monkeypatch.setattr(serve_simulated, "START_HOLD", 0.2)
    hosts = [_StartingHost(None) for _ in range(3)] + [_StartingHost(0.01) for _ in range(6)]
    await _start_all(hosts, 3)
    assert all(h.started for h in hosts)
