"""Per-call state that survives many workers.

``MemoryStore`` (the default) keeps it in this process; ``RedisStore`` shares it, with the
call's lock, its outbox and WebSocket routing, between worker processes.

Example:
    >>> from sipgate_ai_flow import AiFlowAssistant
    >>> from sipgate_ai_flow.state import MemoryStore
    >>> assistant = AiFlowAssistant(store=MemoryStore(ttl=600))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import EventScope, SessionStore
from .memory import MemoryStore
from .session_state import SessionState

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = [
    "EventScope",
    "MemoryStore",
    "RedisStore",
    "SessionState",
    "SessionStore",
    "store_from_url",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # needs the [redis] extra; imported on first use
        from .redis import RedisStore  # noqa: PLC0415

        return RedisStore
    raise AttributeError(name)


def store_from_url(url: str, **options: Any) -> SessionStore:
    """A store for ``url``: ``memory://`` or ``redis://`` / ``rediss://`` / ``unix://``."""
    if url in ("memory", "memory://"):
        return MemoryStore(**options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore  # noqa: PLC0415 - the [redis] extra

        return RedisStore.from_url(url, **options)
    raise ValueError(f"unknown store URL {url.rsplit('@', 1)[-1]!r}: use memory:// or redis://...")
