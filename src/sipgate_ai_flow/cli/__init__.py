"""The ``aiflow`` command line. Subcommands live in their own modules and import their
optional dependencies lazily, so ``aiflow --version`` works with the bare core."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiflow",
        description="sipgate AI Flow for Python: serve, call and test voice assistants.",
    )
    parser.add_argument("--version", action="version", version=f"aiflow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import call, demo, emulate, load, replay, scenario, serve

    demo.register(commands)
    serve.register(commands)
    call.register(commands)
    emulate.register(commands)
    scenario.register(commands)
    load.register(commands)
    replay.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aiflow`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
