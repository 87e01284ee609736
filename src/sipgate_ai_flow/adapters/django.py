"""Django: an async webhook view and URL patterns (``webhook``, ``health``).

Example (``urls.py``)::

    from django.urls import include, path
    from sipgate_ai_flow.adapters.django import urlpatterns as aiflow_urls

    urlpatterns = [path("aiflow/", include(aiflow_urls(assistant)))]
    # POST /aiflow/webhook, GET /aiflow/health

The view is CSRF-exempt (the service authenticates with ``X-API-TOKEN``). Under ASGI it runs
on the server's event loop; under WSGI (where Django would start a new loop per request) it
hands the work to one long-lived, process-wide loop, so handlers that outlive their reply keep
running. Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` applies as well as ``max_body_size``.

WebSockets: Django has none; serve ``assistant.asgi()`` beside Django's ASGI app, e.g. in
``asgi.py``::

    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()
    aiflow_app = assistant.asgi(webhook_path="/aiflow/webhook", websocket_path="/aiflow/ws")

    async def application(scope, receive, send):
        if scope["type"] == "websocket" or scope["type"] == "lifespan":
            await aiflow_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import RequestDataTooBig  # type: ignore[import-untyped]
from django.core.handlers.asgi import ASGIRequest  # type: ignore[import-untyped]
from django.http import (  # type: ignore[import-untyped]
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.urls import path  # type: ignore[import-untyped]

from .. import _bridge
from ..asgi import DEFAULT_MAX_BODY
from ..webhook import HttpResponse as CoreResponse
from ..webhook import error_response, handle_webhook

if TYPE_CHECKING:
    from ..assistant import AiFlowAssistant

__all__ = ["shutdown", "urlpatterns", "webhook_view"]

View = Callable[[HttpRequest], Awaitable[HttpResponse]]


def webhook_view(assistant: AiFlowAssistant, max_body_size: int = DEFAULT_MAX_BODY) -> View:
    """An async, CSRF-exempt view answering ``POST`` with the webhook exchange.

    Other methods get ``405``; bodies over ``max_body_size`` bytes ``413``; the
    ``X-API-TOKEN`` header is checked against ``assistant.webhook_token`` (``401``).
    """

    async def view(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        declared = request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_size:
            return _too_big(max_body_size)
        try:
            body: bytes = request.body
        except RequestDataTooBig:
            return _too_big(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if len(body) > max_body_size:
            return _too_big(max_body_size)
        exchange = handle_webhook(assistant, body, request.headers.get("X-API-TOKEN"))
        if isinstance(request, ASGIRequest):  # the server's loop lives on: run here
            return _response(await exchange)
        return _response(await asyncio.wrap_future(_bridge.submit(exchange)))

    # What @csrf_exempt does; the decorator accepts async views only from Django 5.0.
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def urlpatterns(
    assistant: AiFlowAssistant, prefix: str = "", *, max_body_size: int = DEFAULT_MAX_BODY
) -> list[Any]:
    """``path()`` entries for ``{prefix}webhook`` and ``{prefix}health`` (e.g. ``"aiflow/"``)."""
    return [
        path(f"{prefix}webhook", webhook_view(assistant, max_body_size), name="aiflow-webhook"),
        path(f"{prefix}health", _health, name="aiflow-health"),
    ]


def _health(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return JsonResponse({"status": "ok"})


def _too_big(limit: int) -> HttpResponse:
    return _response(error_response(413, f"Request body larger than {limit} bytes"))


def _response(response: CoreResponse) -> HttpResponse:
    result = HttpResponse(response.body, status=response.status, headers=dict(response.headers))
    if response.content_type is None:
        del result.headers["Content-Type"]  # Django would add text/html
    return result


def shutdown(assistant: AiFlowAssistant) -> None:
    """Release what the assistant holds (handlers still running, the outbound client) on the
    loop the views use; call it when the process stops, e.g. with ``atexit.register``."""
    _bridge.run(assistant.aclose())
