"""HTTP webhook benchmark: real servers under ``wrk``, one table of ratios from one run.

Every server gets the same request, a POSTed ``user_speak`` event with the full session
object, and answers the speak action ``{"type": "speak", "session_id": ..., "text": "You
said: ..."}``:

=============  ==============================================================================
SDK app        ``create_app(AiFlowAssistant(on_user_speak=...))`` under uvicorn
ceiling        the same work by hand on raw ASGI, under the same uvicorn settings
FastAPI        a route doing ``await request.json()`` / return a dict, same uvicorn
Flask          the documentation's Flask handler under gunicorn (one sync worker)
Express        the documentation's Express handler on Node (``bench/node/server.js``)
=============  ==============================================================================

Then the SDK app under the four uvicorn setups (``--http h11|httptools`` x ``--loop
asyncio|uvloop``): the fastest is ``aiflow serve``'s default.

Method: each server is a subprocess bound to 127.0.0.1 on a free port, single worker, and is
health-checked with the benchmark request (its answer must be the expected action) before any
load. All servers are started first and stay idle while another one is measured; each gets
a warm-up, then ``wrk`` with a fixed connection count and duration; with ``--rounds N`` the
servers are measured N times, the SDK app right next to the ceiling and Flask in alternating
order, and each target is judged on the median of those back-to-back ratios (the host of a
shared VM changes speed over minutes; adjacent runs see the same speed). All servers are
killed at the end, also on error or Ctrl-C.

CPU: the load generator competes with the server for CPU. On a machine with two or more
CPUs the server is pinned to one CPU and ``wrk`` (one thread) to another, so each server gets
exactly one core and ``wrk`` never steals from it; on a single CPU they share it and the
absolute numbers drop. On a 2-CPU machine that leaves nothing spare: anything else running
(another process, or the host of a virtual machine giving the CPU to other guests) slows
whichever server is being measured. Each measurement therefore also records:

* the server's CPU time per request (from /proc, all its processes), which contention
  changes far less than req/s; the targets also show the ratio of requests per CPU-second;
* the "other load": CPUs kept busy by other processes plus CPU time the host withheld, on
  average. A measurement with more than ``MAX_OTHER_LOAD`` is repeated once; the table warns
  about any kept measurement that was still disturbed.

Absolute req/s depend on the machine; the ratios, measured in the same run against baselines
under the same conditions, are the result. Use ``--rounds 3`` (or more) on a shared machine.

Exit status of ``main``: 0 when the SDK app meets every target, 1 when it misses one, 2 when
a server does not start (or answers wrongly) or a tool is missing.

Prerequisites are fetched on first use: ``wrk`` via ``apt-get`` when running as root,
gunicorn via ``pip`` into the running interpreter's environment, Express via ``npm install``
in ``bench/node``.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .dispatch import BODY, bare_handler

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
WEBHOOK_PATH = "/webhook"
EXPECTED: dict[str, Any] = json.loads(bare_handler(BODY) or b"")

DEFAULT_CONNECTIONS = 64
DEFAULT_DURATION = 10
DEFAULT_WARMUP = 2
# A measurement during which other processes kept more than this share of one CPU busy is
# repeated (RETRIES times at most); the least disturbed one is kept.
MAX_OTHER_LOAD = 0.15
RETRIES = 1
START_TIMEOUT = 30.0

# Targets for the SDK app: its req/s divided by the baseline's must be at least this.
TARGETS: tuple[tuple[str, float], ...] = (("ceiling", 0.8), ("express", 2.0), ("flask", 5.0))

# The uvicorn settings of the main table (ceiling, SDK, FastAPI): uvicorn[standard].
MAIN_HTTP, MAIN_LOOP = "httptools", "uvloop"
SETUPS: tuple[tuple[str, str], ...] = (
    ("h11", "asyncio"),
    ("h11", "uvloop"),
    ("httptools", "asyncio"),
    ("httptools", "uvloop"),
)


class BenchError(Exception):
    """A server or tool the benchmark needs is missing or failed (exit status 2)."""


# -- wrk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p99_ms: float
    requests: int
    non_2xx: int = 0
    socket_errors: int = 0  # connect + read + write + timeout
    cpu_s: float | None = None  # CPU time the server's processes used meanwhile (not from wrk)
    other_load: float | None = None  # CPUs busy with anything but server and wrk, on average

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.cpu_s is None or self.requests <= 0:
            return None
        return self.cpu_s / self.requests * 1e6


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", re.MULTILINE)
_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p99 latency and error counts from ``wrk --latency`` output."""
    rps = _RPS.search(output)
    p99 = _P99.search(output)
    total = _TOTAL.search(output)
    if rps is None or p99 is None or total is None:
        raise BenchError(f"unexpected wrk output (was --latency given?):\n{output}")
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET.search(output)
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNITS_MS[p99.group(2)],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def lua_script(body: bytes) -> str:
    """A wrk script POSTing ``body`` as JSON on every request."""
    text = body.decode()
    level = 0
    while f"]{'=' * level}]" in text:  # pick a long-bracket level the body cannot close
        level += 1
    eq = "=" * level
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [{eq}[{text}]{eq}]\n"
    )


