"""FastAPI: the assistant as an ``APIRouter`` (webhook, WebSocket, health) or a mounted app.

Either include the router (FastAPI validates nothing here; the core does)::

    from fastapi import FastAPI
    from sipgate_ai_flow.adapters.fastapi import create_router, lifespan

    app = FastAPI(lifespan=lifespan(assistant))
    app.include_router(create_router(assistant), prefix="/aiflow")
    # POST /aiflow/webhook, WebSocket /aiflow/ws, GET /aiflow/health

or mount the raw ASGI app (the fastest path, no FastAPI routing per request)::

    app = FastAPI(lifespan=lifespan(assistant))
    app.mount("/aiflow", assistant.asgi())

Lifespan: routers cannot own one, and mounted apps get none from FastAPI; so either pass
``lifespan(assistant)`` as above or call ``await assistant.startup()`` and
``await assistant.aclose()`` from the app's own lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from ..asgi import DEFAULT_MAX_BODY
from ..webhook import HttpResponse, error_response, handle_webhook
from ..websocket import serve_asgi_websocket

if TYPE_CHECKING:
    from ..assistant import AiFlowAssistant

__all__ = ["create_router", "lifespan"]

logger = logging.getLogger("sipgate_ai_flow.transport")


def create_router(
    assistant: AiFlowAssistant,
    webhook_path: str = "/webhook",
    websocket_path: str = "/ws",
    max_body_size: int = DEFAULT_MAX_BODY,
    *,
    health_path: str = "/health",
) -> APIRouter:
    """A router with ``POST webhook_path``, WebSocket ``websocket_path`` and ``GET health_path``.

    Bodies over ``max_body_size`` bytes are refused with ``413``; the ``X-API-TOKEN`` header is
    checked against ``assistant.webhook_token`` (``401``, or a refused WebSocket upgrade).
    """
    router = APIRouter()
    too_big = error_response(413, f"Request body larger than {max_body_size} bytes")

    @router.post(webhook_path)
    async def webhook(request: Request) -> Response:
        body = await _read_body(request, max_body_size)
        if body is None:
            return _response(too_big)
        token = request.headers.get("x-api-token")
        return _response(await handle_webhook(assistant, body, token))

    @router.websocket(websocket_path)
    async def websocket(ws: WebSocket) -> None:
        if not assistant.check_token(ws.headers.get("x-api-token")):
            logger.warning("WebSocket upgrade refused: missing or wrong X-API-TOKEN")
            extensions = ws.scope.get("extensions", {})
            # send_denial_response: Starlette 0.37+ (FastAPI 0.110 still has an older one).
            if "websocket.http.response" in extensions and hasattr(ws, "send_denial_response"):
                await ws.send_denial_response(JSONResponse({"error": "Unauthorized"}, 401))
            else:
                await ws.close(code=1008)
            return
        await ws.accept()
        await serve_asgi_websocket(assistant, ws.receive, ws.send)

    @router.api_route(health_path, methods=["GET", "HEAD"], include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return router


def lifespan(assistant: AiFlowAssistant) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """For ``FastAPI(lifespan=lifespan(assistant))``: ``startup()`` before serving, ``aclose()``
    after."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        await assistant.startup()
        try:
            yield
        finally:
            await assistant.aclose()

    return run


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` when it is larger than ``limit`` (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _response(response: HttpResponse) -> Response:
    return Response(response.body, response.status, dict(response.headers))
