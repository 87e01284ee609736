"""State: the same open-loop load against the SDK app with MemoryStore and with RedisStore.

Each event's handler reads and writes the call's state (``incr`` + ``set``), as a real
assistant would. Both servers run under the same uvicorn setup; a lean asyncio HTTP/1.1
client offers the same fixed rate to each (open loop: requests go out on schedule whether or
not earlier ones returned, so latency includes any queueing), spread over many calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]


@dataclass
class LoadResult:
    name: str
    sent: int
    ok: int
    latencies_ms: list[float]
    seconds: float

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "bench._state_app:create", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--http", "httptools", "--loop", "uvloop",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("benchmark server did not start")


def request_bytes(session_id: str, text: str) -> bytes:
    body = json.dumps(
        {"type": "user_speak", "text": text, "session": {"id": session_id, "account_id": "a"}}
    ).encode()
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def offer_load(
    name: str, port: int, *, rate: float, seconds: float, connections: int, calls: int
) -> LoadResult:
    """Send ``rate`` events/s for ``seconds`` over ``connections`` keep-alive connections,
    round-robin over ``calls`` call ids; one event per call in flight at a time."""
    latencies: list[float] = []
    ok = 0
    total = int(rate * seconds)
    per_connection = max(1, total // connections)
    interval = connections / rate
    start = time.perf_counter() + 0.2

    async def connection(index: int) -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in range(per_connection):
                call = f"bench-call-{(index + n * connections) % calls}"
                due = start + index * (interval / connections) + n * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(request_bytes(call, f"event {n}"))
                status = await _read_response(reader)
                # Latency from when the request was due: queueing behind a slow reply counts.
                latencies.append((time.perf_counter() - due) * 1000)
                ok += status == 200
        finally:
            writer.close()
            await writer.wait_closed()

    began = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(connections)))
    return LoadResult(
        name, per_connection * connections, ok, latencies, time.perf_counter() - began
    )


DEFAULT_RATE = 200.0
DEFAULT_CONNECTIONS = 50


async def run(
    redis_url: str,
    *,
    rate: float = DEFAULT_RATE,
    seconds: float = 10,
    connections: int = DEFAULT_CONNECTIONS,
    rounds: int = 3,
) -> tuple[list[LoadResult], list[float]]:
    """Both servers up; ``rounds`` measurements each, alternating which goes first (the
    host's speed drifts); returns one pooled result per store, p99 = median of the rounds'."""
    stores = (("MemoryStore", "memory://"), ("RedisStore", redis_url))
    servers = []
    pooled: dict[str, list[LoadResult]] = {name: [] for name, _ in stores}
    try:
        for name, url in stores:
            port = free_port()
            servers.append((name, port, start_server(port, {"AIFLOW_STORE_URL": url})))
        for name, port, _ in servers:  # warm-up
            await offer_load(name, port, rate=rate, seconds=1, connections=connections, calls=200)
        for round_no in range(rounds):
            order = servers if round_no % 2 == 0 else servers[::-1]
            for name, port, _ in order:
                pooled[name].append(
                    await offer_load(
                        name, port, rate=rate, seconds=seconds, connections=connections, calls=200
                    )
                )
    finally:
        for _, _, process in servers:
            process.terminate()
            process.wait(10)
    memory, redis = pooled["MemoryStore"], pooled["RedisStore"]
    ratios = [r.p99 / m.p99 for m, r in zip(memory, redis, strict=True)]
    return [_pool(name, pooled[name]) for name, _ in stores], ratios


def _pool(name: str, results: list[LoadResult]) -> LoadResult:
    best = sorted(results, key=lambda r: r.p99)[len(results) // 2]  # the median round
    return LoadResult(name, best.sent, best.ok, best.latencies_ms, best.seconds)


def table(results: list[LoadResult], ratios: list[float], target: float = 1.5) -> tuple[str, bool]:
    """The median round of each store, and the verdict on the median of the per-round p99
    ratios (each round measures both stores back to back, so host drift cancels)."""
    ratio = statistics.median(ratios)
    lines = [
        f"{'store':<12} {'events/s':>9} {'ok':>6} {'p50 ms':>8} {'p99 ms':>8}",
        *(f"{r.name:<12} {r.rate:>9.0f} {r.ok:>6} {r.p50:>8.2f} {r.p99:>8.2f}" for r in results),
        f"RedisStore p99 / MemoryStore p99, median of paired rounds = {ratio:.2f}x "
        f"(target <= {target:.1f}x): {'ok' if ratio <= target else 'NO'}",
        "  rounds: " + " ".join(f"{r:.2f}" for r in ratios),
    ]
    return "\n".join(lines), ratio <= target
