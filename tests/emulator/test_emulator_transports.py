"""The same call scripts over every transport: in process, HTTP webhook and WebSocket.

The app is a real ``AiFlowAssistant``; for ``http`` and ``websocket`` it is served by uvicorn
(``live_server``) and reached at ``/webhook`` and ``/ws``. Time stays virtual, so every
transport must produce the same timeline; the one difference is ``user_speech_started``,
which the service sends over WebSocket (and the emulator in process) but never over HTTP.
Exchange-level findings (status, token, JSON, deadline) are checked over HTTP with small raw
ASGI apps where an ``AiFlowAssistant`` would never misbehave that way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant
from sipgate_ai_flow.emulator import CallConfig, EmulatedCall
from sipgate_ai_flow.testing import simulate_call

SID = "6f1c0e1e-0000-4000-8000-0000000000aa"
TOKEN = "shared-secret"
TRANSPORTS = ["inprocess", "http", "websocket"]

TRANSFER = {
    "type": "transfer",
    "target_phone_number": "4921100000099",
    "caller_id_name": "Support",
    "caller_id_number": "4921100000000",
}


def speak(text: str, **fields: Any) -> dict[str, Any]:
    return {"type": "speak", "text": text, **fields}


@pytest.fixture(params=TRANSPORTS)
def reach(request: pytest.FixtureRequest, live_server: Any) -> Callable[..., Any]:
    """``reach(assistant, **CallConfig fields)``: a ``simulate_call`` over the transport."""

    def open_call(assistant: AiFlowAssistant, *, token: str | None = None, **fields: Any) -> Any:
        config = CallConfig(session_id=SID, **fields)
        if request.param == "inprocess":
            return simulate_call(assistant, config=config)
        server = live_server(assistant.asgi())
        http = request.param == "http"
        url = f"{server.http_url}/webhook" if http else f"{server.ws_url}/ws"
        # Some apps here leave a user_speak unanswered on purpose; over a WebSocket the call
        # waits the deadline for an answer to it, so a local app gets a short one.
        return simulate_call(url, request.param, token=token, config=config, deadline=0.5)

    open_call.transport = request.param  # type: ignore[attr-defined]
    return open_call


def timeline(call: EmulatedCall) -> list[tuple[float, str]]:
    """``(t, event type)`` of every event sent except ``user_speech_started``."""
    return [
        (e["t"], e["data"]["type"])
        for e in call.log
        if e["kind"] == "event" and e["data"]["type"] != "user_speech_started"
    ]


def check_speech_started(call: EmulatedCall, transport: str) -> None:
    """Over HTTP: never. Otherwise: right before each caller turn, at its onset."""
    kinds = [e["type"] for e in call.events]
    if transport == "http":
        assert "user_speech_started" not in kinds
        return
    assert kinds.count("user_speech_started") == kinds.count("user_speak")
    for index, kind in enumerate(kinds):
        if kind == "user_speak":
            assert kinds[index - 1] == "user_speech_started"


def said(call: EmulatedCall) -> list[Any]:
    return [e.get("text") for e in call.events if e["type"] == "assistant_speak"]


# -- one script, three transports --------------------------------------------------------------


async def test_barge_in_immediate(reach):
    app = AiFlowAssistant(
        on_session_start=lambda e: speak(
            "p" * 150, barge_in={"strategy": "immediate", "allow_after_ms": 500}
        ),
        on_user_speak=lambda e: speak("Okay." if e.barged_in else "Hm?"),
    )
    async with reach(app) as call:
        await call.say("stop please", after_ms=1000)  # 1.0 .. 1.733 s, turn ends 2.233 s
        await call.wait_until_quiet()
        (user_speak,) = [e for e in call.events if e["type"] == "user_speak"]
        assert user_speak["barged_in"] is True
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.0, "assistant_speak"),  # cut at 1.0 s: no assistant_speech_ended for it
            (2.233, "user_speak"),
            (2.233, "assistant_speak"),
            (2.567, "assistant_speech_ended"),
        ]
        assert said(call) == ["p" * 150, "Okay."]
        onsets = [
            e["t"]
            for e in call.log
            if e["kind"] == "event" and e["data"]["type"] == "user_speech_started"
        ]
        assert onsets == ([] if reach.transport == "http" else [1.0])
        check_speech_started(call, reach.transport)
        assert call.findings == []


async def test_user_input_timeout(reach):
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("x" * 15, user_input_timeout_seconds=3),
        on_user_speak=lambda e: speak("y" * 30, user_input_timeout_seconds=5),
        on_user_input_timeout=lambda e: {"type": "hangup"},
    )
    async with reach(app) as call:
        await call.say("hello")  # polite: 1.0 .. 1.333 s, turn ends 1.833 s
        await call.silence(60)
        assert call.ended
        assert call.end_reason == "the assistant hung up"
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.0, "assistant_speak"),
            (1.0, "assistant_speech_ended"),  # timer armed (3 s), cancelled by speech at 1 s
            (1.833, "user_speak"),
            (1.833, "assistant_speak"),
            (3.833, "assistant_speech_ended"),
            (8.833, "user_input_timeout"),
            (8.833, "session_end"),
        ]
        check_speech_started(call, reach.transport)
        assert call.findings == []


async def test_array_reply_in_order(reach):
    reply = [
        {"type": "configure_transcription", "languages": ["de-DE", "en-US"]},
        speak("a" * 15),
        {"type": "send_sms", "phone_number": "4915790000687", "message": "Hi"},
        speak("b" * 30),
    ]
    app = AiFlowAssistant(on_session_start=lambda e: reply)
    async with reach(app) as call:
        await call.silence(5)
        assert [a["type"] for a in call.actions] == [a["type"] for a in reply]
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.0, "assistant_speak"),
            (1.0, "assistant_speech_ended"),
            (1.0, "assistant_speak"),
            (3.0, "assistant_speech_ended"),
        ]
        assert said(call) == ["a" * 15, "b" * 30]
        assert call.state["transcription"] == {"languages": ["de-DE", "en-US"]}
        assert call.state["sms"] == [{**reply[2], "session_id": SID}]
        assert call.findings == []


async def test_finding_for_an_invalid_action(reach):
    app = AiFlowAssistant(
        on_session_start=lambda e: [
            {"type": "speak", "text": "Hi", "ssml": "<speak>Hi</speak>"},
            {"type": "transfer", "transfer_to": "+49211100200"},
            speak("x" * 15),
        ]
    )
    async with reach(app) as call:
        await call.silence(2)
        codes = [f.code for f in call.findings]
        assert codes[:2] == ["text_and_ssml", "transfer_to_alias"]
        both, alias = call.findings[:2]
        assert both.payload == {
            "type": "speak",
            "session_id": SID,
            "text": "Hi",
            "ssml": "<speak>Hi</speak>",
        }
        assert "both" in both.message
        assert alias.payload == {
            "type": "transfer",
            "session_id": SID,
            "transfer_to": "+49211100200",
        }
        assert {f.event for f in call.findings} == {"session_start"}
        assert said(call) == ["x" * 15]  # only the valid action ran
        assert call.state["transfers"] == []
        assert not call.ended


@pytest.mark.parametrize(
    "reply", [pytest.param(None, id="none-204"), pytest.param([], id="empty-array")]
)
async def test_no_action_replies(reach, reply):
    app = AiFlowAssistant(
        on_session_start=lambda e: reply,
        on_user_speak=lambda e: reply,
        on_dtmf_received=lambda e: reply,
    )
    async with reach(app) as call:
        await call.say("hello")
        await call.press("42")
        await call.silence(30)
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.833, "user_speak"),
            (0.833, "dtmf_received"),
            (1.033, "dtmf_received"),
        ]
        assert call.actions == []
        assert call.findings == []
        assert not call.ended
        check_speech_started(call, reach.transport)
    assert call.events[-1]["type"] == "session_end"


async def test_transfer_fallback(reach):
    starts: list[str] = []

    def on_start(event):
        starts.append(event.session.id)
        return speak("Welcome back!" if len(starts) > 1 else "Hello caller!")

    app = AiFlowAssistant(
        on_session_start=on_start, on_user_speak=lambda e: {**TRANSFER, "timeout": 20}
    )
    async with reach(app, transfer_outcome="failed") as call:
        await call.say("agent please")  # 0.867 .. turn ends 2.167 s
        await call.silence(30)
        assert timeline(call) == [
            (0.0, "session_start"),
            (0.0, "assistant_speak"),
            (0.867, "assistant_speech_ended"),
            (2.167, "user_speak"),
            (22.167, "session_start"),  # the same session comes back after the 20 s timeout
            (22.167, "assistant_speak"),
            (23.033, "assistant_speech_ended"),
        ]
        first, second = [e for e in call.events if e["type"] == "session_start"]
        assert first["session"] == second["session"]
        assert second["session"]["id"] == SID
        assert starts == [SID, SID]
        assert said(call) == ["Hello caller!", "Welcome back!"]
        assert not call.ended
        check_speech_started(call, reach.transport)
        assert call.findings == []


async def test_transfer_failed_without_timeout_ends_the_call(reach):
    app = AiFlowAssistant(on_user_speak=lambda e: TRANSFER)
    async with reach(app, transfer_outcome="failed") as call:
        await call.say("agent please")
        assert call.ended
        assert timeline(call) == [(0.0, "session_start"), (1.3, "user_speak"), (1.3, "session_end")]
    assert [e["type"] for e in call.events].count("session_end") == 1


async def test_every_event_carries_the_full_session(reach):
    app = AiFlowAssistant(
        on_session_start=lambda e: speak("Hi", user_input_timeout_seconds=1),
        on_user_input_timeout=lambda e: None,
    )
    async with reach(app, direction="outbound", to_number="4915790000687") as call:
        await call.silence(3)
        await call.say("hello")
        await call.press("1")
    session = {
        "id": SID,
        "account_id": "emulator-account",
        "phone_number": "4915790000687",
        "direction": "outbound",
        "from_phone_number": "+4915111111111",
        "to_phone_number": "4915790000687",
    }
    assert len(call.events) >= 7
    assert all(e["session"] == session for e in call.events)


# -- the shared secret -------------------------------------------------------------------------


def guarded_app() -> AiFlowAssistant:
    return AiFlowAssistant(on_session_start=lambda e: speak("Welcome!"), webhook_token=TOKEN)


async def test_http_without_the_token_is_a_401_finding(live_server):
    server = live_server(guarded_app().asgi())
    async with simulate_call(
        f"{server.http_url}/webhook", config=CallConfig(session_id=SID)
    ) as call:
        await call.silence(2)
        assert said(call) == []
        (finding,) = call.findings
        assert finding.code == "http_status"
        assert "401" in finding.message
        assert finding.event == "session_start"
        assert "Unauthorized" in str(finding.payload)
    assert [f.code for f in call.findings] == ["http_status", "http_status"]
    assert call.findings[1].event == "session_end"


@pytest.mark.parametrize(
    ("transport", "path"),
    [pytest.param("http", "/webhook", id="http"), pytest.param("websocket", "/ws", id="websocket")],
)
async def test_with_the_token_the_app_answers(live_server, transport, path):
    server = live_server(guarded_app().asgi())
    base = server.http_url if transport == "http" else server.ws_url
    async with simulate_call(
        f"{base}{path}", token=TOKEN, config=CallConfig(session_id=SID)
    ) as call:
        await call.silence(2)
        assert said(call) == ["Welcome!"]
    assert call.findings == []


async def test_http_wrong_token_is_a_401_finding(live_server):
    server = live_server(guarded_app().asgi())
    async with simulate_call(f"{server.http_url}/webhook", token="guess") as call:
        await call.silence(1)
    assert [f.code for f in call.findings] == ["http_status", "http_status"]
    assert all("401" in f.message for f in call.findings)


# -- what a webhook may answer -----------------------------------------------------------------


def raw_app(replies: dict[str, tuple[int, bytes, str | None]]) -> Any:
    """A bare ASGI webhook answering each event type with ``(status, body, content type)``;
    other events get 204."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        event = json.loads(body)
        status, content, content_type = replies.get(event["type"], (204, b"", None))
        headers = [] if content_type is None else [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return app


def action_json(*actions: dict[str, Any]) -> bytes:
    items = [{"session_id": SID, **a} for a in actions]
    return json.dumps(items[0] if len(items) == 1 else items).encode()


JSON = "application/json"

REPLY_CASES = [
    pytest.param((204, b"", None), [], [], id="204"),
    pytest.param((200, b"", JSON), [], [], id="200-empty-body"),
    pytest.param((200, b"  \n", None), [], [], id="200-blank-body"),
    pytest.param((200, b"[]", JSON), [], [], id="200-empty-array"),
    pytest.param((200, action_json(speak("one")), JSON), ["one"], [], id="200-object"),
    pytest.param(
        (200, action_json(speak("one"), speak("two")), JSON), ["one", "two"], [], id="200-array"
    ),
    pytest.param((200, b"Hello there!", "text/plain"), [], ["invalid_json"], id="not-json"),
    pytest.param((200, b'{"type": "speak"', JSON), [], ["invalid_json"], id="truncated-json"),
    pytest.param((200, b"42", JSON), [], ["not_an_action"], id="json-number"),
    pytest.param((500, b"boom", "text/plain"), [], ["http_status"], id="500"),
    pytest.param((404, b"", None), [], ["http_status"], id="404"),
    pytest.param(
        (200, action_json(speak("one")), "text/plain"), ["one"], ["content_type"], id="json-as-text"
    ),
]


@pytest.mark.parametrize(("reply", "spoken", "codes"), REPLY_CASES)
async def test_http_reply_shapes(live_server, reply, spoken, codes):
    server = live_server(raw_app({"session_start": reply}))
    async with simulate_call(
        f"{server.http_url}/webhook", config=CallConfig(session_id=SID)
    ) as call:
        await call.silence(2)
        assert said(call) == spoken
        assert [f.code for f in call.findings] == codes
        for finding in call.findings:
            assert finding.event == "session_start"
        if codes and codes[0] == "invalid_json":
            assert call.findings[0].payload == reply[1].decode()
        if codes and codes[0] == "http_status":
            assert str(reply[0]) in call.findings[0].message


async def test_http_reply_to_session_end_is_reported_not_executed(live_server):
    reply = action_json(speak("Wait, one more thing!"), {"type": "transfer", **TRANSFER})
    server = live_server(raw_app({"session_end": (200, reply, JSON)}))
    async with simulate_call(
        f"{server.http_url}/webhook", config=CallConfig(session_id=SID)
    ) as call:
        await call.silence(1)
    (finding,) = call.findings
    assert finding.code == "reply_to_session_end"
    assert finding.payload == json.loads(reply)
    assert [e["type"] for e in call.events] == ["session_start", "session_end"]
    assert call.state["transfers"] == []


async def test_http_slow_reply_is_a_finding(live_server):
    async def slow_start(event):
        await asyncio.sleep(0.5)
        return speak("Sorry for the wait.")

    app = AiFlowAssistant(on_session_start=slow_start, on_user_speak=lambda e: None)
    server = live_server(app.asgi())
    async with simulate_call(
        f"{server.http_url}/webhook", deadline=0.2, config=CallConfig(session_id=SID)
    ) as call:
        await call.say("hello")
        (finding,) = call.findings
        assert finding.code == "slow_reply"
        assert finding.event == "session_start"
        assert "0.2" in finding.message
        latency = dict(call.latencies)["session_start"]
        assert latency >= 0.5


async def test_http_quick_reply_within_the_deadline_is_fine(live_server):
    app = AiFlowAssistant(on_session_start=lambda e: speak("Hi"))
    server = live_server(app.asgi())
    async with simulate_call(f"{server.http_url}/webhook", deadline=2.0) as call:
        await call.silence(1)
    assert call.findings == []
