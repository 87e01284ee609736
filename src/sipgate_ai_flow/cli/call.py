"""``aiflow call TARGET``: a softphone in the terminal. You are the caller; the emulated AI Flow
service plays the call against TARGET (a webhook URL, a WebSocket URL, or an assistant loaded
in process) and shows what happens, with every finding of its validator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..emulator.call import CallConfig
from ._common import missing, target_or_none

if TYPE_CHECKING:
    from rich.console import Console

    from ..emulator.transports import AppTransport

DEFAULTS = CallConfig()


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "call",
        help="talk to an app from the terminal: you are the caller",
        description="Call TARGET through the AI Flow service emulator. Type what you say; "
        "commands: /dtmf KEYS, /wait SECONDS, /hangup, /events, /quit. Lines piped into "
        "stdin are said one after another, each once the assistant has answered the last. "
        "Exit status: 0, 1 if the emulator reported findings, 2 for a bad target or option.",
    )
    parser.add_argument(
        "target",
        help="http(s)://.../webhook, ws(s)://.../ws, or an assistant in process: "
        "module:attr, module, or path/to/app.py[:attr]",
    )
    parser.add_argument("--token", help="shared secret sent to the app as X-API-TOKEN")
    parser.add_argument(
        "--from",
        dest="from_number",
        default=DEFAULTS.from_number,
        help=f"the caller's number (default {DEFAULTS.from_number})",
    )
    parser.add_argument(
        "--to",
        dest="to_number",
        default=DEFAULTS.to_number,
        help=f"the number called, the AI Flow's (default {DEFAULTS.to_number})",
    )
    parser.add_argument(
        "--outbound",
        action="store_true",
        help="an outbound call: the AI Flow called you (direction: outbound)",
    )
    parser.add_argument(
        "--speaking-rate",
        type=float,
        default=DEFAULTS.speaking_rate,
        metavar="CPS",
        help="characters per second of speech, the assistant's and yours "
        f"(default {DEFAULTS.speaking_rate:g})",
    )
    parser.add_argument("--record", metavar="FILE", help="save the call as a JSON Lines transcript")
    parser.add_argument(
        "--events", action="store_true", help="show the raw event and action JSON from the start"
    )
    parser.set_defaults(run=run)


def check_rate(value: float) -> str | None:
    """Why a speaking rate is unusable, or ``None``."""
    if not math.isfinite(value) or value <= 0:
        return f"--speaking-rate must be a positive number of characters per second, got {value:g}"
    return None


def check_record(path: str | None) -> str | None:
    """Why ``--record`` cannot be written, or ``None`` (checked before the call, not after)."""
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        return f"--record {path}: is a directory"
    if not target.parent.is_dir():
        return f"--record {path}: no such directory {str(target.parent)!r}"
    return None


def run(args: argparse.Namespace) -> int:
    if missing("call", "cli", "rich"):
        return 2
    problem = check_rate(args.speaking_rate) or check_record(args.record)
    if problem:
        print(f"aiflow call: {problem}", file=sys.stderr)
        return 2
    target = target_or_none("call", args.target)
    if target is None:
        return 2
    config = CallConfig(
        from_number=args.from_number,
        to_number=args.to_number,
        direction="outbound" if args.outbound else "inbound",
        speaking_rate=args.speaking_rate,
        caller_rate=args.speaking_rate,
    )
    lenient_stdio()
    try:
        return asyncio.run(
            talk(
                target.transport(token=args.token),
                config,
                target=args.target,
                interactive=sys.stdin.isatty(),
                record=args.record,
                show_events=args.events,
            )
        )
    except KeyboardInterrupt:  # before or after the console handles Ctrl-C itself
        return 130


async def talk(
    transport: AppTransport,
    config: CallConfig,
    *,
    target: str,
    interactive: bool,
    lines: asyncio.Queue[str | None] | None = None,
    stdin: IO[str] | None = None,
    record: str | None = None,
    show_events: bool = False,
    console: Console | None = None,
) -> int:
    """Place one call and run the console until the input or the call ends.

    ``lines`` feeds the caller's lines (``None`` ends them); by default they are read from
    ``stdin``. Returns the exit status: 0, 1 with findings, 2 if TARGET cannot be reached.
    """
    from rich.console import Console

    from .._loader import describe_error
    from ..emulator.call import EmulatedCall, RealClock
    from ..emulator.lifecycle import CallStartError, running
    from ._console import Screen, Softphone, read_lines

    console = console or Console(highlight=False, soft_wrap=True)
    screen = Screen(console, show_events=show_events, tty_input=interactive)
    call = EmulatedCall(transport, config, clock=RealClock())
    how = {"http": "over HTTP", "websocket": "over WebSocket"}.get(transport.name, "in process")
    console.print(f"Calling {target} ({how}).", highlight=False)
    if interactive:
        console.print(
            "You are the caller: type what you say and press Enter; typing while the "
            "assistant speaks barges in. /dtmf 1#, /wait 5, /hangup, /events, /quit, /help.",
            style="dim",
        )
    screen.attach(call)
    try:
        async with running(call, record=record, target=target):
            if lines is None:
                lines = asyncio.Queue()
                read_lines(stdin or sys.stdin, lines, on_line=screen.typed)
            phone = Softphone(call, screen, lines, polite=not interactive)
            with _on_ctrl_c(phone.interrupt):
                await phone.run()
    except CallStartError as exc:
        screen.finish()
        verb = "reach" if exc.connected else "connect to"
        print(f"aiflow call: cannot {verb} {target}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # only the recording is written to a file here
        screen.summary(call, record=None)
        print(f"aiflow call: cannot write {record}: {describe_error(exc)}", file=sys.stderr)
        return 2
    screen.summary(call, record=record)
    return 1 if call.findings else 0


@contextlib.contextmanager
def _on_ctrl_c(handler: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C hangs up cleanly (with the summary); a second one stops at once."""
    loop = asyncio.get_running_loop()
    installed = False

    def first() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        handler()

    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, first)
            installed = True
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def lenient_stdio() -> None:
    # A terminal or pipe in a narrow encoding must not crash the call on an umlaut.
    for stream in (sys.stdin, sys.stdout):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="replace")