def ensure_wrk() -> str:
    """The path of ``wrk``; installed with apt-get when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("wrk not found: installing it with apt-get ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["update", "-qq"], ["install", "-y", "-qq", "wrk"]):
            done = subprocess.run([apt, *args], env=env, check=False, capture_output=True)
            if done.returncode != 0:
                raise BenchError(
                    f"apt-get {' '.join(args)} failed:\n{done.stderr.decode(errors='replace')}"
                )
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError(
        "the HTTP benchmark needs the load generator wrk, which is not installed: "
        "`sudo apt-get install wrk` (Debian/Ubuntu), `brew install wrk` (macOS), "
        "or build it from https://github.com/wg/wrk"
    )


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    connections: int,
    duration: int,
    cpu: int | None,
) -> WrkResult:
    command = [
        *_pin(cpu),
        wrk,
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{duration}s",
        "--latency",
        "--script",
        str(script),
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# -- servers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    command: Callable[[int], list[str]]  # port -> argv
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)


def uvicorn_spec(key: str, label: str, factory: str, *, http: str, loop: str) -> ServerSpec:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            f"bench._http_apps:{factory}",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--http",
            http,
            "--loop",
            loop,
            "--lifespan",
            "on",
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    return ServerSpec(key, label, command)


def gunicorn_spec() -> ServerSpec:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "1",
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "bench._http_apps:flask_app()",
        ]

    return ServerSpec("flask", "Flask (gunicorn, 1 sync worker)", command)


def express_spec(node: str = "node") -> ServerSpec:
    def command(port: int) -> list[str]:
        return [node, "server.js", str(port)]

    return ServerSpec(
        "express", "Express (Node, 1 process)", command, NODE_DIR, {"NODE_ENV": "production"}
    )


def setup_key(http: str, loop: str) -> str:
    return "sdk" if (http, loop) == (MAIN_HTTP, MAIN_LOOP) else f"sdk-{http}-{loop}"


def main_specs(node: str = "node") -> list[ServerSpec]:
    settings = f"uvicorn {MAIN_HTTP}+{MAIN_LOOP}"
    return [
        uvicorn_spec(
            "ceiling",
            f"ceiling: raw ASGI ({settings})",
            "ceiling_app",
            http=MAIN_HTTP,
            loop=MAIN_LOOP,
        ),
        uvicorn_spec("sdk", f"SDK app ({settings})", "sdk_app", http=MAIN_HTTP, loop=MAIN_LOOP),
        uvicorn_spec(
            "fastapi", f"FastAPI ({settings})", "fastapi_app", http=MAIN_HTTP, loop=MAIN_LOOP
        ),
        gunicorn_spec(),
        express_spec(node),
    ]


def setup_specs() -> list[ServerSpec]:
    """The SDK app under the uvicorn setups not already in the main table."""
    return [
        uvicorn_spec(
            setup_key(http, loop),
            f"SDK app, uvicorn {http}+{loop}",
            "sdk_app",
            http=http,
            loop=loop,
        )
        for http, loop in SETUPS
        if setup_key(http, loop) != "sdk"
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "--cpu-list", str(cpu)]


def cpu_plan() -> tuple[int | None, int | None]:
    """(server CPU, wrk CPU): two different CPUs when there are two and taskset exists."""
    if not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None:
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[0]


def post_event(port: int, body: bytes = BODY, timeout: float = 5.0) -> tuple[int, bytes]:
    """POST ``body`` to the server's webhook; (status, response body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", WEBHOOK_PATH, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def session_cpu_seconds(sid: int) -> float | None:
    """Summed user + system CPU seconds of the processes in session ``sid``, from /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    ticks = 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        # after "pid (comm)": state ppid pgrp session ... utime(14th) stime(15th)
        if len(fields) > 12 and int(fields[3]) == sid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """One benchmarked server as a subprocess (its own process group), output to a log."""

    def __init__(self, spec: ServerSpec, log_dir: Path, cpu: int | None) -> None:
        self.spec = spec
        self.port = free_port()
        self.cpu = cpu
        self.log_path = log_dir / f"{spec.key}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*_pin(self.cpu), *self.spec.command(self.port)],
                cwd=self.spec.cwd,
                env={**os.environ, **self.spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches the workers
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server answers the benchmark request with the expected action."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise BenchError(
                    f"{self.spec.label} exited ({code}) before serving{self.log_tail()}"
                )
            try:
                status, body = post_event(self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{self.spec.label} did not answer on port {self.port} within "
                        f"{timeout:.0f} s{self.log_tail()}"
                    ) from None
                time.sleep(0.1)
                continue
            try:
                answer = json.loads(body)
            except ValueError:
                answer = body
            if status != 200 or answer != EXPECTED:
                raise BenchError(
                    f"{self.spec.label} answered {status} {body!r}, expected 200 {EXPECTED}"
                )
            return

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of every live process of this server (Linux), else None.

        The server runs in its own session (``start_new_session``), so its workers are the
        processes whose session id is the server's pid.
        """
        if self.process is None:
            return None
        return session_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        if not text:
            return ""
        return "\n--- server output ---\n" + "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running(
    specs: Sequence[ServerSpec],
    log_dir: Path,
    cpu: int | None,
    *,
    start_timeout: float = START_TIMEOUT,
) -> Iterator[list[Server]]:
    """Start every server, wait until each answers correctly; stop all of them on exit."""
    servers = [Server(spec, log_dir, cpu) for spec in specs]
    with contextlib.ExitStack() as stack:
        previous = signal.getsignal(signal.SIGTERM)
        if _main_thread():
            # A SIGTERM to the benchmark still runs the clean-up below.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
            stack.callback(signal.signal, signal.SIGTERM, previous)
        for server in servers:
            stack.callback(server.stop)
            server.start()
        for server in servers:
            server.wait_ready(start_timeout)
        yield servers


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# -- prerequisites ------------------------------------------------------------------------------


