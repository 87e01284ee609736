"""The Django adapter: the async webhook view under ASGI and WSGI, and its URL patterns."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import django  # type: ignore[import-untyped]
import pytest
from django.conf import settings  # type: ignore[import-untyped]
from django.test import AsyncClient, Client, override_settings  # type: ignore[import-untyped]
from django.urls import include, path  # type: ignore[import-untyped]

from sipgate_ai_flow import AiFlowAssistant, HangupAction, UserSpeakEvent, _bridge
from sipgate_ai_flow.adapters.django import urlpatterns as aiflow_urls

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        USE_TZ=True,
    )
    django.setup()

SESSION = {"id": "call-1", "account_id": "a", "phone_number": "4921100000000"}
SEEN: list[tuple[asyncio.AbstractEventLoop, int]] = []


def event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "session": SESSION, **fields}


def speak(text: str) -> dict[str, Any]:
    return {"type": "speak", "session_id": "call-1", "text": text}


async def on_user_speak(e: UserSpeakEvent) -> str:
    if e.text == "fail":
        raise RuntimeError("secret internals")
    SEEN.append((asyncio.get_running_loop(), threading.get_ident()))
    return f"You said {e.text}"


PLAIN = AiFlowAssistant(
    on_session_start=lambda e: None,
    on_user_speak=on_user_speak,
    on_dtmf_received=lambda e: ["Goodbye", HangupAction()],
)
SECURE = AiFlowAssistant(on_session_start=lambda e: "hi", webhook_token="tok")
SMALL = AiFlowAssistant(on_user_speak=lambda e: "x")

urlpatterns = [
    *aiflow_urls(PLAIN),
    path("secure/", include(aiflow_urls(SECURE))),
    *aiflow_urls(SMALL, prefix="small/", max_body_size=100),
]


@pytest.fixture(autouse=True)
def _urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=__name__):
        yield


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)  # the view must be CSRF-exempt


@pytest.fixture
def async_client() -> AsyncClient:
    return AsyncClient(enforce_csrf_checks=True)


def post(client: Client, url: str, data: Any, **extra: Any) -> Any:
    return client.post(url, data, content_type="application/json", **extra)


async def test_status_rules_under_asgi(async_client: AsyncClient):
    nothing = await async_client.post(
        "/webhook", event("session_start"), content_type="application/json"
    )
    assert (nothing.status_code, nothing.content) == (204, b"")
    assert "Content-Type" not in nothing.headers
    one = await async_client.post(
        "/webhook", event("user_speak", text="hi"), content_type="application/json"
    )
    assert (one.status_code, one["Content-Type"]) == (200, "application/json")
    assert one.json() == speak("You said hi")
    several = await async_client.post(
        "/webhook", event("dtmf_received", digit="1"), content_type="application/json"
    )
    assert several.json() == [speak("Goodbye"), {"type": "hangup", "session_id": "call-1"}]
    assert SEEN[-1][0] is asyncio.get_running_loop()  # ASGI: on the server's own loop


def test_status_rules_under_wsgi(client: Client):
    assert post(client, "/webhook", event("session_start")).status_code == 204
    assert post(client, "/webhook", event("user_speak", text="hi")).json() == speak("You said hi")
    several = post(client, "/webhook", event("dtmf_received", digit="1"))
    assert several.json() == [speak("Goodbye"), {"type": "hangup", "session_id": "call-1"}]


def test_wsgi_requests_share_one_long_lived_loop_off_the_request_thread(client: Client):
    SEEN.clear()
    for text in ("one", "two"):
        assert post(client, "/webhook", event("user_speak", text=text)).status_code == 200
    (loop_1, thread_1), (loop_2, thread_2) = SEEN
    assert loop_1 is loop_2 is _bridge.get_loop()
    assert thread_1 == thread_2 != threading.get_ident()


def test_invalid_event_is_400_and_failure_is_500(client: Client):
    bad = post(client, "/webhook", b"{not json")
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "Invalid event format",
        "details": ["(root): Invalid JSON: key must be a string at line 1 column 2"],
    }
    failed = post(client, "/webhook", event("user_speak", text="fail"))
    assert (failed.status_code, failed.json()) == (500, {"error": "Internal server error"})


async def test_token_is_required(async_client: AsyncClient):
    for headers in ({}, {"X-API-TOKEN": "wrong"}):
        refused = await async_client.post(
            "/secure/webhook", event("session_start"), "application/json", headers=headers
        )
        assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
    ok = await async_client.post(
        "/secure/webhook",
        event("session_start"),
        "application/json",
        headers={"X-API-TOKEN": "tok"},
    )
    assert ok.json() == speak("hi")


def test_wrong_method_is_405_and_big_body_413(client: Client):
    wrong = client.get("/webhook")
    assert (wrong.status_code, wrong["Allow"]) == (405, "POST")
    big = post(client, "/small/webhook", event("user_speak", text="x" * 200))
    assert (big.status_code, big.json()) == (413, {"error": "Request body larger than 100 bytes"})
    small = b'{"type": "user_speak", "text": "y", "session": {"id": "call-1"}}'
    assert post(client, "/small/webhook", small).json() == speak("x")


def test_djangos_own_upload_limit_is_413_too(client: Client):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10):
        response = post(client, "/webhook", event("user_speak", text="hi"))
    assert (response.status_code, response.json()) == (
        413,
        {"error": "Request body larger than 10 bytes"},
    )


def test_health(client: Client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/secure/health").json() == {"status": "ok"}
    assert Client().post("/health").status_code == 405


def test_websocket_beside_djangos_asgi_app_as_documented():
    from django.core.asgi import get_asgi_application  # type: ignore[import-untyped]
    from starlette.testclient import TestClient

    assistant = AiFlowAssistant(on_user_speak=lambda e: e.text.upper())
    django_app = get_asgi_application()
    aiflow_app = assistant.asgi(webhook_path="/aiflow/webhook", websocket_path="/aiflow/ws")

    async def application(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" or scope["type"] == "lifespan":
            await aiflow_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    with TestClient(application) as client:
        with client.websocket_connect("/aiflow/ws") as ws:
            ws.send_text(json.dumps(event("user_speak", text="hi")))
            assert ws.receive_json() == speak("HI")
        response = client.post("/webhook", json=event("user_speak", text="django"))
        assert response.json() == speak("You said django")
