"""Nova's monthly usage audit period (api/compute/usage_audit_log.py), at its month and year boundaries."""
from __future__ import annotations

from datetime import datetime

import pytest

from api.compute.usage_audit_log import last_completed_period, parse_before
from cells import errors


@pytest.mark.parametrize("before,begin,end", [
    (datetime(2026, 12, 7, 5, 4), datetime(2026, 11, 1), datetime(2026, 12, 1)),
    (datetime(2026, 12, 1), datetime(2026, 10, 1), datetime(2026, 11, 1)),  # the boundary itself: not yet done
    (datetime(2026, 1, 15), datetime(2025, 12, 1), datetime(2026, 1, 1)),
    (datetime(2026, 1, 1), datetime(2025, 11, 1), datetime(2025, 12, 1)),
    (datetime(2026, 2, 1, 0, 0, 1), datetime(2026, 1, 1), datetime(2026, 2, 1)),
])
def test_the_period_is_the_last_month_completed_before(before: datetime, begin: datetime, end: datetime) -> None:
    assert last_completed_period(before) == (begin, end)


def test_a_timestamp_is_taken_in_novas_two_spellings_only() -> None:
    assert parse_before("2012-07-05 10:00:00") == datetime(2012, 7, 5, 10)
    assert parse_before("2012-07-05 10:00:00.25") == datetime(2012, 7, 5, 10, 0, 0, 250000)
    for bad in ("2012-07-05", "2012-07-05T10:00:00", "yesterday"):
        with pytest.raises(errors.Invalid):
            parse_before(bad)
