"""What every subcommand does the same way: refuse early, in one line, with exit status 2."""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..emulator.target import Target

__all__ = ["missing", "target_or_none", "unreachable"]


def missing(command: str, extra: str, *modules: str) -> bool:
    """Print the install hint and return true when one of ``modules`` cannot be imported."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            what = {"server": "a server", "cli": "the cli extra"}.get(extra, f"the {extra} extra")
            print(f"aiflow {command} needs {what}: pip install 'sipgate-ai-flow[{extra}]'")
            return True
    return False


def target_or_none(command: str, text: str) -> Target | None:
    """The ``Target`` that ``text`` names, or ``None`` after one line on stderr saying why."""
    from ..emulator.target import TargetError, resolve_target

    try:
        return resolve_target(text)
    except TargetError as exc:
        print(f"aiflow {command}: {exc}", file=sys.stderr)
        return None


def unreachable(command: str, target: Target, token: str | None) -> bool:
    """Print why ``target`` cannot be reached and return true; false when it can (or runs in
    process). Every command asks once, before its first call."""
    problem = asyncio.run(target.probe(token=token))
    if problem is None:
        return False
    print(f"aiflow {command}: {problem}", file=sys.stderr)
    return True
