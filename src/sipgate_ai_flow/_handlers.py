"""Calling user handlers: arity, sync/async/generator kinds, and result normalisation."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .actions import BaseAction, SpeakAction
from .codec import ActionLike
from .errors import ConfigurationError, InvalidActionError

_ASYNC, _SYNC, _ASYNC_GEN, _SYNC_GEN = range(4)

# Sync handlers often block on network I/O (an LLM, a CRM); a generous pool keeps one slow call
# from starving the others, as Starlette's 40-token limiter does for sync endpoints.
_POOL_SIZE = 64
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool  # noqa: PLW0603 - one process-wide pool, created on first use
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_POOL_SIZE, thread_name_prefix="aiflow-handler")
    return _pool


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

    __slots__ = ("arity", "direct", "fn", "kind", "name", "streams")

    def __init__(self, fn: Callable[..., Any], *, min_args: int, max_args: int, what: str) -> None:
        if not callable(fn):
            raise ConfigurationError(f"{what} must be callable, got {fn!r}")
        self.fn = fn
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
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, self.fn, *args)
        result = await loop.run_in_executor(_executor(), call)
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
        loop = asyncio.get_running_loop()
        generator: Iterator[Any] = self.fn(*args)
        done = object()
        context = contextvars.copy_context()
        while True:
            step = functools.partial(context.run, next, generator, done)
            item = await loop.run_in_executor(_executor(), step)
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
