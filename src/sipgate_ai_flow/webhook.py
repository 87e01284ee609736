"""The HTTP webhook exchange of protocol §8, free of any web framework.

A request body and the ``X-API-TOKEN`` header go in; an ``HttpResponse`` comes out:

===============================================  =============================================
no action / ``session_end`` / unknown event      ``204``
one action                                       ``200`` with the JSON object
several actions                                  ``200`` with a JSON array, in order
invalid JSON or event                            ``400 {"error": "Invalid event format", ...}``
missing or wrong token                           ``401 {"error": "Unauthorized"}``
handler failure (no ``on_error``/``error_reply``)  ``500 {"error": "Internal server error"}``
===============================================  =============================================

The reply follows the rules of ``sipgate_ai_flow.reply``: it goes out within
``response_timeout`` (or with the hold reply after ``hold_after``) even when the handler is
still running; what it produces later goes out with the reply to the call's next event.
Framework adapters call ``handle_webhook``; the ASGI app calls ``serve_webhook`` with its own
``respond`` so the fast path creates no task.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow import AiFlowAssistant
    >>> assistant = AiFlowAssistant(on_session_start=lambda event: "Hello!")
    >>> body = b'{"type": "session_start", "session": {"id": "s1"}}'
    >>> response = asyncio.run(handle_webhook(assistant, body, token=None))
    >>> response.status, response.body
    (200, b'{"type":"speak","session_id":"s1","text":"Hello!"}')
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple

from .actions import BaseAction
from .codec import ActionLike, dump_actions, parse_event
from .errors import HandlerError, InvalidActionError, InvalidEventError
from .events import NO_REPLY_EVENTS
from .reply import Reply

if TYPE_CHECKING:
    from .assistant import AiFlowAssistant

__all__ = ["HttpResponse", "handle_webhook", "serve_webhook"]

logger = logging.getLogger("sipgate_ai_flow.transport")

_JSON = (("content-type", "application/json"),)


class HttpResponse(NamedTuple):
    """A framework-neutral HTTP response (a named tuple: cheap to build on the hot path)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def content_type(self) -> str | None:
        return dict(self.headers).get("content-type")


def error_response(status: int, error: str, details: list[str] | None = None) -> HttpResponse:
    payload: dict[str, object] = {"error": error}
    if details is not None:
        payload["details"] = details
    return HttpResponse(status, json.dumps(payload).encode(), _JSON)


NO_CONTENT = HttpResponse(204)
UNAUTHORIZED = error_response(401, "Unauthorized")
SERVER_ERROR = error_response(500, "Internal server error")

Respond = Callable[[HttpResponse], Coroutine[Any, Any, None]]


def actions_response(actions: list[ActionLike]) -> HttpResponse:
    if len(actions) == 1:  # the common case, straight to JSON
        action = actions[0]
        if isinstance(action, BaseAction) and action.session_id is not None:
            return HttpResponse(
                200, action.__pydantic_serializer__.to_json(action, exclude_none=True), _JSON
            )
    try:
        body = dump_actions(actions)
    except InvalidActionError as exc:
        logger.error("reply could not be serialised: %s", exc)
        return SERVER_ERROR
    return NO_CONTENT if body is None else HttpResponse(200, body, _JSON)


async def serve_webhook(
    assistant: AiFlowAssistant, body: bytes, token: str | None, respond: Respond
) -> None:
    """Handle one webhook request; call ``respond`` exactly once, in time.

    ``respond`` may be called from another task when the budget runs out; this coroutine
    returns only after the response went out and the handler finished.
    """
    if assistant.webhook_token is not None and not assistant.check_token(token):
        logger.warning("webhook request refused: missing or wrong X-API-TOKEN")
        await respond(UNAUTHORIZED)
        return
    try:
        event = parse_event(body)
    except InvalidEventError as exc:
        logger.warning("invalid event refused (400): %s", "; ".join(exc.details))
        await respond(error_response(400, "Invalid event format", exc.details))
        return
    runtime = assistant.runtime
    session = event.session
    session_id = session.id if session is not None else None
    if event.type in NO_REPLY_EVENTS:
        # These take no answer: 204 at once; the handler runs after the call's earlier events.
        await respond(NO_CONTENT)
        await runtime.dispatch(event, Reply(runtime, session_id, False))
        return
    await runtime.dispatch(event, _Exchange(runtime, session_id, True, respond))


class _Exchange(Reply):
    """One webhook request: its reply is the HTTP response (``channel``: the ``respond``)."""

    __slots__ = ()

    async def send(self, actions: list[ActionLike]) -> None:
        await self.channel(actions_response(actions))

    async def send_failure(self, error: HandlerError) -> None:
        await self.channel(SERVER_ERROR)


async def handle_webhook(
    assistant: AiFlowAssistant, body: bytes, token: str | None
) -> HttpResponse:
    """Handle one webhook request and return the response as soon as it is due.

    For framework adapters: a handler still running when the response goes out keeps running
    in the background (held by the assistant until ``aclose``).
    """
    ready: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    async def respond(response: HttpResponse) -> None:
        if not ready.done():
            ready.set_result(response)

    return await assistant.runtime.respond(serve_webhook(assistant, body, token, respond), ready)
