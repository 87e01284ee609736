"""WebSocket benchmark: 200 concurrent call sockets, the SDK app against the ``websockets`` server.

=================  ==========================================================================
SDK app            ``create_app(AiFlowAssistant(on_session_start=..., on_user_speak=...))``
                   under uvicorn as ``aiflow serve`` runs it: ``--http httptools --loop uvloop
                   --ws auto`` (auto picks websockets-sansio when ``websockets`` is installed)
raw websockets     the baseline: the ``websockets`` library's own asyncio server on uvloop, its
                   handler doing the same work by hand (``json.loads``, build the reply,
                   ``json.dumps``)
raw ASGI app       that handler on raw ASGI under the SDK app's uvicorn settings (reported, no
                   target): splits the SDK's own cost from uvicorn's
=================  ==========================================================================

All answer ``session_start`` with a greeting and ``user_speak`` with the same speak frame,
byte for byte (``bench/_ws_apps.py``). Each is a subprocess on 127.0.0.1, health-checked over
a real socket (greeting and echo must be the expected frames) before any load.

Load: ``bench/_ws_client.py``, a lean asyncio client (its docstring says why not the
``websockets`` client), in its own process. Each of the 200 sockets is one call:
``session_start``, then ``user_speak`` events, each sent when the previous reply arrived
(closed loop per socket, so 200 events are always in flight). After a warm-up the client
counts round trips for a fixed time: events/s, p50 and p99 round-trip latency. Every reply
is compared with the expected frame; a wrong one is an error.

Method as in ``bench.http``: the server is pinned to one CPU and the client to the other; the
servers are measured back to back in alternating order for each round (the SDK app always
next to the raw server), and the target (SDK events/s >= 0.8x the raw server's) is judged on
the median of those paired ratios. Each measurement also records the server's CPU time per
event, the client's CPU use (a client near 100 % would be the bottleneck) and the "other load"
(other processes plus CPU time the host withheld); a measurement with more than
``MAX_OTHER_LOAD`` is repeated once, and the less disturbed one is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol
from websockets.version import version as websockets_version

from . import _ws_client
from ._summary import SummaryRow, failed
from .http import (
    MAX_OTHER_LOAD,
    ROOT,
    START_TIMEOUT,
    BenchError,
    Server,
    ServerSpec,
    cpu_plan,
    tool_version,
)

DEFAULT_SOCKETS = 200
DEFAULT_SECONDS = 5.0
DEFAULT_WARMUP = 1.0
DEFAULT_ROUNDS = 5
TARGET = 0.8  # SDK events/s over the raw server's
RETRIES = 1
HTTP, LOOP, WS = "httptools", "uvloop", "auto"  # aiflow serve's uvicorn settings


# -- servers ------------------------------------------------------------------------------------


def ws_auto_impl() -> str:
    """The protocol class uvicorn's ``--ws auto`` resolves to in this environment."""
    return getattr(AutoWebSocketsProtocol, "__name__", "none")


def uvicorn_command(factory: str, port: int) -> list[str]:
    """``factory`` of bench._ws_apps under aiflow serve's uvicorn settings, one worker."""
    return [
        sys.executable, "-m", "uvicorn", f"bench._ws_apps:{factory}", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--http", HTTP, "--loop", LOOP,
        "--ws", WS, "--lifespan", "on", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def sdk_spec() -> ServerSpec:
    return ServerSpec(
        "sdk",
        f"SDK app (uvicorn {HTTP}+{LOOP}, --ws {WS})",
        lambda port: uvicorn_command("sdk_app", port),
    )


def ceiling_spec() -> ServerSpec:
    return ServerSpec(
        "ceiling",
        "raw ASGI app (same uvicorn settings)",
        lambda port: uvicorn_command("ceiling_app", port),
    )


def raw_spec() -> ServerSpec:
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench._ws_apps", str(port)]

    return ServerSpec("raw", "raw websockets server (uvloop)", command)


class WsServer(Server):
    """A benchmarked server whose health check is one WebSocket call."""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise BenchError(
                    f"{self.spec.label} exited ({code}) before serving{self.log_tail()}"
                )
            try:
                asyncio.run(_ws_client.probe(self.port))
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{self.spec.label} did not answer on port {self.port} within "
                        f"{timeout:.0f} s{self.log_tail()}"
                    ) from None
                time.sleep(0.1)
                continue
            except (_ws_client.BenchClientError, asyncio.TimeoutError) as exc:
                raise BenchError(f"{self.spec.label} failed the health check: {exc}") from exc
            return

    def rss_kib(self) -> int:
        """The server's resident set size (VmRSS) in KiB, from /proc (Linux)."""
        if self.process is None:
            raise BenchError(f"{self.spec.label} is not running")
        return rss_kib(self.process.pid)


