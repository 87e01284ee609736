"""The fake outbound-call API, end to end over real sockets, and `aiflow emulate`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sipgate_ai_flow import AiFlowAssistant, OutboundCallError, SessionStartEvent
from sipgate_ai_flow.cli.emulate import parse_flows
from sipgate_ai_flow.emulator.outbound_api import OutboundApi
from sipgate_ai_flow.emulator.record import read_transcript
from sipgate_ai_flow.emulator.replay import replay

API_TOKEN = "sipgate-pat"


def recording_app() -> tuple[AiFlowAssistant, list[SessionStartEvent]]:
    starts: list[SessionStartEvent] = []

    async def greet(event: SessionStartEvent) -> str:
        starts.append(event)
        return "Hello, this is your appointment reminder."

    return AiFlowAssistant(on_session_start=greet, webhook_token="app-secret"), starts


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_assistant_call_through_the_fake_api_reaches_the_app_as_outbound(live_server: Any):
    app, starts = recording_app()
    app_server = live_server(app.asgi())
    api = OutboundApi(
        f"{app_server.http_url}/webhook",
        api_token=API_TOKEN,
        flows={"reminders": "4921155660", "no-number": None},
        app_token="app-secret",
        realtime=False,
        hangup_after=5,
    )
    api_server = live_server(api)
    caller = AiFlowAssistant(token=API_TOKEN, base_url=api_server.http_url)
    try:
        placed = await caller.call(
            ai_flow_id="reminders", billing_device="e2", to_phone_number="4915790000687"
        )
        assert placed is not None
        await wait_for(lambda: len(starts) == 1)
        session = starts[0].session
        assert session.id == placed["sessionId"]
        assert session.direction == "outbound"
        assert (session.from_phone_number, session.to_phone_number) == (
            "4921155660",
            "4915790000687",
        )
        await wait_for(lambda: all(c.ended for c in api.calls))
        async with httpx.AsyncClient(base_url=api_server.http_url) as client:
            (summary,) = (await client.get("/emulator/calls")).json()
        assert summary["spoken"] == ["Hello, this is your appointment reminder."]
        assert summary["events"][0] == "session_start"
        assert summary["events"][-1] == "session_end"
        assert summary["findings"] == []

        for kwargs, status in [
            ({"ai_flow_id": "nope"}, 404),
            ({"ai_flow_id": "no-number"}, 400),
        ]:
            with pytest.raises(OutboundCallError) as info:
                await caller.call(billing_device="e2", to_phone_number="4915790000687", **kwargs)
            assert info.value.status_code == status
    finally:
        await caller.aclose()
    intruder = AiFlowAssistant(token="wrong", base_url=api_server.http_url)
    with pytest.raises(OutboundCallError) as refused:
        await intruder.call(ai_flow_id="reminders", billing_device="e2", to_phone_number="49")
    await intruder.aclose()
    assert refused.value.status_code == 401
    assert len(starts) == 1


def test_parse_flows():
    assert parse_flows(None) == {"demo": "4921100000000"}
    assert parse_flows(["a=49211", "b="]) == {"a": "49211", "b": None}
    with pytest.raises(ValueError, match="--flow takes ID=PHONE"):
        parse_flows(["oops"])


def test_aiflow_emulate_command(live_server: Any, tmp_path: Path):
    app, starts = recording_app()
    app_server = live_server(app.asgi())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    aiflow = Path(sys.executable).with_name("aiflow")
    process = subprocess.Popen(
        [
            str(aiflow), "emulate", "--target", f"{app_server.http_url}/webhook",
            "--port", str(port), "--token", "app-secret", "--api-token", API_TOKEN,
            "--virtual", "--hangup-after", "3", "--record", str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/emulator/calls")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        answer = httpx.post(
            f"{base}/v3/ai-flows/demo/call",
            json={"billingDevice": "e2", "toPhoneNumber": "4915790000687"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        assert answer.status_code == 201
        for _ in range(200):
            calls = httpx.get(f"{base}/emulator/calls").json()
            if calls and calls[0]["ended"]:
                break
            time.sleep(0.05)
        assert calls[0]["session"]["direction"] == "outbound"
        assert calls[0]["spoken"] == ["Hello, this is your appointment reminder."]
        assert [s.session.direction for s in starts] == ["outbound"]
        recorded = tmp_path / f"{calls[0]['session_id']}.jsonl"
        for _ in range(200):
            if recorded.exists():
                break
            time.sleep(0.05)
        header, entries = read_transcript(recorded)
        assert header["target"] == f"{app_server.http_url}/webhook"
        assert header["session"]["direction"] == "outbound"
        assert entries[-1]["data"]["type"] == "session_end"
        replayed = asyncio.run(replay((header, entries), app, same_session=False))
        assert replayed.same, [str(d) for d in replayed.differences]
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert f"POST http://127.0.0.1:{port}/v3/ai-flows/<id>/call" in output
