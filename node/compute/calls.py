"""What the libvirt thread pool is doing: every blocking call, queued or running, with its
timeout. A call past its timeout keeps its thread (Python cannot stop it): a hypervisor
that hangs shows here as stuck calls and a saturated pool, and the compute reports
itself unhealthy on its heartbeat instead of beating as fine (node/compute/manager.py)."""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class CallTracker:
    def __init__(self) -> None:
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[str, float, float]] = {}  # id -> (name, submitted, timeout)
        self._running: dict[int, tuple[str, float, float]] = {}  # id -> (name, started, timeout)

    def track(self, func: Callable[..., T], timeout: float) -> tuple[int, Callable[..., T]]:
        """(id, the function to hand to the pool): it records when a thread takes it and ends it."""
        call_id = next(self._ids)
        name = getattr(func, "__name__", "call")
        with self._lock:
            self._waiting[call_id] = (name, time.monotonic(), timeout)

        def tracked(*args: Any) -> T:
            with self._lock:
                if self._waiting.pop(call_id, None) is None:
                    raise TimeoutError(f"libvirt call {name} given up before it started")
                self._running[call_id] = (name, time.monotonic(), timeout)
            try:
                return func(*args)
            finally:
                with self._lock:
                    self._running.pop(call_id, None)
        return call_id, tracked

    def given_up(self, call_id: int) -> None:
        """The caller stopped waiting: a call no thread took yet never runs (one running goes on)."""
        with self._lock:
            self._waiting.pop(call_id, None)

    def health(self, now: float | None = None) -> str:
        """"" when fine; else why not: the longest-stuck call, or how many wait past their timeout."""
        now = time.monotonic() if now is None else now
        with self._lock:
            stuck = [(now - started, name, timeout) for name, started, timeout in self._running.values()
                     if now - started > timeout]
            queued = [now - submitted for _, submitted, timeout in self._waiting.values() if now - submitted > timeout]
        if stuck:
            age, name, timeout = max(stuck)
            more = f" ({len(stuck)} calls stuck)" if len(stuck) > 1 else ""
            return f"libvirt call {name} stuck for {age:.0f} s (timeout {timeout:g} s){more}"
        if queued:
            return f"libvirt executor saturated: {len(queued)} calls waiting for {max(queued):.0f} s"
        return ""
