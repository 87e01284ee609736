"""The ASGI app over real sockets: uvicorn, httpx and the websockets client."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from sipgate_ai_flow import AiFlowAssistant, UserSpeakEvent

TOKEN = "live-token"


def event(event_type: str, session_id: str = "call-1", **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "session": {"id": session_id}, **fields}


def make_assistant(release: threading.Event) -> AiFlowAssistant:
    def slow(e: UserSpeakEvent) -> str:  # sync: runs in a worker thread of the server
        if e.text == "slow":
            assert release.wait(10)
            return "Finally done."
        return f"You said {e.text}"

    return AiFlowAssistant(
        on_user_speak=slow,
        on_assistant_speech_ended=lambda e: None,
        webhook_token=TOKEN,
        hold_after=0.1,
        hold_reply="Hold on.",
    )


async def test_webhook_over_a_real_socket_answers_before_a_slow_handler_ends(live_server: Any):
    release = threading.Event()
    server = live_server(make_assistant(release).asgi())
    headers = {"X-API-TOKEN": TOKEN}
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        refused = await client.post("/webhook", json=event("user_speak", text="hi"))
        assert refused.status_code == 401
        quick = await client.post("/webhook", json=event("user_speak", text="hi"), headers=headers)
        assert quick.json() == {"type": "speak", "session_id": "call-1", "text": "You said hi"}
        # The handler blocks until released; the hold reply must arrive anyway.
        held = await client.post("/webhook", json=event("user_speak", text="slow"), headers=headers)
        assert held.json() == {"type": "speak", "session_id": "call-1", "text": "Hold on."}
        release.set()
        later = await client.post("/webhook", json=event("assistant_speech_ended"), headers=headers)
        assert later.json() == {"type": "speak", "session_id": "call-1", "text": "Finally done."}


async def test_websocket_over_a_real_socket(live_server: Any):
    release = threading.Event()
    server = live_server(make_assistant(release).asgi())
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{server.ws_url}/ws"):
            pass
    assert refused.value.response.status_code == 401

    async with websockets.connect(
        f"{server.ws_url}/ws", additional_headers={"X-API-TOKEN": TOKEN}
    ) as ws:
        await ws.send("not an event")  # ignored; the socket stays open
        await ws.send(json.dumps(event("user_speak", text="slow")))
        assert json.loads(await ws.recv()) == {
            "type": "speak",
            "session_id": "call-1",
            "text": "Hold on.",
        }
        await ws.send(json.dumps(event("user_speak", "call-2", text="hello")))
        assert json.loads(await ws.recv())["text"] == "You said hello"  # not delayed by call-1
        release.set()
        assert json.loads(await ws.recv())["text"] == "Finally done."
