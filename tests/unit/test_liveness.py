"""The pure liveness core (cells/rpc/liveness.py): alive -> suspect -> dead over time,
the start-up grace, the operator's mark, fencing."""
from __future__ import annotations

from cells.rpc.liveness import ALIVE, DEAD, FENCED, SUSPECT, HostLiveness

GRACE = 60.0


def test_a_host_that_stops_beating_is_suspect_then_dead_after_the_grace() -> None:
    live = HostLiveness(GRACE, started=0.0)
    live.observe({"node1", "node2"}, now=10.0)
    assert live.state("node1", 10.0) == ALIVE
    live.observe({"node2"}, now=11.0)  # node1 missed its beats and left the table
    assert live.state("node1", 11.0) == SUSPECT
    assert live.state("node1", 10.0 + GRACE - 0.1) == SUSPECT
    assert live.state("node1", 10.0 + GRACE) == DEAD
    assert live.state("node2", 10.0 + GRACE) == ALIVE
    live.observe(set(), now=12.0)
    assert live.state("node2", 10.0 + GRACE) == SUSPECT  # last seen at 11: not dead yet
    assert live.state("node2", 11.0 + GRACE) == DEAD
    assert live.absent_for("node1", 40.0) == 30.0


def test_newly_dead_names_each_death_once_until_the_host_is_alive_again() -> None:
    live = HostLiveness(GRACE, started=0.0)
    live.observe({"node1"}, now=1.0)
    live.observe(set(), now=2.0)
    assert live.newly_dead({"node1"}, 30.0) == []
    assert live.newly_dead({"node1"}, 61.0) == ["node1"]
    assert live.newly_dead({"node1"}, 62.0) == []  # acted on once
    live.observe({"node1"}, now=63.0)
    assert live.newly_dead({"node1"}, 63.0) == []
    live.observe(set(), now=64.0)
    assert live.newly_dead({"node1"}, 64.0 + GRACE) == ["node1"]  # a second death is a new one


def test_an_empty_table_at_start_up_kills_nobody_within_the_grace() -> None:
    """A restarted conductor, or a directory that just restarted, has seen no host yet:
    hosts it knows from the cell DB count as absent since the start, not since forever."""
    live = HostLiveness(GRACE, started=1000.0)
    live.observe(set(), now=1000.5)
    assert live.state("node1", 1000.5) == SUSPECT
    assert live.newly_dead({"node1", "node2"}, 1000.0 + GRACE - 1) == []
    live.observe({"node1"}, now=1002.0)  # the members re-register on their next beat
    assert live.newly_dead({"node1", "node2"}, 1000.0 + GRACE) == ["node2"]  # never came back
    assert live.state("node1", 1000.0 + GRACE) == ALIVE


def test_operator_mark_is_dead_at_once_and_taking_it_back_leaves_the_fence() -> None:
    live = HostLiveness(GRACE, started=0.0)
    live.observe({"node1"}, now=1.0)
    live.marks(forced_down={"node1"}, fenced=set())
    assert live.state("node1", 1.0) == DEAD  # although it beats
    assert live.newly_dead({"node1"}, 1.0) == ["node1"]
    live.marks(forced_down=set(), fenced={"node1"})  # recovery fenced it; the operator said up
    assert live.state("node1", 2.0) == FENCED  # beating, but must reconcile before it serves
    assert live.newly_dead({"node1"}, 2.0) == []
    live.marks(forced_down=set(), fenced=set())  # it reconciled and rejoined
    assert live.state("node1", 3.0) == ALIVE


def test_a_fenced_host_that_is_silent_is_dead_without_waiting() -> None:
    live = HostLiveness(GRACE, started=0.0)
    live.marks(forced_down=set(), fenced={"node1"})  # declared dead by a previous conductor run
    assert live.state("node1", 0.5) == DEAD
    assert live.state("node1", 0.5, present=True) == FENCED  # the caller read the table itself


def test_states_lists_every_known_host() -> None:
    live = HostLiveness(GRACE, started=0.0)
    live.observe({"node1"}, now=0.0)
    live.marks(forced_down={"node3"}, fenced=set())
    assert live.states({"node2"}, 1.0) == {"node1": ALIVE, "node2": SUSPECT, "node3": DEAD}
