"""CELLCLOUD_BENCH_BARE=1 (the observability bench's baseline, tools/bench/observability.py) turns a
process's metrics and request-id tagging off, and nothing else: its log lines still go out, with '-'."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import logging, threading
from prometheus_client import REGISTRY
from cells import logtrail
from cells.metrics import BOOTS, DB_WRITE_BATCH
BOOTS.labels("active").inc(); DB_WRITE_BATCH.labels("x.db").observe(3)
print(REGISTRY.get_sample_value("cellcloud_boots_total", {"outcome": "active"}))
token = logtrail.bind_request("req-00000000-0000-4000-8000-000000000001")
record = logging.LogRecord("t", logging.INFO, "", 0, "m", None, None)
logtrail.RequestIdFilter("svc").filter(record)
print(record.request_id, logtrail.current_request())
fn = lambda: 7
print(logtrail.in_context(fn) is fn)
logtrail.unbind(token)
"""


def probe(env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env}, check=True)
    return done.stdout.splitlines()


def test_bare_records_no_metric_and_binds_no_request_id() -> None:
    assert probe({"CELLCLOUD_BENCH_BARE": "1"}) == ["None", "- -", "True"]


def test_without_it_both_are_on() -> None:
    rid = "req-00000000-0000-4000-8000-000000000001"
    assert probe({}) == ["1.0", f"{rid} {rid}", "False"]