def rss_kib(pid: int) -> int:
    """VmRSS of process ``pid`` in KiB, from ``/proc/PID/status``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read the memory of process {pid}: {exc}") from exc
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":  # the kernel always says kB (meaning KiB)
                raise BenchError(f"unexpected VmRSS unit in /proc/{pid}/status: {line}")
            return int(value)
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


@contextlib.contextmanager
def running(
    specs: Sequence[ServerSpec], log_dir: Path, cpu: int | None
) -> Iterator[list[WsServer]]:
    """Start every server, wait until each passes the health check; stop them all on exit."""
    servers = [WsServer(spec, log_dir, cpu) for spec in specs]
    with contextlib.ExitStack() as stack:
        if _main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _exit_on_sigterm)  # clean up on SIGTERM too
            stack.callback(signal.signal, signal.SIGTERM, previous)
        for server in servers:
            stack.callback(server.stop)
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# -- measurements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WsResult:
    events: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float
    server_cpu_s: float | None = None
    other_load: float | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_event(self) -> float | None:
        if self.server_cpu_s is None or self.events <= 0:
            return None
        return self.server_cpu_s / self.events * 1e6

    @property
    def client_load(self) -> float:
        """The client's CPU use: near 1.0 it, not the server, would set the pace."""
        return self.client_cpu_s / self.seconds if self.seconds > 0 else 0.0


def run_client(
    server: WsServer, *, sockets: int, warmup: float, seconds: float, cpu: int | None
) -> WsResult:
    """One timed load run of ``bench._ws_client`` (its own process, pinned to ``cpu``)."""
    command = [
        *([] if cpu is None else ["taskset", "--cpu-list", str(cpu)]),
        sys.executable, "-m", "bench._ws_client", "--port", str(server.port),
        "--sockets", str(sockets), "--warmup", str(warmup), "--seconds", str(seconds),
    ]  # fmt: skip
    if server.process is not None:
        command += ["--server-sid", str(server.process.pid)]  # its own session (start())
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=warmup + seconds + 120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"the load client failed against {server.spec.label} ({done.returncode}):\n"
            + "\n".join(done.stderr.strip().splitlines()[-20:])
            + server.log_tail()
        )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return WsResult(**data)


@dataclass
class Measured:
    label: str
    results: list[WsResult]

    @property
    def events_per_s(self) -> float:
        return statistics.median(r.events_per_s for r in self.results)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.results)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.results)

    @property
    def spread(self) -> str:
        if len(self.results) < 2:
            return "-"
        values = [r.events_per_s for r in self.results]
        return f"{min(values):.0f}-{max(values):.0f}"

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    @property
    def cpu_us_per_event(self) -> float | None:
        values = [r.cpu_us_per_event for r in self.results]
        known = [v for v in values if v is not None]
        return statistics.median(known) if known and len(known) == len(values) else None

    @property
    def client_load(self) -> float:
        return max(r.client_load for r in self.results)