def ensure_gunicorn() -> None:
    if importlib.util.find_spec("gunicorn") is not None:
        return
    print("gunicorn not found: pip install gunicorn (benchmark only) ...", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "gunicorn"],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or importlib.util.find_spec("gunicorn") is None:
        raise BenchError(
            f"could not install gunicorn for the Flask server: {done.stderr.strip()}\n"
            f"install it into this environment: {sys.executable} -m pip install gunicorn"
        )


def ensure_express() -> str:
    """The path of ``node``; runs ``npm install`` in bench/node when node_modules is missing."""
    node = shutil.which("node")
    if node is None:
        raise BenchError("the Express server needs Node.js (`node`), which is not installed")
    if (NODE_DIR / "node_modules" / "express").is_dir():
        return node
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("bench/node/node_modules is missing and `npm` is not installed")
    print("installing Express in bench/node (npm install) ...", flush=True)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f"npm install in {NODE_DIR} failed:\n{done.stderr or done.stdout}")
    return node


def proc_stat() -> tuple[float, float] | None:
    """(busy, accounted) CPU seconds of all CPUs since boot, from /proc/stat (Linux).

    ``accounted`` is busy + idle: the CPU time the machine actually had. On a virtual machine
    whose host is oversubscribed it grows slower than wall-clock time x CPUs; the shortfall is
    time the hypervisor gave to other guests. (The steal field itself is left out: some
    hypervisors also count halted, idle time as steal.)
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(n) for n in stat.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    if len(fields) < 7:
        return None
    user, nice, system, idle, iowait, irq, softirq = fields
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq
    return busy / tick, (busy + idle + iowait) / tick


def cpu_busy(interval: float = 1.0) -> float | None:
    """The fraction of all CPUs in use over ``interval`` seconds (Linux), else ``None``."""
    before = proc_stat()
    time.sleep(interval)
    after = proc_stat()
    if before is None or after is None:
        return None
    cpus = os.cpu_count() or 1
    withheld = max(0.0, cpus * interval - (after[1] - before[1]))  # taken by the host
    return min(1.0, (after[0] - before[0] + withheld) / (cpus * interval))


def tool_version(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Measured:
    label: str
    results: list[WrkResult]

    @property
    def requests_per_s(self) -> float:
        return statistics.median(r.requests_per_s for r in self.results)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.results)

    @property
    def spread(self) -> str:
        """min-max req/s over the rounds ("-" for one round)."""
        if len(self.results) < 2:
            return "-"
        values = [r.requests_per_s for r in self.results]
        return f"{min(values):.0f}-{max(values):.0f}"

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    @property
    def cpu_us_per_request(self) -> float | None:
        values = [r.cpu_us_per_request for r in self.results]
        known = [v for v in values if v is not None]
        return statistics.median(known) if known and len(known) == len(values) else None


@dataclass
class Report:
    main: dict[str, Measured]
    setups: dict[str, Measured]  # key "sdk-h11-asyncio" etc.; "sdk" is the main table's SDK

    def ratio(self, candidate: str, baseline: str) -> float:
        return self.main[candidate].requests_per_s / self.main[baseline].requests_per_s

    def contended(self) -> int:
        """How many kept measurements ran under CPU load from other processes."""
        rows = {id(row): row for row in [*self.main.values(), *self.setups.values()]}.values()
        return sum(
            (result.other_load or 0.0) > MAX_OTHER_LOAD for row in rows for result in row.results
        )

    def round_ratios(self, candidate: str, baseline: str) -> list[float]:
        """req/s of ``candidate`` over ``baseline`` within each round (same conditions)."""
        pairs = zip(self.main[candidate].results, self.main[baseline].results, strict=True)
        return [mine.requests_per_s / theirs.requests_per_s for mine, theirs in pairs]

    def cpu_ratio(self, candidate: str, baseline: str) -> float | None:
        """Requests per CPU-second of ``candidate`` over ``baseline``'s: robust to CPU
        contention from other processes, which lowers req/s but not CPU per request."""
        mine = self.main[candidate].cpu_us_per_request
        theirs = self.main[baseline].cpu_us_per_request
        return None if mine is None or theirs is None or mine <= 0 else theirs / mine

    def targets(self) -> list[tuple[str, float, float, bool]]:
        """(baseline, target, measured ratio, met) for the SDK app."""
        rows = []
        for baseline, target in TARGETS:
            # The median of back-to-back ratios: robust to the host's speed drifting.
            ratio = statistics.median(self.round_ratios("sdk", baseline))
            rows.append((baseline, target, ratio, ratio >= target))
        return rows

    @property
    def ok(self) -> bool:
        return all(met for *_, met in self.targets())

    def fastest_setup(self) -> tuple[str, str]:
        def rps(setup: tuple[str, str]) -> float:
            return self.setups[setup_key(*setup)].requests_per_s

        return max(SETUPS, key=rps)


def measure(
    specs: Sequence[ServerSpec],
    *,
    connections: int = DEFAULT_CONNECTIONS,
    duration: int = DEFAULT_DURATION,
    warmup: int = DEFAULT_WARMUP,
    rounds: int = 1,
    wrk: str = "wrk",
    progress: Callable[[str], None] = print,
) -> dict[str, Measured]:
    """Start ``specs``, then measure each ``rounds`` times (see ``_round_order``)."""
    server_cpu, wrk_cpu = cpu_plan()
    measured = {spec.key: Measured(spec.label, []) for spec in specs}
    with (
        tempfile.TemporaryDirectory(prefix="aiflow-bench-") as tmp,
        running(specs, Path(tmp), server_cpu) as servers,
    ):
        script = Path(tmp) / "post_user_speak.lua"
        script.write_text(lua_script(BODY))
        for round_no in range(rounds):
            for server in _round_order(servers, round_no):
                if round_no == 0 and warmup > 0:
                    run_wrk(
                        wrk,
                        server.url,
                        script,
                        connections=connections,
                        duration=warmup,
                        cpu=wrk_cpu,
                    )
                kept: WrkResult | None = None
                for attempt in range(1 + RETRIES):
                    result = measure_once(
                        server, wrk, script, connections=connections, duration=duration, cpu=wrk_cpu
                    )
                    if kept is None or (result.other_load or 0.0) < (kept.other_load or 0.0):
                        kept = result
                    contended = (result.other_load or 0.0) > MAX_OTHER_LOAD
                    progress(
                        f"  round {round_no + 1}/{rounds}  {server.spec.label:<44} "
                        f"{result.requests_per_s:>9.0f} req/s  p99 {result.p99_ms:>7.2f} ms"
                        + _cpu_note(result)
                        + (f"  ({result.errors} errors)" if result.errors else "")
                        + ("  -> again" if contended and attempt < RETRIES else "")
                    )
                    if not contended:
                        break
                assert kept is not None
                measured[server.spec.key].results.append(kept)
                if server.process is not None and server.process.poll() is not None:
                    raise BenchError(f"{server.spec.label} died under load{server.log_tail()}")
    return measured


def _round_order(servers: Sequence[Server], round_no: int) -> list[Server]:
    """The SDK app right next to each of its baselines, in alternating directions.

    On a shared VM the speed of the host drifts over minutes; ratios of measurements taken
    back to back (``Report.round_ratios``) cancel most of that drift.
    """
    by_key = {server.spec.key: server for server in servers}
    if "sdk" not in by_key:
        shift = round_no % len(servers)
        return [*servers[shift:], *servers[:shift]]
    near = [by_key[k] for k in ("ceiling", "sdk", "flask") if k in by_key]
    rest = [s for s in servers if s not in near]
    if round_no % 2:
        near.reverse()
        rest.reverse()
    return [*near, *rest]


def measure_once(
    server: Server,
    wrk: str,
    script: Path,
    *,
    connections: int,
    duration: int,
    cpu: int | None,
) -> WrkResult:
    """One wrk run, with the server's CPU time and the CPU load of everything else."""
    stat_before = proc_stat()
    server_before = server.cpu_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it is reaped
    start = time.monotonic()
    result = run_wrk(wrk, server.url, script, connections=connections, duration=duration, cpu=cpu)
    wall = time.monotonic() - start
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_after = server.cpu_seconds()
    stat_after = proc_stat()
    if server_before is None or server_after is None:
        return result
    server_s = server_after - server_before
    result = replace(result, cpu_s=server_s)
    if stat_before is None or stat_after is None or wall <= 0:
        return result
    wrk_s = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    # Other processes on this machine, plus CPU time the host did not give this machine.
    others = (stat_after[0] - stat_before[0] - server_s - wrk_s) / wall
    withheld = (os.cpu_count() or 1) - (stat_after[1] - stat_before[1]) / wall
    return replace(result, other_load=max(0.0, others) + max(0.0, withheld))


