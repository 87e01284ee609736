"""Run the benchmark suite: ``python -m bench [--quick] [--http|--ws|--state|--memory|--all]``.

The default run is the quick in-process dispatch benchmark (one table of ratios). ``--http``
runs the HTTP webhook benchmark instead (real servers under ``wrk``: the SDK app, a raw ASGI
ceiling, FastAPI, Flask and Express; see ``bench/http.py``); ``--ws`` the WebSocket benchmark
(200 call sockets, the SDK app against the ``websockets`` library's own server;
``bench/websocket.py``); ``--state`` runs MemoryStore against RedisStore at the same offered
load (``bench/state.py``); ``--memory`` the SDK app's RSS over 10,000 calls and per open
WebSocket call (``bench/memory.py``). ``--all`` runs them all and ends with one summary
table: every judged figure, the baseline it was measured next to in this run, the ratio, the
target and the verdict. ``--quick`` makes every one of them a short smoke run.

Exit status: 0 when every target is met, 1 when one is missed, 2 when a server or tool a
benchmark needs is missing or fails to start.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipgate_ai_flow.testing.redis import RedisServer

from . import dispatch, memory, state
from . import http as http_bench
from . import websocket as ws_bench
from ._summary import SummaryRow, failed, summary_table
from ._timing import table

Outcome = tuple[int, list[SummaryRow]]


def run_dispatch(quick: bool) -> Outcome:
    rounds, iterations = (5, 2_000) if quick else (15, 20_000)
    rows = [asyncio.run(dispatch.run(rounds=rounds, iterations=iterations))]
    print(f"Python {platform.python_version()} on {platform.machine()}, {rounds} rounds")
    print(table(rows))
    summary = [
        SummaryRow(
            "dispatch: parse + dispatch + dump",
            f"SDK {statistics.median(row.candidate_us):.1f} us/event",
            f"{row.baseline} {statistics.median(row.baseline_us):.1f} us",
            row.ratio,
            f"<= {row.target:.1f}x",
            row.ok,
        )
        for row in rows
    ]
    return (0 if all(row.ok for row in rows) else 1), summary


def run_state(quick: bool) -> Outcome:
    seconds, rounds = (3.0, 1) if quick else (4.0, 9)
    with RedisServer() as redis:
        results, ratios = asyncio.run(state.run(redis.url, seconds=seconds, rounds=rounds))
    print(
        f"State: {state.DEFAULT_RATE:g} events/s offered for {seconds:g} s x {rounds} rounds "
        f"(alternating, median p99) over {state.DEFAULT_CONNECTIONS} connections, 200 calls; "
        "each event does incr + set on its call's state"
    )
    text, ok = state.table(results, ratios)
    print(text)
    by_name = {result.name: result for result in results}
    # The target state.table judges by (its default), so the summary cannot drift from it.
    judged = inspect.signature(state.table).parameters.get("target")
    target = "-" if judged is None else f"<= {judged.default:.1f}x"
    row = SummaryRow(
        "state: p99, RedisStore vs MemoryStore",
        f"RedisStore {by_name['RedisStore'].p99:.2f} ms",
        f"MemoryStore {by_name['MemoryStore'].p99:.2f} ms",
        statistics.median(ratios),
        target,
        ok,
    )
    return (0 if ok else 1), [row]


def run_http(args: argparse.Namespace, collect: bool) -> Outcome:
    """The HTTP benchmark; with ``collect`` its targets become summary rows (read back from
    the JSON results, written to a temporary file unless ``--json`` names one)."""
    duration = args.duration or (3 if args.quick else http_bench.DEFAULT_DURATION)
    with tempfile.TemporaryDirectory(prefix="aiflow-bench-") as tmp:
        json_path = args.json
        if json_path is None and collect:
            json_path = Path(tmp) / "http.json"
        status = http_bench.main(
            connections=args.connections,
            duration=duration,
            warmup=1 if args.quick else http_bench.DEFAULT_WARMUP,
            rounds=args.rounds or 1,
            json_path=json_path,
        )
        if not collect:
            return status, []
        if json_path is None or not json_path.exists():
            return status, [failed("HTTP webhook", "failed (see above)")]
        return status, http_rows(json.loads(json_path.read_text()))


def http_rows(results: dict[str, Any]) -> list[SummaryRow]:
    """Summary rows from ``bench.http.to_json``'s result."""
    main = results["main"]
    names = {"ceiling": "raw ASGI", "express": "Express", "flask": "Flask"}
    return [
        SummaryRow(
            f"HTTP webhook: req/s vs {names.get(t['baseline'], t['baseline'])}",
            f"SDK {main['sdk']['requests_per_s']:,.0f} req/s",
            f"{main[t['baseline']]['requests_per_s']:,.0f} req/s",
            t["ratio"],
            f">= {t['target']:.1f}x",
            bool(t["ok"]),
        )
        for t in results["targets"]
    ]


