"""Flask: the assistant as a ``Blueprint`` (``POST /webhook``, ``GET /health``).

Example::

    from flask import Flask
    from sipgate_ai_flow.adapters.flask import create_blueprint

    app = Flask(__name__)
    app.register_blueprint(create_blueprint(assistant), url_prefix="/aiflow")
    # POST /aiflow/webhook, GET /aiflow/health

The views are sync; each runs the async core on one long-lived, process-wide event loop in a
daemon thread (never a new loop per request), so handlers that outlive their reply keep
running and their actions go out with the call's next reply. Async handlers run on that loop,
sync handlers in its worker threads. Pending handlers are dropped when the process exits.

WebSocket is out of scope for Flask: serve ``assistant.asgi()`` (``/ws``) under an ASGI server
such as uvicorn beside the Flask app, or use the FastAPI adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from .. import _bridge
from ..asgi import DEFAULT_MAX_BODY
from ..webhook import HttpResponse, error_response, handle_webhook

if TYPE_CHECKING:
    from ..assistant import AiFlowAssistant

__all__ = ["create_blueprint", "shutdown"]

_CHUNK = 64 * 1024


def create_blueprint(
    assistant: AiFlowAssistant,
    webhook_path: str = "/webhook",
    name: str = "aiflow",
    max_body_size: int = DEFAULT_MAX_BODY,
    *,
    health_path: str = "/health",
) -> Blueprint:
    """A blueprint with ``POST webhook_path`` and ``GET health_path``.

    Bodies over ``max_body_size`` bytes are refused with ``413``; the ``X-API-TOKEN`` header is
    checked against ``assistant.webhook_token`` (``401``).
    """
    blueprint = Blueprint(name, __name__)
    too_big = error_response(413, f"Request body larger than {max_body_size} bytes")

    @blueprint.post(webhook_path)
    def webhook() -> Response:
        body = _read_body(max_body_size)
        if body is None:
            return _response(too_big)
        token = request.headers.get("X-API-TOKEN")
        return _response(_bridge.run(handle_webhook(assistant, body, token)))

    @blueprint.get(health_path)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return blueprint


def _read_body(limit: int) -> bytes | None:
    """The body, or ``None`` when it is larger than ``limit`` (checked while reading)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := request.stream.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _response(response: HttpResponse) -> Response:
    result = Response(response.body, response.status, list(response.headers))
    if response.content_type is None:
        result.headers.pop("Content-Type", None)  # Flask would add text/html
    return result


def shutdown(assistant: AiFlowAssistant) -> None:
    """Release what the assistant holds (handlers still running, the outbound client) on the
    loop the views use; call it when the process stops, e.g. with ``atexit.register``."""
    _bridge.run(assistant.aclose())