def _cpu_note(result: WrkResult) -> str:
    note = ""
    if result.cpu_us_per_request is not None:
        note += f"  {result.cpu_us_per_request:>6.0f} us CPU/req"
    if result.other_load is not None:
        note += f"  other load {result.other_load:>4.0%}"
    return note


def run(
    *,
    connections: int = DEFAULT_CONNECTIONS,
    duration: int = DEFAULT_DURATION,
    warmup: int = DEFAULT_WARMUP,
    rounds: int = 1,
) -> Report:
    """The whole HTTP benchmark: prerequisites, every server, one report."""
    wrk = ensure_wrk()
    ensure_gunicorn()
    node = ensure_express()
    server_cpu, wrk_cpu = cpu_plan()
    print(
        header(
            connections=connections,
            duration=duration,
            warmup=warmup,
            rounds=rounds,
            wrk=wrk,
            node=node,
            server_cpu=server_cpu,
            wrk_cpu=wrk_cpu,
        )
    )
    specs = [*main_specs(node), *setup_specs()]
    measured = measure(
        specs,
        connections=connections,
        duration=duration,
        warmup=warmup,
        rounds=rounds,
        wrk=wrk,
    )
    main_keys = [spec.key for spec in main_specs(node)]
    main = {key: measured[key] for key in main_keys}
    setups = {setup_key(*setup): measured[setup_key(*setup)] for setup in SETUPS}
    return Report(main, setups)


