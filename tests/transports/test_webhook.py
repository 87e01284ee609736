"""The HTTP webhook (protocol §8) through the ASGI app, and the response budget."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from sipgate_ai_flow import (
    AiFlowAssistant,
    CallContext,
    HangupAction,
    SessionNotFoundError,
    UserSpeakEvent,
)
from sipgate_ai_flow.asgi import create_app
from sipgate_ai_flow.webhook import handle_webhook

SESSION = {"id": "call-1", "account_id": "a", "phone_number": "4921100000000"}


def event(event_type: str, session_id: str = "call-1", **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "session": {**SESSION, "id": session_id}, **fields}


def speak(text: str, session_id: str = "call-1") -> dict[str, Any]:
    return {"type": "speak", "session_id": session_id, "text": text}


def client_for(assistant: AiFlowAssistant, **options: Any) -> TestClient:
    return TestClient(create_app(assistant, **options))


# -- status rules ----------------------------------------------------------------------------


def test_no_action_is_204_one_is_an_object_several_an_array():
    assistant = AiFlowAssistant(
        on_session_start=lambda e: None,
        on_user_speak=lambda e: f"You said {e.text}",
        on_dtmf_received=lambda e: ["Goodbye", HangupAction()],
    )
    with client_for(assistant) as client:
        nothing = client.post("/webhook", json=event("session_start"))
        assert (nothing.status_code, nothing.content) == (204, b"")
        one = client.post("/webhook", json=event("user_speak", text="hi"))
        assert one.status_code == 200
        assert one.headers["content-type"] == "application/json"
        assert one.json() == speak("You said hi")
        several = client.post("/webhook", json=event("dtmf_received", digit="1"))
        assert several.json() == [speak("Goodbye"), {"type": "hangup", "session_id": "call-1"}]


def test_session_end_is_always_204_and_its_handler_runs():
    ended: list[str] = []

    def on_end(e: Any) -> str:
        ended.append(e.session.id)
        return "ignored"

    with client_for(AiFlowAssistant(on_session_end=on_end)) as client:
        response = client.post("/webhook", json=event("session_end"))
    assert (response.status_code, response.content) == (204, b"")
    assert ended == ["call-1"]


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (b"{not json", ["(root): Invalid JSON: key must be a string at line 1 column 2"]),
        (b"", ["(root): empty body (expected a JSON object)"]),
        (json.dumps(event("user_speak")).encode(), ["user_speak.text: Field required"]),
        (
            json.dumps({"session": SESSION}).encode(),
            ["type: Field required (every payload needs a 'type' string)"],
        ),
        (
            json.dumps({"type": "dtmf_received", "digit": 1}).encode(),
            [
                "dtmf_received.session: Field required",
                "dtmf_received.digit: Input should be a valid string",
            ],
        ),
    ],
)
def test_invalid_event_is_400_with_every_problem(body: bytes, details: list[str]):
    with client_for(AiFlowAssistant(on_user_speak=lambda e: "x")) as client:
        response = client.post("/webhook", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid event format", "details": details}


def test_unknown_event_type_is_204():
    with client_for(AiFlowAssistant(on_user_speak=lambda e: "x")) as client:
        response = client.post("/webhook", json=event("call_recording_ready", url="x"))
    assert response.status_code == 204


def test_body_over_the_limit_is_413_and_wrong_method_is_405():
    with client_for(AiFlowAssistant(), max_body_size=100) as client:
        big = client.post("/webhook", json=event("user_speak", text="x" * 200))
        assert big.status_code == 413
        assert big.json() == {"error": "Request body larger than 100 bytes"}

        def chunks() -> Any:  # no content-length: the limit is enforced while reading
            yield b'{"type": "user_speak", "text": "'
            yield b"x" * 200
            yield b'"}'

        streamed = client.post("/webhook", content=chunks())
        assert streamed.status_code == 413
        wrong = client.get("/webhook")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")


def test_handler_failure_is_500_without_on_error():
    def broken(e: Any) -> str:
        raise RuntimeError("secret internals")

    with client_for(AiFlowAssistant(on_user_speak=broken)) as client:
        response = client.post("/webhook", json=event("user_speak", text="hi"))
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}


def test_health_and_not_found():
    with client_for(AiFlowAssistant()) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/nope").status_code == 404


def test_custom_paths():
    assistant = AiFlowAssistant(on_session_start=lambda e: "hi")
    with client_for(assistant, webhook_path="/ai-flow/hook") as client:
        assert client.post("/ai-flow/hook", json=event("session_start")).json() == speak("hi")
        assert client.post("/webhook", json=event("session_start")).status_code == 404


# -- shared secret ---------------------------------------------------------------------------

TOKEN = "s3cr3t-shared-token"


@pytest.mark.parametrize("source", ["option", "env"])
def test_token_is_required_and_never_logged(
    source: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    if source == "env":
        monkeypatch.setenv("AIFLOW_WEBHOOK_TOKEN", TOKEN)
        assistant = AiFlowAssistant(on_session_start=lambda e: "hi")
    else:
        assistant = AiFlowAssistant(on_session_start=lambda e: "hi", webhook_token=TOKEN)
    caplog.set_level(logging.DEBUG)
    with client_for(assistant) as client:
        missing = client.post("/webhook", json=event("session_start"))
        wrong = client.post(
            "/webhook", json=event("session_start"), headers={"X-API-TOKEN": "nope"}
        )
        right = client.post("/webhook", json=event("session_start"), headers={"X-API-TOKEN": TOKEN})
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.json() == {"error": "Unauthorized"}
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(assistant)
    assert "webhook request refused: missing or wrong X-API-TOKEN" in caplog.text


# -- per-session order and concurrency -------------------------------------------------------


async def test_one_session_in_order_different_sessions_concurrently():
    log: list[str] = []
    release_a = asyncio.Event()

    async def on_speak(e: UserSpeakEvent) -> str:
        log.append(f"start {e.session.id} {e.text}")
        if e.text == "first":
            await release_a.wait()  # held until call-2 runs: proves calls are concurrent
        if e.session.id == "call-2":
            release_a.set()
        log.append(f"end {e.session.id} {e.text}")
        return e.text

    app = create_app(AiFlowAssistant(on_user_speak=on_speak))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://test"
    ) as client:

        async def post(session_id: str, text: str) -> Any:
            return await client.post("/webhook", json=event("user_speak", session_id, text=text))

        first = asyncio.create_task(post("call-1", "first"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(post("call-1", "second"))
        await asyncio.sleep(0.01)
        other = asyncio.create_task(post("call-2", "other"))
        responses = await asyncio.wait_for(asyncio.gather(first, second, other), 10)
    assert [r.json()["text"] for r in responses] == ["first", "second", "other"]
    # call-1's second event started only after its first ended; call-2 ran in between.
    assert log.index("start call-1 second") > log.index("end call-1 first")
    assert log.index("start call-2 other") < log.index("end call-1 first")


# -- late and streamed answers over HTTP -----------------------------------------------------


async def test_hold_reply_then_real_answer_with_the_next_event():
    release = asyncio.Event()

    async def slow(e: UserSpeakEvent) -> str:
        await release.wait()
        return "Your balance is 42 euros."

    assistant = AiFlowAssistant(
        on_user_speak=slow,
        on_assistant_speech_ended=lambda e: None,
        hold_after=0.05,
        hold_reply="One moment please.",
    )
    first = await handle_webhook(
        assistant, json.dumps(event("user_speak", text="balance?")).encode(), None
    )
    assert first.status == 200
    assert json.loads(first.body) == speak("One moment please.")
    release.set()
    await asyncio.sleep(0.01)
    later = await handle_webhook(
        assistant, json.dumps(event("assistant_speech_ended")).encode(), None
    )
    assert json.loads(later.body) == speak("Your balance is 42 euros.")
    await assistant.aclose()


async def test_response_timeout_answers_with_what_is_ready():
    release = asyncio.Event()

    async def streaming(e: UserSpeakEvent) -> Any:
        yield "Let me look that up."
        await release.wait()
        yield "Found it: you have 3 new messages."
        yield HangupAction()

    assistant = AiFlowAssistant(
        on_user_speak=streaming, on_user_input_timeout=lambda e: None, response_timeout=0.05
    )
    first = await handle_webhook(
        assistant, json.dumps(event("user_speak", text="x")).encode(), None
    )
    assert json.loads(first.body) == speak("Let me look that up.")
    release.set()
    await asyncio.sleep(0.01)
    later = await handle_webhook(assistant, json.dumps(event("user_input_timeout")).encode(), None)
    assert json.loads(later.body) == [
        speak("Found it: you have 3 new messages."),
        {"type": "hangup", "session_id": "call-1"},
    ]
    await assistant.aclose()


async def test_timeout_without_anything_ready_is_204():
    async def never(e: Any) -> None:
        await asyncio.Event().wait()

    assistant = AiFlowAssistant(on_user_speak=never, response_timeout=0.02)
    response = await handle_webhook(
        assistant, json.dumps(event("user_speak", text="x")).encode(), None
    )
    assert response.status == 204
    await assistant.aclose()  # cancels the handler still running


async def test_ctx_send_joins_the_open_reply_and_later_the_next_one():
    background: list[asyncio.Task[None]] = []

    async def on_speak(e: UserSpeakEvent, ctx: CallContext) -> str:
        await ctx.send("Checking.")

        async def later() -> None:
            await asyncio.sleep(0.01)
            await ctx.send("Done checking.")

        background.append(asyncio.create_task(later()))
        return "Anything else?"

    assistant = AiFlowAssistant(on_user_speak=on_speak, on_assistant_speech_ended=lambda e: None)
    first = await assistant.handle_event(event("user_speak", text="x"))
    assert [a.text for a in first] == ["Checking.", "Anything else?"]  # type: ignore[union-attr]
    await background[0]
    second = await handle_webhook(
        assistant, json.dumps(event("assistant_speech_ended")).encode(), None
    )
    assert json.loads(second.body) == speak("Done checking.")


async def test_push_from_outside_a_handler():
    assistant = AiFlowAssistant(on_session_start=lambda e: "Hi", on_dtmf_received=lambda e: None)
    with pytest.raises(SessionNotFoundError, match="'call-1' is not served by this process"):
        await assistant.push("call-1", "hello?")
    await assistant.handle_event(event("session_start"))
    await assistant.push("call-1", "Your CRM record is ready.", HangupAction())
    reply = await assistant.handle_event(event("dtmf_received", digit="1"))
    # Queued actions pass through the session store, as JSON (they may cross workers).
    assert reply == [
        speak("Your CRM record is ready."),
        {"type": "hangup", "session_id": "call-1"},
    ]
    await assistant.handle_event(event("session_end"))
    with pytest.raises(SessionNotFoundError):
        await assistant.push("call-1", "too late")


def test_lifespan_opens_and_closes_the_assistant():
    calls: list[str] = []

    class Tracked(AiFlowAssistant):
        async def startup(self) -> None:
            calls.append("startup")

        async def aclose(self) -> None:
            calls.append("aclose")
            await super().aclose()

    with client_for(Tracked()) as client:
        assert calls == ["startup"]
        client.get("/health")
    assert calls == ["startup", "aclose"]
