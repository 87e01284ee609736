"""Run the benchmark suite: ``python -m bench [--quick]``. Prints one table of ratios."""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys

from . import dispatch
from ._timing import table


async def main(quick: bool) -> int:
    rounds, iterations = (5, 2_000) if quick else (15, 20_000)
    rows = [await dispatch.run(rounds=rounds, iterations=iterations)]
    print(f"Python {platform.python_version()} on {platform.machine()}, {rounds} rounds")
    print(table(rows))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke run)")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
