"""Replay a recorded call against an app and diff its answers: a golden test for voice bots.

The recorded events are sent again, in order and with their timing, and the actions the app
sends now are compared, event by event, with the ones recorded. The events themselves are
not re-emulated: if the app answers differently, the replay still sends what the caller and
the service did in the recording, which is what makes a difference easy to read.

Example:
    >>> import asyncio, io
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.testing import simulate_call
    >>> from sipgate_ai_flow.emulator.record import write_transcript, read_transcript
    >>> async def record_and_replay():
    ...     async with simulate_call(assistant) as call:
    ...         await call.say("When are you open?")
    ...     out = io.StringIO()
    ...     write_transcript(call, out)
    ...     return await replay(read_transcript(io.StringIO(out.getvalue())), assistant)
    >>> result = asyncio.run(record_and_replay())
    >>> result.events, result.differences
    (7, [])
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .call import CallConfig, EmulatedCall, RealClock
from .lifecycle import running
from .record import read_transcript
from .target import Target, resolve_target
from .transports import TRANSPORTS, HttpAppTransport

if TYPE_CHECKING:
    from ..assistant import AiFlowAssistant

__all__ = ["Difference", "ReplayResult", "replay"]


@dataclass
class Difference:
    """An event whose answer changed."""

    number: int
    """Which event (1-based) of the recording."""
    event: dict[str, Any]
    at: float
    recorded: list[Any]
    now: list[Any]

    def diff(self) -> str:
        """A unified diff of the recorded and the current answer (pretty JSON)."""
        return "".join(
            difflib.unified_diff(_pretty(self.recorded), _pretty(self.now), "recorded", "now", n=2)
        )

    def __str__(self) -> str:
        rest = {k: v for k, v in self.event.items() if k not in ("type", "session")}
        what = f"event {self.number} {self.event.get('type')} at {self.at:.3f} s"
        if rest:
            what += f" {json.dumps(rest, ensure_ascii=False)}"
        return f"{what}\n{self.diff()}"


@dataclass
class ReplayResult:
    """What a replay found."""

    events: int = 0
    """Events sent."""
    differences: list[Difference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Exchanges that failed outright (no reply, HTTP errors, bad JSON)."""

    @property
    def same(self) -> bool:
        return not self.differences and not self.problems


async def replay(
    transcript: tuple[dict[str, Any], list[dict[str, Any]]] | str | Path,
    target: Target | AiFlowAssistant | str,
    *,
    token: str | None = None,
    timing: bool | None = None,
    ignore: Collection[str] = (),
    same_session: bool = False,
    deadline: float = 5.0,
) -> ReplayResult:
    """Send the recorded events to ``target`` and compare the answers.

    Args:
        transcript: ``(header, entries)`` from ``read_transcript``, or a transcript file.
        target: a ``Target``, an ``AiFlowAssistant``, a module or file naming one, or the
            app's URL (``http(s)://`` or ``ws(s)://``).
        timing: wait between events as recorded. By default only for calls recorded on the
            real clock; a virtual-clock recording was fast-forwarded, so is its replay.
        ignore: action fields left out of the comparison (e.g. ``text`` for an LLM bot).
        same_session: reuse the recorded session id; by default a fresh one is used (the
            app may still hold state for the old one) and mapped back before comparing.
    """
    header, entries = (
        read_transcript(transcript) if isinstance(transcript, (str, Path)) else transcript
    )
    recorded = _answers(entries)
    old_id = str((header.get("session") or {}).get("id", ""))
    new_id = old_id if same_session or not old_id else str(uuid.uuid4())
    if timing is None:
        timing = header.get("clock") == "real"
    resolved = target if isinstance(target, Target) else resolve_target(target)
    transport = resolved.transport(token=token, deadline=deadline)
    call = EmulatedCall(transport, CallConfig(session_id=new_id), clock=RealClock())
    comparison = _Comparison(ignore, old_id, new_id)
    started = time.monotonic()
    async with running(call, answer=False):
        for number, (at, event, answer) in enumerate(recorded, 1):
            if event.get("type") == "user_speech_started" and not transport.sends_speech_started:
                continue  # recorded over a WebSocket; the service never sends it over HTTP
            if timing and (delay := at - (time.monotonic() - started)) > 0:
                await asyncio.sleep(delay)
            seen = len(call.findings)
            now = await call.forward(_swap(event, old_id, new_id), expect=len(answer))
            for finding in call.findings[seen:]:
                if finding.code != "slow_reply":
                    comparison.result.problems.append(
                        f"event {number} {event.get('type')}: {finding}"
                    )
            comparison.compare(number, event, at, answer, now)
    recorded_over = TRANSPORTS.get(str(header.get("transport")), HttpAppTransport)
    if not (transport.pairs_replies and recorded_over.pairs_replies):
        comparison.forgive_timing()
    return comparison.done(len(recorded))


class _Comparison:
    def __init__(self, ignore: Collection[str], old_id: str, new_id: str) -> None:
        self.ignore = frozenset(ignore)
        self.old_id, self.new_id = old_id, new_id
        self.result = ReplayResult()
        self.before: list[Any] = []
        self.after: list[Any] = []

    def forgive_timing(self) -> None:
        """Over a WebSocket an answer may land after the next event was sent (the frames have
        no reply-to); when the action streams are equal, nothing changed."""
        if self.before == self.after:
            self.result.differences.clear()

    def compare(
        self, number: int, event: dict[str, Any], at: float, recorded: list[Any], now: list[Any]
    ) -> None:
        before = [self.clean(a) for a in recorded]
        after = [self.clean(_swap(a, self.new_id, self.old_id)) for a in now]
        self.before.extend(before)
        self.after.extend(after)
        if before != after:
            self.result.differences.append(Difference(number, event, at, before, after))

    def clean(self, action: Any) -> Any:
        if not isinstance(action, dict):
            return action
        return {k: v for k, v in action.items() if k not in self.ignore}

    def done(self, events: int) -> ReplayResult:
        self.result.events = events
        return self.result


def _answers(entries: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any], list[Any]]]:
    """Each recorded event with the actions that followed it (until the next event)."""
    out: list[tuple[float, dict[str, Any], list[Any]]] = []
    for entry in entries:
        if entry["kind"] == "event":
            out.append((float(entry["t"]), entry["data"], []))
        elif entry["kind"] == "action" and out:
            out[-1][2].append(entry["data"])
    return out


def _swap(value: Any, old: str, new: str) -> Any:
    if old == new:
        return value
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return value


def _pretty(actions: list[Any]) -> list[str]:
    return [line + "\n" for line in json.dumps(actions, indent=2, sort_keys=True).splitlines()]
