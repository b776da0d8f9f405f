"""The dashboard's boot-rate history and time parsing (api/dashboard/snapshot.py)."""
from __future__ import annotations

from api.dashboard.snapshot import SAMPLE_EVERY, BootRate, _seconds
from cells.metrics import API_REQUESTS


def test_boot_rate_is_accepted_boots_per_minute_between_samples() -> None:
    rate = BootRate()
    accepted = API_REQUESTS.labels("POST", "/compute/v2.1/servers", "202")
    rate.sample(1000.0)
    accepted.inc(3)
    rate.sample(1000.0 + SAMPLE_EVERY / 2)  # too soon: not a sample
    rate.sample(1000.0 + SAMPLE_EVERY)
    accepted.inc(1)
    rate.sample(1000.0 + 3 * SAMPLE_EVERY)
    assert rate.per_minute() == [(1000.0 + SAMPLE_EVERY, round(3 * 60 / SAMPLE_EVERY, 2)),
                                 (1000.0 + 3 * SAMPLE_EVERY, round(60 / (2 * SAMPLE_EVERY), 2))]


def test_nova_times_with_and_without_offset_are_utc() -> None:
    assert _seconds("1970-01-01T00:01:00Z") == 60.0
    assert _seconds("1970-01-01T00:01:00.500000") == 60.5  # launched_at: naive, UTC
    assert _seconds("not a time") is None and _seconds(None) is None
