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
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..emulator.call import CallConfig

if TYPE_CHECKING:
    from rich.console import Console

    from ..emulator.transports import AppTransport

DEFAULTS = CallConfig()
UNREACHABLE = ("no_reply", "connection_closed")


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
    try:
        import rich  # noqa: F401
    except ImportError:
        print("aiflow call needs rich: pip install 'sipgate-ai-flow[cli]'")
        return 2
    from ..emulator.transports import transport_for
    from ..errors import ConfigurationError
    from ._target import resolve_target

    problem = check_rate(args.speaking_rate) or check_record(args.record)
    if problem:
        print(f"aiflow call: {problem}", file=sys.stderr)
        return 2
    try:
        target = resolve_target(args.target)
    except ConfigurationError as exc:
        print(f"aiflow call: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the app's own import failed: say where, without a traceback
        print(f"aiflow call: cannot load {args.target}: {_where(exc)}", file=sys.stderr)
        return 2
    try:
        transport = transport_for(target, token=args.token)
    except (TypeError, ValueError) as exc:
        print(f"aiflow call: {exc}", file=sys.stderr)
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
                transport,
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

    from ..emulator.call import EmulatedCall, RealClock
    from ..emulator.record import save_transcript
    from ._console import Screen, Softphone, describe_error, read_lines

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
        await call.start()
    except Exception as exc:  # the WebSocket transport connects here
        screen.finish()
        await transport.close()
        print(f"aiflow call: cannot connect to {target}: {describe_error(exc)}", file=sys.stderr)
        return 2
    lost = [f for f in call.findings if f.code in UNREACHABLE]
    if lost and len(call.events) == 1:
        screen.finish()
        await transport.close()  # not call.close(): nobody is there to hear session_end
        print(f"aiflow call: cannot reach {target}: {lost[0].message}", file=sys.stderr)
        return 2
    try:
        if lines is None:
            lines = asyncio.Queue()
            read_lines(stdin or sys.stdin, lines, on_line=screen.typed)
        phone = Softphone(call, screen, lines, polite=not interactive)
        with _on_ctrl_c(phone.interrupt):
            await phone.run()
    finally:
        with contextlib.suppress(Exception):
            await call.close()
    screen.summary(call, record=record)
    if record:
        try:
            save_transcript(call, record, target=target)
        except OSError as exc:
            print(f"aiflow call: cannot write {record}: {describe_error(exc)}", file=sys.stderr)
            return 2
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


def _where(exc: BaseException) -> str:
    """``Type: message (file:line)``: enough to find a mistake in the app without a traceback."""
    from ._console import describe_error

    if isinstance(exc, SyntaxError):  # its message names the file and line already
        return describe_error(exc)
    # The innermost frame of the app's code, not of the import machinery.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return describe_error(exc) + where
