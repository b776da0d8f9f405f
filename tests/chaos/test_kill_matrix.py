"""Kill anything, lose nothing (issue 14): for each service kind, `kill -9` during a burst of boots
and deletes (and volume creates, for the volume worker) on a real cluster (cellctl up: two hosts on
libvirt's test driver, node1 also a volume host). tools/chaos.py runs a case; each test asserts:
- the kill caught work in flight (requests unanswered or boots not yet built), so the case tested
  something;
- the service served again (the supervisor restarted it) within tools/chaos.RECOVERY_BOUND;
- every request the API accepted reached a final state (boot: ACTIVE, ERROR or SHUTOFF with no task;
  delete: gone; volume: available or error) within tools/chaos.SETTLE, none left transitional;
- no accepted boot ended in ERROR: a kill must not fail a build (the builds it catches are retried or
  rescheduled, DESIGN's boot flow);
- after deleting all of the case's servers and volumes nothing is left: instance rows, claims, ports,
  fixed IPs, volume attachments and files, and the project's quota usage is what it was before.
- no compute holds a guest (libvirt domain) that no live instance record places on its host (each
  compute is asked: the test driver's domains live in the compute process). A killed test-driver
  compute's guests die with it: its built servers end SHUTOFF (counted apart in the result), their
  guests defined again by the restarted compute.

Two more workloads (tools/chaos_workloads.py): a volume attach/detach burst (killing the conductor,
compute, volume worker or API) and a burst of resizes (conductor, scheduler, compute); the same
assertions, with their final states and leaks described there.

The quick tier (QUICK, QUICK_ATTACH, QUICK_RESIZE) runs in `make test`; every kind runs with
`pytest --chaos` (`make chaos`).
tools/bench/chaos.py prints the same cases as a matrix with their figures."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools import chaos, chaos_workloads
from tools.devcluster import RunningCluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
# The kinds that passed every run on main when they joined: api and router from the start (6 of 6, 9
# of 9); conductor, scheduler, network, compute and volume after the fixes of issue 14's kill matrix
# (retry-safe calls resent to a restarted member, builds resumed through a conductor restart, boots
# waiting for a restarting cell): each passed 4 of 4 consecutive `pytest --chaos` runs and 2-5 more
# bench runs. ~4 s a case here, the cluster ~15 s: the whole matrix is ~30 s.
QUICK = ("api", "router", "conductor", "scheduler", "network", "compute", "volume")
# The attach/detach and resize workloads joined once every case passed 4 of 4 consecutive `pytest
# --chaos` runs (and a full bench run) on this loaded 2-core machine, after attach and move steps
# were resent to a restarted compute and adopted moves driven on: 5-21 s a case, ~90 s for the seven.
QUICK_ATTACH = chaos_workloads.ATTACH_KINDS
QUICK_RESIZE = chaos_workloads.RESIZE_KINDS


def _tiered(kinds: tuple[str, ...], quick: tuple[str, ...]) -> list[object]:
    """The quick tier's kinds as they are (make test); the others only with --chaos (make chaos)."""
    return [k if k in quick else pytest.param(k, marks=pytest.mark.chaos_full) for k in kinds]


def _kinds() -> list[object]:
    return _tiered(chaos.KINDS, QUICK)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("chaos")
    with running_cluster(root / "cluster", **chaos.chaos_cluster_options(root)) as c:
        chaos.wait_healthy(c)
        chaos.warm_up(c)
        yield c


@pytest.mark.parametrize("kind", _kinds())
def test_kill_9_during_a_burst_loses_nothing(cluster: RunningCluster, kind: str) -> None:
    chaos.wait_healthy(cluster)
    result = chaos.run_case(cluster, kind)
    report = result.describe()
    assert result.in_flight > 0, f"the kill caught nothing in flight:\n{report}"
    assert result.accepted > 0, report
    assert result.recovery is not None, f"{result.service} did not serve again:\n{report}"
    assert result.stuck == [], report
    assert result.final == result.accepted, report
    assert result.errored == 0, f"the kill failed builds:\n{report}"
    assert result.leaked == [], report


def _assert_clean(result: chaos.KillResult) -> None:
    report = result.describe()
    assert result.in_flight > 0, f"the kill caught nothing in flight:\n{report}"
    assert result.accepted > 0, report
    assert result.recovery is not None, f"{result.service} did not serve again:\n{report}"
    assert result.stuck == [], report
    assert result.final == result.accepted, report
    assert result.errored == 0, f"the kill failed requests it had accepted:\n{report}"
    assert result.leaked == [], report


@pytest.mark.parametrize("kind", _tiered(chaos_workloads.ATTACH_KINDS, QUICK_ATTACH))
def test_kill_9_during_an_attach_detach_burst_loses_nothing(cluster: RunningCluster, kind: str) -> None:
    """tools/chaos_workloads.run_attach_case: every volume ends available or in-use, as its accepted
    attach or detach asked, its attachment rows agree, and deleting everything leaves nothing."""
    chaos.wait_healthy(cluster)
    _assert_clean(chaos_workloads.run_attach_case(cluster, kind))


@pytest.mark.parametrize("kind", _tiered(chaos_workloads.RESIZE_KINDS, QUICK_RESIZE))
def test_kill_9_during_a_resize_burst_loses_nothing(cluster: RunningCluster, kind: str) -> None:
    """tools/chaos_workloads.run_resize_case: every accepted resize ends confirmed on the new flavor, no
    migration stays open, claims and quota usage count each server's flavor once, and deleting everything
    leaves nothing (migration claims included)."""
    chaos.wait_healthy(cluster)
    _assert_clean(chaos_workloads.run_resize_case(cluster, kind))
