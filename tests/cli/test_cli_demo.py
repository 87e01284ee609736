"""`aiflow demo`: the demo assistant served on localhost over real HTTP, called by the console."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sipgate_ai_flow.cli import main
from sipgate_ai_flow.cli.demo import SCRIPT, demo

ROOT = Path(__file__).parents[2]


def in_order(text: str, *parts: str) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} missing after position {at} in:\n{text}"
        at = found + len(part)


def test_demo_without_a_terminal_plays_its_script():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}
    result = subprocess.run(
        [sys.executable, "-m", "sipgate_ai_flow", "demo", "--speaking-rate", "400"],
        stdin=subprocess.DEVNULL,  # as `make demo < /dev/null` in CI
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    in_order(
        out,
        "is served at http://127.0.0.1:",
        "/webhook\n",
        "To serve your own app: `aiflow serve app.py` and point your AI Flow's webhook at it",
        "over HTTP",
        "assistant Welcome to the demo front desk!",
        "you       When are you open?\n",
        "assistant We are open Monday to Friday, 9 to 5. Anything else?\n",
        "you       press 5\n",
        "assistant You pressed 5. Press 1 for a person.\n",
        "you       Tell me a joke\n",
        "you       Thanks, bye!\n",
        "assistant Goodbye, and thanks for calling!\n",
        "hangup    the assistant hangs up",
        "call      ended: the assistant hung up",
        "summary",
        "turns     4 caller turn(s): 3 spoken, 1 key(s)",
        "findings  none",
    )
    assert "Traceback" not in result.stderr
    assert len(SCRIPT) == 4


def test_demo_at_a_terminal_takes_the_callers_lines(capsys: pytest.CaptureFixture[str]):
    # Typed while the greeting plays, "agent" barges in; the demo transfers the call.
    async def run() -> int:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        lines.put_nowait("agent")
        return await demo(interactive=True, speaking_rate=30, lines=lines)

    assert asyncio.run(run()) == 0
    out = capsys.readouterr().out
    in_order(
        out,
        "You are the caller: type what you say",
        "assistant W",
        "-- [cut off]",
        "you       agent  (barge-in)",
        "transfer  to 4921100000000",
        "call      ended: transferred to 4921100000000",
        "findings  none",
    )


def test_demo_on_a_port_in_use(capsys: pytest.CaptureFixture[str]):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    out = capsys.readouterr()
    assert f"aiflow demo: cannot listen on 127.0.0.1:{port}" in out.out + out.err
    assert "Traceback" not in out.out + out.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--speaking-rate", "-1"], "--speaking-rate must be a positive number"),
    ],
)
def test_demo_bad_options(args: list[str], message: str, capsys: pytest.CaptureFixture[str]):
    assert main(["demo", *args]) == 2
    assert message in capsys.readouterr().err
