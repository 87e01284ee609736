"""Live calls this process serves: per-session order, where late actions go, and replies.

Every event of a session is handled under that session's lock, so events of one call run one
at a time in arrival order while different calls run concurrently. Actions produced after the
reply to their event was sent (``ctx.send``, ``assistant.push``, a handler still running after
the response budget, an async generator's later yields) go to the session's WebSocket sender
when the call is on a WebSocket, otherwise to its outbox, which the reply to the session's next
event carries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .codec import ActionLike

logger = logging.getLogger("sipgate_ai_flow.dispatch")

Sender = Callable[[list[ActionLike]], Awaitable[None]]


class Session:
    """One live call."""

    __slots__ = ("ended", "id", "lock", "outbox", "sender", "touched")

    def __init__(self, session_id: str) -> None:
        self.id = session_id
        self.lock = asyncio.Lock()
        self.outbox: list[ActionLike] = []
        self.sender: Sender | None = None
        self.ended = False
        self.touched = time.monotonic()

    async def deliver(self, actions: list[ActionLike]) -> None:
        """Send now over the call's WebSocket, else keep for the next reply."""
        if self.ended:
            logger.warning(
                "%d action(s) for session %s dropped: the call has ended", len(actions), self.id
            )
        elif self.sender is not None:
            await self.sender(actions)
        else:
            self.outbox.extend(actions)

    def take_outbox(self) -> list[ActionLike]:
        pending, self.outbox = self.outbox, []
        return pending


class SessionRegistry:
    """The sessions this process has seen and not yet seen end."""

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
        if session is None:
            now = time.monotonic()
            if now >= self._next_sweep:
                self._sweep(now)
            session = self._sessions[session_id] = Session(session_id)
        else:
            session.touched = time.monotonic()
        return session

    def close(self, session: Session) -> None:
        session.ended = True
        if session.outbox:
            logger.warning(
                "%d pending action(s) for session %s dropped: the call ended before another "
                "event could carry them",
                len(session.outbox),
                session.id,
            )
            session.outbox.clear()
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def _sweep(self, now: float) -> None:
        # Calls whose session_end never came (a successful transfer ends without one).
        cutoff = now - self.idle_ttl
        for sid in [s.id for s in self._sessions.values() if s.touched < cutoff]:
            if not self._sessions[sid].lock.locked():
                del self._sessions[sid]
        self._next_sweep = now + self.idle_ttl


class Reply:
    """Where one event's actions go.

    While ``open`` (an HTTP reply or ``handle_event`` still being assembled) actions collect in
    ``actions``; once closed they go to the session (WebSocket sender or outbox).
    """

    __slots__ = ("actions", "emitted", "open", "session")

    def __init__(self, session: Session | None, *, open: bool) -> None:
        self.session = session
        self.open = open
        self.actions: list[ActionLike] = []
        self.emitted = False

    async def emit(self, actions: list[ActionLike]) -> None:
        self.emitted = True
        if self.open:
            self.actions.extend(actions)
        elif self.session is not None:
            await self.session.deliver(actions)
        else:
            logger.warning("%d action(s) for an event without a session dropped", len(actions))

    def close(self) -> list[ActionLike]:
        """Stop collecting; return the reply: the session's pending actions, then this
        event's."""
        self.open = False
        if self.session is not None and self.session.outbox:
            return [*self.session.take_outbox(), *self.actions]
        return self.actions
