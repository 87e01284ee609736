"""The ``SessionStore`` interface: per-call state, the call's lock, its outbox and routing.

A store keeps, per session id: a JSON state dict, a lock (held while an event of the call is
handled, so two workers never handle one call at once), an outbox of actions waiting for the
call's next HTTP reply, and (for WebSocket calls) which worker holds the call's socket.
Everything expires ``ttl`` seconds after the call's last activity, so calls whose
``session_end`` never comes (a successful transfer) do not pile up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Deliver", "EventScope", "SessionStore"]

Deliver = Callable[[str, list[Any]], Awaitable[None]]
"""Called with ``(session_id, actions)`` for actions routed to this worker's sockets."""


@dataclass(slots=True)
class EventScope:
    """What ``acquire`` hands back while the call's lock is held."""

    session_id: str
    token: str
    """Proof of lock ownership, for ``release``."""
    outbox: list[dict[str, Any]] = field(default_factory=list)
    """Actions queued for the call's next reply (taken out of the store)."""
    data: dict[str, Any] = field(default_factory=dict)
    """The call's state when the lock was acquired."""
    starts: int = 0
    """How many ``session_start`` events the call has had (set by ``acquire(start=True)``)."""


class SessionStore(ABC):
    """Per-call state and coordination. ``MemoryStore`` (one process) and ``RedisStore``."""

    ttl: float
    """Seconds after the last activity when a call's state expires."""

    async def connect(self) -> None:  # noqa: B027 - an optional hook
        """Check the backend is reachable (called at startup); raise ``StoreError`` if not."""

    async def close(self) -> None:  # noqa: B027 - an optional hook
        """Release connections."""

    # -- one event of a call ------------------------------------------------------------------

    @abstractmethod
    async def acquire(self, session_id: str, *, start: bool = False) -> EventScope:
        """Wait for the call's lock; take its outbox and load its state.

        ``start=True`` (a ``session_start``) also counts the start in ``EventScope.starts``.
        """

    @abstractmethod
    async def release(
        self,
        scope: EventScope,
        *,
        changes: Mapping[str, Any] | None = None,
        deleted: frozenset[str] | set[str] = frozenset(),
        drop: bool = False,
    ) -> None:
        """Write the event's state changes (or ``drop`` the call entirely) and unlock."""

    # -- state outside events -----------------------------------------------------------------

    @abstractmethod
    async def load(self, session_id: str) -> dict[str, Any]:
        """The call's state (empty when unknown)."""

    @abstractmethod
    async def write(
        self, session_id: str, changes: Mapping[str, Any], deleted: frozenset[str] | set[str]
    ) -> None:
        """Set and delete keys of the call's state."""

    @abstractmethod
    async def incr(self, session_id: str, key: str, by: int) -> int:
        """Add ``by`` to an integer key atomically; return the new value."""

    @abstractmethod
    async def exists(self, session_id: str) -> bool:
        """Whether the call is live (has started and not ended or expired)."""

    # -- late actions -------------------------------------------------------------------------

    @abstractmethod
    async def enqueue(self, session_id: str, actions: list[dict[str, Any]]) -> None:
        """Queue actions for the call's next HTTP reply."""

    async def claim(self, session_id: str, deliver: Deliver) -> None:  # noqa: B027
        """This worker holds the call's WebSocket: route pushes from other workers here."""

    async def unclaim(self, session_id: str) -> None:  # noqa: B027 - an optional hook
        """The call's WebSocket here is gone."""

    async def route(self, session_id: str, actions: list[dict[str, Any]]) -> bool:
        """Deliver to the worker holding the call's WebSocket; ``False`` if none does."""
        return False
