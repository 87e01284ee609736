"""``SessionState``: one call's state, as handlers see it through ``ctx.state``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import StoreError
from .base import SessionStore

__all__ = ["SessionState"]


def _jsonable(key: str, value: Any) -> Any:
    # Round-trip through JSON so every store keeps exactly what Redis would give back.
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"state value for {key!r} is not JSON-serialisable: {exc}") from None


class SessionState:
    """The state of one call: JSON values under string keys.

    Inside a handler (``ctx.state``) it works on the state loaded when the call's lock was
    taken, and the changes are written back when the handler ends, so reads cost nothing and
    other workers never see half an event. Outside handlers (``assistant.state(session_id)``)
    every call goes to the store.

    Example:
        >>> import asyncio
        >>> from sipgate_ai_flow import AiFlowAssistant
        >>> assistant = AiFlowAssistant()
        >>> @assistant.on_user_input_timeout
        ... async def nudge(event, ctx):
        ...     misses = await ctx.state.incr("timeouts")
        ...     return "Goodbye." if misses >= 3 else "Are you still there?"
    """

    __slots__ = ("_data", "_deleted", "_dirty", "session_id", "store")

    def __init__(
        self, store: SessionStore, session_id: str, data: dict[str, Any] | None = None
    ) -> None:
        self.store = store
        self.session_id = session_id
        self._data = data
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()

    def __repr__(self) -> str:
        return f"SessionState(session_id={self.session_id!r}, store={self.store!r})"

    @property
    def changes(self) -> dict[str, Any]:
        """Keys set since the state was loaded (for the store's ``release``)."""
        data = self._data or {}
        return {key: data[key] for key in self._dirty if key in data}

    @property
    def deleted(self) -> set[str]:
        return self._deleted

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        data = self._data if self._data is not None else await self.store.load(self.session_id)
        return data.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        """Set ``key`` to a JSON-serialisable ``value``."""
        await self.update({key: value})

    async def update(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Set several keys at once: ``update(step="address", tries=0)``."""
        changes = {k: _jsonable(k, v) for k, v in {**(values or {}), **more}.items()}
        if self._data is None:
            await self.store.write(self.session_id, changes, frozenset())
            return
        self._data.update(changes)
        self._dirty.update(changes)
        self._deleted.difference_update(changes)

    async def incr(self, key: str, by: int = 1) -> int:
        """Add ``by`` to an integer key (missing counts as 0) and return the new value.

        Atomic: inside a handler the call's lock serialises it; outside, the store does.
        """
        if self._data is None:
            return await self.store.incr(self.session_id, key, by)
        current = self._data.get(key, 0)
        if isinstance(current, bool) or not isinstance(current, int):
            raise StoreError(f"state key {key!r} holds {current!r}, not an integer")
        self._data[key] = current + by
        self._dirty.add(key)
        self._deleted.discard(key)
        return current + by

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error when it is missing)."""
        if self._data is None:
            await self.store.write(self.session_id, {}, {key})
            return
        self._data.pop(key, None)
        self._dirty.discard(key)
        self._deleted.add(key)

    async def all(self) -> dict[str, Any]:
        """A copy of the whole state."""
        if self._data is None:
            return await self.store.load(self.session_id)
        return dict(self._data)
