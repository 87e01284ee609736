"""Load testing: many emulated calls at once against one app, on the real clock.

``LoadTest`` starts calls (a fixed number, or for a duration; all at once up to a
concurrency limit, or at a rate), plays a scenario in each (``default_scenario()`` unless
given one), and reports per event type how many were sent and how fast the app answered
(p50/p95/p99/max), with errors, slow replies and findings, plus how many calls completed or
failed. It also watches itself: the event loop's lag says whether the generator, not the
app, was the bottleneck. ``aiflow load`` is the command line around it.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> script = parse_scenario({"name": "ask", "steps": [
    ...     {"expect": {"speak": "(?i)welcome"}},
    ...     {"say": "opening hours?"},
    ...     {"expect": {"speak": "Monday to Friday"}},
    ... ]})
    >>> fast = {"speaking_rate": 5000.0, "caller_rate": 5000.0, "end_of_turn_ms": 0}
    >>> report = asyncio.run(
    ...     run_load(assistant, scenario=script, calls=10, concurrency=10, call_options=fast)
    ... )
    >>> report.calls_completed, report.calls_failed, report.events["user_speak"].count
    (10, 0, 10)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .call import CallConfig, EmulatedCall, RealClock
from .lifecycle import CallStartError, running
from .scenario import Scenario, parse_scenario, play
from .target import Target, resolve_target
from .transports import AppTransport, InProcessTransport, WebSocketAppTransport

if TYPE_CHECKING:
    from ..assistant import AiFlowAssistant
    from ._fasthttp import HttpPool

__all__ = [
    "DEFAULT_CONVERSATION",
    "ERROR_CODES",
    "EventStats",
    "Failure",
    "LiveStats",
    "LoadReport",
    "LoadTest",
    "default_scenario",
    "run_load",
]

DEFAULT_CONVERSATION: dict[str, Any] = {
    "name": "default conversation",
    # Findings are counted, not fatal: a load test measures; `aiflow test` judges.
    "allow_findings": True,
    "steps": [
        {"expect": {"speak": {}}},
        {"say": "Hello, I have a question about my order."},
        {"expect": {"speak": {}}},
        {"silence": 2},
        {"say": "Thank you, that is all. Goodbye."},
        {"hangup": {}},
    ],
}
"""The conversation each call plays without a script: greeting, a question, an answer, a
pause, goodbye. About 15 s per call against ``examples/echo.py`` at the default speaking rate."""

ERROR_CODES = frozenset(
    {"no_reply", "http_status", "invalid_json", "connection_closed", "handler_error"}
)
"""Findings that mean the app did not answer properly (the ``errors`` column).
``slow_reply`` is a timeout, every other code a finding. Errors and slow replies fail the
call even when the scenario allows findings: the real service would not have had the answer.
(Over a WebSocket a first frame later than the deadline is a timeout that fails nothing: it
may be a push of the app's own.)"""

LAG_INTERVAL = 0.05
"""Seconds between two looks at the generator's own event loop."""
SATURATED_LAG = 0.025
"""Loop lag p99 (seconds) above which the report warns that the generator was the bottleneck."""

_MASK = re.compile(
    r"\d+\.\d+|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I
)


def _cpu_times() -> tuple[int, int, int] | None:
    """Machine-wide CPU time so far (Linux ``/proc/stat``): total, idle, stolen by the host."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: counted in user]
    return sum(fields[:8]), fields[3] + fields[4], fields[7]


@contextlib.contextmanager
def _timing_gc(pauses: list[float]) -> Iterator[None]:
    """Note how long each garbage collection takes while the block runs: a collection stops
    the event loop, and its pauses show up as loop lag."""
    started = [0.0]

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    gc.callbacks.append(note)
    try:
        yield
    finally:
        gc.callbacks.remove(note)


def _max_rss_mb() -> float | None:
    try:
        import resource  # noqa: PLC0415 - Unix only
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts KiB, macOS bytes.
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def default_scenario() -> Scenario:
    """``DEFAULT_CONVERSATION`` as a ``Scenario``."""
    return parse_scenario(DEFAULT_CONVERSATION, source="<default conversation>")


# -- statistics -------------------------------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (``None`` when there are none)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


@dataclass
class EventStats:
    """One event type: how many were sent, reply latencies (seconds), and what went wrong."""

    count: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    """Exchanges that failed (``ERROR_CODES``)."""
    timeouts: int = 0
    """Replies slower than the deadline (``slow_reply``)."""
    findings: int = 0
    """Every other finding raised while answering this event."""
    _sorted: list[float] | None = field(default=None, repr=False, compare=False)

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0-1) of the reply latencies in seconds, or ``None``."""
        if self._sorted is None or len(self._sorted) != len(self.latencies):
            self._sorted = sorted(self.latencies)
        return _percentile(self._sorted, q)

    def merge(self, other: EventStats) -> None:
        self.count += other.count
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        self.timeouts += other.timeouts
        self.findings += other.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "replies": len(self.latencies),
            "p50_ms": _ms(self.percentile(0.50)),
            "p95_ms": _ms(self.percentile(0.95)),
            "p99_ms": _ms(self.percentile(0.99)),
            "max_ms": _ms(max(self.latencies)) if self.latencies else None,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "findings": self.findings,
        }


