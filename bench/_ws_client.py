"""A lean WebSocket load client: one asyncio protocol per call socket, no WebSocket library.

Why not the ``websockets`` client: 200 closed-loop sockets against a server pinned to one CPU
need a client that spends far less per event than the fastest server measured, or the client
sets the pace and the ratio shrinks towards 1. Here every frame a call sends is built once
(masked, as RFC 6455 requires of clients), a reply is checked by comparing its bytes with the
expected frame, and the next event goes out from ``data_received``: a round trip costs the
client a few microseconds. The timed run reports the client's own CPU use, so a saturated
client would show in the table.

Each call: the HTTP upgrade, ``session_start`` (waits for the greeting), then ``user_speak``
events, each sent when the previous reply arrived (closed loop), then ``session_end`` and a
close frame. ``python -m bench._ws_client`` runs the timed load and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, cast

import uvloop

from ._ws_apps import GREETING
from .dispatch import BODY
from .http import proc_stat, session_cpu_seconds

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
SESSION: dict[str, str] = json.loads(BODY)["session"]
TEXT: str = json.loads(BODY)["text"]
PATH = "/ws"
OPEN_TIMEOUT = 20.0


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final, masked client frame carrying ``payload``."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    key = os.urandom(4)
    stream = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        length, "big"
    )
    return header + key + masked


def event(kind: str, session_id: str, **fields: object) -> bytes:
    """An AI Flow event with the full session object, as JSON."""
    return json.dumps({"type": kind, **fields, "session": {**SESSION, "id": session_id}}).encode()


def speak(session_id: str, text: str) -> bytes:
    """The speak action both servers send, byte for byte."""
    return json.dumps(
        {"type": "speak", "session_id": session_id, "text": text}, separators=(",", ":")
    ).encode()


class BenchClientError(Exception):
    """A server answered wrongly or not at all."""


@dataclass
class Stats:
    """Shared by every call of one run: counters only move while ``counting``."""

    running: bool = False
    counting: bool = False
    events: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds


class Call(asyncio.Protocol):
    """One call's socket: upgrade, greeting, closed-loop ``user_speak``, goodbye."""

    def __init__(self, session_id: str, port: int, stats: Stats, path: str = PATH) -> None:
        loop = asyncio.get_running_loop()
        self.session_id = session_id
        self.stats = stats
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: "
            f"{base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.start_frame = client_frame(event("session_start", session_id))
        self.speak_frame = client_frame(event("user_speak", session_id, text=TEXT))
        self.end_frame = client_frame(event("session_end", session_id))
        self.greeting = speak(session_id, GREETING)
        self.echo = speak(session_id, f"You said: {TEXT}")
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.greeted: asyncio.Future[None] = loop.create_future()
        self.idle: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.speaking = False
        self.sent_at = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(BenchClientError(f"upgrade refused: {head.decode(errors='replace')}"))
                return
            self.upgraded.set_result(None)
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, start = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if second & 0x80 or not first & 0x80:  # servers never mask; no fragments here
                self.stats.errors += 1
                continue
            self._frame(first & 0x0F, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        # Only the futures someone waits for: open_call's, and the loop's while it runs.
        waited = (
            (self.upgraded, self.greeted, self.idle)
            if self.speaking
            else (self.upgraded, self.greeted)
        )
        for future in waited:
            if not future.done():
                future.set_exception(BenchClientError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- frames -------------------------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            self._text(payload)
        elif opcode == OP_PING:
            self._write(client_frame(payload, OP_PONG))
        elif opcode == OP_CLOSE:
            if self.transport is not None:
                self.transport.close()
        elif opcode != OP_PONG:
            self.stats.errors += 1

    def _text(self, payload: bytes) -> None:
        stats = self.stats
        if self.speaking:
            now = time.perf_counter()
            if payload != self.echo:
                stats.errors += 1
            if stats.counting:
                stats.events += 1
                stats.latencies.append(now - self.sent_at)
            if stats.running:
                self.sent_at = now
                self._write(self.speak_frame)
            else:
                self.speaking = False
                self.idle.set_result(None)
        elif not self.greeted.done():
            if payload == self.greeting:
                self.greeted.set_result(None)
            else:
                self._fail(BenchClientError(f"greeting {payload!r}, expected {self.greeting!r}"))
        else:
            stats.errors += 1  # nothing was asked

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, exc: Exception) -> None:
        for future in (self.upgraded, self.greeted):
            if not future.done():
                future.set_exception(exc)
                break
        if self.transport is not None:
            self.transport.close()

    # -- the call -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the closed loop: a ``user_speak`` now, the next one on each reply."""
        self.speaking = True
        self.sent_at = time.perf_counter()
        self._write(self.speak_frame)

    async def hang_up(self, timeout: float = 5.0) -> None:
        """``session_end``, a close frame (1000), then wait for the server to close."""
        self._write(self.end_frame + client_frame((1000).to_bytes(2, "big"), OP_CLOSE))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        if self.transport is not None:
            self.transport.close()


async def open_call(port: int, session_id: str, stats: Stats, path: str = PATH) -> Call:
    """Connect, upgrade, send ``session_start`` and wait for the greeting."""
    loop = asyncio.get_running_loop()
    _, call = await loop.create_connection(
        lambda: Call(session_id, port, stats, path), "127.0.0.1", port
    )
    try:
        await asyncio.wait_for(asyncio.shield(call.upgraded), OPEN_TIMEOUT)
        call._write(call.start_frame)
        await asyncio.wait_for(asyncio.shield(call.greeted), OPEN_TIMEOUT)
    except BaseException:
        if call.transport is not None:
            call.transport.close()
        raise
    return call


async def open_calls(
    port: int, count: int, stats: Stats, *, prefix: str, concurrency: int = 50
) -> list[Call]:
    """``count`` calls, at most ``concurrency`` handshakes at a time (listen backlogs)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Call:
        async with gate:
            return await open_call(port, f"{prefix}-{index:05d}", stats)

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    calls = [r for r in results if isinstance(r, Call)]
    problems = [r for r in results if not isinstance(r, Call)]
    if problems:
        await hang_up(calls)
        raise BenchClientError(f"{len(problems)} of {count} calls failed to open: {problems[0]!r}")
    return calls


async def hang_up(calls: list[Call]) -> None:
    await asyncio.gather(*(call.hang_up() for call in calls))


async def probe(port: int) -> None:
    """One call: greeting and one echo must be the expected frames; raises otherwise."""
    stats = Stats()
    call = await open_call(port, "bench-probe", stats)
    try:
        call.start()  # running is False: the first reply ends the loop
        await asyncio.wait_for(asyncio.shield(call.idle), OPEN_TIMEOUT)
    finally:
        await call.hang_up()
    if stats.errors:
        raise BenchClientError("the server answered user_speak with an unexpected frame")


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def timed_run(
    port: int, *, sockets: int, warmup: float, seconds: float, server_sid: int | None
) -> dict[str, Any]:
    """Open ``sockets`` calls, run the closed loop, count round trips for ``seconds``."""
    stats = Stats()
    calls = await open_calls(port, sockets, stats, prefix=f"bench-{os.getpid()}")
    stats.running = True
    for call in calls:
        call.start()
    await asyncio.sleep(warmup)
    stat_before, server_before = proc_stat(), _server_cpu(server_sid)
    own_before, start = _own_cpu(), time.perf_counter()
    stats.counting = True
    await asyncio.sleep(seconds)
    stats.counting = False
    wall, own_after = time.perf_counter() - start, _own_cpu()
    stat_after, server_after = proc_stat(), _server_cpu(server_sid)
    stats.running = False
    try:
        await asyncio.wait_for(asyncio.gather(*(c.idle for c in calls)), OPEN_TIMEOUT)
    finally:
        await hang_up(calls)
    ordered = sorted(stats.latencies)
    client_s = own_after - own_before
    server_s = None
    if server_before is not None and server_after is not None:
        server_s = server_after - server_before
    other = None
    if stat_before is not None and stat_after is not None and server_s is not None:
        # Other processes on this machine, plus CPU time the host did not give it.
        others = (stat_after[0] - stat_before[0] - server_s - client_s) / wall
        withheld = (os.cpu_count() or 1) - (stat_after[1] - stat_before[1]) / wall
        other = max(0.0, others) + max(0.0, withheld)
    return {
        "events": stats.events,
        "errors": stats.errors,
        "seconds": wall,
        "p50_ms": statistics.median(ordered) * 1e3 if ordered else 0.0,
        "p99_ms": percentile(ordered, 0.99) * 1e3 if ordered else 0.0,
        "client_cpu_s": client_s,
        "server_cpu_s": server_s,
        "other_load": other,
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(sid: int | None) -> float | None:
    return None if sid is None else session_cpu_seconds(sid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._ws_client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--server-sid", type=int, default=None)
    args = parser.parse_args(argv)
    run = timed_run(
        args.port,
        sockets=args.sockets,
        warmup=args.warmup,
        seconds=args.seconds,
        server_sid=args.server_sid,
    )
    result = uvloop.run(run)  # the loop aiflow serve uses: a lean client
    print(json.dumps(result))


if __name__ == "__main__":
    main()
