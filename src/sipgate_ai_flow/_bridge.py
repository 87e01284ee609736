"""One process-wide event loop in a daemon thread: how sync hosts reach the async core.

Sync frameworks (Flask, Django under WSGI) submit coroutines here instead of starting a loop
per request, so the assistant's state lives on one loop: a handler that outlives its reply
keeps running, and asyncio objects (locks, clients) created by one request work in the next.
The loop starts on first use and is re-created lazily in a forked child.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["get_loop", "run", "submit"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The bridge loop, started (once, thread-safely) on first use."""
    global _loop, _thread
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, started), name="sipgate-ai-flow-loop", daemon=True
            )
            thread.start()
            started.wait()
            _loop, _thread = loop, thread
        return _loop


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the bridge loop; returns a thread-safe future."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the bridge loop and block until its result (or ``timeout`` seconds:
    then it is cancelled and ``TimeoutError`` raised). Not callable from the loop's thread."""
    if _thread is not None and threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("_bridge.run() called from the bridge loop itself; await instead")
    future = submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"coroutine did not finish within {timeout} s") from None
    except BaseException:
        future.cancel()
        raise


def _after_fork() -> None:  # the parent's loop thread does not exist in the child
    global _lock, _loop, _thread
    _lock, _loop, _thread = threading.Lock(), None, None


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows
    os.register_at_fork(after_in_child=_after_fork)
