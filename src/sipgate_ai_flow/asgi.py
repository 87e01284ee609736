"""The assistant as a plain ASGI app: webhook, WebSocket, health check and lifespan.

Written against the ASGI spec directly (no framework on the hot path), so it runs under any
ASGI server (uvicorn, hypercorn, granian) and mounts into FastAPI or Starlette.

Example:
    >>> from sipgate_ai_flow import AiFlowAssistant
    >>> from sipgate_ai_flow.asgi import create_app
    >>> app = create_app(AiFlowAssistant(on_session_start=lambda event: "Hello!"))
    >>> # uvicorn module:app  ->  POST /webhook, WebSocket /ws, GET /health
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from .webhook import HttpResponse, error_response, serve_webhook
from .websocket import serve_asgi_websocket

if TYPE_CHECKING:
    from .assistant import AiFlowAssistant

__all__ = ["AiFlowApp", "create_app"]

logger = logging.getLogger("sipgate_ai_flow.transport")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY = 1024 * 1024
_TOKEN_HEADER = b"x-api-token"
_HEALTH = HttpResponse(
    200, json.dumps({"status": "ok"}).encode(), (("content-type", "application/json"),)
)
_NOT_FOUND = error_response(404, "Not found")


def create_app(
    assistant: AiFlowAssistant,
    webhook_path: str = "/webhook",
    websocket_path: str = "/ws",
    *,
    health_path: str = "/health",
    max_body_size: int = DEFAULT_MAX_BODY,
) -> AiFlowApp:
    """Serve ``assistant`` over HTTP webhook and WebSocket as an ASGI app.

    Args:
        assistant: the assistant whose handlers answer every event.
        webhook_path: where the AI Flow service POSTs events.
        websocket_path: where the AI Flow service opens one WebSocket per call.
        health_path: ``GET`` answers ``{"status": "ok"}``.
        max_body_size: larger webhook bodies are refused with ``413``.
    """
    return AiFlowApp(
        assistant,
        webhook_path=webhook_path,
        websocket_path=websocket_path,
        health_path=health_path,
        max_body_size=max_body_size,
    )


class AiFlowApp:
    """The ASGI app built by ``create_app``; ``.assistant`` is the assistant it serves."""

    def __init__(
        self,
        assistant: AiFlowAssistant,
        *,
        webhook_path: str,
        websocket_path: str,
        health_path: str,
        max_body_size: int,
    ) -> None:
        self.assistant = assistant
        self.webhook_path = webhook_path
        self.websocket_path = websocket_path
        self.health_path = health_path
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- HTTP ---------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope) if scope.get("root_path") else scope["path"]
        method = scope["method"]

        async def respond(response: HttpResponse) -> None:
            headers = [
                *_encoded(response.headers),
                (b"content-length", str(len(response.body)).encode()),
            ]
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": response.body})

        if path == self.webhook_path:
            if method != "POST":
                await respond(_method_not_allowed("POST"))
                return
            token = declared = None
            for key, value in scope["headers"]:  # one pass over the headers
                if key == _TOKEN_HEADER:
                    token = bytes(value).decode("latin-1")
                elif key == b"content-length":
                    declared = bytes(value)
            body = await self._read_body(declared, receive)
            if body is None:
                await respond(
                    error_response(413, f"Request body larger than {self.max_body_size} bytes")
                )
                return
            await serve_webhook(self.assistant, body, token, respond)
        elif path == self.health_path:
            if method in ("GET", "HEAD"):
                await respond(_HEALTH)
            else:
                await respond(_method_not_allowed("GET, HEAD"))
        else:
            await respond(_NOT_FOUND)

    async def _read_body(self, declared: bytes | None, receive: Receive) -> bytes | None:
        limit = self.max_body_size
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        message = await receive()  # events are small: nearly always one message
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")
            return body if len(body) <= limit else None
        chunks: list[bytes] = []
        if message["type"] == "http.disconnect":
            return b""
        chunks.append(message.get("body", b""))
        if len(chunks[0]) > limit:
            return None
        size = len(chunks[0])
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- WebSocket ----------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if _route_path(scope) != self.websocket_path:
            await send({"type": "websocket.close", "code": 1008})
            return
        if not self.assistant.check_token(_header(scope, _TOKEN_HEADER)):
            logger.warning("WebSocket upgrade refused: missing or wrong X-API-TOKEN")
            if "websocket.http.response" in scope.get("extensions", {}):
                response = error_response(401, "Unauthorized")
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "websocket.http.response.body", "body": response.body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        await serve_asgi_websocket(self.assistant, receive, send)

    # -- lifespan -----------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.assistant.startup()
                except Exception as exc:
                    logger.exception("assistant startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.assistant.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


@functools.lru_cache(maxsize=64)
def _encoded(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _method_not_allowed(allow: str) -> HttpResponse:
    response = error_response(405, "Method not allowed")
    return HttpResponse(405, response.body, (*response.headers, ("allow", allow)))
