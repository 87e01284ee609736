"""``simulate_call``: drive one emulated call against an app from a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from ..emulator.call import CallConfig, EmulatedCall, RealClock, VirtualClock
from ..emulator.lifecycle import running
from ..emulator.target import resolve_target

__all__ = ["CallDriver", "simulate_call"]

CallDriver = EmulatedCall
"""What ``simulate_call`` yields: ``say``, ``press``, ``silence``, ``hangup``, and the records
``actions``, ``events``, ``spoken``, ``findings``, ``ended``, ``state`` and ``log``."""


@asynccontextmanager
async def simulate_call(
    target: Any,
    transport: Literal["http", "websocket", "inprocess"] | None = None,
    *,
    token: str | None = None,
    from_number: str = "+4915111111111",
    to_number: str = "+4921100000000",
    direction: Literal["inbound", "outbound"] = "inbound",
    realtime: bool = False,
    deadline: float = 5.0,
    config: CallConfig | None = None,
    record: str | Path | None = None,
    **options: Any,
) -> AsyncIterator[CallDriver]:
    """Start a call to ``target`` and hang up (if still connected) when the block ends.

    Args:
        target: an ``AiFlowAssistant`` (called in process), an app built from one, a module
            or ``.py`` file naming one, or the app's URL: ``http(s)://.../webhook`` or
            ``ws(s)://.../ws``.
        transport: ``http``, ``websocket`` or ``inprocess``; by default what ``target`` implies.
        token: the shared secret sent as ``X-API-TOKEN``.
        realtime: pace the call in wall-clock time; by default time is virtual, so playback
            and silences take no time and every run is the same.
        deadline: seconds after which a reply counts as too slow (a finding).
        config: a full ``CallConfig``; ``options`` set its fields one by one
            (``transfer_outcome="failed"``, ``speaking_rate=12``, ...).
        record: save the call as a JSON Lines transcript at this path when the block ends
            (for ``aiflow replay``).

    Raises ``CallStartError`` when the app cannot be reached (a refused connection, or
    no answer at all to ``session_start``).
    """
    if config is None:
        config = CallConfig(
            from_number=from_number, to_number=to_number, direction=direction, **options
        )
    elif options or (from_number, to_number, direction) != (
        "+4915111111111",
        "+4921100000000",
        "inbound",
    ):
        raise TypeError("pass either config= or the call options one by one, not both")
    resolved = resolve_target(target, transport)
    call = EmulatedCall(
        resolved.transport(token=token, deadline=deadline),
        config,
        clock=RealClock() if realtime else VirtualClock(),
    )
    async with running(call, record=record, target=resolved.name) as started:
        yield started
