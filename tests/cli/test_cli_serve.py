"""`aiflow serve`: loading targets, and a real server process answering a webhook."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sipgate_ai_flow import AiFlowAssistant, ConfigurationError
from sipgate_ai_flow._loader import load_assistant

ROOT = Path(__file__).parents[2]
ECHO = ROOT / "examples" / "echo.py"


def test_load_by_module_attr_module_and_file():
    from sipgate_ai_flow.demo import assistant as demo

    assert load_assistant("sipgate_ai_flow.demo:assistant") is demo
    assert load_assistant("sipgate_ai_flow.demo") is demo
    echo = load_assistant(str(ECHO))
    assert isinstance(echo, AiFlowAssistant)
    assert load_assistant(f"{ECHO}:assistant") is echo  # imported once, reused


def test_load_an_app_built_by_create_app(tmp_path: Path):
    source = (
        "from sipgate_ai_flow import AiFlowAssistant\n"
        "first = AiFlowAssistant()\nsecond = AiFlowAssistant()\napp = second.asgi()\n"
    )
    path = tmp_path / "two.py"
    path.write_text(source)
    assert load_assistant(f"{path}:app") is load_assistant(f"{path}:second")
    with pytest.raises(ConfigurationError, match="defines 2 AiFlowAssistant objects; name one"):
        load_assistant(str(path))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("sipgate_ai_flow.demo:nope", "has no attribute 'nope'"),
        ("sipgate_ai_flow.demo:AGENT_NUMBER", "is a str, not an AiFlowAssistant"),
        ("sipgate_ai_flow.errors", "defines no AiFlowAssistant"),
        ("no_such_module_xyz:app", "cannot import 'no_such_module_xyz'"),
        ("missing/file.py", "no such file: missing/file.py"),
    ],
)
def test_bad_targets_explain_themselves(target: str, message: str):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        load_assistant(target)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_aiflow_serve_runs_a_real_server():
    port = free_port()
    aiflow = Path(sys.executable).with_name("aiflow")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [str(aiflow), "serve", str(ECHO), "--port", str(port), "--token", "t0k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        body = {"type": "user_speak", "text": "hi", "session": {"id": "c1"}}
        assert httpx.post(f"{base}/webhook", json=body).status_code == 401
        answer = httpx.post(f"{base}/webhook", json=body, headers={"X-API-TOKEN": "t0k"})
        assert answer.json() == {"type": "speak", "session_id": "c1", "text": "You said: hi"}
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert f"Webhook:   http://127.0.0.1:{port}/webhook" in output
    assert f"WebSocket: ws://127.0.0.1:{port}/ws" in output
    assert "Auth:      X-API-TOKEN required" in output
    assert "t0k" not in output


def test_serve_reports_a_bad_target(capsys: pytest.CaptureFixture[str]):
    from sipgate_ai_flow.cli import main

    assert main(["serve", "sipgate_ai_flow.errors"]) == 2
    assert "defines no AiFlowAssistant" in capsys.readouterr().out
