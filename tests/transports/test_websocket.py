"""The WebSocket transport (protocol §9): the library-neutral loop and the ASGI endpoint."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from sipgate_ai_flow import AiFlowAssistant, CallContext, HangupAction, UserSpeakEvent
from sipgate_ai_flow.asgi import create_app
from sipgate_ai_flow.websocket import serve_websocket


def event(event_type: str, session_id: str = "call-1", **fields: Any) -> str:
    return json.dumps({"type": event_type, "session": {"id": session_id}, **fields})


def speak(text: str, session_id: str = "call-1") -> dict[str, Any]:
    return {"type": "speak", "session_id": session_id, "text": text}


class Socket:
    """An in-memory peer for serve_websocket: frames in, frames out."""

    def __init__(self, assistant: AiFlowAssistant) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.task = asyncio.create_task(serve_websocket(assistant, self.inbox.get, self._send))

    async def _send(self, text: str) -> None:
        await self.outbox.put(text)

    def send(self, frame: str | bytes | None) -> None:
        self.inbox.put_nowait(frame)

    async def receive(self) -> Any:
        return json.loads(await asyncio.wait_for(self.outbox.get(), 5))

    async def close(self) -> None:
        self.send(None)
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def connect() -> AsyncIterator[Any]:
    sockets: list[Socket] = []

    def open_socket(assistant: AiFlowAssistant) -> Socket:
        sockets.append(Socket(assistant))
        return sockets[-1]

    yield open_socket
    for sock in sockets:
        if not sock.task.done():
            await sock.close()


async def test_each_frame_is_answered_object_array_or_nothing(connect: Any):
    sock = connect(
        AiFlowAssistant(
            on_session_start=lambda e: "Hello",
            on_assistant_speech_ended=lambda e: None,
            on_dtmf_received=lambda e: ["Bye", HangupAction()],
        )
    )
    sock.send(event("session_start"))
    assert await sock.receive() == speak("Hello")
    sock.send(event("assistant_speech_ended"))  # no action: no frame
    sock.send(event("dtmf_received", digit="9"))
    assert await sock.receive() == [speak("Bye"), {"type": "hangup", "session_id": "call-1"}]
    assert sock.outbox.empty()


async def test_bad_frames_are_logged_and_the_socket_stays_open(
    connect: Any, caplog: pytest.LogCaptureFixture
):
    sock = connect(AiFlowAssistant(on_user_speak=lambda e: e.text))
    with caplog.at_level(logging.WARNING, logger="sipgate_ai_flow"):
        sock.send("not json")
        sock.send(json.dumps({"type": "user_speak", "session": {"id": "call-1"}}))
        sock.send(b"\x00\x01binary")
        sock.send(event("user_speak", text="still here"))
        assert await sock.receive() == speak("still here")
    assert "invalid WebSocket frame ignored: (root): Invalid JSON" in caplog.text
    assert "invalid WebSocket frame ignored: user_speak.text: Field required" in caplog.text
    assert "binary WebSocket frame ignored (8 bytes)" in caplog.text
    assert sock.outbox.empty()


async def test_slow_call_never_delays_another_and_each_call_keeps_its_order(connect: Any):
    release = asyncio.Event()
    order: list[str] = []

    async def on_speak(e: UserSpeakEvent) -> str:
        order.append(f"{e.session.id}:{e.text}")
        if e.text == "slow":
            await release.wait()
        return e.text

    sock = connect(AiFlowAssistant(on_user_speak=on_speak))
    sock.send(event("user_speak", "call-1", text="slow"))
    sock.send(event("user_speak", "call-1", text="after slow"))
    sock.send(event("user_speak", "call-2", text="fast"))
    assert await sock.receive() == speak("fast", "call-2")  # call-1 is still blocked
    assert order == ["call-1:slow", "call-2:fast"]  # call-1's second event waits its turn
    release.set()
    assert await sock.receive() == speak("slow")
    assert await sock.receive() == speak("after slow")


async def test_async_generator_yields_go_out_at_once(connect: Any):
    release = asyncio.Event()

    async def streaming(e: UserSpeakEvent) -> AsyncIterator[str]:
        yield "First sentence."
        await release.wait()
        yield "Second sentence."

    sock = connect(AiFlowAssistant(on_user_speak=streaming))
    sock.send(event("user_speak", text="go"))
    assert await sock.receive() == speak("First sentence.")  # while the generator waits
    release.set()
    assert await sock.receive() == speak("Second sentence.")


async def test_ctx_send_and_push_are_sent_at_once(connect: Any):
    release = asyncio.Event()
    assistant = AiFlowAssistant()

    @assistant.on_user_speak
    async def on_speak(e: UserSpeakEvent, ctx: CallContext) -> str:
        await ctx.send("Let me check.")
        await release.wait()
        return "Checked."

    sock = connect(assistant)
    sock.send(event("user_speak", text="x"))
    assert await sock.receive() == speak("Let me check.")
    await assistant.push("call-1", HangupAction())
    assert await sock.receive() == {"type": "hangup", "session_id": "call-1"}
    release.set()
    assert await sock.receive() == speak("Checked.")


async def test_hold_reply_is_pushed_then_the_answer_follows(connect: Any):
    release = asyncio.Event()

    async def slow(e: UserSpeakEvent) -> str:
        await release.wait()
        return "Here it is."

    sock = connect(AiFlowAssistant(on_user_speak=slow, hold_after=0.02))
    sock.send(event("user_speak", text="x"))
    assert await sock.receive() == speak("One moment, please.")
    release.set()
    assert await sock.receive() == speak("Here it is.")


async def test_unanswerable_events_send_nothing_and_session_end_cleanup_completes(connect: Any):
    cleaned: list[str] = []

    async def on_end(e: Any) -> str:
        await asyncio.sleep(0.01)
        cleaned.append(e.session.id)
        return "dropped"

    sock = connect(
        AiFlowAssistant(
            on_user_speech_started=lambda e: "dropped",
            on_session_end=on_end,
            on_user_speak=lambda e: "answered",
        )
    )
    sock.send(event("user_speech_started"))
    sock.send(event("user_speak", text="x"))
    assert await sock.receive() == speak("answered")
    sock.send(event("session_end"))
    await sock.close()  # closes right after session_end: its cleanup still completes
    assert cleaned == ["call-1"]
    assert sock.outbox.empty()


async def test_disconnect_cancels_pending_work_without_leaking_tasks(connect: Any):
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def forever(e: Any) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    before = asyncio.all_tasks()
    sock = connect(AiFlowAssistant(on_user_speak=forever, hold_after=30))
    sock.send(event("user_speak", text="x"))
    sock.send(event("user_speak", text="queued behind"))
    await asyncio.wait_for(started.wait(), 5)
    await sock.close()
    assert cancelled == [True]
    assert asyncio.all_tasks() - before == set()


async def test_frames_go_out_whole_and_in_order_while_a_send_is_slow(
    caplog: pytest.LogCaptureFixture,
):
    # A library whose send waits (back-pressure): the others queue behind it, in order, and a
    # sender cancelled while queued does not block the rest.
    gate = asyncio.Event()
    sent: list[Any] = []

    async def send_text(text: str) -> None:
        if not sent and not gate.is_set():
            sent.append("writing")
            await gate.wait()
            sent[0] = json.loads(text)
            return
        sent.append(json.loads(text))

    inbox: asyncio.Queue[str | None] = asyncio.Queue()
    assistant = AiFlowAssistant(on_user_speak=lambda e: e.text)
    serving = asyncio.create_task(serve_websocket(assistant, inbox.get, send_text))
    for n, sid in enumerate(("a", "b", "c", "d")):
        inbox.put_nowait(event("user_speak", sid, text=f"{n}"))
    await asyncio.sleep(0.05)
    assert sent == ["writing"]  # "a" is being written; b, c and d wait their turn
    others = asyncio.all_tasks() - {serving, asyncio.current_task()}
    # a (writing), b, c, d: each a task now, since each had to wait
    stuck = sorted(others, key=lambda t: int(t.get_name().rpartition("-")[2]))
    assert len(stuck) == 4
    assert all(".serve" in repr(t.get_coro()) for t in stuck)
    gate.set()
    await asyncio.sleep(0)  # a's write ends and hands b its turn; b runs next, then c
    stuck[2].cancel()  # c gives up while queued: b's turn ends by skipping c for d
    await asyncio.sleep(0.05)
    assert sent == [speak("0", "a"), speak("1", "b"), speak("3", "d")]
    inbox.put_nowait(event("user_speak", "a", text="again"))
    await asyncio.sleep(0.05)
    assert sent[-1] == speak("again", "a")  # the lane is free again
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # c left cleanly
    inbox.put_nowait(None)
    await asyncio.wait_for(serving, 5)


async def test_a_failed_send_closes_the_socket_for_sending_and_is_logged(
    caplog: pytest.LogCaptureFixture,
):
    attempts: list[str] = []

    async def send_text(text: str) -> None:
        attempts.append(text)
        raise ConnectionResetError("peer gone")

    inbox: asyncio.Queue[str | None] = asyncio.Queue()
    assistant = AiFlowAssistant(on_user_speak=lambda e: e.text)
    serving = asyncio.create_task(serve_websocket(assistant, inbox.get, send_text))
    with caplog.at_level(logging.INFO, logger="sipgate_ai_flow.transport"):
        inbox.put_nowait(event("user_speak", text="one"))
        inbox.put_nowait(event("user_speak", text="two"))
        await asyncio.sleep(0.05)
    assert len(attempts) == 1  # nothing more goes out on a socket that failed
    assert "WebSocket send failed, connection closed: peer gone" in caplog.text
    inbox.put_nowait(None)
    await asyncio.wait_for(serving, 5)


async def test_a_handler_raising_cancelled_error_ends_its_event_not_the_socket(
    connect: Any, caplog: pytest.LogCaptureFixture
):
    async def on_speak(e: UserSpeakEvent) -> str:
        if e.text == "cancel me":
            raise asyncio.CancelledError  # e.g. awaited a future someone cancelled
        return e.text

    sock = connect(AiFlowAssistant(on_user_speak=on_speak))
    sock.send(event("user_speak", text="cancel me"))
    sock.send(event("user_speak", text="still here"))
    assert await sock.receive() == speak("still here")
    assert "handling of user_speak (session call-1) was cancelled" in caplog.text


# -- the ASGI endpoint -----------------------------------------------------------------------


def test_asgi_websocket_endpoint_with_token():
    assistant = AiFlowAssistant(on_user_speak=lambda e: e.text.upper(), webhook_token="tok")
    with TestClient(create_app(assistant)) as client:
        with client.websocket_connect("/ws", headers={"X-API-TOKEN": "tok"}) as ws:
            ws.send_text("garbage")
            ws.send_text(event("user_speak", text="hi"))
            assert ws.receive_json() == speak("HI")
        for headers in ({"X-API-TOKEN": "wrong"}, {}):
            with (
                pytest.raises(WebSocketDenialResponse) as refused,
                client.websocket_connect("/ws", headers=headers),
            ):
                pass
            assert refused.value.status_code == 401
            assert refused.value.json() == {"error": "Unauthorized"}
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/elsewhere"):
            pass
