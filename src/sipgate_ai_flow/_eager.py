"""Run a coroutine's first step at once; make a task only if it has to wait.

Most events are handled without ever waiting (the in-memory store, a quick handler, a socket
that takes the frame): for them a task, its scheduling and its wake-up would cost more than the
handling itself. ``start`` runs the coroutine up to its first real suspension in the caller,
then hands it to a task that carries on from there. It is Python 3.12's eager task start,
for every supported Python, without creating a task in the common case.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start"]

_UNSET: Any = object()


def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first waits; then return the task that runs the rest (``None``
    when it finished, or raised, without waiting: exceptions propagate).

    Like a task, it runs in a copy of the caller's context, so the context variables it sets
    never leak into the caller's.

    Example:
        >>> async def quick() -> None:
        ...     pass
        >>> async def main() -> bool:
        ...     return start(quick()) is None
        >>> asyncio.run(main())
        True
    """
    context = contextvars.copy_context()
    try:
        step = context.run(coro.send, None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_Resumed(coro, step, context))


class _Resumed(Coroutine[Any, Any, None]):
    """A coroutine whose first step already ran: a task drives the rest, each step in the
    coroutine's own context, starting from the future that step stopped at."""

    __slots__ = ("_context", "_coro", "_step")

    def __init__(
        self, coro: Coroutine[Any, Any, None], step: Any, context: contextvars.Context
    ) -> None:
        self._coro = coro
        self._step = step
        self._context = context

    def send(self, value: Any) -> Any:
        step = self._step
        if step is not _UNSET:  # the task's first step: wait for what the coroutine waits for
            self._step = _UNSET
            return step
        return self._context.run(self._coro.send, value)

    def throw(self, *args: Any) -> Any:
        step = self._step
        if step is not _UNSET:
            # Cancelled before the task's first step: a task would have cancelled the future
            # it waits for; do so, so whoever completes it knows nobody takes the result.
            self._step = _UNSET
            if isinstance(step, asyncio.Future):
                step.cancel()
        return self._context.run(self._coro.throw, *args)

    def close(self) -> None:
        self._coro.close()

    def __repr__(self) -> str:
        return f"<resumed {self._coro!r}>"

    def __await__(self) -> Generator[Any, None, None]:
        return self  # send/throw/__next__ make it its own iterator

    def __iter__(self) -> _Resumed:
        return self

    def __next__(self) -> Any:
        return self.send(None)