@dataclass
class LiveStats:
    """Counters a progress display reads while the test runs."""

    planned_calls: int | None = None
    planned_seconds: float | None = None
    started: int = 0
    alive: int = 0
    peak_alive: int = 0
    completed: int = 0
    failed: int = 0
    aborted: int = 0
    events: int = 0
    began: float = field(default_factory=time.perf_counter)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    """The latest reply latencies (seconds)."""
    lag: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    """The latest event-loop lag samples (seconds): the last ten seconds."""

    def replied(self, event_type: str, seconds: float) -> None:
        """``EmulatedCall.on_reply`` of every call: one more latency."""
        self.recent.append(seconds)

    def logged(self, entry: dict[str, Any]) -> None:
        """An ``EmulatedCall`` listener of every call: counts the events sent."""
        if entry["kind"] == "event":
            self.events += 1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.aborted

    def recent_p99_ms(self) -> float | None:
        return _ms(_percentile(sorted(self.recent), 0.99))

    def lag_p99_ms(self) -> float | None:
        return _ms(_percentile(sorted(self.lag), 0.99))

    def line(self) -> str:
        """One line of progress, for logs."""
        p99, lag = self.recent_p99_ms(), self.lag_p99_ms()
        rate = self.events / self.elapsed if self.elapsed > 0 else 0.0
        planned = f"/{self.planned_calls}" if self.planned_calls else ""
        return (
            f"{self.elapsed:6.1f} s  calls {self.finished}{planned} done "
            f"({self.failed} failed), {self.alive} alive  {rate:,.0f} events/s  "
            f"reply p99 {_fmt(p99)}  loop lag p99 {_fmt(lag)}"
        )


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 1)


def _fmt(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f} ms"


@dataclass
class Failure:
    """Calls that failed for the same reason (numbers and session ids masked)."""

    reason: str
    count: int
    example: str
    """The full message of the first call that failed this way."""


