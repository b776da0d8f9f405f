"""Request ids on log lines (cells/logtrail.py), size rotation, the JSON format, the cluster.yaml
`logging:` section and the trail `cellctl logs --request` merges (tools/logtrail.py)."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cells import logtrail
from cells.context import new_request_id
from tools import clusterfile
from tools import logtrail as trail
from tools.clusterfile_fields import ClusterFileError
from tools.devcluster import cluster_yaml


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in saved:
        root.addHandler(h)
    root.setLevel(level)


def test_lines_carry_the_bound_request_id_in_the_task_and_its_children(tmp_path: Path, root_logging: None) -> None:
    """A task that bound a request id tags its lines and those of tasks it starts; other lines carry '-'."""
    log_file = tmp_path / "svc.log"
    logtrail.setup("cell1/conductor", "INFO", str(log_file))
    log = logging.getLogger("t")
    rid = new_request_id()

    async def child() -> None:
        log.info("child line")

    async def serve() -> None:
        logtrail.bind_request(rid)
        log.info("handler line")
        await asyncio.create_task(child())

    async def main() -> None:
        await asyncio.create_task(serve())
        log.info("idle line")

    asyncio.run(main())
    lines = [trail.parse(raw) for raw in log_file.read_text().splitlines()]
    assert [(line.service, line.request_id, line.message) for line in lines if line is not None] == [
        ("cell1/conductor", rid, "handler line"), ("cell1/conductor", rid, "child line"),
        ("cell1/conductor", "-", "idle line")]


def test_json_format_is_one_object_a_line_with_the_traceback_inside(tmp_path: Path, root_logging: None) -> None:
    log_file = tmp_path / "svc.log"
    logtrail.setup("api", "INFO", str(log_file), fmt="json")
    rid = new_request_id()
    token = logtrail.bind_request(rid)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("t").exception("failed %s", "here")
    finally:
        logtrail.unbind(token)
    raw = log_file.read_text().splitlines()
    assert len(raw) == 1
    doc = json.loads(raw[0])
    assert (doc["service"], doc["request_id"], doc["level"], doc["message"]) == ("api", rid, "ERROR", "failed here")
    assert "ValueError: boom" in doc["exc"]


def test_log_file_rotates_by_size_keeping_the_configured_backups(tmp_path: Path, root_logging: None) -> None:
    log_file = tmp_path / "svc.log"
    logtrail.setup("api", "INFO", str(log_file), max_bytes=2000, backups=2)
    for n in range(200):
        logging.getLogger("t").info("line %d %s", n, "x" * 50)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["svc.log", "svc.log.1", "svc.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert "line 199 " in log_file.read_text()


def test_log_file_formats_each_record_once_and_rotates_before_the_limit(tmp_path: Path, root_logging: None) -> None:
    """The rotating file formats a record once (the stdlib's formatted it again for its size check), and a
    file never passes max_bytes: every line whole, none lost, in order across the rotated files."""
    formatted = []

    class Counting(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            formatted.append(record.getMessage())
            return super().format(record)

    log_file = tmp_path / "svc.log"
    logtrail.setup("api", "INFO", str(log_file), max_bytes=1000, backups=3)
    handler = logging.getLogger().handlers[0]
    handler.setFormatter(Counting("%(message)s"))
    for n in range(80):
        logging.getLogger("t").info("line %02d %s", n, "y" * 60)
    assert formatted == [f"line {n:02d} {'y' * 60}" for n in range(80)]
    files = [log_file.with_name(f"svc.log.{i}") for i in (3, 2, 1)] + [log_file]
    assert all(f.stat().st_size < 1000 for f in files)
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert lines == [f"line {n:02d} {'y' * 60}" for n in range(80 - len(lines), 80)]
    assert len(lines) > 3 * (1000 // 70)  # the three rotated files are full, not one line each


def test_trail_merges_services_in_time_order_with_tracebacks_and_rotations(tmp_path: Path) -> None:
    rid, other = new_request_id(), new_request_id()
    (tmp_path / "api.log").write_text(
        f"2026-12-06 10:00:00,100 INFO [api] [{rid}] api.middleware: POST /compute/v2.1/servers status: 202\n"
        f"2026-12-06 10:00:00,200 INFO [api] [{other}] api.middleware: GET /x status: 200\n")
    (tmp_path / "cell1_compute_node1.log.1").write_text(
        f"2026-12-06 10:00:00,050 INFO [cell1/compute/node1] [{rid}] node: older, rotated\n")
    (tmp_path / "cell1_compute_node1.log").write_text(
        "--- 2026-12-06 09:59:59 supervisor: starting cell1/compute/node1 (start #1) ---\n"
        f"2026-12-06 10:00:00,300 ERROR [cell1/compute/node1] [{rid}] node: spawn failed\n"
        "Traceback (most recent call last):\n  ValueError: boom\n"
        "2026-12-06 10:00:00,400 INFO [cell1/compute/node1] [-] node: heartbeat\n")
    (tmp_path / "cell1_conductor.log").write_text(json.dumps(
        {"time": logtrail_time("2026-12-06 10:00:00", 150), "service": "cell1/conductor", "level": "INFO",
         "request_id": rid, "logger": "boot", "message": "building x"}) + "\n")
    (tmp_path / "supervisor.log").write_text(f"2026-12-06 10:00:00,000 INFO [supervisor] [{rid}] x: not a service\n")
    lines = trail.trail(tmp_path, rid)
    assert [(line.service, line.message) for line in lines] == [
        ("cell1/compute/node1", "older, rotated"), ("api", "POST /compute/v2.1/servers status: 202"),
        ("cell1/conductor", "building x"),
        ("cell1/compute/node1", "spawn failed\nTraceback (most recent call last):\n  ValueError: boom")]
    assert trail.trail(tmp_path, new_request_id()) == []


def logtrail_time(stamp: str, millis: int) -> float:
    import time
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + millis / 1000


def _cluster_file(tmp_path: Path, logging_section: object) -> Path:
    doc = cluster_yaml()
    doc["logging"] = logging_section
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_cluster_file_logging_section_defaults_and_values(tmp_path: Path) -> None:
    doc = cluster_yaml()
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(doc))
    plain = clusterfile.load(tmp_path / "plain.yaml")
    assert (plain.log_max_bytes, plain.log_backups, plain.log_format) == (20 << 20, 5, "text")
    set_ = clusterfile.load(_cluster_file(tmp_path, {"max_bytes": "5M", "backups": 3, "format": "json"}))
    assert (set_.log_max_bytes, set_.log_backups, set_.log_format) == (5 << 20, 3, "json")


@pytest.mark.parametrize(("section", "where"), [({"max_bytes": "lots"}, "logging.max_bytes"),
                                                 ({"backups": 0}, "logging.backups"),
                                                 ({"format": "xml"}, "logging.format"),
                                                 ({"rotate": True}, "logging")])
def test_cluster_file_refuses_bad_logging_settings(tmp_path: Path, section: object, where: str) -> None:
    with pytest.raises(ClusterFileError) as exc:
        clusterfile.load(_cluster_file(tmp_path, section))
    assert where in str(exc.value)
