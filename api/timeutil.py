"""UTC timestamps in the formats the OpenStack APIs print.

The API DB stores naive UTC datetimes; records from cells carry ISO strings
("2026-11-21T12:00:00.123456Z", see cells/objects/instance.py).
"""
from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC (what the DB columns hold)."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse(value: str | datetime | None) -> datetime | None:
    """Accept an ISO 8601 string (with Z, offset or naive) or a datetime; return naive UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def iso_seconds(value: str | datetime | None) -> str | None:
    """Nova and Glance: "2026-11-21T13:00:00Z"."""
    dt = parse(value)
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_micro(value: str | datetime | None) -> str | None:
    """Keystone: "2026-11-21T13:00:00.000000Z"."""
    dt = parse(value)
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_naive_micro(value: str | datetime | None) -> str | None:
    """Nova's OS-SRV-USG:launched_at/terminated_at: "2026-11-21T13:00:00.123456" (no zone)."""
    dt = parse(value)
    return None if dt is None else dt.isoformat(timespec="microseconds")
