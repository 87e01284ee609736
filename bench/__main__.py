"""Run the benchmark suite: ``python -m bench [--quick] [--http | --state | --all]``.

The default run is the quick in-process dispatch benchmark (one table of ratios). ``--http``
runs the HTTP webhook benchmark instead (real servers under ``wrk``: the SDK app, a raw ASGI
ceiling, FastAPI, Flask and Express; see ``bench/http.py``); ``--state`` runs MemoryStore
against RedisStore at the same offered load (``bench/state.py``); ``--all`` runs them all.

Exit status: 0 when every target is met, 1 when one is missed, 2 when a server or tool the
HTTP benchmark needs is missing or fails to start.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from pathlib import Path

from sipgate_ai_flow.testing.redis import RedisServer

from . import dispatch, state
from . import http as http_bench
from ._timing import table


def run_dispatch(quick: bool) -> int:
    rounds, iterations = (5, 2_000) if quick else (15, 20_000)
    rows = [asyncio.run(dispatch.run(rounds=rounds, iterations=iterations))]
    print(f"Python {platform.python_version()} on {platform.machine()}, {rounds} rounds")
    print(table(rows))
    return 0 if all(row.ok for row in rows) else 1


def run_state(quick: bool) -> int:
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
    return 0 if ok else 1


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
        "--state", action="store_true", help="run MemoryStore vs RedisStore (a real redis-server)"
    )
    which.add_argument("--all", action="store_true", help="run every benchmark")
    http_args = parser.add_argument_group("HTTP benchmark (--http, --all)")
    http_args.add_argument(
        "--duration",
        type=int,
        default=None,
        metavar="SECONDS",
        help=f"load per server and round (default {http_bench.DEFAULT_DURATION}, --quick 3)",
    )
    http_args.add_argument(
        "--connections",
        type=int,
        default=http_bench.DEFAULT_CONNECTIONS,
        metavar="N",
        help=f"concurrent wrk connections (default {http_bench.DEFAULT_CONNECTIONS})",
    )
    http_args.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="measure every server N times in rotating order; report the medians (default 1)",
    )
    http_args.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the HTTP results as JSON (e.g. bench/results/http.json)",
    )
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.rounds < 1 or args.connections < 1:
        parser.error("--rounds and --connections must be at least 1")

    status = 0
    if not (args.http or args.state):
        status = max(status, run_dispatch(args.quick))
    if args.state or args.all:
        print()
        status = max(status, run_state(args.quick))
    if args.http or args.all:
        if args.all:
            print()
        duration = args.duration or (3 if args.quick else http_bench.DEFAULT_DURATION)
        status = max(
            status,
            http_bench.main(
                connections=args.connections,
                duration=duration,
                warmup=1 if args.quick else http_bench.DEFAULT_WARMUP,
                rounds=args.rounds,
                json_path=args.json,
            ),
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
