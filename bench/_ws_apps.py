"""The servers of the WebSocket and memory benchmarks (``bench.websocket``, ``bench.memory``).

Both answer ``session_start`` with ``{"type": "speak", "session_id": ..., "text":
"Welcome"}`` and ``user_speak`` with ``"You said: <text>"``, byte for byte the same frame,
and nothing for other events:

* ``sdk_app``: the SDK's ASGI app, ``create_app(AiFlowAssistant(...))`` with two typed
  handlers, served by uvicorn as ``aiflow serve`` serves it (also over HTTP: ``/webhook``);
* ``python -m bench._ws_apps PORT``: the ``websockets`` library's own asyncio server on
  uvloop (the loop ``aiflow serve`` uses), its handler doing the same work by hand
  (``json.loads``, build the dict, ``json.dumps``, send): the baseline;
* ``ceiling_app``: that handler as a raw ASGI app under the SDK app's uvicorn settings: what
  any ASGI app can at best reach there, which splits the SDK's cost from uvicorn's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvloop
from websockets.asyncio.server import ServerConnection, serve

from sipgate_ai_flow import AiFlowAssistant, SessionStartEvent, UserSpeakEvent
from sipgate_ai_flow.asgi import AiFlowApp, create_app

__all__ = ["GREETING", "ceiling_app", "raw_handler", "reply", "sdk_app", "serve_raw"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GREETING = "Welcome"


def sdk_app() -> AiFlowApp:
    """The SDK app: greets on ``session_start``, echoes ``user_speak``."""

    async def greet(event: SessionStartEvent) -> str:
        return GREETING

    async def echo(event: UserSpeakEvent) -> str:
        return f"You said: {event.text}"

    return create_app(AiFlowAssistant(on_session_start=greet, on_user_speak=echo))


def reply(message: str | bytes) -> str | None:
    """The hand-written work per frame: parse the event, build the speak action (or none)."""
    event = json.loads(message)
    kind = event["type"]
    if kind == "user_speak":
        text = f"You said: {event['text']}"
    elif kind == "session_start":
        text = GREETING
    else:
        return None
    return json.dumps(
        {"type": "speak", "session_id": event["session"]["id"], "text": text},
        separators=(",", ":"),
    )


async def raw_handler(ws: ServerConnection) -> None:
    """One call's socket on the ``websockets`` server: the same replies as the SDK app."""
    async for message in ws:
        answer = reply(message)
        if answer is not None:
            await ws.send(answer)


def ceiling_app() -> ASGIApp:
    """The same handler on raw ASGI: accept, then answer every text frame in order."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "websocket":
            return
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            answer = reply(message.get("text") or message.get("bytes") or b"")
            if answer is not None:
                await send({"type": "websocket.send", "text": answer})

    return app


async def serve_raw(port: int) -> None:
    """The ``websockets`` server on 127.0.0.1:``port`` until killed."""
    async with serve(raw_handler, "127.0.0.1", port) as server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve_raw(int(sys.argv[1])))
