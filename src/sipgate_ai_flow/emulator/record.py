"""Call transcripts as JSON Lines: every event sent and every action received, with times.

The first line describes the call; each further line is one entry of ``EmulatedCall.log``::

    {"kind": "call", "format": 1, "session": {...}, "transport": "http", "target": "...", ...}
    {"t": 0.0, "kind": "event", "data": {"type": "session_start", "session": {...}}}
    {"t": 0.0, "kind": "action", "data": {"type": "speak", "session_id": "...", "text": "Hi"}}
    {"t": 2.1, "kind": "note", "data": "caller barged in at 0.80 s"}
    {"t": 2.1, "kind": "finding", "data": {"code": "...", "message": "...", ...}}

``t`` is seconds since the call started, on the call's clock (virtual or real).

Example:
    >>> import asyncio, io
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.testing import simulate_call
    >>> async def record():
    ...     async with simulate_call(assistant) as call:
    ...         await call.say("When are you open?")
    ...     out = io.StringIO()
    ...     write_transcript(call, out, target="demo")
    ...     return read_transcript(io.StringIO(out.getvalue()))
    >>> header, entries = asyncio.run(record())
    >>> header["transport"], entries[0]["data"]["type"], entries[-1]["data"]["type"]
    ('inprocess', 'session_start', 'session_end')
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from .._version import __version__
from .call import EmulatedCall

__all__ = ["FORMAT", "read_transcript", "save_transcript", "write_transcript"]

FORMAT = 1


def header(call: EmulatedCall, target: str | None = None) -> dict[str, Any]:
    return {
        "kind": "call",
        "format": FORMAT,
        "version": __version__,
        "session": call.session,
        "transport": call.transport.name,
        "target": target,
        "config": asdict(call.config),
        "clock": "virtual" if call.clock.virtual else "real",
        "start_epoch_ms": call.clock.start_epoch_ms,
    }


def write_transcript(call: EmulatedCall, out: IO[str], *, target: str | None = None) -> None:
    """Write ``call`` (its header, then its log) as JSON Lines to ``out``."""
    lines: Iterable[dict[str, Any]] = [header(call, target), *call.log]
    for entry in lines:
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")


def save_transcript(call: EmulatedCall, path: str | Path, *, target: str | None = None) -> None:
    """Write ``call`` to the file ``path`` (see ``write_transcript``)."""
    with Path(path).open("w", encoding="utf-8") as out:
        write_transcript(call, out, target=target)


def read_transcript(source: str | Path | IO[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a transcript: ``(header, entries)``. Raises ``ValueError`` naming the bad line."""
    if isinstance(source, (str, Path)):
        with Path(source).open(encoding="utf-8") as handle:
            text = handle.read()
    else:
        text = source.read()
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {number}: expected a JSON object")
        rows.append(row)
    if not rows or rows[0].get("kind") != "call":
        raise ValueError('line 1: a transcript starts with a {"kind": "call", ...} header')
    if rows[0].get("format") != FORMAT:
        raise ValueError(f"line 1: transcript format {rows[0].get('format')!r}, expected {FORMAT}")
    for number, row in enumerate(rows[1:], 2):
        if row.get("kind") not in ("event", "action", "note", "finding") or "t" not in row:
            raise ValueError(f"line {number}: expected an entry with 't', 'kind' and 'data'")
    return rows[0], rows[1:]
