"""``MemoryStore``: per-call state in this process (the default)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from ..errors import StoreError
from .base import EventScope, SessionStore

__all__ = ["MemoryStore"]


class _Entry:
    # The call's lock is ``busy`` plus a FIFO of waiting futures: taking a free lock needs no
    # await at all, which is what nearly every event does.
    __slots__ = ("busy", "data", "expires", "outbox", "starts", "waiters")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.outbox: list[dict[str, Any]] = []
        self.busy = False
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.starts = 0
        self.expires = 0.0

    @property
    def idle(self) -> bool:
        return not self.busy and not self.waiters


class MemoryStore(SessionStore):
    """State in a dict in this process: nothing to set up, nothing shared.

    Single process only: with several workers (``aiflow serve --workers``) each would see its
    own state and its own locks, so use ``RedisStore`` there.

    Example:
        >>> store = MemoryStore(ttl=600)
    """

    def __init__(self, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._next_sweep = time.monotonic() + ttl

    def __repr__(self) -> str:
        return f"MemoryStore(ttl={self.ttl:g})"

    def _entry(self, session_id: str) -> _Entry:
        entry = self._entries.get(session_id)
        now = time.monotonic()
        if entry is None or (entry.expires < now and entry.idle):
            if now >= self._next_sweep:
                self._sweep(now)
            entry = self._entries[session_id] = _Entry()
        entry.expires = now + self.ttl
        return entry

    def _sweep(self, now: float) -> None:
        for sid in [s for s, e in self._entries.items() if e.expires < now]:
            if self._entries[sid].idle:
                del self._entries[sid]
        self._next_sweep = now + self.ttl

    async def acquire(self, session_id: str, *, start: bool = False) -> EventScope:
        entry = self._entries.get(session_id)
        if entry is None or entry.expires < time.monotonic():
            entry = self._entry(session_id)
        else:
            entry.expires = time.monotonic() + self.ttl
        if entry.busy or entry.waiters:
            await self._wait(entry)
        else:
            entry.busy = True
        if start:
            entry.starts += 1
        outbox, entry.outbox = entry.outbox, []
        # The dict itself, not a copy: writes go straight in (the lock serialises the call).
        return EventScope(session_id, "memory", outbox, entry.data, entry.starts)

    async def release(
        self,
        scope: EventScope,
        *,
        changes: Mapping[str, Any] | None = None,
        deleted: frozenset[str] | set[str] = frozenset(),
        drop: bool = False,
    ) -> None:
        entry = self._entries.get(scope.session_id)
        if entry is None:
            raise StoreError(f"session {scope.session_id!r} vanished while locked")
        if drop and not entry.waiters:
            del self._entries[scope.session_id]
        elif drop:
            entry.data.clear()
            entry.outbox.clear()
            entry.starts = 0
        else:
            if changes:
                entry.data.update(changes)
            for key in deleted:
                entry.data.pop(key, None)
        if entry.waiters:
            self._hand_over(entry)
        else:
            entry.busy = False

    @staticmethod
    async def _wait(entry: _Entry) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry.waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                MemoryStore._hand_over(entry)  # the lock was ours already: pass it on
            else:
                with contextlib.suppress(ValueError):
                    entry.waiters.remove(future)
            raise

    @staticmethod
    def _hand_over(entry: _Entry) -> None:
        """Release: the first live waiter gets the lock (it stays busy), else it is free."""
        waiters = entry.waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        entry.busy = False

    def _live(self, session_id: str) -> _Entry | None:
        entry = self._entries.get(session_id)
        if entry is None or entry.expires < time.monotonic():
            return None
        return entry

    async def load(self, session_id: str) -> dict[str, Any]:
        entry = self._live(session_id)
        return dict(entry.data) if entry is not None else {}

    async def write(
        self, session_id: str, changes: Mapping[str, Any], deleted: frozenset[str] | set[str]
    ) -> None:
        data = self._entry(session_id).data
        data.update(changes)
        for key in deleted:
            data.pop(key, None)

    async def incr(self, session_id: str, key: str, by: int) -> int:
        data = self._entry(session_id).data
        current = data.get(key, 0)
        if isinstance(current, bool) or not isinstance(current, int):
            raise StoreError(f"state key {key!r} holds {current!r}, not an integer")
        data[key] = current + by
        return current + by

    async def exists(self, session_id: str) -> bool:
        entry = self._live(session_id)
        return entry is not None and entry.starts > 0

    async def enqueue(self, session_id: str, actions: list[dict[str, Any]]) -> None:
        self._entry(session_id).outbox.extend(actions)
