"""``aiflow replay FILE --target TARGET``: re-send a recorded call and diff the app's answers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ._common import target_or_none, unreachable


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "replay",
        help="re-send a recorded call to an app and diff its answers (exit 1 on a difference)",
        description=(
            "Send the events of a transcript (from --record) to TARGET again, with their timing, "
            "and print a diff of the actions the app sends now against the recorded ones."
        ),
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="a .jsonl transcript")
    parser.add_argument(
        "--target",
        default=None,
        help="the app: URL, module:attr or file.py (default: the recorded target, if any)",
    )
    parser.add_argument("--token", default=None, help="shared secret sent as X-API-TOKEN")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", help="do not wait between events")
    pace.add_argument(
        "--timed",
        action="store_true",
        help="wait between events as recorded (the default for real-clock recordings)",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="FIELD",
        help="leave this action field out of the comparison (repeatable), e.g. text",
    )
    parser.add_argument("--same-session", action="store_true", help="reuse the recorded session id")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..emulator.lifecycle import CallStartError
    from ..emulator.record import read_transcript
    from ..emulator.replay import replay

    try:
        header, entries = read_transcript(args.file)
    except OSError as exc:
        print(f"aiflow replay: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"aiflow replay: {args.file}: {exc}", file=sys.stderr)
        return 2
    target_text = args.target or header.get("target")
    if not isinstance(target_text, str) or not target_text:
        print(
            "aiflow replay: the transcript names no target; give --target URL|module:attr",
            file=sys.stderr,
        )
        return 2
    target = target_or_none("replay", target_text)
    if target is None or unreachable("replay", target, args.token):
        return 2
    timing = True if args.timed else False if args.fast else None
    try:
        result = asyncio.run(
            replay(
                (header, entries),
                target,
                token=args.token,
                timing=timing,
                ignore=args.ignore,
                same_session=args.same_session,
            )
        )
    except CallStartError as exc:
        print(f"aiflow replay: cannot reach {target_text}: {exc}", file=sys.stderr)
        return 2
    for problem in result.problems:
        print(f"PROBLEM {problem}")
    for difference in result.differences:
        print(f"DIFF {difference}")
    changed = len(result.differences)
    print(
        f"{result.events} events replayed against {target_text}: "
        + ("the answers are the same." if result.same else f"{changed} answer(s) differ.")
    )
    return 0 if result.same else 1
