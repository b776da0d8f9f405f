"""Per-key asyncio locks (one per instance) that vanish when nobody uses them."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def __call__(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:  # last user (holder or waiter) gone: forget the key
                del self._users[key], self._locks[key]

    def busy(self, key: str) -> bool:
        """Someone holds or waits for `key`."""
        return key in self._users

    def __len__(self) -> int:
        return len(self._locks)
