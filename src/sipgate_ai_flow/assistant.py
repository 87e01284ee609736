"""``AiFlowAssistant``: register handlers per event; it turns events into actions."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from ._handlers import DEFAULT_SYNC_HANDLER_THREADS, normalise
from .codec import ActionLike, parse_event
from .errors import ConfigurationError, HandlerError, SessionNotFoundError
from .events import HANDLER_EVENTS, NO_REPLY_EVENTS, BaseEvent
from .outbound import DEFAULT_BASE_URL, OutboundClient
from .reply import Reply, ReplyRules
from .runtime import CallRuntime, Middleware
from .state import MemoryStore, SessionState, SessionStore, store_from_url

if TYPE_CHECKING:
    import httpx

__all__ = ["AiFlowAssistant", "ErrorReply", "HandlerDecorator"]

_H = TypeVar("_H", bound=Callable[..., Any])
_M = TypeVar("_M", bound=Middleware)

ErrorReply = str | ActionLike | Sequence[str | ActionLike]
"""What ``error_reply`` accepts: anything a handler may return except ``None``."""


class HandlerDecorator(Protocol):
    """``assistant.on_<event>``: registers the handler it decorates and returns it as is."""

    def __call__(self, handler: _H, /) -> _H: ...


class _OnEvent:
    """The ``on_<event>`` decorators: the event type is the attribute's name, checked against
    ``events.HANDLER_EVENTS`` when the class is built, so no list of names is kept here."""

    def __init__(self, when: str) -> None:
        self.when = when
        self.event_type = ""

    def __set_name__(self, owner: type, name: str) -> None:
        event_type = name.removeprefix("on_")
        if event_type not in HANDLER_EVENTS:
            raise TypeError(f"{owner.__name__}.{name}: {event_type!r} is not an event type")
        self.event_type = event_type
        self.__doc__ = f"Register the handler for ``{event_type}`` (decorator): {self.when}."

    @overload
    def __get__(self, assistant: None, owner: type) -> _OnEvent: ...
    @overload
    def __get__(self, assistant: AiFlowAssistant, owner: type) -> HandlerDecorator: ...
    def __get__(
        self, assistant: AiFlowAssistant | None, owner: type
    ) -> _OnEvent | HandlerDecorator:
        if assistant is None:
            return self
        runtime, event_type = assistant.runtime, self.event_type

        def register(handler: _H) -> _H:
            runtime.register(event_type, handler)
            return handler

        register.__doc__ = self.__doc__
        return register


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
        sync_handler_threads: int = DEFAULT_SYNC_HANDLER_THREADS,
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
            hold_after: seconds after a handler started when, if it has sent nothing yet,
                ``hold_reply`` goes out, once (HTTP and in process: as the reply; WebSocket:
                pushed); the real answer follows when ready (WebSocket) or with the reply to
                the call's next event (HTTP).
            hold_reply: what to say while waiting (default ``"One moment, please."``).
            response_timeout: HTTP and in process: the reply goes out at most this many
                seconds after the event arrived, with whatever is ready (the service waits
                about 5 s).
            store: where per-call state (``ctx.state``), locks and queued actions live: a
                ``SessionStore`` or a URL (``redis://...``). Default: the
                ``AIFLOW_STORE_URL`` environment variable, else a ``MemoryStore`` (one process).
            sync_handler_threads: how many sync handlers may run at once, each in its own
                thread (default 128: enough for 100 calls blocked at once); when all are busy
                the next waits, and a warning says so once.
        """
        if api_key is not None:
            warnings.warn(
                "AiFlowAssistant(api_key=...) is the old name of token=...",
                DeprecationWarning,
                stacklevel=2,
            )
            token = token or api_key
        self._outbound = OutboundClient(token, base_url, http_client=http_client)
        token_env = os.environ.get("AIFLOW_WEBHOOK_TOKEN")
        self.webhook_token: str | None = webhook_token or token_env or None
        if hold_after is not None and hold_after <= 0:
            raise ConfigurationError(f"hold_after must be positive seconds, got {hold_after!r}")
        if response_timeout <= 0:
            raise ConfigurationError(
                f"response_timeout must be positive seconds, got {response_timeout!r}"
            )
        if store is None:
            store = os.environ.get("AIFLOW_STORE_URL") or MemoryStore()
        rules = ReplyRules(
            hold_after,
            hold_reply if hold_reply is not None else "One moment, please.",
            response_timeout,
        )
        self.runtime = CallRuntime(
            self,
            store_from_url(store) if isinstance(store, str) else store,
            rules,
            sync_handler_threads=sync_handler_threads,
        )
        """The engine that runs events, for transports (``sipgate_ai_flow.runtime``)."""
        self.runtime.error_reply = error_reply
        self.debug = debug
        if debug:
            logging.getLogger("sipgate_ai_flow").setLevel(logging.DEBUG)
        # The keyword names stay written out for type checkers and IDEs; a test holds them
        # equal to events.HANDLER_EVENTS.
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
                self.runtime.register(event_type, fn)
        if on_unknown is not None:
            self.on_unknown(on_unknown)
        if on_error is not None:
            self.on_error(on_error)

    # Settings live in the runtime (what transports read); these keep them reachable here.

    @property
    def store(self) -> SessionStore:
        """Where per-call state, locks and queued actions live."""
        return self.runtime.store

    @property
    def hold_after(self) -> float | None:
        """Seconds after a handler started when the hold reply goes out (``None``: never)."""
        return self.runtime.rules.hold_after

    @hold_after.setter
    def hold_after(self, value: float | None) -> None:
        self.runtime.rules.hold_after = value

    @property
    def hold_reply(self) -> Any:
        """What the hold reply says."""
        return self.runtime.rules.hold_reply

    @hold_reply.setter
    def hold_reply(self, value: Any) -> None:
        self.runtime.rules.hold_reply = value

    @property
    def response_timeout(self) -> float:
        """Seconds after an event arrived when its (HTTP, in-process) reply goes out."""
        return self.runtime.rules.response_timeout

    @response_timeout.setter
    def response_timeout(self, value: float) -> None:
        self.runtime.rules.response_timeout = value

    @property
    def error_reply(self) -> ErrorReply | None:
        """Sent when a handler raises and there is no ``on_error``."""
        reply: ErrorReply | None = self.runtime.error_reply
        return reply

    @error_reply.setter
    def error_reply(self, value: ErrorReply | None) -> None:
        self.runtime.error_reply = value

    def __repr__(self) -> str:  # never show the tokens
        return f"AiFlowAssistant(handlers={self.runtime.handler_names()})"

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

    # One decorator per name in events.HANDLER_EVENTS; _OnEvent checks each name against it.
    on_session_start = _OnEvent("the call was answered")
    on_user_speech_started = _OnEvent(
        "the caller started talking (WebSocket only; the result is dropped, the service takes "
        "no answer)"
    )
    on_user_speak = _OnEvent("the caller said something (``event.text``)")
    on_user_barge_in = _OnEvent(
        "the caller talked over the assistant: ``user_speak`` with ``barged_in=True`` and the "
        "legacy ``user_barge_in`` event, both delivered as a ``UserSpeakEvent``"
    )
    on_dtmf_received = _OnEvent("the caller pressed a key (``event.digit``)")
    on_assistant_speak = _OnEvent("playback of the assistant's speech started")
    on_assistant_speech_ended = _OnEvent("playback of the assistant's speech ended")
    on_user_input_timeout = _OnEvent("the caller stayed silent after the prompt")
    on_sms_failed = _OnEvent("an SMS sent with ``send_sms`` could not be delivered")
    on_session_end = _OnEvent("the call ended (cleanup; the result is dropped)")

    def on_unknown(self, handler: _H) -> _H:
        """Register the handler for event types this SDK does not know (``UnknownEvent``)."""
        self.runtime.register_unknown(handler)
        return handler

    def on_error(self, handler: _H) -> _H:
        """Register the error hook ``(error, event)`` or ``(error, event, ctx)``: called when
        a handler raises; what it returns is sent instead."""
        self.runtime.register_error_hook(handler)
        return handler

    def use(self, middleware: Middleware) -> None:
        """Add a middleware ``async def middleware(event, ctx, call_next)``.

        Middlewares run in the order added, around every handler call: ``await call_next()``
        runs the rest of the chain and the handler and returns the handler's actions (a
        generator handler's yields have gone out by then; it returns ``[]``). A middleware
        returns what answers the event (anything a handler may return), may answer without
        calling ``call_next``, and sees the handler's exception.

        Example:
            >>> import time
            >>> assistant = AiFlowAssistant()
            >>> async def timed(event, ctx, call_next):
            ...     started = time.perf_counter()
            ...     try:
            ...         return await call_next()
            ...     finally:
            ...         ctx.logger.info("%s took %.3f s", event.type, time.perf_counter() - started)
            >>> assistant.use(timed)
        """
        self.runtime.use(middleware)

    def middleware(self, middleware: _M) -> _M:
        """``use`` as a decorator (``@assistant.middleware``)."""
        self.runtime.use(middleware)
        return middleware

    # -- dispatch -----------------------------------------------------------------------------

    async def handle_event(
        self,
        event: BaseEvent | bytes | bytearray | str | Mapping[str, Any],
        *,
        budget: bool = True,
    ) -> list[ActionLike]:
        """Run the handler for one event and return the actions to send, in order: what the
        webhook would answer.

        ``event`` is an event model or a payload (JSON ``bytes``/``str`` or a ``dict``). The
        result starts with any actions pushed for the call since its previous event
        (``ctx.send``, ``push``). As over HTTP, it returns within ``response_timeout`` (with
        ``hold_after``: the hold reply once the handler has run that long without answering)
        and a slower handler goes on in the background, its answer joining the call's next
        reply; ``budget=False`` waits for the handler instead. Raises ``InvalidEventError``
        for an invalid payload and ``HandlerError`` when a handler fails and neither
        ``on_error`` nor ``error_reply`` answers.
        """
        if not isinstance(event, BaseEvent):
            event = parse_event(event)
        session = event.session
        session_id = session.id if session is not None else None
        if event.type in NO_REPLY_EVENTS:
            await self.runtime.dispatch(event, Reply(self.runtime, session_id, False))
            return []
        ready: asyncio.Future[list[ActionLike]] = asyncio.get_running_loop().create_future()
        kind = _Collected if budget else _Unbudgeted
        reply = kind(self.runtime, session_id, True, ready)
        return await self.runtime.respond(self.runtime.dispatch(event, reply), ready)

    def state(self, session_id: str) -> SessionState:
        """The state of a call, from outside its handlers (e.g. a CRM callback)."""
        return SessionState(self.store, session_id)

    async def push(self, session_id: str, *actions: str | ActionLike) -> None:
        """Send actions to a call from outside a handler (e.g. when a CRM answers).

        Over WebSocket they are sent at once (by whichever worker holds the call's socket);
        over HTTP they go out with the reply to the call's next event. The call must be live:
        started and not ended (``SessionNotFoundError`` otherwise).
        """
        local = self.runtime.live(session_id)
        if local is None and not await self.store.exists(session_id):
            raise SessionNotFoundError(session_id)
        if local is not None and local.ended:
            raise SessionNotFoundError(session_id)
        await self.runtime.deliver(session_id, normalise(list(actions), session_id, "push"))

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

    async def aclose(self) -> None:
        """Release what the assistant holds: background handler tasks, the outbound client."""
        await self.runtime.aclose()
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


class _Collected(Reply):
    """``handle_event``'s reply: the response (or the failure) becomes ``channel``'s result."""

    __slots__ = ()

    async def send(self, actions: list[ActionLike]) -> None:
        if not self.channel.done():
            self.channel.set_result(actions)

    async def send_failure(self, error: HandlerError) -> None:
        if not self.channel.done():
            self.channel.set_exception(error)


class _Unbudgeted(_Collected):
    """``handle_event(budget=False)``: waits for the handler; no budget, no hold reply."""

    __slots__ = ()

    def arm(self) -> None:
        pass

    def started(self) -> None:
        pass
