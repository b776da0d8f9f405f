"""The dashboard's boot-rate history and time parsing (api/dashboard/snapshot.py)."""
from __future__ import annotations

import re

import pytest

from api.dashboard.snapshot import SAMPLE_EVERY, BootRate, ServerPage, _seconds, accepted_in
from cells import errors
from cells.metrics import API_REQUESTS


def test_boot_rate_is_accepted_boots_per_minute_between_samples() -> None:
    rate = BootRate()
    accepted = API_REQUESTS.labels("POST", "/compute/v2.1/servers", "202")
    base = BootRate.own_count()
    rate.record(1000.0, {0: BootRate.own_count()})
    accepted.inc(3)
    rate.record(1000.0 + SAMPLE_EVERY / 2, {0: BootRate.own_count()})  # too soon: not a sample
    rate.record(1000.0 + SAMPLE_EVERY, {0: BootRate.own_count()})
    accepted.inc(1)
    rate.record(1000.0 + 3 * SAMPLE_EVERY, {0: BootRate.own_count()})
    assert rate.per_minute() == [(1000.0 + SAMPLE_EVERY, round(3 * 60 / SAMPLE_EVERY, 2)),
                                 (1000.0 + 3 * SAMPLE_EVERY, round(60 / (2 * SAMPLE_EVERY), 2))]
    assert rate.summary() == {"accepted": base + 4, "reporting": 1, "workers": 1, "metrics": False}


def test_boot_rate_sums_the_workers_present_in_both_samples() -> None:
    """Worker 1 missing from a sample adds nothing to its rates; worker 2 restarted (its counter fell):
    its new count is its growth."""
    rate = BootRate(own=0, urls=("u0", "u1", "u2"))
    rate.record(0.0, {0: 10.0, 1: 5.0, 2: 7.0})
    rate.record(SAMPLE_EVERY, {0: 12.0, 2: 9.0})  # worker 1 did not answer
    rate.record(2 * SAMPLE_EVERY, {0: 12.0, 1: 8.0, 2: 1.0})  # worker 2 restarted: 1 boot since
    per = 60 / SAMPLE_EVERY
    assert rate.per_minute() == [(SAMPLE_EVERY, round(4 * per, 2)), (2 * SAMPLE_EVERY, round(1 * per, 2))]
    assert rate.summary() == {"accepted": 21.0, "reporting": 3, "workers": 3, "metrics": True}


def test_accepted_boots_read_from_a_workers_metrics_text() -> None:
    text = ('# TYPE cellcloud_api_requests_total counter\n'
            'cellcloud_api_requests_total{method="POST",route="/compute/v2.1/servers",status="202"} 7.0\n'
            'cellcloud_api_requests_total{method="POST",route="/compute/v2.1/servers",status="400"} 3.0\n')
    assert accepted_in(text) == 7.0
    assert accepted_in("") == 0.0


def test_server_page_from_the_query() -> None:
    assert ServerPage.from_query({}).params() == {"all_tenants": "1", "limit": "50"}
    page = ServerPage.from_query({"limit": "10", "marker": "0" * 8 + "-1111-2222-3333-" + "4" * 12,
                                  "name": "web-1.a", "status": "ACTIVE"})
    assert page.params() == {"all_tenants": "1", "limit": "10", "marker": page.marker, "status": "ACTIVE",
                             "name": re.escape("web-1.a")}  # the text is matched literally, not as a pattern
    for bad in ({"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"marker": "../etc"}, {"status": "active"},
                {"name": "n" * 256}):
        with pytest.raises(errors.Invalid):
            ServerPage.from_query(bad)


def test_nova_times_with_and_without_offset_are_utc() -> None:
    assert _seconds("1970-01-01T00:01:00Z") == 60.0
    assert _seconds("1970-01-01T00:01:00.500000") == 60.5  # launched_at: naive, UTC
    assert _seconds("not a time") is None and _seconds(None) is None
