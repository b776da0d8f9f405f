"""Tempest's quick tier (tools/tempest.py QUICK): a handful of stable Tempest API tests, unmodified, against a
fresh cluster of real processes, with tempest.conf written from it: none may fail, and each must run (a skip
here would mean the quick tier stopped checking what it names)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tools import tempest

pytest.importorskip("tempest", reason="the tempest extra is not installed (pip install -e .[tempest])")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_tier_passes(tmp_path: Path) -> None:
    outcome, output = tempest.run(tempest.QUICK, tmp_path, concurrency=2, name="tempestq")
    assert not outcome.failed, f"failed: {outcome.failed}\n{output[-6000:]}"
    assert not outcome.skipped, outcome.skipped
    assert len(outcome.passed) >= 20, outcome.summary()  # flavors, keypairs, servers, limits, versions
