"""The FastAPI adapter: router (webhook, WebSocket, health), lifespan helper, mounted app."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from sipgate_ai_flow import AiFlowAssistant, HangupAction
from sipgate_ai_flow.adapters.fastapi import create_router, lifespan

SESSION = {"id": "call-1", "account_id": "a", "phone_number": "4921100000000"}


def event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "session": SESSION, **fields}


def speak(text: str) -> dict[str, Any]:
    return {"type": "speak", "session_id": "call-1", "text": text}


def client_for(assistant: AiFlowAssistant, **options: Any) -> TestClient:
    app = FastAPI(lifespan=lifespan(assistant))
    app.include_router(create_router(assistant, **options), prefix="/aiflow")
    return TestClient(app)


def test_adapters_package_imports_no_framework():
    code = (
        "import sys, sipgate_ai_flow.adapters;"
        "banned = {'starlette', 'fastapi', 'flask', 'django', 'werkzeug', 'uvicorn'};"
        "print(sorted(banned & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_status_rules_204_object_array():
    assistant = AiFlowAssistant(
        on_session_start=lambda e: None,
        on_user_speak=lambda e: f"You said {e.text}",
        on_dtmf_received=lambda e: ["Goodbye", HangupAction()],
    )
    with client_for(assistant) as client:
        nothing = client.post("/aiflow/webhook", json=event("session_start"))
        assert (nothing.status_code, nothing.content) == (204, b"")
        assert "content-type" not in nothing.headers
        one = client.post("/aiflow/webhook", json=event("user_speak", text="hi"))
        assert one.status_code == 200
        assert one.headers["content-type"] == "application/json"
        assert one.json() == speak("You said hi")
        several = client.post("/aiflow/webhook", json=event("dtmf_received", digit="1"))
        assert several.json() == [speak("Goodbye"), {"type": "hangup", "session_id": "call-1"}]


def test_invalid_event_is_400_with_details():
    with client_for(AiFlowAssistant(on_user_speak=lambda e: "x")) as client:
        response = client.post("/aiflow/webhook", json=event("user_speak"))
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid event format",
        "details": ["user_speak.text: Field required"],
    }


def test_token_is_required():
    assistant = AiFlowAssistant(on_session_start=lambda e: "hi", webhook_token="tok")
    with client_for(assistant) as client:
        for headers in ({}, {"X-API-TOKEN": "wrong"}):
            refused = client.post("/aiflow/webhook", json=event("session_start"), headers=headers)
            assert refused.status_code == 401
            assert refused.json() == {"error": "Unauthorized"}
        ok = client.post(
            "/aiflow/webhook", json=event("session_start"), headers={"X-API-TOKEN": "tok"}
        )
        assert ok.json() == speak("hi")


def test_body_over_the_limit_is_413_and_wrong_method_is_405():
    with client_for(AiFlowAssistant(on_user_speak=lambda e: "x"), max_body_size=100) as client:
        big = client.post("/aiflow/webhook", json=event("user_speak", text="x" * 200))
        assert big.status_code == 413
        assert big.json() == {"error": "Request body larger than 100 bytes"}

        def chunks() -> Any:  # no content-length: the limit is enforced while reading
            yield b'{"type": "user_speak", "text": "'
            yield b"x" * 200
            yield b'"}'

        streamed = client.post("/aiflow/webhook", content=chunks())
        assert streamed.status_code == 413
        small = b'{"type": "user_speak", "text": "y", "session": {"id": "call-1"}}'
        assert client.post("/aiflow/webhook", content=small).json() == speak("x")
        wrong = client.get("/aiflow/webhook")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")


def test_handler_failure_is_500():
    def broken(e: Any) -> str:
        raise RuntimeError("secret internals")

    with client_for(AiFlowAssistant(on_user_speak=broken)) as client:
        response = client.post("/aiflow/webhook", json=event("user_speak", text="hi"))
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}


def test_health_and_custom_paths():
    assistant = AiFlowAssistant(on_session_start=lambda e: "hi")
    with client_for(assistant, webhook_path="/hook", health_path="/up") as client:
        assert client.get("/aiflow/up").json() == {"status": "ok"}
        assert client.post("/aiflow/hook", json=event("session_start")).json() == speak("hi")
        assert client.post("/aiflow/webhook", json=event("session_start")).status_code == 404


def test_websocket_round_trip_and_bad_frames_ignored(caplog: pytest.LogCaptureFixture):
    assistant = AiFlowAssistant(on_user_speak=lambda e: e.text.upper())
    with (
        caplog.at_level(logging.WARNING, logger="sipgate_ai_flow"),
        client_for(assistant) as client,
        client.websocket_connect("/aiflow/ws") as ws,
    ):
        ws.send_text("not json")
        ws.send_bytes(b"\x00\x01")
        ws.send_text(json.dumps(event("user_speak", text="hi")))
        assert ws.receive_json() == speak("HI")
        ws.send_text(json.dumps(event("user_speak", text="again")))
        assert ws.receive_json() == speak("AGAIN")
    assert "invalid WebSocket frame ignored" in caplog.text
    assert "binary WebSocket frame ignored (2 bytes)" in caplog.text


def test_websocket_token_refusal():
    assistant = AiFlowAssistant(on_user_speak=lambda e: e.text, webhook_token="tok")
    with client_for(assistant) as client:
        for headers in ({}, {"X-API-TOKEN": "wrong"}):
            with (
                pytest.raises(WebSocketDenialResponse) as refused,
                client.websocket_connect("/aiflow/ws", headers=headers),
            ):
                pass
            assert refused.value.status_code == 401
            assert refused.value.json() == {"error": "Unauthorized"}
        with client.websocket_connect("/aiflow/ws", headers={"X-API-TOKEN": "tok"}) as ws:
            ws.send_text(json.dumps(event("user_speak", text="in")))
            assert ws.receive_json() == speak("in")


def test_lifespan_helper_calls_startup_and_aclose():
    calls: list[str] = []

    class Tracked(AiFlowAssistant):
        async def startup(self) -> None:
            calls.append("startup")

        async def aclose(self) -> None:
            calls.append("aclose")
            await super().aclose()

    with client_for(Tracked()) as client:
        assert calls == ["startup"]
        assert client.get("/aiflow/health").status_code == 200
    assert calls == ["startup", "aclose"]


def test_mounted_asgi_app_variant():
    assistant = AiFlowAssistant(on_session_start=lambda e: "hi", on_user_speak=lambda e: e.text)
    app = FastAPI(lifespan=lifespan(assistant))
    app.mount("/aiflow", assistant.asgi())
    with TestClient(app) as client:
        assert client.post("/aiflow/webhook", json=event("session_start")).json() == speak("hi")
        assert client.get("/aiflow/health").json() == {"status": "ok"}
        with client.websocket_connect("/aiflow/ws") as ws:
            ws.send_text(json.dumps(event("user_speak", text="mounted")))
            assert ws.receive_json() == speak("mounted")


async def test_websocket_refusal_without_denial_extension_closes_with_1008():
    app = FastAPI()
    app.include_router(create_router(AiFlowAssistant(webhook_token="tok")))
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "root_path": "",
        "headers": [],
        "query_string": b"",
        "subprotocols": [],
        "extensions": {},  # the server cannot send an HTTP denial response
    }
    await app(scope, receive, send)
    assert [(m["type"], m.get("code")) for m in sent] == [("websocket.close", 1008)]
