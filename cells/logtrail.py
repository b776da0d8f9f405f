"""Request ids on every log line, size-rotated log files and the JSON format for shipping.

The API middleware and the RPC server bind the request id of what they are serving to a
context variable; every asyncio task the request spawns inherits it, and a logging filter
stamps it on each record, so `cellctl logs --request req-...` (tools/logtrail.py) can follow
one request through every service's log.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
import stat
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar, Token, copy_context
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

NO_REQUEST = "-"
# benchmarks only (tools/bench/observability.py): "1" in a service's environment turns request-id tagging
# and the metrics (cells/metrics.py) off in that process, so their cost can be measured against nothing
BARE_ENV = "CELLCLOUD_BENCH_BARE"
BARE = os.environ.get(BARE_ENV) == "1"
_REQUEST_ID: ContextVar[str] = ContextVar("cellcloud_request_id", default=NO_REQUEST)

# cluster.yaml `logging:` defaults: 20 MiB per file, 5 rotated files kept (~120 MiB per service at most)
DEFAULT_MAX_BYTES = 20 << 20
DEFAULT_BACKUPS = 5
FORMATS = ("text", "json")
TEXT_TIME = "%Y-%m-%d %H:%M:%S"


def bind_request(request_id: str) -> Token[str] | None:
    """Tag this task's (and its children's) log lines with request_id; `unbind` with the token."""
    return None if BARE else _REQUEST_ID.set(request_id)


def unbind(token: Token[str] | None) -> None:
    if token is not None:
        _REQUEST_ID.reset(token)


def in_context(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` bound to the caller's context (its request id), for an executor thread: loop.run_in_executor
    and ThreadPoolExecutor.submit run in the thread's own, empty context (asyncio.to_thread copies it)."""
    if BARE:
        return fn
    ctx = copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return ctx.run(fn, *args, **kwargs)
    return run


def current_request() -> str:
    return _REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Stamps record.request_id (NO_REQUEST outside any request, unless the caller passed it in `extra`)
    and record.service."""

    def __init__(self, service_id: str) -> None:
        super().__init__()
        self.service_id = service_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(getattr(record, "request_id", None), str):
            record.request_id = NO_REQUEST if BARE else _REQUEST_ID.get()
        record.service = self.service_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (epoch seconds), ts (UTC ISO), level, service, request_id, logger,
    message and, on an exception, its traceback (never split across lines)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": round(record.created, 6),
               "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "service": getattr(record, "service", ""),
               "request_id": getattr(record, "request_id", NO_REQUEST), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class RotatingFile(logging.handlers.RotatingFileHandler):
    """The stdlib's size rotation, each record formatted once: its shouldRollover formats every record a
    second time for the size check and stats the file's path twice (a service's hot path logs a line per
    boot). Same rule, on the open file's size: rotate before a record that would take it to max_bytes;
    never rotate what is not a regular file (bpo-45401)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            if self.maxBytes > 0:
                st = os.fstat(self.stream.fileno())
                if stat.S_ISREG(st.st_mode) and st.st_size + len(msg) >= self.maxBytes:
                    self.doRollover()
                    if self.stream is None:
                        self.stream = self._open()
            self.stream.write(msg)
            self.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001  # as logging does: a failed write is reported, never raised
            self.handleError(record)


def text_formatter(service_id: str) -> logging.Formatter:
    return logging.Formatter(f"%(asctime)s %(levelname)s [{service_id}] [%(request_id)s] %(name)s: %(message)s",
                             datefmt=None)


def setup(service_id: str, level: str, log_file: str | None = None, fmt: str = "text",
          max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
    """Root logging for one service process: to log_file rotated by size when given, else stderr."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    handler: logging.Handler
    if log_file:
        # append mode: the supervisor's fd on the same file keeps taking what escapes logging (a crash
        # before this ran); after a rotation that goes to the newest rotated file
        handler = RotatingFile(log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter(service_id))
    handler.setFormatter(JsonFormatter() if fmt == "json" else text_formatter(service_id))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