@dataclass
class Report:
    servers: dict[str, Measured]  # "raw", "ceiling", "sdk"
    sockets: int
    # (SDK, raw) results of the rounds in which both served at once from one shared CPU
    shared: list[tuple[WsResult, WsResult]] = field(default_factory=list)

    def shared_ratios(self) -> list[float]:
        return [sdk.events_per_s / raw.events_per_s for sdk, raw in self.shared]

    @property
    def shared_ratio(self) -> float | None:
        """SDK events/s over the raw server's while both share one CPU, median of rounds."""
        ratios = self.shared_ratios()
        return statistics.median(ratios) if ratios else None

    @property
    def sdk(self) -> Measured:
        return self.servers["sdk"]

    @property
    def raw(self) -> Measured:
        return self.servers["raw"]

    def round_ratios(self, candidate: str = "sdk", baseline: str = "raw") -> list[float]:
        """events/s of ``candidate`` over ``baseline``'s, within each round."""
        pairs = zip(self.servers[candidate].results, self.servers[baseline].results, strict=True)
        return [mine.events_per_s / theirs.events_per_s for mine, theirs in pairs]

    def p99_ratios(self) -> list[float]:
        pairs = zip(self.sdk.results, self.raw.results, strict=True)
        return [mine.p99_ms / theirs.p99_ms for mine, theirs in pairs]

    def ratio(self, candidate: str = "sdk", baseline: str = "raw") -> float:
        """The median of the paired ratios: robust to the host's speed drifting."""
        return statistics.median(self.round_ratios(candidate, baseline))

    @property
    def p99_ratio(self) -> float:
        return statistics.median(self.p99_ratios())

    def cpu_ratio(self, candidate: str = "sdk", baseline: str = "raw") -> float | None:
        """Events per CPU-second of ``candidate`` over ``baseline``'s (robust to steal time)."""
        mine = self.servers[candidate].cpu_us_per_event
        theirs = self.servers[baseline].cpu_us_per_event
        return None if mine is None or theirs is None or mine <= 0 else theirs / mine

    def contended(self) -> int:
        return sum(
            (r.other_load or 0.0) > MAX_OTHER_LOAD
            for row in self.servers.values()
            for r in row.results
        )

    @property
    def errors(self) -> int:
        together = sum(sdk.errors + raw.errors for sdk, raw in self.shared)
        return sum(row.errors for row in self.servers.values()) + together

    @property
    def ok(self) -> bool:
        """The target holds both measured in turn and sharing one CPU, with no wrong reply."""
        shared = self.shared_ratio
        return self.ratio() >= TARGET and (shared is None or shared >= TARGET) and self.errors == 0


def round_order(servers: Sequence[WsServer], round_no: int) -> list[WsServer]:
    """The SDK app right next to the raw server, in alternating directions."""
    by_key = {server.spec.key: server for server in servers}
    order = [by_key[key] for key in ("ceiling", "raw", "sdk") if key in by_key]
    return order if round_no % 2 == 0 else order[::-1]


def measure(
    *,
    sockets: int = DEFAULT_SOCKETS,
    seconds: float = DEFAULT_SECONDS,
    warmup: float = DEFAULT_WARMUP,
    rounds: int = DEFAULT_ROUNDS,
    progress: Callable[[str], None] = print,
) -> Report:
    """Start the servers; measure each ``rounds`` times (``round_order``)."""
    server_cpu, client_cpu = cpu_plan()
    specs = [raw_spec(), ceiling_spec(), sdk_spec()]
    measured = {spec.key: Measured(spec.label, []) for spec in specs}
    with (
        tempfile.TemporaryDirectory(prefix="aiflow-bench-ws-") as tmp,
        running(specs, Path(tmp), server_cpu) as servers,
    ):
        for round_no in range(rounds):
            for server in round_order(servers, round_no):
                kept: WsResult | None = None
                for attempt in range(1 + RETRIES):
                    result = run_client(
                        server, sockets=sockets, warmup=warmup, seconds=seconds, cpu=client_cpu
                    )
                    if kept is None or (result.other_load or 0.0) < (kept.other_load or 0.0):
                        kept = result
                    contended = (result.other_load or 0.0) > MAX_OTHER_LOAD
                    progress(
                        f"  round {round_no + 1}/{rounds}  {server.spec.label:<46} "
                        + _note(result)
                        + ("  -> again" if contended and attempt < RETRIES else "")
                    )
                    if not contended:
                        break
                assert kept is not None
                measured[server.spec.key].results.append(kept)
                if server.process is not None and server.process.poll() is not None:
                    raise BenchError(f"{server.spec.label} died under load{server.log_tail()}")
        shared = []
        by_key = {server.spec.key: server for server in servers}
        for round_no in range(rounds):
            pair = together(
                by_key["sdk"], by_key["raw"], sockets=sockets, warmup=warmup, seconds=seconds,
                cpu=client_cpu,
            )  # fmt: skip
            shared.append(pair)
            progress(
                f"  shared CPU {round_no + 1}/{rounds}  SDK app {pair[0].events_per_s:>8.0f} "
                f"events/s  raw websockets server {pair[1].events_per_s:>8.0f} events/s  "
                f"ratio {pair[0].events_per_s / pair[1].events_per_s:.2f}"
            )
    return Report(measured, sockets, shared)


