"""One call's life cycle, the same for every tool: start, run, findings, record, close.

``simulate_call``, ``aiflow test``, ``aiflow load``, ``aiflow replay``, ``aiflow call`` and
the outbound API all drive their calls through ``running``, so a call that cannot start, a
hang-up, a recording and a cancelled call mean the same thing everywhere.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.emulator import EmulatedCall, InProcessTransport, running
    >>> async def main():
    ...     async with running(EmulatedCall(InProcessTransport(assistant))) as call:
    ...         await call.say("When are you open?")
    ...     return call.end_reason, len(call.hangup_findings)
    >>> asyncio.run(main())
    ('caller hung up', 0)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from .._loader import describe_error
from .call import EmulatedCall
from .record import save_transcript
from .transports import AppUnreachableError

__all__ = ["CallStartError", "running"]


class CallStartError(Exception):
    """The call could not start: the connection failed (``connected`` is false), or the
    connection opened but ``session_start`` reached nobody."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected


@contextlib.asynccontextmanager
async def running(
    call: EmulatedCall,
    *,
    record: str | Path | None = None,
    target: str | None = None,
    answer: bool = True,
) -> AsyncIterator[EmulatedCall]:
    """Drive ``call`` from start to close; the block runs the call.

    1. **start**: connect and send ``session_start`` (``answer=False``: only connect, for a
       tool that sends recorded events itself). A connection that fails, or a
       ``session_start`` that reaches nobody, raises ``CallStartError`` with one line that
       says why, and nothing more is sent.
    2. **run**: the block.
    3. **findings**: when the block ends the caller hangs up if the call is still connected;
       ``call.hangup_findings`` holds what that raised. If the block fails, the caller hangs
       up all the same; if it is cancelled, the call is abandoned (no ``session_end``).
    4. **record**: the transcript is written to ``record`` (``target`` names the app in it),
       however the call ended.
    5. **close**: the transport is released.
    """
    try:
        try:
            await (call.start() if answer else call.open())
        except Exception as exc:  # a refused upgrade, a reset, a bad URL: one line, no traceback
            call.abandon("the call could not start")
            reason = str(exc) if isinstance(exc, AppUnreachableError) else describe_error(exc)
            raise CallStartError(reason, connected=False) from exc
        lost = call.unreachable
        if lost is not None:
            call.abandon("the app could not be reached")
            raise CallStartError(lost.message, connected=True)
        try:
            yield call
        except asyncio.CancelledError:
            call.abandon("cancelled")
            raise
        await call.hangup()
    finally:
        try:
            with contextlib.suppress(Exception):  # the call's outcome is already decided
                await call.close()  # hangs up first if the block failed
        finally:
            if record is not None:
                Path(record).parent.mkdir(parents=True, exist_ok=True)
                save_transcript(call, record, target=target)