@dataclass
class LoadReport:
    """What a load test measured. ``to_dict()`` is the ``--json`` document."""

    target: str
    transport: str
    scenario: str
    options: dict[str, Any]
    seconds: float = 0.0
    calls_started: int = 0
    calls_completed: int = 0
    calls_failed: int = 0
    calls_aborted: int = 0
    peak_alive: int = 0
    mean_alive: float = 0.0
    """Mean number of calls alive while new calls were being started."""
    events: dict[str, EventStats] = field(default_factory=dict)
    finding_codes: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)
    """The generator's event-loop lag samples, seconds (one per ``LAG_INTERVAL``)."""
    cpu_seconds: float = 0.0
    event_loop: str = "asyncio"
    http_connections: int | None = None
    """Connections the HTTP client opened (lean client only)."""
    gc_pauses: list[float] = field(default_factory=list)
    """How long each garbage collection stopped the generator, seconds."""
    max_rss_mb: float | None = None
    """The generator process's peak memory (resident set), MiB (Unix only)."""
    machine_busy: float | None = None
    """Share of the whole machine's CPU time in use during the test, 0-1 (Linux only)."""
    machine_stolen: float | None = None
    """Share stolen by the hypervisor for other guests, 0-1 (Linux only)."""

    def total(self) -> EventStats:
        """All event types together."""
        total = EventStats()
        for stats in self.events.values():
            total.merge(stats)
        return total

    @property
    def passed(self) -> bool:
        return self.calls_failed == 0

    def lag_ms(self, q: float) -> float | None:
        """A quantile of the generator's event-loop lag, in ms."""
        return _ms(_percentile(sorted(self.loop_lag), q))

    @property
    def saturated(self) -> bool:
        """Whether the generator's own loop lagged enough to distort the latencies."""
        p99 = _percentile(sorted(self.loop_lag), 0.99)
        return p99 is not None and p99 > SATURATED_LAG

    def broken_bounds(self, p99_max_ms: float) -> list[str]:
        """Each event type whose reply p99 exceeds ``p99_max_ms``, as a sentence."""
        broken = []
        for name, stats in sorted(self.events.items()):
            p99 = stats.percentile(0.99)
            if p99 is not None and p99 * 1000 > p99_max_ms:
                broken.append(f"{name} p99 {p99 * 1000:.1f} ms > {p99_max_ms:g} ms")
        return broken

    def to_dict(self) -> dict[str, Any]:
        total = self.total()
        seconds = self.seconds or 1e-9
        return {
            "target": self.target,
            "transport": self.transport,
            "scenario": self.scenario,
            "options": self.options,
            "seconds": round(self.seconds, 3),
            "calls": {
                "started": self.calls_started,
                "completed": self.calls_completed,
                "failed": self.calls_failed,
                "aborted": self.calls_aborted,
                "peak_alive": self.peak_alive,
                "mean_alive": round(self.mean_alive, 1),
                "per_second": round(self.calls_started / seconds, 2),
            },
            "events": {name: s.to_dict() for name, s in sorted(self.events.items())},
            "total": {**total.to_dict(), "per_second": round(total.count / seconds, 1)},
            "findings": dict(self.finding_codes.most_common()),
            "failures": [
                {"reason": f.reason, "count": f.count, "example": f.example} for f in self.failures
            ],
            "generator": {
                "event_loop": self.event_loop,
                "loop_lag_p50_ms": self.lag_ms(0.50),
                "loop_lag_p99_ms": self.lag_ms(0.99),
                "loop_lag_max_ms": _ms(max(self.loop_lag)) if self.loop_lag else None,
                "cpu_percent": round(100 * self.cpu_seconds / seconds, 1),
                "saturated": self.saturated,
                "http_connections": self.http_connections,
                "max_rss_mb": self.max_rss_mb,
                "gc_collections": len(self.gc_pauses),
                "gc_total_ms": round(sum(self.gc_pauses) * 1000, 1),
                "gc_max_ms": _ms(max(self.gc_pauses)) if self.gc_pauses else None,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "busy_percent": _percent(self.machine_busy),
                "stolen_percent": _percent(self.machine_stolen),
            },
            "passed": self.passed,
        }


# -- the test ---------------------------------------------------------------------------------


