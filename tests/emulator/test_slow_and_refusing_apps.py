"""Apps as they are in the wild: LLM agents that answer in seconds, and servers that refuse.

Over real sockets: the SDK's own server (uvicorn) for the apps, and raw TCP servers for
peers that answer the WebSocket upgrade with something that is not HTTP, or hang up.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant
from sipgate_ai_flow.asgi import create_app
from sipgate_ai_flow.cli import main
from sipgate_ai_flow.demo import assistant as demo
from sipgate_ai_flow.emulator.load import LoadTest
from sipgate_ai_flow.emulator.replay import replay
from sipgate_ai_flow.emulator.scenario import parse_scenario, run_scenario
from sipgate_ai_flow.testing import simulate_call

LATE = 4.0  # seconds: an LLM agent's answer, well past the old 1 s WebSocket wait


def late_agent(
    delay: float = LATE, *, token: str | None = None, hold_after: float | None = None
) -> AiFlowAssistant:
    assistant = AiFlowAssistant(webhook_token=token, hold_after=hold_after)

    @assistant.on_session_start
    async def hello(event: Any) -> str:
        return "Hello, ask me anything."

    @assistant.on_user_speak
    async def think(event: Any) -> str:
        await asyncio.sleep(delay)
        return f"The answer to {event.text} is 42."

    return assistant


ASK = parse_scenario(
    {
        "name": "a late answer",
        "steps": [
            {"expect": {"speak": "Hello"}},
            {"say": "life"},
            {"expect": {"speak": "The answer to life is 42."}},
        ],
    }
)


# -- slow answers ----------------------------------------------------------------------------


def test_a_websocket_agent_answering_4_s_late_passes_on_the_virtual_clock(live_server: Any):
    server = live_server(create_app(late_agent()))
    result = asyncio.run(run_scenario(ASK, server.ws_url + "/ws"))
    assert result.passed, result.error
    assert result.call is not None
    answered = dict(result.call.latencies)
    assert answered["user_speak"] >= LATE  # timed to the first frame, not the 50 ms window
    assert "session_end" not in answered


def test_a_websocket_agent_answering_4_s_late_passes_under_load(live_server: Any):
    server = live_server(create_app(late_agent()))
    report = asyncio.run(
        LoadTest(server.ws_url + "/ws", scenario=ASK, calls=3, concurrency=3).run()
    )
    assert report.calls_completed == 3, report.failures
    speak = report.events["user_speak"]
    assert len(speak.latencies) == 3
    assert min(speak.latencies) >= LATE
    assert report.events["session_end"].latencies == []  # unanswered: no latency, shown "-"


def test_fast_websocket_apps_never_wait_for_the_deadline(live_server: Any):
    server = live_server(create_app(late_agent(delay=0.0)))
    deadline = 20.0  # a wait for it would show in every scenario's time
    for _ in range(10):
        result = asyncio.run(run_scenario(ASK, server.ws_url + "/ws", deadline=deadline))
        assert result.passed, result.error
        assert result.seconds < deadline / 4


# -- refused connections ---------------------------------------------------------------------


def _tcp_server(handle: Any) -> Iterator[str]:
    """A raw TCP server on a free port that runs ``handle(conn)`` for each connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}/ws"
    stop.set()
    thread.join()
    listener.close()


def _not_http(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")


def _hang_up(conn: socket.socket) -> None:
    pass  # closed at once


@pytest.fixture(params=["401", "not http", "closed", "nothing listening"])
def refusing(request: pytest.FixtureRequest, live_server: Any) -> Iterator[tuple[str, str]]:
    kind = request.param
    if kind == "401":
        server = live_server(create_app(late_agent(0.0, token="s3cret")))
        yield server.ws_url + "/ws", "answered the WebSocket upgrade with HTTP 401"
    elif kind == "not http":
        for url in _tcp_server(_not_http):
            yield url, "did not answer the WebSocket upgrade with HTTP"
    elif kind == "closed":
        for url in _tcp_server(_hang_up):
            yield url, "closed the connection during the upgrade"
    else:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        yield f"ws://127.0.0.1:{port}/ws", "refused the connection"


@pytest.mark.parametrize("command", ["test", "replay", "load", "call"])
def test_every_command_says_in_one_line_what_the_app_answered(
    command: str,
    refusing: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    url, answered = refusing
    if command == "test":
        path = tmp_path / "s.yaml"
        path.write_text("name: s\nsteps:\n  - hangup: {}\n")
        args = ["test", str(path), "--target", url]
    elif command == "replay":
        recording = tmp_path / "call.jsonl"
        asyncio.run(_record(recording))
        args = ["replay", str(recording), "--target", url]
    elif command == "load":
        args = ["load", url, "--calls", "1"]
    else:
        monkeypatch.setattr("sys.stdin", _Lines(["hello"]))
        args = ["call", url]
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"aiflow {command}: ")
    assert url in lines[0]
    assert answered in lines[0]
    assert "Traceback" not in out + err


async def _record(path: Path) -> None:
    async with simulate_call(demo, record=path) as call:
        await call.say("When are you open?")


class _Lines:
    """A piped stdin with some lines on it."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = [f"{line}\n" for line in lines]

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

    def __iter__(self) -> Iterator[str]:
        while self._lines:
            yield self._lines.pop(0)

    def reconfigure(self, **options: Any) -> None:
        pass


def test_replaying_a_late_websocket_answer_finds_no_difference(live_server: Any, tmp_path: Path):
    # A hold message first, the answer 1.3 s later: in the recording it follows a later event.
    server = live_server(create_app(late_agent(delay=1.5, hold_after=0.2)))
    url = server.ws_url + "/ws"
    held = parse_scenario(
        {
            "name": "held",
            "steps": [
                {"expect": {"speak": "Hello"}},
                {"say": "life"},
                {"expect": {"speak": "One moment"}},
                {"expect": {"speak": "The answer to life is 42."}},
            ],
        }
    )
    recorded = asyncio.run(run_scenario(held, url, record=tmp_path))
    assert recorded.passed, recorded.error
    (transcript,) = tmp_path.glob("*.jsonl")
    result = asyncio.run(replay(transcript, url, timing=False))
    assert result.problems == []
    assert result.differences == [], [d.diff() for d in result.differences]
    assert recorded.call is not None
    assert "One moment, please." in recorded.call.spoken
    assert result.events == len(recorded.call.events)
