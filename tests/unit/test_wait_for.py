"""tools/devcluster.wait_for, the functional tests' poll: its pauses double from FIRST_POLL up to the
interval it is given, so what comes true soon is seen soon."""
from __future__ import annotations

import time
from itertools import islice

import pytest

from tools.devcluster import FIRST_POLL, poll_pauses, wait_for


def test_pauses_double_from_the_first_poll_up_to_the_interval() -> None:
    """0.05, 0.1, 0.2, 0.4 s, then the interval for good; an interval shorter than FIRST_POLL is kept."""
    assert FIRST_POLL == 0.05
    assert list(islice(poll_pauses(0.5), 7)) == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert list(islice(poll_pauses(0.02), 3)) == [0.02, 0.02, 0.02]


def test_wait_for_returns_the_first_true_value_and_fails_by_name() -> None:
    """True from the third check on: wait_for returns that check's value, having checked three times; a
    condition never true fails with its name once the timeout passed."""
    calls: list[float] = []

    def third_time() -> str:
        calls.append(time.monotonic())
        return "ready" if len(calls) == 3 else ""

    assert wait_for("the third check", third_time, timeout=30, interval=5) == "ready"
    assert len(calls) == 3
    with pytest.raises(AssertionError, match="timed out waiting for never"):
        wait_for("never", lambda: False, timeout=0.2, interval=0.05)
