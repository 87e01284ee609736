"""``AiFlowAssistant``: register handlers per event; it turns events into actions."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._handlers import Handler, normalise, speak
from ._sessions import Reply, SessionRegistry
from .codec import ActionLike, dump_action, parse_event
from .context import CallContext
from .errors import ConfigurationError, HandlerError, SessionNotFoundError, StoreError
from .events import (
    BaseEvent,
    UnknownEvent,
    UserBargeInEvent,
    UserSpeakEvent,
)
from .models import SessionInfo
from .outbound import DEFAULT_BASE_URL, OutboundClient
from .state import EventScope, MemoryStore, SessionState, SessionStore, store_from_url

if TYPE_CHECKING:
    import httpx

__all__ = ["AiFlowAssistant", "ErrorReply"]

logger = logging.getLogger("sipgate_ai_flow.dispatch")

_H = TypeVar("_H", bound=Callable[..., Any])

ErrorReply = str | ActionLike | Sequence[str | ActionLike]
"""What ``error_reply`` accepts: anything a handler may return except ``None``."""

# Events the service never takes an answer for (protocol §3.2, §3.10).
_NO_REPLY = frozenset({"session_end", "user_speech_started"})


class AiFlowAssistant:
    """An AI Flow voice assistant: one handler per event type, like the TypeScript SDK.

    Handlers may be sync or async, take ``(event)`` or ``(event, ctx)``, and return a ``str``
    (spoken), an action, a ``dict`` (sent as is), a list of those (sent in order) or ``None``
    (nothing). The assistant fills ``session_id`` in every action. Sync handlers run in a
    worker thread so blocking calls never stall other calls.

    Barge-ins: a ``user_speak`` with ``barged_in=True`` (and the legacy ``user_barge_in``
    event, delivered as such a ``UserSpeakEvent``) goes to ``on_user_barge_in`` when one is
    registered, else to ``on_user_speak``.

    Example:
        >>> import asyncio
        >>> from sipgate_ai_flow import AiFlowAssistant
        >>> assistant = AiFlowAssistant(on_session_start=lambda event: "Hello! How can I help?")
        >>> @assistant.on_user_speak
        ... async def echo(event):
        ...     return f"You said: {event.text}"
        >>> event = {"type": "user_speak", "text": "hi", "session": {"id": "s1"}}
        >>> asyncio.run(assistant.handle_event(event))
        [SpeakAction(type='speak', session_id='s1', text='You said: hi', ...)]
    """

    def __init__(
        self,
        *,
        on_session_start: Callable[..., Any] | None = None,
        on_user_speech_started: Callable[..., Any] | None = None,
        on_user_speak: Callable[..., Any] | None = None,
        on_user_barge_in: Callable[..., Any] | None = None,
        on_dtmf_received: Callable[..., Any] | None = None,
        on_assistant_speak: Callable[..., Any] | None = None,
        on_assistant_speech_ended: Callable[..., Any] | None = None,
        on_user_input_timeout: Callable[..., Any] | None = None,
        on_sms_failed: Callable[..., Any] | None = None,
        on_session_end: Callable[..., Any] | None = None,
        on_unknown: Callable[..., Any] | None = None,
        on_error: Callable[..., Any] | None = None,
        error_reply: ErrorReply | None = None,
        token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        debug: bool = False,
        http_client: httpx.AsyncClient | None = None,
        webhook_token: str | None = None,
        hold_after: float | None = None,
        hold_reply: str | ActionLike | Sequence[str | ActionLike] | None = None,
        response_timeout: float = 4.5,
        store: SessionStore | str | None = None,
    ) -> None:
        """Create an assistant.

        Args:
            on_session_start ... on_session_end: handlers, one per event type (snake_case of
                the TypeScript SDK's ``onSessionStart`` ... ``onSessionEnd``); also available
                as decorators of the same name.
            on_unknown: handler for event types this SDK does not know yet.
            on_error: ``(error, event)`` or ``(error, event, ctx)``, called when a handler
                raises; what it returns is sent instead (``None``: nothing).
            error_reply: sent when a handler raises and there is no ``on_error``, e.g.
                ``"Sorry, something went wrong."``. Without either, ``handle_event`` raises
                ``HandlerError`` (HTTP transports answer 500).
            token: sipgate API token for outbound calls (``call``). ``api_key`` is the older
                name and is accepted too.
            base_url: sipgate API base URL for outbound calls.
            debug: log every event and the actions sent (logger ``sipgate_ai_flow``).
            http_client: an ``httpx.AsyncClient`` for outbound calls (tests, proxies).
            webhook_token: the shared secret ("outgoing API token" of the AI Flow). When set,
                every webhook POST and WebSocket upgrade must carry it in ``X-API-TOKEN``.
                Defaults to the ``AIFLOW_WEBHOOK_TOKEN`` environment variable.
            hold_after: seconds after which a still-running handler gets ``hold_reply`` sent
                (HTTP: as the reply; WebSocket: pushed); the real answer follows when ready
                (WebSocket) or with the reply to the call's next event (HTTP).
            hold_reply: what to say while waiting (default ``"One moment, please."``).
            response_timeout: HTTP only: the reply is sent after at most this many seconds,
                with whatever is ready (the service waits about 5 s).
            store: where per-call state (``ctx.state``), locks and queued actions live: a
                ``SessionStore`` or a URL (``redis://...``). Default: the
                ``AIFLOW_STORE_URL`` environment variable, else a ``MemoryStore`` (one process).
        """
        self._handlers: dict[str, Handler] = {}
        self._on_unknown: Handler | None = None
        self._on_error: Handler | None = None
        if api_key is not None:
            warnings.warn(
                "AiFlowAssistant(api_key=...) is the old name of token=...",
                DeprecationWarning,
                stacklevel=2,
            )
            token = token or api_key
        self._outbound = OutboundClient(token, base_url, http_client=http_client)
        self.error_reply = error_reply
        token_env = os.environ.get("AIFLOW_WEBHOOK_TOKEN")
        self.webhook_token: str | None = webhook_token or token_env or None
        if hold_after is not None and hold_after <= 0:
            raise ConfigurationError(f"hold_after must be positive seconds, got {hold_after!r}")
        if response_timeout <= 0:
            raise ConfigurationError(
                f"response_timeout must be positive seconds, got {response_timeout!r}"
            )
        self.hold_after = hold_after
        self.hold_reply = hold_reply if hold_reply is not None else "One moment, please."
        self.response_timeout = response_timeout
        self._sessions = SessionRegistry()
        if store is None:
            store = os.environ.get("AIFLOW_STORE_URL") or MemoryStore()
        self.store: SessionStore = store_from_url(store) if isinstance(store, str) else store
        self._tasks: set[asyncio.Task[Any]] = set()
        self.debug = debug
        if debug:
            logging.getLogger("sipgate_ai_flow").setLevel(logging.DEBUG)
        options = {
            "session_start": on_session_start,
            "user_speech_started": on_user_speech_started,
            "user_speak": on_user_speak,
            "user_barge_in": on_user_barge_in,
            "dtmf_received": on_dtmf_received,
            "assistant_speak": on_assistant_speak,
            "assistant_speech_ended": on_assistant_speech_ended,
            "user_input_timeout": on_user_input_timeout,
            "sms_failed": on_sms_failed,
            "session_end": on_session_end,
        }
        for event_type, fn in options.items():
            if fn is not None:
                self._register(event_type, fn)
        if on_unknown is not None:
            self.on_unknown(on_unknown)
        if on_error is not None:
            self.on_error(on_error)

    def __repr__(self) -> str:  # never show the tokens
        return f"AiFlowAssistant(handlers={sorted(self._handlers)})"

    def check_token(self, presented: str | None) -> bool:
        """Whether ``presented`` (the ``X-API-TOKEN`` header) is acceptable, in constant
        time. Always true when no ``webhook_token`` is configured."""
        expected = self.webhook_token
        if expected is None:
            return True
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode(), expected.encode())

    def asgi(self, **options: Any) -> Any:
        """This assistant as an ASGI app; see ``sipgate_ai_flow.asgi.create_app``."""
        from .asgi import create_app  # noqa: PLC0415 - keeps the core free of server code

        return create_app(self, **options)

    # -- registration -------------------------------------------------------------------------

    def _register(self, event_type: str, fn: Callable[..., Any]) -> None:
        what = f"on_{event_type} handler"
        if event_type in self._handlers:
            raise ConfigurationError(
                f"an on_{event_type} handler is already registered "
                f"({self._handlers[event_type].name}); register one handler per event type"
            )
        self._handlers[event_type] = Handler(fn, min_args=1, max_args=2, what=what)

    def on_session_start(self, handler: _H) -> _H:
        """Register the handler for ``session_start`` (decorator)."""
        self._register("session_start", handler)
        return handler

    def on_user_speech_started(self, handler: _H) -> _H:
        """Register the handler for ``user_speech_started`` (WebSocket only; its result is
        dropped, the service takes no answer)."""
        self._register("user_speech_started", handler)
        return handler

    def on_user_speak(self, handler: _H) -> _H:
        """Register the handler for ``user_speak`` (decorator)."""
        self._register("user_speak", handler)
        return handler

    def on_user_barge_in(self, handler: _H) -> _H:
        """Register the handler for barge-ins: ``user_speak`` with ``barged_in=True`` and the
        legacy ``user_barge_in`` event, both delivered as a ``UserSpeakEvent``."""
        self._register("user_barge_in", handler)
        return handler

    def on_dtmf_received(self, handler: _H) -> _H:
        """Register the handler for ``dtmf_received`` (decorator)."""
        self._register("dtmf_received", handler)
        return handler

    def on_assistant_speak(self, handler: _H) -> _H:
        """Register the handler for ``assistant_speak`` (decorator)."""
        self._register("assistant_speak", handler)
        return handler

    def on_assistant_speech_ended(self, handler: _H) -> _H:
        """Register the handler for ``assistant_speech_ended`` (decorator)."""
        self._register("assistant_speech_ended", handler)
        return handler

    def on_user_input_timeout(self, handler: _H) -> _H:
        """Register the handler for ``user_input_timeout`` (decorator)."""
        self._register("user_input_timeout", handler)
        return handler

    def on_sms_failed(self, handler: _H) -> _H:
        """Register the handler for ``sms_failed`` (decorator)."""
        self._register("sms_failed", handler)
        return handler

    def on_session_end(self, handler: _H) -> _H:
        """Register the handler for ``session_end`` (cleanup; its result is dropped)."""
        self._register("session_end", handler)
        return handler

    def on_unknown(self, handler: _H) -> _H:
        """Register the handler for event types this SDK does not know (``UnknownEvent``)."""
        if self._on_unknown is not None:
            raise ConfigurationError("an on_unknown handler is already registered")
        self._on_unknown = Handler(handler, min_args=1, max_args=2, what="on_unknown handler")
        return handler

    def on_error(self, handler: _H) -> _H:
        """Register the error hook ``(error, event)`` or ``(error, event, ctx)``: called when
        a handler raises; what it returns is sent instead."""
        if self._on_error is not None:
            raise ConfigurationError("an on_error handler is already registered")
        self._on_error = Handler(handler, min_args=2, max_args=3, what="on_error handler")
        return handler

    # -- dispatch -----------------------------------------------------------------------------

    async def handle_event(
        self, event: BaseEvent | bytes | bytearray | str | Mapping[str, Any]
    ) -> list[ActionLike]:
        """Run the handler for one event and return the actions to send, in order.

        ``event`` is an event model or a payload (JSON ``bytes``/``str`` or a ``dict``). The
        result starts with any actions pushed for the call since its previous event
        (``ctx.send``, ``push``). Raises ``InvalidEventError`` for an invalid payload and
        ``HandlerError`` when a handler fails and neither ``on_error`` nor ``error_reply``
        answers.
        """
        if not isinstance(event, BaseEvent):
            event = parse_event(event)
        answers = event.type not in _NO_REPLY
        session: SessionInfo | None = event.session
        reply = Reply(session.id if session is not None else None, self._deliver, open=answers)
        try:
            await self._dispatch(event, reply)
        except BaseException:
            await reply.abandon()
            raise
        return reply.close() if answers else []

    def state(self, session_id: str) -> SessionState:
        """The state of a call, from outside its handlers (e.g. a CRM callback)."""
        return SessionState(self.store, session_id)

    async def push(self, session_id: str, *actions: str | ActionLike) -> None:
        """Send actions to a call from outside a handler (e.g. when a CRM answers).

        Over WebSocket they are sent at once (by whichever worker holds the call's socket);
        over HTTP they go out with the reply to the call's next event. The call must be live:
        started and not ended (``SessionNotFoundError`` otherwise).
        """
        local = self._sessions.get(session_id)
        if local is None and not await self.store.exists(session_id):
            raise SessionNotFoundError(session_id)
        if local is not None and local.ended:
            raise SessionNotFoundError(session_id)
        await self._deliver(session_id, normalise(list(actions), session_id, "push"))

    async def _deliver(self, session_id: str, actions: list[ActionLike]) -> None:
        """Get actions to a call now: its WebSocket here or on another worker, else its
        outbox for the next HTTP reply."""
        if not actions:
            return
        local = self._sessions.get(session_id)
        if local is not None:
            if local.ended:
                logger.warning(
                    "%d action(s) for session %s dropped: the call has ended",
                    len(actions),
                    session_id,
                )
                return
            if local.sender is not None:
                await local.sender(actions)
                return
        payload = [dump_action(action) for action in actions]
        if not await self.store.route(session_id, payload):
            await self.store.enqueue(session_id, payload)

    async def _dispatch(
        self,
        event: BaseEvent,
        reply: Reply,
        finished: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Handle one event: take its call's lock and state, run its handler (every batch of
        actions goes to ``reply``), save the state and unlock. Raises ``HandlerError`` as
        ``handle_event`` does.

        ``finished`` runs once the handler is done and before the state is saved and the lock
        released: the HTTP transport sends its reply there, so saving costs the caller no
        time (the call's next event still waits for the lock). Events without a session
        have no lock, no state and no ``finished``.

        One coroutine from lock to unlock: every call and every await on this path is paid by
        every event, and a WebSocket server spends a good part of its time on them.
        """
        event_type = event.type
        session: SessionInfo | None = event.session
        answers = event_type not in _NO_REPLY
        session_id = None
        scope = None
        local = None
        if session is not None:
            session_id = session.id
            try:
                scope = await self.store.acquire(session_id, start=event_type == "session_start")
            except StoreError as exc:
                logger.error(
                    "state store unavailable for %s (session %s): %s",
                    event_type,
                    session_id,
                    exc,
                )
                actions = await self._failed(exc, event, None, "the state store")
                if actions and answers:
                    await reply.emit(actions)
                return
            if event_type == "session_end":  # actions pushed from now on are dropped
                local = self._sessions.open(session_id)
                local.ended = True
            if scope.outbox:
                if reply.open:
                    reply.pending = [*scope.outbox, *reply.pending]
                elif local is None:
                    await self._deliver(session_id, list(scope.outbox))
        ctx: CallContext | None = None
        try:
            handler = self._handlers.get(event_type)
            if (
                handler is None
                or event_type == "user_barge_in"
                or getattr(event, "barged_in", False)
            ):
                handler, event = self._route(event)  # barge-ins and unknown events
            if handler is not None:
                debug = logger.isEnabledFor(logging.DEBUG)
                started = time.perf_counter() if debug else 0.0
                # One-argument handlers never see a context: build it only when it can be used.
                if handler.arity > 1 or handler.streams:
                    ctx = self._context(event, reply, scope)
                count = 0
                try:
                    if handler.streams:
                        async for item in handler.iterate(event, ctx):
                            actions = normalise(item, session_id, handler.name)
                            count += len(actions)
                            if actions and answers:
                                await reply.emit(actions)
                    else:
                        if handler.direct:  # an async (event) handler: the common case, as is
                            result = await handler.fn(event)
                        else:
                            result = await handler(event, ctx)
                        if type(result) is str:
                            actions = [speak(session_id, result)]
                        else:
                            actions = normalise(result, session_id, handler.name)
                        count = len(actions)
                        if actions and answers:
                            if reply.open:
                                reply.actions.extend(actions)
                                reply.emitted = True
                            else:
                                await reply.emit(actions)
                except Exception as exc:
                    if ctx is None:
                        ctx = self._context(event, reply, scope)
                    actions = await self._failed(exc, event, ctx, handler.name)
                    if actions and answers:
                        await reply.emit(actions)
                if count and not answers:
                    logger.warning(
                        "%s returned %d action(s) for %s (session %s); the service takes no "
                        "answer to this event, so they were dropped (use ctx.send to push "
                        "actions)",
                        handler.name,
                        count,
                        event_type,
                        session_id,
                    )
                if debug:
                    logger.debug(
                        "%s session=%s handler=%s actions=%d in %.2f ms",
                        event_type,
                        session_id,
                        handler.name,
                        count,
                        (time.perf_counter() - started) * 1000,
                    )
            if finished is not None and scope is not None:
                await finished()
        finally:
            if scope is not None:
                try:
                    state = ctx._state if ctx is not None else None
                    if state is None:  # the handler never looked at its state
                        await self.store.release(scope, drop=local is not None)
                    else:
                        await self.store.release(
                            scope,
                            changes=state.changes,
                            deleted=state.deleted,
                            drop=local is not None,
                        )
                except StoreError as exc:
                    logger.error("state of session %s not saved: %s", session_id, exc)
                finally:
                    if local is not None:
                        self._sessions.close(local)

    def _route(self, event: BaseEvent) -> tuple[Handler | None, BaseEvent]:
        event_type = event.type
        handler = self._handlers.get(event_type)
        if isinstance(event, UserSpeakEvent):
            if event.barged_in:
                handler = self._handlers.get("user_barge_in", handler)
        elif isinstance(event, UserBargeInEvent):
            handler = self._handlers.get("user_barge_in") or self._handlers.get("user_speak")
            event = UserSpeakEvent(
                session=event.session, text=event.text, barged_in=True, **(event.model_extra or {})
            )
        elif handler is None and isinstance(event, UnknownEvent):
            handler = self._on_unknown
        return handler, event

    def _context(self, event: BaseEvent, reply: Reply, scope: EventScope | None) -> CallContext:
        if scope is None:
            return CallContext(event, self, reply, None, False)  # type: ignore[arg-type]
        return CallContext(event, self, reply, scope.data, scope.starts > 1)  # type: ignore[arg-type]

    async def _failed(
        self, exc: Exception, event: BaseEvent, ctx: CallContext | None, handler_name: str
    ) -> list[ActionLike]:
        session_id = event.session.id if event.session is not None else None
        if ctx is None:
            reply = Reply(session_id, self._deliver, open=False)
            ctx = CallContext(event, self, reply, None, False)  # type: ignore[arg-type]
        logger.error(
            "handler %s raised %s on %s (session %s)",
            handler_name,
            type(exc).__name__,
            event.type,
            session_id,
            exc_info=exc,
        )
        if self._on_error is not None:
            try:
                return normalise(
                    await self._on_error(exc, event, ctx), session_id, self._on_error.name
                )
            except Exception as hook_exc:
                logger.error(
                    "on_error hook %s raised %s on %s (session %s)",
                    self._on_error.name,
                    type(hook_exc).__name__,
                    event.type,
                    session_id,
                    exc_info=hook_exc,
                )
                if event.type in _NO_REPLY:
                    return []
                raise HandlerError(event.type, session_id, self._on_error.name) from hook_exc
        if self.error_reply is not None:
            return normalise(self.error_reply, session_id, "error_reply")
        if event.type in _NO_REPLY:
            return []
        raise HandlerError(event.type, session_id, handler_name) from exc

    # -- outbound calls and lifecycle ---------------------------------------------------------

    async def call(
        self, *, ai_flow_id: str, billing_device: str, to_phone_number: str
    ) -> dict[str, Any] | None:
        """Place an outbound call through the sipgate API (needs ``token``).

        When the recipient answers, the call arrives as ``session_start`` with
        ``direction="outbound"``. Returns the API's JSON body, if any; raises
        ``OutboundCallError`` with ``status_code`` and ``body`` on failure.

        Example:
            >>> assistant = AiFlowAssistant(token="...")  # doctest: +SKIP
            >>> await assistant.call(  # doctest: +SKIP
            ...     ai_flow_id="a1b2", billing_device="e2", to_phone_number="4915790000687")
        """
        return await self._outbound.call(
            ai_flow_id=ai_flow_id, billing_device=billing_device, to_phone_number=to_phone_number
        )

    async def startup(self) -> None:
        """Open what the assistant needs before serving (ASGI lifespan startup): checks the
        state store is reachable, raising ``StoreError`` with a clear message if not."""
        await self.store.connect()

    def _track(self, task: asyncio.Task[Any]) -> None:
        """Hold a background task (a handler outliving its reply) until it ends or aclose."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Release what the assistant holds: background handler tasks, the outbound client."""
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._outbound.aclose()
        await self.store.close()

    async def __aenter__(self) -> AiFlowAssistant:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
