"""Calls this process serves right now, and where one event's actions go.

The call's lock, state and outbox live in the session store (``sipgate_ai_flow.state``), so
they hold across worker processes. This module keeps what is local: which calls have a
WebSocket here (their ``sender``), which have ended, and the ``Reply`` being assembled for an
event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from .codec import ActionLike

logger = logging.getLogger("sipgate_ai_flow.dispatch")

Sender = Callable[[list[ActionLike]], Awaitable[None]]
Deliver = Callable[[str, list[ActionLike]], Awaitable[None]]


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


class Reply:
    """Where one event's actions go.

    While ``open`` (an HTTP reply or ``handle_event`` still being assembled) actions collect
    here, after the actions queued for the call before (``pending``); once closed they go to
    the call through ``deliver`` (its WebSocket, another worker's, or its outbox).
    """

    __slots__ = ("actions", "deliver", "emitted", "open", "pending", "session_id")

    def __init__(self, session_id: str | None, deliver: Deliver, *, open: bool) -> None:
        self.session_id = session_id
        self.deliver = deliver
        self.open = open
        self.actions: list[ActionLike] = []
        self.pending: list[ActionLike] = []
        self.emitted = False

    async def emit(self, actions: list[ActionLike]) -> None:
        self.emitted = True
        if self.open:
            self.actions.extend(actions)
        elif self.session_id is not None:
            await self.deliver(self.session_id, actions)
        else:
            logger.warning("%d action(s) for an event without a session dropped", len(actions))

    def close(self) -> list[ActionLike]:
        """Stop collecting; return the reply: the call's pending actions, then this event's."""
        self.open = False
        if self.pending:
            pending, self.pending = self.pending, []
            return [*pending, *self.actions]
        return self.actions

    async def abandon(self) -> None:
        """Stop collecting without replying; pending actions wait for the next event."""
        self.open = False
        if self.pending and self.session_id is not None:
            pending, self.pending = self.pending, []
            await self.deliver(self.session_id, pending)
