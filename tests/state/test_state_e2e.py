"""Two `aiflow serve` worker processes sharing Redis: one call across both, a worker killed
mid-call, and a push reaching a WebSocket held by the other worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

APP = """
import os
from sipgate_ai_flow import AiFlowAssistant

assistant = AiFlowAssistant()

@assistant.on_session_start
async def start(event, ctx):
    await ctx.state.set("heard", [])
    return f"hi from {os.getpid()}"

@assistant.on_user_speak
async def speak(event, ctx):
    turns = await ctx.state.incr("turns")
    heard = await ctx.state.get("heard", []) + [event.text]
    await ctx.state.set("heard", heard)
    return f"{turns}: {' '.join(heard)} | {os.getpid()}"

@assistant.on_unknown  # e.g. a CRM callback routed in as an event
async def crm(event, ctx):
    await ctx.assistant.push(event.session.id, f"pushed by {os.getpid()}")
"""


class Worker:
    def __init__(self, app: Path, redis_url: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        aiflow = Path(sys.executable).with_name("aiflow")
        self.process = subprocess.Popen(
            [str(aiflow), "serve", str(app), "--port", str(self.port), "--store", redis_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"worker did not start:\n{self.output}")
            time.sleep(0.1)

    output = ""

    def post(self, event: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.url}/webhook", json=event, timeout=10)
        return response.json() if response.status_code == 200 else response.status_code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.output = self.process.communicate(timeout=20)[0]


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[tuple[Worker, Worker]]:
    app = tmp_path / "shared_state_app.py"
    app.write_text(APP)
    first = Worker(app, redis_url)
    try:
        second = Worker(app, redis_url)
    except Exception:
        first.stop()
        raise
    yield first, second
    for worker in (first, second):
        worker.stop()
    assert "State:     RedisStore(url=" in first.output


def say(session_id: str, text: str) -> dict[str, Any]:
    return {"type": "user_speak", "text": text, "session": {"id": session_id}}


def test_one_call_across_two_workers_then_one_dies(workers: tuple[Worker, Worker]):
    a, b = workers
    call = "e2e-call-1"
    assert a.post({"type": "session_start", "session": {"id": call}})["text"].startswith("hi")
    replies = [
        b.post(say(call, "one")),
        a.post(say(call, "two")),
        b.post(say(call, "three")),
    ]
    texts = [r["text"].split(" | ")[0] for r in replies]
    assert texts == ["1: one", "2: one two", "3: one two three"]
    pids = {r["text"].split(" | ")[1] for r in replies}
    assert pids == {str(a.process.pid), str(b.process.pid)}  # really two processes
    a.kill()  # mid-call: the next events land on the survivor
    assert b.post(say(call, "four"))["text"].startswith("4: one two three four")
    assert b.post({"type": "session_end", "session": {"id": call}}) == 204
    assert b.post(say(call, "after end"))["text"].startswith("1: ")  # state was deleted


async def test_push_reaches_a_websocket_held_by_the_other_worker(workers: tuple[Worker, Worker]):
    a, b = workers
    call = "e2e-ws-call"
    async with websockets.connect(f"ws://127.0.0.1:{a.port}/ws") as ws:
        await ws.send(json.dumps({"type": "session_start", "session": {"id": call}}))
        assert json.loads(await ws.recv())["text"] == f"hi from {a.process.pid}"
        # A CRM event for the same call arrives at the other worker over HTTP.
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{b.url}/webhook", json={"type": "crm_update", "session": {"id": call}}
            )
        assert response.status_code == 204
        pushed = json.loads(await ws.recv())
        assert pushed == {
            "type": "speak",
            "session_id": call,
            "text": f"pushed by {b.process.pid}",
        }