def run_ws(args: argparse.Namespace) -> Outcome:
    return ws_bench.main(
        sockets=args.sockets,
        seconds=args.duration or (2.0 if args.quick else ws_bench.DEFAULT_SECONDS),
        warmup=0.5 if args.quick else ws_bench.DEFAULT_WARMUP,
        rounds=args.rounds or (1 if args.quick else ws_bench.DEFAULT_ROUNDS),
    )


def run_memory(quick: bool) -> Outcome:
    if quick:
        return memory.main(warmup_calls=50, checkpoints=(100, 1_000), sockets=200, rounds=1)
    return memory.main()


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = "?"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                "?",
            )
    except OSError:
        pass
    return f"{cpus} CPUs ({model}), Python {platform.python_version()} on {platform.machine()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke run)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--http",
        action="store_true",
        help="run the HTTP webhook benchmark (wrk against real servers) instead of dispatch",
    )
    which.add_argument(
        "--ws",
        action="store_true",
        help="run the WebSocket benchmark (SDK app vs the websockets library's server)",
    )
    which.add_argument(
        "--state", action="store_true", help="run MemoryStore vs RedisStore (a real redis-server)"
    )
    which.add_argument(
        "--memory",
        action="store_true",
        help="run the memory benchmark (RSS over 10,000 calls, RSS per open WebSocket call)",
    )
    which.add_argument(
        "--all", action="store_true", help="run every benchmark, then one summary table"
    )
    load = parser.add_argument_group("HTTP and WebSocket benchmarks (--http, --ws, --all)")
    load.add_argument(
        "--duration",
        type=int,
        default=None,
        metavar="SECONDS",
        help=f"load per server and round (default HTTP {http_bench.DEFAULT_DURATION}, "
        f"WebSocket {ws_bench.DEFAULT_SECONDS:g}; --quick 3 and 2)",
    )
    load.add_argument(
        "--rounds",
        type=int,
        default=None,
        metavar="N",
        help="measure every server N times in alternating order; report the medians "
        f"(default HTTP 1, WebSocket {ws_bench.DEFAULT_ROUNDS}; --quick 1)",
    )
    load.add_argument(
        "--connections",
        type=int,
        default=http_bench.DEFAULT_CONNECTIONS,
        metavar="N",
        help=f"concurrent wrk connections (default {http_bench.DEFAULT_CONNECTIONS})",
    )
    load.add_argument(
        "--sockets",
        type=int,
        default=ws_bench.DEFAULT_SOCKETS,
        metavar="N",
        help=f"concurrent WebSocket calls (default {ws_bench.DEFAULT_SOCKETS})",
    )
    load.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the HTTP results as JSON (e.g. bench/results/http.json)",
    )
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if (args.rounds is not None and args.rounds < 1) or args.connections < 1 or args.sockets < 1:
        parser.error("--rounds, --connections and --sockets must be at least 1")

    runs: list[tuple[bool, Callable[[], Outcome]]] = [
        (not (args.http or args.ws or args.state or args.memory), lambda: run_dispatch(args.quick)),
        (args.http or args.all, lambda: run_http(args, collect=args.all)),
        (args.ws or args.all, lambda: run_ws(args)),
        (args.state or args.all, lambda: run_state(args.quick)),
        (args.memory or args.all, lambda: run_memory(args.quick)),
    ]
    outcomes: list[Outcome] = []
    for wanted, run in runs:
        if wanted:
            if outcomes:
                print()
            outcomes.append(run())
    status = max((code for code, _ in outcomes), default=0)
    if args.all:
        rows = [row for _, run_rows in outcomes for row in run_rows]
        command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
        print()
        print(f"Summary of `{command}`: {machine()}")
        print("(each figure measured next to its baseline in this run; ratio = what the target")
        print(" judges, for paired rounds the median of the per-round ratios)")
        print(summary_table(rows))
    return status


if __name__ == "__main__":
    sys.exit(main())
