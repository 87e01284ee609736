"""``aiflow test PATH... --target TARGET``: run conversation scenarios (YAML) against an app."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from ._common import target_or_none, unreachable


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "test",
        help="run conversation scenarios (YAML) against an app",
        description=(
            "Run scenario files against TARGET: a webhook URL (http://.../webhook), a WebSocket "
            "URL (ws://.../ws), or an assistant in process (module:attr or file.py). Time is "
            "virtual unless --realtime: playback and silences are fast-forwarded."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or directories")
    parser.add_argument("--target", required=True, help="the app: URL, module:attr or file.py")
    parser.add_argument("--token", default=None, help="shared secret sent as X-API-TOKEN")
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, metavar="N", help="run N scenarios at once"
    )
    parser.add_argument("--junit", type=Path, default=None, metavar="FILE", help="JUnit XML")
    parser.add_argument(
        "--realtime", action="store_true", help="run in wall-clock time (default: virtual)"
    )
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="DIR",
        help="save each scenario's call as DIR/<scenario>.jsonl (for aiflow replay)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="a reply slower than this is a finding (default 5)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        print("aiflow test: --jobs must be at least 1", file=sys.stderr)
        return 2
    target = target_or_none("test", args.target)
    if target is None or unreachable("test", target, args.token):
        return 2
    return asyncio.run(
        run_all(
            args.paths,
            target,
            token=args.token,
            jobs=args.jobs,
            junit=args.junit,
            realtime=args.realtime,
            record=args.record,
            deadline=args.deadline,
            target_name=args.target,
        )
    )


async def run_all(
    paths: list[str],
    target: Any,
    *,
    token: str | None = None,
    jobs: int = 1,
    junit: Path | None = None,
    realtime: bool = False,
    record: Path | None = None,
    deadline: float = 5.0,
    target_name: str | None = None,
) -> int:
    """Run every scenario under ``paths``; print a line each and a summary; 0 if all pass."""
    from ..emulator.scenario import (
        Scenario,
        ScenarioError,
        ScenarioResult,
        ScenarioRunner,
        junit_xml,
        load_scenarios,
    )

    started = time.perf_counter()
    loaded = load_scenarios(paths)
    results: list[ScenarioResult | ScenarioError] = [
        item for item in loaded if isinstance(item, ScenarioError)
    ]
    for error in results:
        print(f"ERROR {error}")
    scenarios = [item for item in loaded if isinstance(item, Scenario)]
    gate = asyncio.Semaphore(jobs)
    async with ScenarioRunner(
        target,
        token=token,
        realtime=realtime,
        deadline=deadline,
        record=record,
        target_name=target_name,
    ) as runner:

        async def one(scenario: Scenario) -> ScenarioResult:
            async with gate:
                result = await runner.run(scenario)
            _report(result)
            return result

        results.extend(await asyncio.gather(*(one(s) for s in scenarios)))
    passed = sum(1 for r in results if isinstance(r, ScenarioResult) and r.passed)
    failed = len(results) - passed
    elapsed = time.perf_counter() - started
    print(f"\n{passed} passed, {failed} failed in {elapsed:.2f} s")
    if junit is not None:
        _write(junit, junit_xml(results))
        print(f"JUnit XML written to {junit}")
    return 0 if failed == 0 and results else 1


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _report(result: Any) -> None:
    scenario = result.scenario
    call = result.call
    timing = f"{result.seconds:.2f} s"
    if call is not None and call.clock.virtual:
        timing += f", {call.clock.now():.1f} s of call time"
    status = "PASS " if result.passed else "FAIL "
    print(f"{status} {scenario.name}  ({scenario.source}, {timing})", flush=True)
    if not result.passed:
        print("\n".join(f"      {line}" for line in result.error.splitlines()), flush=True)
