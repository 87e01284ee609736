"""The Flask adapter: the webhook rules, and one long-lived bridge loop for every request."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, run_wsgi_app

from sipgate_ai_flow import AiFlowAssistant, HangupAction, UserSpeakEvent, _bridge
from sipgate_ai_flow.adapters.flask import create_blueprint, shutdown

SESSION = {"id": "call-1", "account_id": "a", "phone_number": "4921100000000"}
LOCK = asyncio.Lock()  # created at import, outside any loop, like module-level app state


def event(event_type: str, session_id: str = "call-1", **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "session": {**SESSION, "id": session_id}, **fields}


def speak(text: str, session_id: str = "call-1") -> dict[str, Any]:
    return {"type": "speak", "session_id": session_id, "text": text}


@pytest.fixture
def make_client() -> Iterator[Any]:
    assistants: list[AiFlowAssistant] = []

    def make(assistant: AiFlowAssistant, **options: Any) -> FlaskClient:
        assistants.append(assistant)
        app = Flask(__name__)
        app.register_blueprint(create_blueprint(assistant, **options), url_prefix="/aiflow")
        return app.test_client()

    yield make
    for assistant in assistants:
        shutdown(assistant)


def test_status_rules_204_object_array(make_client: Any):
    client = make_client(
        AiFlowAssistant(
            on_session_start=lambda e: None,
            on_user_speak=lambda e: f"You said {e.text}",
            on_dtmf_received=lambda e: ["Goodbye", HangupAction()],
        )
    )
    nothing = client.post("/aiflow/webhook", json=event("session_start"))
    assert (nothing.status_code, nothing.data) == (204, b"")
    assert "Content-Type" not in nothing.headers
    one = client.post("/aiflow/webhook", json=event("user_speak", text="hi"))
    assert one.status_code == 200
    assert one.headers["Content-Type"] == "application/json"
    assert one.json == speak("You said hi")
    several = client.post("/aiflow/webhook", json=event("dtmf_received", digit="1"))
    assert several.json == [speak("Goodbye"), {"type": "hangup", "session_id": "call-1"}]


def test_invalid_event_is_400_with_details(make_client: Any):
    client = make_client(AiFlowAssistant(on_user_speak=lambda e: "x"))
    response = client.post("/aiflow/webhook", data=b"{not json")
    assert response.status_code == 400
    assert response.json == {
        "error": "Invalid event format",
        "details": ["(root): Invalid JSON: key must be a string at line 1 column 2"],
    }


def test_token_is_required(make_client: Any):
    client = make_client(AiFlowAssistant(on_session_start=lambda e: "hi", webhook_token="tok"))
    for headers in ({}, {"X-API-TOKEN": "wrong"}):
        refused = client.post("/aiflow/webhook", json=event("session_start"), headers=headers)
        assert (refused.status_code, refused.json) == (401, {"error": "Unauthorized"})
    ok = client.post("/aiflow/webhook", json=event("session_start"), headers={"X-API-TOKEN": "tok"})
    assert ok.json == speak("hi")


def test_body_over_the_limit_is_413_and_wrong_method_is_405(make_client: Any):
    client = make_client(AiFlowAssistant(on_user_speak=lambda e: "x"), max_body_size=100)
    big = client.post("/aiflow/webhook", json=event("user_speak", text="x" * 200))
    assert (big.status_code, big.json) == (413, {"error": "Request body larger than 100 bytes"})

    small = b'{"type": "user_speak", "text": "y", "session": {"id": "call-1"}}'
    assert client.post("/aiflow/webhook", data=small).json == speak("x")
    wrong = client.get("/aiflow/webhook")
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["Allow"]


def test_streamed_body_without_content_length_is_limited_while_reading(make_client: Any):
    client = make_client(AiFlowAssistant(on_user_speak=lambda e: "x"), max_body_size=100)
    seen: list[int | None] = []
    client.application.before_request(lambda: seen.append(request.content_length))
    # Chunked, no content-length (as gunicorn passes it on): the limit applies while reading.
    body = io.BytesIO(b'{"type": "user_speak", "text": "' + b"x" * 200 + b'"}')
    environ = EnvironBuilder("/aiflow/webhook", method="POST", input_stream=body).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    app_iter, status, _ = run_wsgi_app(client.application, environ)
    assert b"".join(app_iter) == b'{"error": "Request body larger than 100 bytes"}'
    assert (seen, status) == ([None], "413 REQUEST ENTITY TOO LARGE")


def test_handler_failure_is_500(make_client: Any):
    def broken(e: Any) -> str:
        raise RuntimeError("secret internals")

    client = make_client(AiFlowAssistant(on_user_speak=broken))
    response = client.post("/aiflow/webhook", json=event("user_speak", text="hi"))
    assert (response.status_code, response.json) == (500, {"error": "Internal server error"})


def test_health_and_custom_paths(make_client: Any):
    client = make_client(
        AiFlowAssistant(on_session_start=lambda e: "hi"), webhook_path="/hook", name="custom"
    )
    assert client.get("/aiflow/health").json == {"status": "ok"}
    assert client.post("/aiflow/hook", json=event("session_start")).json == speak("hi")
    assert client.post("/aiflow/webhook", json=event("session_start")).status_code == 404


def test_every_request_runs_on_one_long_lived_loop_off_the_request_thread(make_client: Any):
    seen: list[tuple[asyncio.AbstractEventLoop, int]] = []

    async def on_speak(e: UserSpeakEvent) -> str:
        seen.append((asyncio.get_running_loop(), threading.get_ident()))
        return e.text

    client = make_client(AiFlowAssistant(on_user_speak=on_speak))
    for text in ("one", "two"):
        assert client.post("/aiflow/webhook", json=event("user_speak", text=text)).json == speak(
            text
        )
    (loop_1, thread_1), (loop_2, thread_2) = seen
    assert loop_1 is loop_2 is _bridge.get_loop()
    assert loop_1.is_running()
    assert thread_1 == thread_2 != threading.get_ident()


def test_handler_outliving_its_reply_keeps_running(make_client: Any):
    async def slow(e: UserSpeakEvent) -> str:
        await asyncio.sleep(0.3)
        return "the real answer"

    client = make_client(
        AiFlowAssistant(on_user_speak=slow, on_dtmf_received=lambda e: "next", hold_after=0.05)
    )
    held = client.post("/aiflow/webhook", json=event("user_speak", text="hi"))
    assert held.json == speak("One moment, please.")
    _bridge.run(asyncio.sleep(0.5))
    following = client.post("/aiflow/webhook", json=event("dtmf_received", digit="1"))
    assert following.json == [speak("the real answer"), speak("next")]


def test_asyncio_lock_created_at_import_works_across_requests(make_client: Any):
    holding = threading.Event()
    arrived = asyncio.Event()  # set and awaited on the bridge loop
    contended: list[bool] = []

    async def on_speak(e: UserSpeakEvent) -> str:
        if e.text == "first":
            async with LOCK:
                holding.set()
                await asyncio.wait_for(arrived.wait(), 5)  # until the second one comes
                await asyncio.sleep(0.01)
            return "first done"
        arrived.set()
        contended.append(LOCK.locked())
        async with LOCK:
            return "second done"

    client = make_client(AiFlowAssistant(on_user_speak=on_speak))
    answers: dict[str, Any] = {}

    def post(session_id: str, text: str) -> None:
        response = client.post("/aiflow/webhook", json=event("user_speak", session_id, text=text))
        answers[session_id] = response.json

    for _ in range(2):  # twice: a lock bound to a per-request loop would fail the second time
        holding.clear()
        arrived.clear()
        first = threading.Thread(target=post, args=("call-1", "first"))
        first.start()
        assert holding.wait(5)
        post("call-2", "second")
        first.join(5)
        assert answers == {
            "call-1": speak("first done", "call-1"),
            "call-2": speak("second done", "call-2"),
        }
        answers.clear()
    assert contended == [True, True]


def test_bridge_run_times_out_and_cancels():
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        _bridge.run(forever(), timeout=0.05)
    assert cancelled.wait(5)


def test_bridge_loop_is_created_once_under_concurrent_first_use(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_bridge, "_loop", None)  # a fresh bridge; the shared one is restored
    monkeypatch.setattr(_bridge, "_thread", None)

    def bridge_threads() -> int:
        return sum(t.name == "sipgate-ai-flow-loop" for t in threading.enumerate())

    before = bridge_threads()
    barrier = threading.Barrier(8)
    loops: list[asyncio.AbstractEventLoop] = []

    def first_use() -> None:
        barrier.wait()
        loops.append(_bridge.get_loop())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    loop, bridge_thread = _bridge._loop, _bridge._thread
    assert loop is not None
    assert bridge_thread is not None
    assert len(loops) == 8
    assert all(each is loop for each in loops)
    assert bridge_thread.daemon
    assert bridge_thread.is_alive()
    assert bridge_threads() == before + 1
    loop.call_soon_threadsafe(loop.stop)
    bridge_thread.join(5)
    loop.close()


def test_bridge_refuses_to_block_its_own_loop():
    async def nested() -> None:
        _bridge.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="bridge loop itself"):
        _bridge.run(nested(), timeout=5)


def test_shutdown_cancels_handlers_left_running_on_the_bridge(make_client: Any):
    cancelled = threading.Event()

    async def forever(e: UserSpeakEvent) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    assistant = AiFlowAssistant(on_user_speak=forever, response_timeout=0.05)
    client = make_client(assistant)
    assert client.post("/aiflow/webhook", json=event("user_speak", text="x")).status_code == 204
    shutdown(assistant)
    assert cancelled.is_set()
