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

The reply is sent within the assistant's response budget (``hold_after``, else
``response_timeout``) even when the handler is still running; what it produces later goes out
with the reply to the call's next event. Framework adapters call ``handle_webhook``; the ASGI
app calls ``serve_webhook`` with its own ``respond`` so the fast path creates no task.

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
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple

from ._handlers import normalise
from ._sessions import Reply
from .actions import BaseAction
from .codec import ActionLike, dump_actions, parse_event
from .errors import HandlerError, InvalidActionError, InvalidEventError

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

    session = event.session
    session_id = session.id if session is not None else None
    if event.type in ("session_end", "user_speech_started"):
        # These take no answer: 204 at once; the handler runs after the call's earlier events.
        await respond(NO_CONTENT)
        await assistant._dispatch(event, Reply(session_id, assistant._deliver, open=False))
        return

    reply = exchange = _Exchange(assistant, session_id, respond, event.type)
    deadlines = _current
    if deadlines is None or deadlines.loop is not asyncio.get_running_loop():
        deadlines = _deadlines()
    deadlines._due[exchange] = deadlines.loop.time() + exchange.budget
    if deadlines._handle is None:
        deadlines.start()
    try:
        await assistant._dispatch(event, reply, exchange.send_reply)
    except HandlerError:
        if reply.open:
            await reply.abandon()  # pending actions wait for the next event
            await respond(SERVER_ERROR)
    except BaseException:
        await reply.abandon()
        raise
    else:
        if reply.open:  # events without a session skip _dispatch's hook
            await respond(actions_response(reply.close()))
    finally:
        deadlines._due.pop(exchange, None)
        if exchange.early is not None:
            await exchange.early


_TICK = 0.02  # resolution of reply deadlines, in seconds


class _Exchange(Reply):
    """One webhook request: its reply, which must go out within the assistant's budget."""

    __slots__ = ("assistant", "budget", "early", "event_type", "respond")

    def __init__(
        self,
        assistant: AiFlowAssistant,
        session_id: str | None,
        respond: Respond,
        event_type: str,
    ) -> None:
        # Reply's fields, set here rather than through super().__init__: one call less per
        # request on the hot path.
        self.session_id = session_id
        self.deliver = assistant._deliver
        self.open = True
        self.actions: list[ActionLike] = []
        self.pending: list[ActionLike] = []
        self.emitted = False
        self.assistant = assistant
        self.respond = respond
        self.event_type = event_type
        self.early: asyncio.Task[None] | None = None
        hold_after = assistant.hold_after
        budget = assistant.response_timeout
        self.budget = budget if hold_after is None else min(budget, hold_after)

    async def send_reply(self) -> None:
        """Reply now, if the budget did not already (``_dispatch`` calls this before saving
        the call's state)."""
        if self.open:
            await self.respond(actions_response(self.close()))

    def expire(self) -> None:
        """The budget is spent: reply now with what is ready, or the hold reply."""
        reply = self
        if not reply.open:
            return
        assistant = self.assistant
        actions = reply.close()
        if not actions and assistant.hold_after is not None:
            actions = normalise(assistant.hold_reply, reply.session_id, "hold_reply")
        logger.info(
            "%s (session %s) still running after %.2f s: replied with %d action(s); the rest "
            "follows with the next event's reply",
            self.event_type,
            reply.session_id,
            self.budget,
            len(actions),
        )
        loop = asyncio.get_running_loop()
        self.early = loop.create_task(self.respond(actions_response(actions)))


class _Deadlines:
    """One timer ticking for all open replies of a loop, instead of a timer per request
    (each of which would sit, cancelled, in the loop's heap for the whole budget)."""

    __slots__ = ("_due", "_handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: dict[_Exchange, float] = {}
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = self.loop.call_later(_TICK, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for exchange in [e for e, at in self._due.items() if at <= now]:
            del self._due[exchange]
            exchange.expire()
        self._handle = self.loop.call_later(_TICK, self._tick) if self._due else None


_current: _Deadlines | None = None


def _deadlines() -> _Deadlines:
    global _current  # noqa: PLW0603 - one per event loop; the common case is one loop
    loop = asyncio.get_running_loop()
    if _current is None or _current.loop is not loop:
        _current = _by_loop.get(loop)
        if _current is None:
            _current = _by_loop[loop] = _Deadlines(loop)
    return _current


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)


async def handle_webhook(
    assistant: AiFlowAssistant, body: bytes, token: str | None
) -> HttpResponse:
    """Handle one webhook request and return the response as soon as it is due.

    For framework adapters: a handler still running when the response goes out keeps running
    in the background (held by the assistant until ``aclose``).
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[HttpResponse] = loop.create_future()

    async def respond(response: HttpResponse) -> None:
        if not ready.done():
            ready.set_result(response)

    task = loop.create_task(serve_webhook(assistant, body, token, respond))
    assistant._track(task)

    def finished(done: asyncio.Task[None]) -> None:
        if ready.done():
            return
        if done.cancelled():
            ready.cancel()
        elif done.exception() is not None:
            ready.set_exception(done.exception())  # type: ignore[arg-type]
        else:  # pragma: no cover - serve_webhook always responds
            ready.set_result(SERVER_ERROR)

    task.add_done_callback(finished)
    return await ready
