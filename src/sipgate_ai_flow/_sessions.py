"""Calls this process serves right now.

The call's lock, state and outbox live in the session store (``sipgate_ai_flow.state``), so
they hold across worker processes. This module keeps what is local: which calls have a
WebSocket here (their ``sender``) and which are ending.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from .codec import ActionLike

Sender = Callable[[list[ActionLike]], Awaitable[None]]


class Session:
    """A call with an event being handled here, or a WebSocket here."""

    __slots__ = ("ended", "id", "sender", "touched")

    def __init__(self, session_id: str) -> None:
        self.id = session_id
        self.sender: Sender | None = None
        self.ended = False
        self.touched = time.monotonic()


class SessionRegistry:
    """The calls this process has seen and not yet seen end (swept when idle)."""

    def __init__(self, idle_ttl: float = 3600.0) -> None:
        self._sessions: dict[str, Session] = {}
        self.idle_ttl = idle_ttl
        self._next_sweep = time.monotonic() + idle_ttl

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def open(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        now = time.monotonic()
        if session is None:
            if now >= self._next_sweep:
                self._sweep(now)
            session = self._sessions[session_id] = Session(session_id)
        else:
            session.touched = now
        return session

    def close(self, session: Session) -> None:
        session.ended = True
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def _sweep(self, now: float) -> None:
        # Calls whose session_end never came (a successful transfer ends without one).
        cutoff = now - self.idle_ttl
        for sid in [s.id for s in self._sessions.values() if s.touched < cutoff]:
            if self._sessions[sid].sender is None:
                del self._sessions[sid]
        self._next_sweep = now + self.idle_ttl
