"""Memory: does the SDK app's RSS stay flat over many calls, and what does an open call cost?

1. Flatness. The SDK app (``bench/_ws_apps.py:sdk_app``, uvicorn as ``aiflow serve`` runs it)
   serves complete calls over the HTTP webhook: ``session_start``, ``TURNS`` x ``user_speak``,
   ``session_end``, each call with its own session id, 16 keep-alive connections at a time.
   After a warm-up, the server's resident set size (VmRSS, ``/proc/PID/status``) is read
   after 100 completed calls and again after 10,000 (and at 1,000 on the way). The garbage
   collector is left alone. Target: RSS after 10,000 calls <= 1.10x RSS after 100: per-call
   state is released when the call ends.
2. Cost of an open WebSocket call. A fresh SDK app and, as the baseline, a fresh ``websockets``
   server doing the same work by hand (``python -m bench._ws_apps``): after a warm-up (calls
   opened and hung up), RSS with no socket open, then with N sockets open that each sent
   ``session_start`` and got the greeting (so the server holds the call), idle. Reported:
   (RSS_open - RSS_base) / N in KiB per call, no target.

Every reply is checked (status and body); each round starts fresh servers, and with
``rounds`` > 1 the medians of the rounds are reported (the two WebSocket servers are measured
in alternating order).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import _ws_client
from ._summary import SummaryRow, failed
from ._ws_apps import GREETING
from .http import BenchError
from .websocket import WsServer, raw_spec, running, sdk_spec

TURNS = 3  # user_speak events per call
CONNECTIONS = 16
DEFAULT_WARMUP_CALLS = 500
DEFAULT_CHECKPOINTS = (100, 1_000, 10_000)
DEFAULT_SOCKETS = 1_000
DEFAULT_ROUNDS = 3
TARGET = 1.10  # RSS after the last checkpoint over RSS after the first
SETTLE = 0.5  # seconds between the last reply and reading RSS (the server finishes its work)


# -- HTTP calls ---------------------------------------------------------------------------------


def request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length) if length else b""


async def http_calls(port: int, first: int, count: int, connections: int = CONNECTIONS) -> int:
    """Complete ``count`` calls over the webhook; raises on a wrong answer. Returns ``count``."""
    indices = iter(range(first, first + count))
    done = 0

    async def expect(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, status: int,
        answer: bytes,
    ) -> None:  # fmt: skip
        writer.write(request(port, body))
        got = await read_response(reader)
        if got != (status, answer):
            raise BenchError(f"the SDK app answered {got}, expected {(status, answer)}")

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in indices:  # shared: each call is taken by one connection
                sid = f"memory-call-{index:07d}"
                await expect(
                    reader, writer, _ws_client.event("session_start", sid), 200,
                    _ws_client.speak(sid, GREETING),
                )  # fmt: skip
                for turn in range(TURNS):
                    text = f"turn {turn} of call {index}"
                    await expect(
                        reader, writer, _ws_client.event("user_speak", sid, text=text), 200,
                        _ws_client.speak(sid, f"You said: {text}"),
                    )  # fmt: skip
                await expect(reader, writer, _ws_client.event("session_end", sid), 204, b"")
                done += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(connection() for _ in range(min(connections, count))))
    return done


# -- measurements -------------------------------------------------------------------------------


@dataclass
class MemoryRound:
    warmup_rss: int  # KiB, after the warm-up calls
    checkpoints: dict[int, int] = field(default_factory=dict)  # calls completed -> RSS KiB
    ws_base: dict[str, int] = field(default_factory=dict)  # server key -> RSS KiB, no socket
    ws_open: dict[str, int] = field(default_factory=dict)  # server key -> RSS KiB, N open

    @property
    def growth(self) -> float:
        """RSS after the last checkpoint over RSS after the first."""
        values = list(self.checkpoints.values())
        return values[-1] / values[0]

    def per_call_kib(self, key: str, sockets: int) -> float:
        return (self.ws_open[key] - self.ws_base[key]) / sockets


def measure_calls(
    server: WsServer, *, warmup_calls: int, checkpoints: tuple[int, ...]
) -> MemoryRound:
    """Warm up, then RSS at each checkpoint of completed calls (counted after the warm-up)."""
    if warmup_calls:
        asyncio.run(http_calls(server.port, 0, warmup_calls))
    time.sleep(SETTLE)
    result = MemoryRound(server.rss_kib())
    completed = 0
    for checkpoint in checkpoints:
        completed += asyncio.run(
            http_calls(server.port, warmup_calls + completed, checkpoint - completed)
        )
        time.sleep(SETTLE)
        result.checkpoints[checkpoint] = server.rss_kib()
    return result


def measure_open_calls(server: WsServer, sockets: int, warmup_sockets: int = 10) -> tuple[int, int]:
    """(RSS with no call open, RSS with ``sockets`` idle calls open), KiB.

    The warm-up is small on purpose: the memory its calls freed stays in RSS and the first
    calls opened next reuse it, so it would hide their cost.
    """

    async def hold() -> tuple[int, int]:
        stats = _ws_client.Stats()
        warm = await _ws_client.open_calls(server.port, warmup_sockets, stats, prefix="warm")
        await _ws_client.hang_up(warm)
        await asyncio.sleep(SETTLE)
        base = server.rss_kib()
        calls = await _ws_client.open_calls(server.port, sockets, stats, prefix="idle")
        try:
            await asyncio.sleep(SETTLE)
            held = server.rss_kib()
        finally:
            await _ws_client.hang_up(calls)
        if stats.errors:
            raise BenchError(f"{server.spec.label} sent {stats.errors} unexpected frame(s)")
        return base, held

    return asyncio.run(hold())


def raise_fd_limit(needed: int) -> None:
    """Let this process and the servers it starts hold ``needed`` sockets (soft limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass
class Report:
    rounds: list[MemoryRound]
    warmup_calls: int
    sockets: int

    @property
    def checkpoints(self) -> list[int]:
        return list(self.rounds[0].checkpoints)

    def rss(self, checkpoint: int) -> float:
        return statistics.median(r.checkpoints[checkpoint] for r in self.rounds)

    @property
    def growth(self) -> float:
        return statistics.median(r.growth for r in self.rounds)

    def per_call_kib(self, key: str) -> float:
        return statistics.median(r.per_call_kib(key, self.sockets) for r in self.rounds)

    @property
    def ws_ratio(self) -> float:
        return statistics.median(
            r.per_call_kib("sdk", self.sockets) / r.per_call_kib("raw", self.sockets)
            for r in self.rounds
        )

    @property
    def ok(self) -> bool:
        return self.growth <= TARGET


def measure(
    *,
    warmup_calls: int = DEFAULT_WARMUP_CALLS,
    checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS,
    sockets: int = DEFAULT_SOCKETS,
    rounds: int = DEFAULT_ROUNDS,
) -> Report:
    if len(checkpoints) < 2 or list(checkpoints) != sorted(set(checkpoints)):
        raise ValueError("checkpoints must be at least two, increasing")
    raise_fd_limit(sockets + 256)
    results: list[MemoryRound] = []
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-memory-") as tmp:
        for round_no in range(rounds):
            with running([sdk_spec()], Path(tmp), None) as [server]:
                result = measure_calls(server, warmup_calls=warmup_calls, checkpoints=checkpoints)
            print(
                f"  round {round_no + 1}/{rounds}  HTTP calls: RSS "
                + "  ".join(
                    f"{n:,} calls {kib / 1024:.1f} MiB" for n, kib in result.checkpoints.items()
                )
                + f"  ({result.growth:.3f}x)",
                flush=True,
            )
            specs = [raw_spec(), sdk_spec()] if round_no % 2 == 0 else [sdk_spec(), raw_spec()]
            with running(specs, Path(tmp), None) as servers:
                for server in servers:
                    base, held = measure_open_calls(server, sockets)
                    result.ws_base[server.spec.key], result.ws_open[server.spec.key] = base, held
                    print(
                        f"  round {round_no + 1}/{rounds}  {server.spec.label:<44} "
                        f"{base / 1024:.1f} MiB -> {held / 1024:.1f} MiB with {sockets:,} "
                        f"calls open: {(held - base) / sockets:.1f} KiB per call",
                        flush=True,
                    )
            results.append(result)
    return Report(results, warmup_calls, sockets)


# -- output -------------------------------------------------------------------------------------


def header(*, warmup_calls: int, checkpoints: tuple[int, ...], sockets: int, rounds: int) -> str:
    return (
        f"Memory benchmark: VmRSS of the server process; Python {sys.version.split()[0]}\n"
        f"HTTP calls (session_start, {TURNS} x user_speak, session_end) over {CONNECTIONS} "
        f"connections: {warmup_calls:,} warm-up calls, then RSS after "
        + ", ".join(f"{n:,}" for n in checkpoints)
        + f" calls; then {sockets:,} idle WebSocket calls held open; {rounds} round(s), "
        "fresh servers each"
    )


def table(report: Report) -> str:
    width = len(report.rounds)
    lines = [
        f"{'SDK app, calls completed':<28} "
        + " ".join(f"{'round ' + str(i + 1):>10}" for i in range(width))
        + f" {'median':>10}",
    ]
    lines.append("-" * len(lines[0]))
    lines.append(
        f"{'after ' + format(report.warmup_calls, ',') + ' warm-up calls':<28} "
        + " ".join(f"{r.warmup_rss / 1024:>6.1f} MiB" for r in report.rounds)
        + f" {statistics.median(r.warmup_rss for r in report.rounds) / 1024:>6.1f} MiB"
    )
    lines.extend(
        f"{format(checkpoint, ',') + ' calls':<28} "
        + " ".join(f"{r.checkpoints[checkpoint] / 1024:>6.1f} MiB" for r in report.rounds)
        + f" {report.rss(checkpoint) / 1024:>6.1f} MiB"
        for checkpoint in report.checkpoints
    )
    first, last = report.checkpoints[0], report.checkpoints[-1]
    per_call = (report.rss(last) - report.rss(first)) * 1024 / (last - first)
    lines.append(
        f"RSS after {last:,} / after {first:,} calls: {report.growth:.3f}x (target <= "
        f"{TARGET:.2f}x): {'ok' if report.ok else 'NO'}; rounds "
        + " ".join(f"{r.growth:.3f}" for r in report.rounds)
        + f"; {per_call:+.0f} bytes per call"
    )
    lines.append("")
    opened = f"{report.sockets:,} open"
    head = f"{'idle WebSocket calls':<44} {'no call':>10} {opened:>11} {'per call':>10}"
    lines.extend([head, "-" * len(head)])
    labels = {"raw": raw_spec().label, "sdk": sdk_spec().label}
    for key in ("raw", "sdk"):
        base = statistics.median(r.ws_base[key] for r in report.rounds)
        held = statistics.median(r.ws_open[key] for r in report.rounds)
        lines.append(
            f"{labels[key]:<44} {base / 1024:>6.1f} MiB {held / 1024:>7.1f} MiB "
            f"{report.per_call_kib(key):>6.1f} KiB"
        )
    lines.append(f"SDK per call / raw per call: {report.ws_ratio:.2f}x (reported, no target)")
    return "\n".join(lines)


def summary_rows(report: Report) -> list[SummaryRow]:
    first, last = report.checkpoints[0], report.checkpoints[-1]
    return [
        SummaryRow(
            f"memory: RSS after {last:,} HTTP calls",
            f"{report.rss(last) / 1024:.1f} MiB",
            f"{report.rss(first) / 1024:.1f} MiB after {first:,}",
            report.growth,
            f"<= {TARGET:.2f}x",
            report.ok,
        ),
        SummaryRow(
            "memory: RSS per open WebSocket call",
            f"SDK {report.per_call_kib('sdk'):.1f} KiB",
            f"websockets {report.per_call_kib('raw'):.1f} KiB",
            report.ws_ratio,
        ),
    ]


def main(
    *,
    warmup_calls: int = DEFAULT_WARMUP_CALLS,
    checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS,
    sockets: int = DEFAULT_SOCKETS,
    rounds: int = DEFAULT_ROUNDS,
) -> tuple[int, list[SummaryRow]]:
    """Run and print; (0 when RSS stays flat, 1 when not, 2 on a failure; summary rows)."""
    print(
        header(warmup_calls=warmup_calls, checkpoints=checkpoints, sockets=sockets, rounds=rounds),
        flush=True,
    )
    try:
        report = measure(
            warmup_calls=warmup_calls, checkpoints=checkpoints, sockets=sockets, rounds=rounds
        )
    except (BenchError, _ws_client.BenchClientError, OSError, asyncio.IncompleteReadError) as exc:
        print(f"Memory benchmark failed: {exc!r}", file=sys.stderr)
        return 2, [failed("memory", "failed (see above)")]
    print()
    print(table(report))
    return (0 if report.ok else 1), summary_rows(report)