class LoadTest:
    """Many emulated calls against ``target`` (a ``Target``, or what ``resolve_target`` takes:
    an ``AiFlowAssistant``, a module or file, the app's URL).

    Args:
        scenario: what each call does; ``default_scenario()`` by default. A ``session_id``
            in its ``call`` options is ignored: every call gets its own.
        calls: how many calls to run; with ``duration``, at most this many. Without either,
            100.
        concurrency: at most this many calls at once (default 10, or unlimited with ``rate``).
        duration: keep starting calls for this many seconds, then let the last ones finish.
        rate: start this many calls per second (otherwise: as soon as there is room).
        token: sent as ``X-API-TOKEN``.
        deadline: seconds after which a reply counts as a timeout (``slow_reply``).
        call_options: ``CallConfig`` fields for every call, over the scenario's
            (``speaking_rate``, ``caller_rate``, ``end_of_turn_ms``, ...).
        http_client: ``lean`` (``HttpPool``, the default: far less CPU per event) or
            ``httpx`` (``HttpAppTransport`` on one shared ``httpx.AsyncClient``).
        ws_settle: how long after an event a WebSocket call waits for more frames.
        name: how the report names the target (default: the URL, or "in-process assistant").

    An assistant whose scenario names ``http`` or ``websocket`` is served on a local socket
    in the same process (``serve_locally``): the app and the generator then share one CPU.
    ``live`` holds counters for a progress display; ``stop()`` stops starting calls
    (``abort=True`` also ends the running ones). ``run()``, once, returns the ``LoadReport``.
    """

    def __init__(
        self,
        target: Target | AiFlowAssistant | str,
        *,
        scenario: Scenario | None = None,
        calls: int | None = None,
        concurrency: int | None = None,
        duration: float | None = None,
        rate: float | None = None,
        token: str | None = None,
        deadline: float = 5.0,
        call_options: Mapping[str, Any] | None = None,
        http_client: Literal["lean", "httpx"] = "lean",
        ws_settle: float = 0.05,
        name: str | None = None,
    ) -> None:
        for label, value in (
            ("calls", calls),
            ("concurrency", concurrency),
            ("duration", duration),
            ("rate", rate),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{label} must be greater than 0, got {value}")
        if deadline <= 0:
            raise ValueError(f"deadline must be greater than 0, got {deadline}")
        if ws_settle < 0:
            raise ValueError(f"ws_settle must be 0 or more, got {ws_settle}")
        if http_client not in ("lean", "httpx"):
            raise ValueError(f"http_client is lean or httpx, got {http_client!r}")
        self.target = target if isinstance(target, Target) else resolve_target(target)
        self.scenario = scenario or default_scenario()
        self.calls = 100 if calls is None and duration is None else calls
        self.concurrency = concurrency if concurrency is not None or rate else 10
        self.duration = duration
        self.rate = rate
        self.token = token
        self.deadline = deadline
        self.http_client = http_client
        self.ws_settle = ws_settle
        options = {**self.scenario.call, **(call_options or {})}
        options.pop("session_id", None)
        try:
            CallConfig(**options)
        except TypeError as exc:
            raise ValueError(f"call_options: {exc}") from None
        self.call_options = options
        self.kind = self.target.kind_for(self.scenario.transport)
        self.name = name or self.target.name or "in-process assistant"
        self.live = LiveStats(planned_calls=self.calls, planned_seconds=duration)
        self._url = self.target.url
        self._pool: HttpPool | None = None
        self._httpx: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._spawner: asyncio.Task[None] | None = None
        self._report = LoadReport(self.name, self.kind, self.scenario.name, self._options())
        self._alive_samples: list[int] = []
        self._lags: list[float] = []
        self._failures: Counter[str] = Counter()
        self._examples: dict[str, str] = {}

    def _options(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "concurrency": self.concurrency,
            "duration": self.duration,
            "rate": self.rate,
            "deadline": self.deadline,
            "http_client": self.http_client if self.kind == "http" else None,
            "call": dict(self.call_options),
        }

    # -- control ------------------------------------------------------------------------------

    def stop(self, *, abort: bool = False) -> None:
        """Start no more calls; with ``abort``, also end the running ones (counted aborted)."""
        if self._spawner is not None:
            self._spawner.cancel()
        if abort:
            for task in list(self._tasks):
                task.cancel()

    async def run(self) -> LoadReport:
        """Run the test to the end and return the report."""
        if self._spawner is not None:
            raise RuntimeError("a LoadTest runs once; make a new one")
        loop = asyncio.get_running_loop()
        report = self._report
        report.event_loop = type(loop).__module__.split(".")[0]
        cpu = time.process_time()
        machine = _cpu_times()
        self.live.began = began = time.perf_counter()
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(_timing_gc(report.gc_pauses))
            await self._prepare(stack)
            watcher = loop.create_task(self._watch())
            self._spawner = spawner = loop.create_task(self._spawn())
            timer = (
                loop.call_later(self.duration, spawner.cancel)
                if self.duration is not None
                else None
            )
            try:
                await asyncio.wait({spawner})
                report.mean_alive = (
                    sum(self._alive_samples) / len(self._alive_samples)
                    if self._alive_samples
                    else float(self.live.peak_alive)
                )
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
            finally:
                if timer is not None:
                    timer.cancel()
                spawner.cancel()
                for task in list(self._tasks):
                    task.cancel()
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if self._pool is not None:
                report.http_connections = self._pool.opened
        report.seconds = time.perf_counter() - began
        report.cpu_seconds = time.process_time() - cpu
        report.max_rss_mb = _max_rss_mb()
        after = _cpu_times()
        if machine is not None and after is not None and after[0] > machine[0]:
            total = after[0] - machine[0]
            report.machine_busy = 1 - (after[1] - machine[1]) / total
            report.machine_stolen = (after[2] - machine[2]) / total
        report.loop_lag = list(self._lags)
        report.peak_alive = self.live.peak_alive
        report.failures = [
            Failure(reason, count, self._examples[reason])
            for reason, count in self._failures.most_common()
        ]
        return report

    async def _prepare(self, stack: contextlib.AsyncExitStack) -> None:
        assistant = self.target.assistant
        if assistant is not None and self.kind != "inprocess":
            from .local import serve_locally  # noqa: PLC0415 - needs uvicorn

            server = await stack.enter_async_context(serve_locally(assistant))
            self._url = server.url_for(self.kind)
        if self.kind == "http":
            assert self._url is not None
            if self.http_client == "lean":
                from ._fasthttp import HttpPool  # noqa: PLC0415 - only for HTTP targets

                self._pool = HttpPool(self._url)
                stack.callback(self._pool.close)
            else:
                import httpx  # noqa: PLC0415 - only for this client

                self._httpx = httpx.AsyncClient(
                    timeout=self.deadline * 2 + 1,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
                )
                stack.push_async_callback(self._httpx.aclose)

    def _transport(self) -> AppTransport:
        if self.kind == "inprocess":
            assert self.target.assistant is not None
            return InProcessTransport(self.target.assistant, deadline=self.deadline)
        assert self._url is not None
        if self.kind == "http":
            if self._pool is not None:
                from ._fasthttp import LeanHttpTransport  # noqa: PLC0415 - loaded by _prepare

                return LeanHttpTransport(
                    self._url, token=self.token, deadline=self.deadline, pool=self._pool
                )
            from .transports import HttpAppTransport  # noqa: PLC0415 - next to its client

            return HttpAppTransport(
                self._url, token=self.token, deadline=self.deadline, client=self._httpx
            )
        return WebSocketAppTransport(
            self._url, token=self.token, deadline=self.deadline, settle=self.ws_settle
        )

    async def _spawn(self) -> None:
        gate = asyncio.Semaphore(self.concurrency) if self.concurrency else None
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        index = 0
        while self.calls is None or index < self.calls:
            if self.rate is not None:
                delay = start + index / self.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if gate is not None:
                await gate.acquire()
            index += 1
            task = loop.create_task(self._call(gate))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        """Sample the loop's lag: how late a short sleep wakes up is how long every timer and
        every reply waited for the generator itself."""
        live = self.live
        while True:
            expected = time.perf_counter() + LAG_INTERVAL
            await asyncio.sleep(LAG_INTERVAL)
            lag = max(0.0, time.perf_counter() - expected)
            self._lags.append(lag)
            live.lag.append(lag)
            if self._spawner is not None and not self._spawner.done():
                self._alive_samples.append(live.alive)

    async def _call(self, gate: asyncio.Semaphore | None) -> None:
        live = self.live
        live.started += 1
        live.alive += 1
        live.peak_alive = max(live.peak_alive, live.alive)
        call = EmulatedCall(self._transport(), CallConfig(**self.call_options), clock=RealClock())
        call.on_reply = live.replied
        call.listeners.append(live.logged)
        error: str | None = None
        aborted = False
        try:
            error = await self._play(call)
        except asyncio.CancelledError:
            aborted = True
        except Exception as exc:  # one broken call must not end the whole test
            error = f"the emulator failed: {type(exc).__name__}: {exc}"
        finally:
            live.alive -= 1
            if gate is not None:
                gate.release()
            self._absorb(call, error, aborted)
            call.release()  # free a finished call at once (see EmulatedCall.release)

    async def _play(self, call: EmulatedCall) -> str | None:
        try:
            async with running(call):
                error = await play(call, self.scenario)
                if error is not None:
                    return error
        except CallStartError as exc:
            return f"cannot start the call: {exc}"
        fresh = call.hangup_findings  # findings about session_end belong to this call
        if fresh and not self.scenario.allow_findings:
            return f"findings when the call ended: {fresh[0]}"
        broken = [f for f in call.findings if f.code in ERROR_CODES or f.code == "slow_reply"]
        if broken:
            return f"the app failed to answer in time: {broken[0]}"
        return None

    def _absorb(self, call: EmulatedCall, error: str | None, aborted: bool) -> None:
        events = self._report.events
        for event in call.events:
            event_type = event["type"]
            stats = events.get(event_type)
            if stats is None:
                stats = events[event_type] = EventStats()
            stats.count += 1
        for event_type, latency in call.latencies:
            events[event_type].latencies.append(latency)
        for event_type in call.late:  # over a WebSocket: no latency and no failed call
            events[event_type].timeouts += 1
        for finding in call.findings:
            where = finding.event or "(none)"
            stats = events.get(where)
            if stats is None:
                stats = events[where] = EventStats()
            if finding.code == "slow_reply":
                stats.timeouts += 1
            elif finding.code in ERROR_CODES:
                stats.errors += 1
            else:
                stats.findings += 1
            self._report.finding_codes[finding.code] += 1
        report, live = self._report, self.live
        report.calls_started += 1
        if aborted:
            report.calls_aborted += 1
            live.aborted += 1
        elif error is None:
            report.calls_completed += 1
            live.completed += 1
        else:
            report.calls_failed += 1
            live.failed += 1
            head = error.split("\n  around it:", 1)[0]
            lines = [line.strip() for line in head.splitlines() if line.strip()][:2]
            reason = _MASK.sub("#", " / ".join(lines))[:300]
            self._failures[reason] += 1
            self._examples.setdefault(reason, error)


async def run_load(target: AiFlowAssistant | str, **options: Any) -> LoadReport:
    """Run a ``LoadTest`` against ``target`` with ``options`` and return its report."""
    return await LoadTest(target, **options).run()