def header(
    *,
    connections: int,
    duration: int,
    warmup: int,
    rounds: int,
    wrk: str,
    node: str,
    server_cpu: int | None,
    wrk_cpu: int | None,
) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    pinning = (
        f"server pinned to CPU {server_cpu}, wrk (1 thread) to CPU {wrk_cpu}"
        if server_cpu is not None
        else "no CPU pinning (fewer than 2 CPUs or no taskset): wrk shares the server's CPU"
    )
    used = cpu_busy()
    busy = (
        f"\nWARNING: the CPUs were {used:.0%} busy just before the run: other processes "
        "compete for CPU, expect noisy numbers (use --rounds to take medians)"
        if used is not None and used > 0.15
        else ""
    )
    revision = tool_version(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return (
        f"HTTP webhook benchmark: {cpus} CPUs, {pinning}\n"
        f"sipgate_ai_flow at git {revision}\n"
        f"{tool_version([wrk, '--version'])}; node {tool_version([node, '--version'])}; "
        f"Python {sys.version.split()[0]}\n"
        f"POST {WEBHOOK_PATH} user_speak ({len(BODY)} bytes), {connections} connections, "
        f"{warmup} s warm-up, {duration} s x {rounds} round(s) per server, one worker each"
        f"{busy}"
    )


def table(report: Report) -> str:
    head = (
        f"{'server':<44} {'req/s':>8} {'range':>13} {'p99':>10} {'CPU/req':>9} "
        f"{'x ceiling':>10} {'x Express':>10} {'x Flask':>8} {'errors':>7}"
    )
    lines = [head, "-" * len(head)]
    for key, row in report.main.items():
        cpu = row.cpu_us_per_request
        lines.append(
            f"{row.label:<44} {row.requests_per_s:>8.0f} {row.spread:>13} {row.p99_ms:>7.2f} ms "
            f"{'-' if cpu is None else format(cpu, '.0f') + ' us':>9} "
            f"{report.ratio(key, 'ceiling'):>9.2f}x {report.ratio(key, 'express'):>9.2f}x "
            f"{report.ratio(key, 'flask'):>7.2f}x {row.errors:>7}"
        )
    noisy = report.contended()
    if noisy:
        lines.append(
            f"WARNING: {noisy} measurement(s) ran while other processes kept more than "
            f"{MAX_OTHER_LOAD:.0%} of a CPU busy, even after {RETRIES} retries: noisy numbers"
        )
    lines.append("")
    lines.append(
        "targets for the SDK app: req/s ratio (verdict); in brackets the ratio of requests "
        "per CPU-second"
    )
    names = {"ceiling": "ceiling", "express": "Express", "flask": "Flask"}
    for baseline, target, ratio, met in report.targets():
        cpu_ratio = report.cpu_ratio("sdk", baseline)
        notes = [] if cpu_ratio is None else [f"{cpu_ratio:.2f}x per CPU-second"]
        rounds = report.round_ratios("sdk", baseline)
        if len(rounds) > 1:
            notes.append("rounds " + " ".join(f"{r:.2f}" for r in rounds))
        lines.append(
            f"  >= {target:.1f}x {names[baseline]:<8} measured {ratio:>6.2f}x  "
            f"{'ok' if met else 'NO'}" + (f"  ({'; '.join(notes)})" if notes else "")
        )
    return "\n".join(lines)


def setups_table(report: Report) -> str:
    fastest = report.fastest_setup()
    best = report.setups[setup_key(*fastest)].requests_per_s
    head = (
        f"{'SDK app under uvicorn':<32} {'req/s':>8} {'p99':>10} {'CPU/req':>9} {'x fastest':>10}"
    )
    lines = [head, "-" * len(head)]
    for setup in SETUPS:
        row = report.setups[setup_key(*setup)]
        cpu = row.cpu_us_per_request
        mark = "  <- fastest" if setup == fastest else ""
        lines.append(
            f"{'--http ' + setup[0] + ' --loop ' + setup[1]:<32} {row.requests_per_s:>8.0f} "
            f"{row.p99_ms:>7.2f} ms {'-' if cpu is None else format(cpu, '.0f') + ' us':>9} "
            f"{row.requests_per_s / best:>9.2f}x{mark}"
        )
    return "\n".join(lines)


def to_json(report: Report) -> dict[str, Any]:
    def rows(group: dict[str, Measured]) -> dict[str, Any]:
        return {
            key: {
                "label": row.label,
                "requests_per_s": row.requests_per_s,
                "p99_ms": row.p99_ms,
                "cpu_us_per_request": row.cpu_us_per_request,
                "runs": [asdict(result) for result in row.results],
            }
            for key, row in group.items()
        }

    return {
        "main": rows(report.main),
        "setups": rows(report.setups),
        "targets": [
            {
                "baseline": baseline,
                "target": target,
                "ratio": ratio,
                "ok": met,
                "cpu_ratio": report.cpu_ratio("sdk", baseline),
            }
            for baseline, target, ratio, met in report.targets()
        ],
        "fastest_setup": "+".join(report.fastest_setup()),
    }


def main(
    *,
    connections: int = DEFAULT_CONNECTIONS,
    duration: int = DEFAULT_DURATION,
    warmup: int = DEFAULT_WARMUP,
    rounds: int = 1,
    json_path: Path | None = None,
) -> int:
    """Run and print; 0 when every target is met, 1 when one is missed, 2 on a failure."""
    try:
        report = run(connections=connections, duration=duration, warmup=warmup, rounds=rounds)
    except BenchError as exc:
        print(f"HTTP benchmark failed: {exc}", file=sys.stderr)
        return 2
    print()
    print(table(report))
    print()
    print(setups_table(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(to_json(report), indent=2) + "\n")
        print(f"\nresults written to {json_path}")
    return 0 if report.ok else 1
