"""The Python servers of the HTTP webhook benchmark (``bench.http``).

Each answers a POSTed ``user_speak`` event on ``/webhook`` with the speak action
``{"type": "speak", "session_id": ..., "text": "You said: ..."}`` and any other event with
``204``. They are factories so that ``uvicorn --factory`` and gunicorn (``module:flask_app()``)
build them in the server process:

* ``sdk_app``: the SDK's own ASGI app, ``create_app(AiFlowAssistant(on_user_speak=...))``;
* ``ceiling_app``: the same work by hand on raw ASGI (read body, ``json.loads``, build the
  dict, ``json.dumps``, send): what any ASGI app can at best reach under the same server;
* ``fastapi_app``: a FastAPI route doing the same (``await request.json()``, return a dict);
* ``flask_app``: the documentation's Flask webhook handler (``request.json``/``jsonify``).

The Express handler of the documentation lives in ``bench/node/server.js``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request, Response
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from sipgate_ai_flow import AiFlowAssistant, UserSpeakEvent
from sipgate_ai_flow.asgi import AiFlowApp, create_app

__all__ = ["ceiling_app", "fastapi_app", "flask_app", "sdk_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBHOOK_PATH = "/webhook"


def sdk_app() -> AiFlowApp:
    """The SDK app: a typed ``on_user_speak`` handler echoing the caller."""

    async def echo(event: UserSpeakEvent) -> str:
        return f"You said: {event.text}"

    return create_app(AiFlowAssistant(on_user_speak=echo))


def ceiling_app() -> ASGIApp:
    """The ceiling: the webhook written by hand against the ASGI spec, nothing else."""
    json_headers = [(b"content-type", b"application/json")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != WEBHOOK_PATH or scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        event = json.loads(body)
        if event["type"] != "user_speak":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        payload = json.dumps(
            {
                "type": "speak",
                "session_id": event["session"]["id"],
                "text": f"You said: {event['text']}",
            },
            separators=(",", ":"),
        ).encode()
        headers = [*json_headers, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def fastapi_app() -> FastAPI:
    """A FastAPI route doing the same: ``await request.json()``, return a dict."""
    app = FastAPI()

    @app.post(WEBHOOK_PATH, response_model=None)
    async def webhook(request: Request) -> dict[str, str] | Response:
        event = await request.json()
        if event["type"] == "user_speak":
            return {
                "type": "speak",
                "session_id": event["session"]["id"],
                "text": f"You said: {event['text']}",
            }
        return Response(status_code=204)

    return app


def flask_app() -> Flask:
    """The documentation pages' Flask webhook handler, answering ``user_speak``."""
    app = Flask(__name__)

    @app.route(WEBHOOK_PATH, methods=["POST"])
    def webhook() -> ResponseReturnValue:
        event: Any = request.json
        session_id = event["session"]["id"]

        if event["type"] == "user_speak":
            return jsonify(
                {
                    "type": "speak",
                    "session_id": session_id,
                    "text": f"You said: {event['text']}",
                }
            )

        return "", 204

    return app