def together(
    sdk: WsServer, raw: WsServer, *, sockets: int, warmup: float, seconds: float, cpu: int | None
) -> tuple[WsResult, WsResult]:
    """Load both servers at the same time. They are pinned to the same CPU, so whatever the
    host does to that CPU meanwhile (steal, a slower clock, a noisy neighbour) it does to
    both: their throughputs compare their costs per event, not two moments of the host."""
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(
                run_client, server, sockets=sockets, warmup=warmup, seconds=seconds, cpu=cpu
            )
            for server in (sdk, raw)
        ]
        return runs[0].result(), runs[1].result()


def _note(result: WsResult) -> str:
    cpu = result.cpu_us_per_event
    note = (
        f"{result.events_per_s:>8.0f} events/s  p50 {result.p50_ms:>6.2f} ms  "
        f"p99 {result.p99_ms:>6.2f} ms"
    )
    if cpu is not None:
        note += f"  {cpu:>4.0f} us CPU/event"
    note += f"  client {result.client_load:>4.0%}"
    if result.other_load is not None:
        note += f"  other load {result.other_load:>4.0%}"
    if result.errors:
        note += f"  ({result.errors} wrong replies)"
    return note


# -- output -------------------------------------------------------------------------------------


def header(*, sockets: int, seconds: float, warmup: float, rounds: int) -> str:
    server_cpu, client_cpu = cpu_plan()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    pinning = (
        f"server pinned to CPU {server_cpu}, load client to CPU {client_cpu}"
        if server_cpu is not None
        else "no CPU pinning (fewer than 2 CPUs or no taskset)"
    )
    revision = tool_version(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return (
        f"WebSocket benchmark: {cpus} CPUs, {pinning}\n"
        f"sipgate_ai_flow at git {revision}; Python {sys.version.split()[0]}, "
        f"uvicorn {uvicorn.__version__} (--ws {WS} = {ws_auto_impl()}), "
        f"websockets {websockets_version}\n"
        f"{sockets} call sockets, closed loop (one user_speak in flight per socket), "
        f"{warmup:g} s warm-up, {seconds:g} s x {rounds} round(s) per server, alternating"
    )


def table(report: Report) -> str:
    head = (
        f"{'server':<46} {'events/s':>9} {'range':>13} {'p50':>9} {'p99':>9} "
        f"{'CPU/event':>10} {'x raw':>6} {'client CPU':>11} {'errors':>7}"
    )
    lines = [head, "-" * len(head)]
    for key, row in report.servers.items():
        cpu = row.cpu_us_per_event
        lines.append(
            f"{row.label:<46} {row.events_per_s:>9.0f} {row.spread:>13} {row.p50_ms:>6.2f} ms "
            f"{row.p99_ms:>6.2f} ms {'-' if cpu is None else format(cpu, '.0f') + ' us':>10} "
            f"{report.ratio(key):>5.2f}x {row.client_load:>11.0%} {row.errors:>7}"
        )
    noisy = report.contended()
    if noisy:
        lines.append(
            f"WARNING: {noisy} measurement(s) ran while other load exceeded {MAX_OTHER_LOAD:.0%}"
            " of a CPU, even after retrying: noisy numbers"
        )
    if max(row.client_load for row in report.servers.values()) > 0.9:
        lines.append("WARNING: the load client used > 90% of its CPU: it may set the pace")
    lines.append("")
    lines.append(
        f"target: SDK events/s >= {TARGET:.1f}x the raw server's: measured {report.ratio():.2f}x "
        f"{'ok' if report.ok else 'NO'}" + _notes(report, "sdk", "raw")
    )
    lines.append(
        f"SDK p99 / raw p99: {report.p99_ratio:.2f}x (reported, no target; rounds "
        + " ".join(f"{r:.2f}" for r in report.p99_ratios())
        + ")"
    )
    shared = report.shared_ratio
    if shared is not None:
        lines.append(
            f"sharing one CPU, loaded at once: SDK events/s / raw server's = {shared:.2f}x "
            f"{'ok' if shared >= TARGET else 'NO'} (rounds "
            + " ".join(f"{r:.2f}" for r in report.shared_ratios())
            + ")"
        )
    if "ceiling" in report.servers:
        lines.append(
            f"SDK / raw ASGI app on the same uvicorn: {report.ratio('sdk', 'ceiling'):.2f}x"
            + _notes(report, "sdk", "ceiling")
            + f"; raw ASGI app / raw server: {report.ratio('ceiling', 'raw'):.2f}x"
            + _notes(report, "ceiling", "raw")
        )
    return "\n".join(lines)


def _notes(report: Report, candidate: str, baseline: str) -> str:
    cpu_ratio = report.cpu_ratio(candidate, baseline)
    notes = [] if cpu_ratio is None else [f"{cpu_ratio:.2f}x per CPU-second"]
    rounds = report.round_ratios(candidate, baseline)
    if len(rounds) > 1:
        notes.append("rounds " + " ".join(f"{r:.2f}" for r in rounds))
    return f"  ({'; '.join(notes)})" if notes else ""


def summary_rows(report: Report) -> list[SummaryRow]:
    name = f"WebSocket, {report.sockets} sockets"
    rows = [
        SummaryRow(
            f"{name}: events/s",
            f"SDK {report.sdk.events_per_s:,.0f}/s",
            f"websockets {report.raw.events_per_s:,.0f}/s",
            report.ratio(),
            f">= {TARGET:.1f}x",
            report.ok,
        ),
    ]
    shared = report.shared_ratio
    if shared is not None:
        sdk_rate = statistics.median(pair[0].events_per_s for pair in report.shared)
        raw_rate = statistics.median(pair[1].events_per_s for pair in report.shared)
        rows.append(
            SummaryRow(
                f"{name}: events/s, one shared CPU",
                f"SDK {sdk_rate:,.0f}/s",
                f"websockets {raw_rate:,.0f}/s",
                shared,
                f">= {TARGET:.1f}x",
                shared >= TARGET,
            )
        )
    rows += [
        SummaryRow(
            f"{name}: p99",
            f"SDK {report.sdk.p99_ms:.2f} ms",
            f"websockets {report.raw.p99_ms:.2f} ms",
            report.p99_ratio,
        ),
    ]
    if "ceiling" in report.servers:
        rows.append(
            SummaryRow(
                f"{name}: SDK vs raw ASGI, same uvicorn",
                f"SDK {report.sdk.events_per_s:,.0f}/s",
                f"raw ASGI {report.servers['ceiling'].events_per_s:,.0f}/s",
                report.ratio("sdk", "ceiling"),
            )
        )
    return rows


def main(
    *,
    sockets: int = DEFAULT_SOCKETS,
    seconds: float = DEFAULT_SECONDS,
    warmup: float = DEFAULT_WARMUP,
    rounds: int = DEFAULT_ROUNDS,
) -> tuple[int, list[SummaryRow]]:
    """Run and print; (0 when the target is met, 1 when missed, 2 on a failure, rows)."""
    print(header(sockets=sockets, seconds=seconds, warmup=warmup, rounds=rounds), flush=True)
    try:
        report = measure(sockets=sockets, seconds=seconds, warmup=warmup, rounds=rounds)
    except BenchError as exc:
        print(f"WebSocket benchmark failed: {exc}", file=sys.stderr)
        return 2, [failed("WebSocket", "failed (see above)")]
    print()
    print(table(report))
    return (0 if report.ok else 1), summary_rows(report)
