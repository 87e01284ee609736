"""``aiflow load TARGET``: many emulated calls at once against an app, with reply latencies."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import target_or_none, unreachable

if TYPE_CHECKING:
    from ..emulator.load import LiveStats, LoadReport, LoadTest

PLAIN_EVERY = 5.0
"""Seconds between two progress lines when stdout is not a terminal."""
BAR_EVERY = 0.25
"""Seconds between two redraws of the progress bar."""
CPU_BOUND_PERCENT = 70.0
"""Above this share of one core, a lagging generator is short of CPU of its own."""
GC_THRESHOLD = 10_000
"""Allocations between two young-generation collections (CPython's default is 700)."""
MACHINE_BUSY_PERCENT = 85.0
"""Above this share of the machine in use, a lagging generator was waiting for a CPU."""
STOLEN_PERCENT = 5.0
"""Above this share of CPU time stolen by the hypervisor, the same."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "load",
        help="load-test an app: many emulated calls at once, reply latency per event type",
        description=(
            "Run many emulated calls at once against TARGET: a webhook URL "
            "(http://.../webhook), a WebSocket URL (ws://.../ws), or an assistant in process "
            "(module:attr or file.py). Time is real: playback, silences and timeouts take as "
            "long as on a phone. Each call plays --script, or a default conversation (greeting, "
            "a question, an answer, a pause, goodbye). Exit status: 0; 1 if a call failed or "
            "--p99-max was exceeded; 2 for a bad target, script or option."
        ),
    )
    parser.add_argument(
        "target", help="http(s)://.../webhook, ws(s)://.../ws, module:attr, or path/to/app.py"
    )
    parser.add_argument(
        "--calls", type=int, default=None, metavar="N", help="calls in all (default 100)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="C",
        help="at most C calls at once (default 10; unlimited with --rate)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep starting calls this long instead of a fixed count (--calls then caps it)",
    )
    parser.add_argument(
        "--rate", type=float, default=None, metavar="R", help="start R new calls per second"
    )
    parser.add_argument(
        "--script", type=Path, default=None, metavar="FILE", help="a scenario file for each call"
    )
    parser.add_argument("--token", default=None, help="shared secret sent as X-API-TOKEN")
    parser.add_argument(
        "--deadline",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="a reply slower than this is a timeout (default 5)",
    )
    parser.add_argument(
        "--p99-max",
        type=float,
        default=None,
        metavar="MS",
        help="fail (exit 1) when any event type's reply p99 exceeds MS milliseconds",
    )
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="write the report as JSON"
    )
    parser.add_argument(
        "--speaking-rate",
        type=float,
        default=None,
        metavar="CPS",
        help="characters per second of speech, the assistant's and the caller's "
        "(default 15, as on the phone; higher makes calls shorter)",
    )
    parser.add_argument(
        "--http-client",
        choices=("lean", "httpx"),
        default="lean",
        help="HTTP client of the generator (default lean: a keep-alive pool built for this)",
    )
    parser.set_defaults(run=run)


def _fail(message: str) -> int:
    print(f"aiflow load: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ..emulator.load import LoadTest
    from ..emulator.scenario import ScenarioError, load_scenario

    if not _has_rich():
        return _fail("the report needs rich: pip install 'sipgate-ai-flow[cli]'")
    for name in ("calls", "concurrency", "duration", "rate", "deadline", "p99_max"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            return _fail(f"--{name.replace('_', '-')} must be greater than 0, got {value:g}")
    if args.speaking_rate is not None and not (
        math.isfinite(args.speaking_rate) and args.speaking_rate > 0
    ):
        return _fail(f"--speaking-rate must be greater than 0, got {args.speaking_rate:g}")
    target = target_or_none("load", args.target)
    if target is None:
        return 2
    if args.json is not None:  # checked now, not after a long run
        if args.json.is_dir():
            return _fail(f"--json {args.json} is a directory")
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _fail(f"--json {args.json}: cannot create its directory ({exc})")
    scenario = None
    if args.script is not None:
        try:
            scenario = load_scenario(args.script)
        except ScenarioError as exc:
            return _fail(str(exc))
    call_options: dict[str, Any] = {}
    if args.speaking_rate is not None:
        call_options = {"speaking_rate": args.speaking_rate, "caller_rate": args.speaking_rate}
    try:
        test = LoadTest(
            target,
            scenario=scenario,
            calls=args.calls,
            concurrency=args.concurrency,
            duration=args.duration,
            rate=args.rate,
            token=args.token,
            deadline=args.deadline,
            call_options=call_options,
            http_client=args.http_client,
            name=args.target,
        )
    except ValueError as exc:
        return _fail(str(exc))
    if unreachable("load", target, args.token):
        return 2
    _raise_file_limit()
    _tune_gc()
    report, interrupted = _run(_drive(test))
    _print_report(report, args.p99_max)
    if args.json is not None:
        document = report.to_dict()
        document["bounds"] = {
            "p99_max_ms": args.p99_max,
            "broken": report.broken_bounds(args.p99_max) if args.p99_max else [],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"JSON report written to {args.json}")
    if interrupted:
        return 130
    broken = report.broken_bounds(args.p99_max) if args.p99_max else []
    return 1 if report.calls_failed or broken else 0


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when installed: the generator spends less of its CPU on the loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _tune_gc() -> None:
    """Fewer garbage collections. At 2,000 calls CPython's defaults ran a full collection
    every 8 s or so, each stopping the loop for 100-250 ms, and a middle-generation one more
    than once a second (up to 35 ms). With a larger first generation the objects of one event
    die before a collection sees them, and the older generations are collected about once a
    minute (the engine empties finished calls, so their memory does not wait for that)."""
    gc.freeze()  # what is loaded by now lives as long as the process: never scan it again
    gc.set_threshold(GC_THRESHOLD, 100, 10)


def _raise_file_limit() -> None:
    # Each WebSocket call holds a socket, and HTTP bursts open many: allow what the system allows.
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _drive(test: LoadTest) -> tuple[LoadReport, bool]:
    """Run the test with a progress display; Ctrl-C stops starting calls, twice aborts."""
    loop = asyncio.get_running_loop()
    interrupts = 0

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print(
                "\nstopping: no new calls; the running ones finish (Ctrl-C again to abort them)",
                file=sys.stderr,
            )
            test.stop()
        else:
            test.stop(abort=True)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupt)
    show = _Bar(test.live) if sys.stdout.isatty() else _Lines(test.live)
    shower = loop.create_task(show.run())
    try:
        report = await test.run()
    finally:
        shower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shower
        show.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    return report, interrupts > 0


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class _Lines:
    """Progress as a plain line every few seconds (logs, CI, pipes)."""

    def __init__(self, live: LiveStats) -> None:
        self.live = live

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PLAIN_EVERY)
            print(self.live.line(), flush=True)

    def close(self) -> None:
        print(self.live.line(), flush=True)


class _Bar:
    """A rich progress bar (calls finished of planned, or seconds of --duration) and a line of
    live figures under it."""

    def __init__(self, live: LiveStats) -> None:
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.live = live
        self.progress = Progress(
            TextColumn("[bold]load"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[of]}"),
            TimeElapsedColumn(),
        )
        total = live.planned_seconds or live.planned_calls
        self.task = self.progress.add_task("", total=total, of="")
        # Redrawn from the event loop, not rich's refresh thread: no thread contending for the
        # GIL with the calls.
        self.display = Live(self._render(), auto_refresh=False)
        self.display.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        live = self.live
        if live.planned_seconds:
            done = min(live.elapsed, live.planned_seconds)
            of = f"{done:.0f}/{live.planned_seconds:g} s, {live.finished} calls done"
        else:
            done = live.finished
            of = f"{live.finished}/{live.planned_calls} calls"
        self.progress.update(self.task, completed=done, of=of)
        rate = live.events / live.elapsed if live.elapsed > 0 else 0.0
        figures = Text(
            f"{live.alive} alive, {live.failed} failed, {rate:,.0f} events/s, "
            f"reply p99 {_ms(live.recent_p99_ms())}, loop lag p99 {_ms(live.lag_p99_ms())}",
            style="red" if live.failed else "",
        )
        return Group(self.progress, figures)

    async def run(self) -> None:
        while True:
            self.display.update(self._render(), refresh=True)
            await asyncio.sleep(BAR_EVERY)

    def close(self) -> None:
        self.display.update(self._render(), refresh=True)
        self.display.stop()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_report(report: LoadReport, p99_max: float | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120, no_color=True)
    data = report.to_dict()
    table = Table(
        title=escape(
            f"aiflow load: {report.target} ({report.transport}, {report.scenario}); "
            "reply latency in ms"
        ),
        title_justify="left",
        # No vertical rules and single spaces between columns: the table fits 80 columns,
        # and there the event names give way, never the numbers.
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("event", overflow="ellipsis")
    for column in ("count", "p50", "p95", "p99", "max", "errors", "timeouts", "findings"):
        table.add_column(column, justify="right", no_wrap=True)
    rows = [*data["events"].items(), ("total", data["total"])]
    for index, (name, row) in enumerate(rows):
        table.add_row(
            name,
            str(row["count"]),
            _cell(row["p50_ms"]),
            _cell(row["p95_ms"]),
            _cell(row["p99_ms"]),
            _cell(row["max_ms"]),
            str(row["errors"]),
            str(row["timeouts"]),
            str(row["findings"]),
            end_section=index == len(rows) - 2,
        )
    console.print(table)
    calls, generator = data["calls"], data["generator"]
    console.print(
        f"calls: {calls['started']} started, {calls['completed']} completed, "
        f"{calls['failed']} failed"
        + (f", {calls['aborted']} aborted" if calls["aborted"] else "")
        + f" in {report.seconds:.1f} s ({calls['per_second']:g}/s; "
        f"peak {calls['peak_alive']} alive, mean {calls['mean_alive']:g} while starting)",
        highlight=False,
    )
    connections = (
        f", {generator['http_connections']} HTTP connections"
        if generator["http_connections"] is not None
        else ""
    )
    console.print(
        f"generator: {generator['event_loop']}, loop lag p50 {_ms(generator['loop_lag_p50_ms'])}"
        f" / p99 {_ms(generator['loop_lag_p99_ms'])} / max {_ms(generator['loop_lag_max_ms'])}, "
        f"CPU {generator['cpu_percent']:g}% of one core, {data['total']['per_second']:,} "
        f"events/s{connections}"
        + (f", {generator['max_rss_mb']:g} MiB peak memory" if generator["max_rss_mb"] else ""),
        highlight=False,
    )
    if generator["gc_collections"]:
        console.print(
            f"garbage collection: {generator['gc_collections']} runs, "
            f"{generator['gc_total_ms']:,.0f} ms in all, longest {_ms(generator['gc_max_ms'])}",
            highlight=False,
        )
    machine = data["machine"]
    if machine["busy_percent"] is not None:
        console.print(
            f"machine: {machine['cpus']} CPUs, {machine['busy_percent']:g}% busy during the test "
            f"(all processes), {machine['stolen_percent']:g}% stolen by the host",
            highlight=False,
        )
    if report.transport == "websocket":
        console.print(
            "  (WebSocket: latency is the time to the app's first frame after an event; "
            "events it leaves unanswered have none)",
            highlight=False,
        )
    if report.saturated:
        # A busy loop means too much work for one process; an idle one that still woke up
        # late means the process waited for a CPU that something else was using.
        if generator["cpu_percent"] >= CPU_BOUND_PERCENT:
            cause = "it was CPU-bound: use fewer calls per process, or several processes"
        elif (machine["busy_percent"] or 0) >= MACHINE_BUSY_PERCENT:
            cause = (
                f"it used only {generator['cpu_percent']:g}% of a core but the machine was "
                f"{machine['busy_percent']:g}% busy: it waited for a CPU"
            )
        elif (machine["stolen_percent"] or 0) >= STOLEN_PERCENT:
            cause = (
                f"the host gave {machine['stolen_percent']:g}% of this machine's CPU time to "
                "others: it waited for a CPU"
            )
        else:
            cause = (
                "it was busy in bursts (many calls waking at once, garbage collection): "
                "fewer calls per process give exact percentiles"
            )
        console.print(
            f"[yellow]warning:[/] the generator's own event loop lagged (p99 "
            f"{_ms(generator['loop_lag_p99_ms'])}), so the latencies include its delay; "
            f"{cause}",
            highlight=False,
        )
    if data["findings"]:
        codes = ", ".join(f"{code} x{count}" for code, count in data["findings"].items())
        console.print(escape(f"findings: {codes}"), highlight=False)
    for failure in report.failures[:5]:
        console.print(f"[red]FAILED[/] x{failure.count}: {escape(failure.reason)}", highlight=False)
    if len(report.failures) > 5:
        console.print(f"... and {len(report.failures) - 5} other reasons", highlight=False)
    if report.failures:
        console.print("first failure in full:", highlight=False)
        console.print(report.failures[0].example, highlight=False, markup=False)
    if p99_max is not None:
        broken = report.broken_bounds(p99_max)
        if broken:
            console.print(
                f"[red]p99 bound broken[/] (--p99-max {p99_max:g} ms): "
                + escape("; ".join(broken)),
                highlight=False,
            )
        else:
            console.print(f"p99 bound held: every event type <= {p99_max:g} ms", highlight=False)
