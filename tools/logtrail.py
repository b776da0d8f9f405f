"""`cellctl logs --request req-...`: one request's trail through every service's log, in time order.

Reads <state>/log/<service>.log and its rotated files (.log.1 ...), text or JSON lines
(cells/logtrail.py), keeps the lines tagged with the request id or naming it, with the traceback
lines that follow a kept line, and merges them by time. Services on `via: ssh` hosts log on their
own machines and are not read here.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# cells/logtrail.py text_formatter: "2026-12-06 20:39:18,123 INFO [cell1/conductor] [req-...] name: message"
_TEXT = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (\S+) \[([^\]]*)\] \[([^\]]*)\] ([^:]*): (.*)")


@dataclass(frozen=True)
class Line:
    time: float  # epoch seconds
    service: str
    level: str
    request_id: str
    logger: str
    message: str

    def render(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time)) + f".{int(self.time * 1000) % 1000:03d}"
        return f"{stamp} {self.service:<24} {self.level:<7} {self.logger}: {self.message}"


def parse(raw: str) -> Line | None:
    """One log line in either format; None for anything else (a traceback line, the supervisor's marks)."""
    if raw.startswith("{"):
        try:
            doc = json.loads(raw)
            message = str(doc["message"]) + ("\n" + str(doc["exc"]) if doc.get("exc") else "")
            return Line(float(doc["time"]), str(doc["service"]), str(doc["level"]), str(doc["request_id"]),
                        str(doc["logger"]), message)
        except (ValueError, KeyError, TypeError):
            return None
    m = _TEXT.fullmatch(raw)
    if m is None:
        return None
    when = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
    return Line(when, m.group(4), m.group(3), m.group(5), m.group(6), m.group(7))


def log_files(log_dir: Path) -> list[Path]:
    """Every service's log and its rotations, the supervisor's own log left out."""
    return sorted(p for p in log_dir.glob("*.log*")
                  if re.fullmatch(r".+\.log(\.\d+)?", p.name) and not p.name.startswith("supervisor.log"))


def _lines_of(path: Path, request_id: str) -> Iterator[Line]:
    kept: Line | None = None  # the last kept line, which takes the unparsed (traceback) lines after it
    with path.open(encoding="utf-8", errors="replace") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            line = parse(raw)
            if line is None:
                if kept is not None and raw:
                    kept = Line(kept.time, kept.service, kept.level, kept.request_id, kept.logger,
                                kept.message + "\n" + raw)
                continue
            if kept is not None:
                yield kept
            kept = line if line.request_id == request_id or request_id in line.message else None
    if kept is not None:
        yield kept


def trail(log_dir: Path, request_id: str) -> list[Line]:
    """The request's lines from every log under log_dir, oldest first (ties keep file order)."""
    found = [line for path in log_files(log_dir) for line in _lines_of(path, request_id)]
    return sorted(found, key=lambda line: line.time)
