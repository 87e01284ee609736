"""Calling user handlers: arity, sync/async/generator kinds, and result normalisation."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .actions import BaseAction, SpeakAction
from .codec import ActionLike
from .errors import ConfigurationError, InvalidActionError

_ASYNC, _SYNC, _ASYNC_GEN, _SYNC_GEN = range(4)

DEFAULT_SYNC_HANDLER_THREADS = 128
"""Threads for sync handlers: enough for 100 calls blocked at once (an LLM, a CRM)."""

_pool_logger = logging.getLogger("sipgate_ai_flow.dispatch")


class ThreadPool:
    """The threads sync handlers run in: created on first use, one per busy handler up to
    ``size``; when all are busy a warning names the option that sets the size, once."""

    __slots__ = ("_executor", "_warned", "busy", "size")

    def __init__(self, size: int = DEFAULT_SYNC_HANDLER_THREADS) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(
                f"sync_handler_threads must be a positive whole number, got {size!r}"
            )
        self.size = size
        self.busy = 0
        self._warned = False
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a thread, in a copy of the caller's context."""
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                max_workers=self.size, thread_name_prefix="aiflow-handler"
            )
        self.busy += 1
        if self.busy > self.size and not self._warned:
            self._warned = True
            _pool_logger.warning(
                "all %d sync handler threads are busy: sync handlers now wait for a free one "
                "(raise AiFlowAssistant(sync_handler_threads=...), or make the handler async)",
                self.size,
            )
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        finally:
            self.busy -= 1

    def shutdown(self) -> None:
        """Let the threads go once their work is done (a new one is made if used again)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def callable_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _kind(fn: Callable[..., Any]) -> int:
    target = fn
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial)):
        target = getattr(fn, "__call__", fn)  # noqa: B004 - callable objects: inspect __call__
    if inspect.isasyncgenfunction(target):
        return _ASYNC_GEN
    if inspect.iscoroutinefunction(target):
        return _ASYNC
    if inspect.isgeneratorfunction(target):
        return _SYNC_GEN
    return _SYNC


def positional_count(fn: Callable[..., Any], what: str) -> int:
    """How many positional arguments ``fn`` accepts (a large number for ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the signature of {what} {fn!r}: {exc}") from None
    count = 0
    for param in params:
        if param.kind is param.VAR_POSITIONAL:
            return 99
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class Handler:
    """A registered handler: how to call it and how many arguments it takes."""

    __slots__ = ("arity", "direct", "fn", "kind", "name", "pool", "streams")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        min_args: int,
        max_args: int,
        what: str,
        pool: ThreadPool,
    ) -> None:
        if not callable(fn):
            raise ConfigurationError(f"{what} must be callable, got {fn!r}")
        self.fn = fn
        self.pool = pool
        self.name = callable_name(fn)
        self.kind = _kind(fn)
        accepted = positional_count(fn, what)
        if accepted < min_args:
            raise ConfigurationError(
                f"{what} {self.name} takes {accepted} positional argument(s); "
                f"it must accept {min_args} to {max_args}"
            )
        self.arity = min(accepted, max_args)
        self.streams = self.kind in (_ASYNC_GEN, _SYNC_GEN)
        """A generator: each of its yields is sent on its own."""
        self.direct = self.kind == _ASYNC and self.arity == 1
        """An ``async def handler(event)``: the dispatcher calls ``fn`` itself."""

    async def __call__(self, *args: Any) -> Any:
        """Call a plain (non-generator) handler and return its result."""
        args = args[: self.arity]
        if self.kind == _ASYNC:
            return await self.fn(*args)
        result = await self.pool.run(self.fn, *args)
        if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
            return await result
        return result

    async def iterate(self, *args: Any) -> AsyncIterator[Any]:
        """Yield each item a generator handler yields (sync generators step in the pool)."""
        args = args[: self.arity]
        if self.kind == _ASYNC_GEN:
            async for item in self.fn(*args):
                yield item
            return
        generator: Iterator[Any] = self.fn(*args)
        done = object()
        context = contextvars.copy_context()  # one context for all the generator's steps
        while True:
            item = await self.pool.run(context.run, next, generator, done)
            if item is done:
                return
            yield item


_SPEAK_DEFAULTS = {name: field.default for name, field in SpeakAction.model_fields.items()}
_SPEAK_SET = frozenset({"session_id", "text"})


def speak(session_id: str | None, text: str) -> SpeakAction:
    """``SpeakAction(session_id=..., text=...)`` without running the validator.

    A string result is valid by construction (``text`` takes any string), and turning it into
    a speak action is the hot path of most assistants; this builds the model exactly as
    pydantic's ``model_construct`` does, at a fraction of the cost.
    """
    action = object.__new__(SpeakAction)
    values = dict(_SPEAK_DEFAULTS)
    values["session_id"] = session_id
    values["text"] = text
    object.__setattr__(action, "__dict__", values)
    object.__setattr__(action, "__pydantic_fields_set__", set(_SPEAK_SET))
    object.__setattr__(action, "__pydantic_extra__", None)
    object.__setattr__(action, "__pydantic_private__", None)
    return action


def normalise(result: Any, session_id: str | None, source: str) -> list[ActionLike]:
    """Turn a handler's return value into a list of actions stamped with ``session_id``.

    ``str`` becomes a speak action, an action model or a mapping is one action, a list or tuple
    is several in order, ``None`` is nothing. Anything else raises ``InvalidActionError``.
    """
    if result is None:
        return []
    if type(result) is str:
        return [speak(session_id, result)]
    if isinstance(result, (list, tuple)):
        actions: list[ActionLike] = []
        for item in result:
            if isinstance(item, (list, tuple)):
                raise InvalidActionError(
                    [f"{source}: returned a nested list; return one flat list of actions"]
                )
            actions.extend(normalise(item, session_id, source))
        return actions
    if isinstance(result, BaseAction):
        if result.session_id is None:
            return [result.model_copy(update={"session_id": session_id})]
        return [result]
    if isinstance(result, str):  # a str subclass, e.g. an enum member
        return [speak(session_id, str(result))]
    if isinstance(result, Mapping):
        kind = result.get("type")
        if not isinstance(kind, str):
            raise InvalidActionError(
                [f"{source}: returned a dict without a 'type' string: {dict(result)!r}"]
            )
        if "session_id" not in result:
            return [{"type": kind, "session_id": session_id, **result}]
        return [result]
    raise InvalidActionError(
        [
            f"{source}: returned {type(result).__name__}; expected str, an action, a dict, "
            "a list of those, or None"
        ]
    )
