"""``aiflow demo``: serve the bundled demo assistant on localhost and call it from the terminal.

The assistant (``sipgate_ai_flow.demo:assistant``) runs behind a real HTTP webhook; the
``aiflow call`` console calls it. Without a terminal on stdin (CI, ``make demo < /dev/null``)
a short script plays the caller instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from typing import Any

from ..emulator.call import CallConfig
from ._common import missing

SCRIPT = ["When are you open?", "/dtmf 5", "Tell me a joke", "Thanks, bye!"]
"""What the caller says when nobody is at the terminal (a polite caller: one line per turn)."""
SCRIPTED_RATE = 60.0
"""Speech plays four times faster than usual when nobody listens (CI logs)."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="talk to the bundled demo assistant, served on localhost",
        description="Serve the demo assistant (sipgate_ai_flow.demo:assistant) over HTTP on "
        "127.0.0.1 and call it with the `aiflow call` console. Without a terminal on stdin a "
        "short script plays the caller.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to serve on (default: a free one)"
    )
    parser.add_argument(
        "--speaking-rate",
        type=float,
        metavar="CPS",
        help=f"characters per second of speech (default {CallConfig.speaking_rate:g} at a "
        f"terminal, {SCRIPTED_RATE:g} for the script)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if missing("demo", "cli", "rich", "uvicorn"):
        return 2
    from .call import check_rate, lenient_stdio

    interactive = sys.stdin.isatty()
    rate = args.speaking_rate
    if rate is None:
        rate = CallConfig.speaking_rate if interactive else SCRIPTED_RATE
    problem = check_rate(rate)
    if problem is None and not 0 <= args.port <= 65535:
        problem = f"--port must be between 0 and 65535, got {args.port}"
    problem = problem or _port_taken(args.port)
    if problem:
        print(f"aiflow demo: {problem}", file=sys.stderr)
        return 2
    lenient_stdio()
    try:
        return asyncio.run(demo(port=args.port, interactive=interactive, speaking_rate=rate))
    except KeyboardInterrupt:  # before or after the console handles Ctrl-C itself
        return 130


def _port_taken(port: int) -> str | None:
    """Why ``port`` cannot be served on, checked up front for a clear message."""
    if port == 0:
        return None
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
    return None


async def demo(
    *,
    port: int = 0,
    interactive: bool = False,
    speaking_rate: float = SCRIPTED_RATE,
    lines: asyncio.Queue[str | None] | None = None,
) -> int:
    """Serve the demo assistant and call it; ``lines`` (or the script) stand in for stdin."""
    from ..demo import assistant
    from ..emulator.local import serve_locally
    from ..emulator.transports import HttpAppTransport
    from .call import talk

    async with contextlib.AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(serve_locally(assistant, port=port))
        except OSError as exc:
            print(
                f"aiflow demo: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 2
        print(
            f"The demo assistant (sipgate_ai_flow.demo:assistant) is served at {server.webhook_url}"
        )
        print(
            "To serve your own app: `aiflow serve app.py` and point your AI Flow's webhook at "
            "it (http://<your host>:8080/webhook); `aiflow call app.py` talks to it here."
        )
        if lines is None and not interactive:
            lines = asyncio.Queue()
            for line in SCRIPT:
                lines.put_nowait(line)
            lines.put_nowait(None)
            print("No terminal on stdin: a script plays the caller.")
        config = CallConfig(speaking_rate=speaking_rate, caller_rate=speaking_rate)
        return await talk(
            HttpAppTransport(server.webhook_url),
            config,
            target=server.webhook_url,
            interactive=interactive,
            lines=lines,
        )
