"""``CallRuntime``: the engine behind ``AiFlowAssistant``, and the seam for transports.

A transport (the webhook, the WebSocket loop, the ASGI app, a framework adapter, the
emulator) turns what arrives into events and hands each one to ``dispatch`` with a ``Reply``
(``sipgate_ai_flow.reply``) that knows how to answer on that transport. Nothing else in the
runtime is a transport's business except:

- ``dispatch(event, reply)``: one event from its call's lock to its unlock;
- ``deliver(session_id, actions)``: actions for a call wherever it is (its WebSocket here or on
  another worker, else its outbox for the next HTTP reply);
- ``attach`` / ``claim`` / ``detach``: a live WebSocket of a call on this worker;
- ``track(task)``: a background task (a handler outliving its reply) held until ``aclose``.

Example (a transport that prints what it would send)::

    >>> import asyncio
    >>> from sipgate_ai_flow import AiFlowAssistant, parse_event
    >>> from sipgate_ai_flow.reply import Reply
    >>> assistant = AiFlowAssistant(on_user_speak=lambda event: f"You said {event.text}")
    >>> class Printed(Reply):
    ...     async def send(self, actions):
    ...         print([action.text for action in actions])
    >>> event = parse_event({"type": "user_speak", "text": "hi", "session": {"id": "s1"}})
    >>> asyncio.run(assistant.runtime.dispatch(event, Printed(assistant.runtime, "s1", True)))
    ['You said hi']
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._eager import start
from ._handlers import Handler, ThreadPool, normalise, speak
from ._sessions import Sender, Session, SessionRegistry
from .codec import ActionLike, dump_action
from .context import CallContext
from .errors import ConfigurationError, HandlerError, StoreError
from .events import (
    HANDLER_EVENTS,
    NO_REPLY_EVENTS,
    BaseEvent,
    UnknownEvent,
    UserBargeInEvent,
    UserSpeakEvent,
)
from .reply import Reply, ReplyRules

if TYPE_CHECKING:
    from .assistant import AiFlowAssistant
    from .state import EventScope, SessionStore

__all__ = ["CallNext", "CallRuntime", "Middleware"]

logger = logging.getLogger("sipgate_ai_flow.dispatch")

_T = TypeVar("_T")

CallNext = Callable[[], Awaitable[list[ActionLike]]]
"""What a middleware calls to run the rest of the chain; returns the handler's actions."""

Middleware = Callable[[BaseEvent, CallContext, CallNext], Awaitable[Any]]
"""``async def middleware(event, ctx, call_next)``: see ``AiFlowAssistant.use``."""


class CallRuntime:
    """Runs events: the handler table, the middlewares, the calls live on this worker.

    For transports; applications use ``AiFlowAssistant``, which owns one (``.runtime``).
    """

    def __init__(
        self,
        assistant: AiFlowAssistant,
        store: SessionStore,
        rules: ReplyRules,
        *,
        sync_handler_threads: int,
    ) -> None:
        self.assistant = assistant
        self.store = store
        self.rules = rules
        self.error_reply: Any = None
        self.calls = SessionRegistry()
        """The calls this worker has a WebSocket for, or is ending."""
        self.pool = ThreadPool(sync_handler_threads)
        self._handlers: dict[str, Handler] = {}
        self._on_unknown: Handler | None = None
        self._on_error: Handler | None = None
        self._middlewares: list[Middleware] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- registration (through AiFlowAssistant) -----------------------------------------------

    def register(self, event_type: str, fn: Callable[..., Any]) -> None:
        """Set the handler for ``event_type`` (one of ``HANDLER_EVENTS``)."""
        if event_type not in HANDLER_EVENTS:
            raise ConfigurationError(f"no event type {event_type!r} takes a handler")
        if event_type in self._handlers:
            raise ConfigurationError(
                f"an on_{event_type} handler is already registered "
                f"({self._handlers[event_type].name}); register one handler per event type"
            )
        what = f"on_{event_type} handler"
        self._handlers[event_type] = Handler(fn, min_args=1, max_args=2, what=what, pool=self.pool)

    def register_unknown(self, fn: Callable[..., Any]) -> None:
        """Set the handler for event types this SDK does not know."""
        if self._on_unknown is not None:
            raise ConfigurationError("an on_unknown handler is already registered")
        self._on_unknown = Handler(
            fn, min_args=1, max_args=2, what="on_unknown handler", pool=self.pool
        )

    def register_error_hook(self, fn: Callable[..., Any]) -> None:
        """Set the hook called when a handler raises."""
        if self._on_error is not None:
            raise ConfigurationError("an on_error handler is already registered")
        self._on_error = Handler(
            fn, min_args=2, max_args=3, what="on_error handler", pool=self.pool
        )

    def use(self, middleware: Middleware) -> None:
        """Add a middleware; they run in the order added, around every handler call."""
        target = getattr(middleware, "__call__", None)  # noqa: B004 - callable objects too
        if not (inspect.iscoroutinefunction(middleware) or inspect.iscoroutinefunction(target)):
            raise ConfigurationError(
                f"middleware {middleware!r} must be an async function "
                "`async def middleware(event, ctx, call_next)`"
            )
        self._middlewares.append(middleware)

    def handler_names(self) -> list[str]:
        """The event types that have a handler, sorted."""
        return sorted(self._handlers)

    # -- one event ----------------------------------------------------------------------------

    async def dispatch(self, event: BaseEvent, reply: Reply) -> None:
        """Handle one event: take its call's lock and state, run its handler (through the
        middlewares), save the state, then ``reply.finish()`` (or ``reply.fail()`` when the
        handler raised and nothing answers instead), and unlock.

        Never raises for what a handler does; a store failure is logged as one and answered
        through ``on_error``/``error_reply`` like a handler failure.

        One coroutine from lock to unlock: every call and every await on this path is paid by
        every event, and a server spends a good part of its time on them.
        """
        event_type = event.type
        session = event.session
        answers = event_type not in NO_REPLY_EVENTS
        if reply.open and answers:
            reply.arm()
        session_id = None
        scope: EventScope | None = None
        ending: Session | None = None
        failure: HandlerError | None = None
        try:
            if session is not None:
                session_id = session.id
                try:
                    scope = await self.store.acquire(
                        session_id, start=event_type == "session_start"
                    )
                except StoreError as exc:
                    logger.error(
                        "state store unavailable for %s (session %s): %s",
                        event_type,
                        session_id,
                        exc,
                    )
                    failure = await self._recover(exc, event, None, "the state store", reply)
                    if failure is None:
                        await reply.finish()
                    else:
                        await reply.fail(failure)
                    return
                if event_type == "session_end":  # actions pushed from now on are dropped
                    ending = self.calls.open(session_id)
                    ending.ended = True
                if scope.outbox:
                    if reply.open:
                        reply.take_outbox(scope.outbox)
                    elif ending is None:
                        await self.deliver(session_id, list(scope.outbox))
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
                    if answers and self.rules.hold_after is not None:
                        reply.started()
                    debug = logger.isEnabledFor(logging.DEBUG)
                    began = time.perf_counter() if debug else 0.0
                    middlewares = self._middlewares
                    # One-argument handlers never see a context: build it only when it is used.
                    if handler.arity > 1 or handler.streams or middlewares:
                        ctx = CallContext(event, self.assistant, reply, scope)
                    count = 0
                    try:
                        if middlewares:
                            actions = await self._chain(handler, event, ctx, reply, answers)
                        elif handler.streams:
                            actions = []
                            count = await self._stream(handler, event, ctx, reply, answers)
                        else:
                            if handler.direct:  # an async (event) handler: the common case
                                result = await handler.fn(event)
                            else:
                                result = await handler(event, ctx)
                            if type(result) is str:
                                actions = [speak(session_id, result)]
                            else:
                                actions = normalise(result, session_id, handler.name)
                        count += len(actions)
                        if actions and answers:
                            reply.answer(actions)
                    except Exception as exc:
                        if ctx is None:
                            ctx = CallContext(event, self.assistant, reply, scope)
                        failure = await self._recover(exc, event, ctx, handler.name, reply)
                    if count and not answers:
                        logger.warning(
                            "%s returned %d action(s) for %s (session %s); the service takes "
                            "no answer to this event, so they were dropped (use ctx.send to "
                            "push actions)",
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
                            (time.perf_counter() - began) * 1000,
                        )
            finally:
                if scope is not None:
                    state = ctx.used_state if ctx is not None else None
                    try:
                        if state is None:  # the handler never looked at its state
                            await self.store.release(scope, drop=ending is not None)
                        else:
                            await self.store.release(
                                scope,
                                changes=state.changes,
                                deleted=state.deleted,
                                drop=ending is not None,
                            )
                    except StoreError as exc:
                        logger.error("state of session %s not saved: %s", session_id, exc)
                    finally:
                        if ending is not None:
                            self.calls.close(ending)
            # The state is saved: only now may the caller hear the answer.
            if failure is None:
                await reply.finish()
            else:
                await reply.fail(failure)
        except BaseException:
            await reply.abandon()
            raise

    async def _stream(
        self,
        handler: Handler,
        event: BaseEvent,
        ctx: CallContext | None,
        reply: Reply,
        answers: bool,
    ) -> int:
        """Run a generator handler: each yield is sent on its own. Returns the action count."""
        count = 0
        session_id = reply.session_id
        async for item in handler.iterate(event, ctx):
            actions = normalise(item, session_id, handler.name)
            count += len(actions)
            if actions and answers:
                await reply.emit(actions)
        return count

    async def _chain(
        self, handler: Handler, event: BaseEvent, ctx: Any, reply: Reply, answers: bool
    ) -> list[ActionLike]:
        """Run the middlewares around the handler; return the actions that answer."""
        session_id = reply.session_id
        middlewares = self._middlewares

        async def call(index: int) -> list[ActionLike]:
            if index == len(middlewares):
                if handler.streams:
                    await self._stream(handler, event, ctx, reply, answers)
                    return []
                return normalise(await handler(event, ctx), session_id, handler.name)
            middleware = middlewares[index]
            result = await middleware(event, ctx, lambda: call(index + 1))
            return normalise(result, session_id, getattr(middleware, "__qualname__", "middleware"))

        return await call(0)

    def _route(self, event: BaseEvent) -> tuple[Handler | None, BaseEvent]:
        event_type = event.type
        handler = self._handlers.get(event_type)
        if isinstance(event, UserSpeakEvent):
            if event.barged_in:
                handler = self._handlers.get("user_barge_in", handler)
        elif isinstance(event, UserBargeInEvent):
            handler = self._handlers.get("user_barge_in") or self._handlers.get("user_speak")
            extra = {k: v for k, v in (event.model_extra or {}).items() if k != "barged_in"}
            event = UserSpeakEvent(session=event.session, text=event.text, barged_in=True, **extra)
        elif handler is None and isinstance(event, UnknownEvent):
            handler = self._on_unknown
        return handler, event

    async def _recover(
        self,
        exc: Exception,
        event: BaseEvent,
        ctx: CallContext | None,
        source: str,
        reply: Reply,
    ) -> HandlerError | None:
        """A handler (or the store) failed: log it, let ``on_error``/``error_reply`` answer
        (sent through ``reply``). Returns the error when nothing answers an event that takes
        an answer."""
        session_id = event.session.id if event.session is not None else None
        answers = event.type not in NO_REPLY_EVENTS
        logger.error(
            "%s raised %s on %s (session %s)"
            if isinstance(exc, StoreError)
            else "handler %s raised %s on %s (session %s)",
            source,
            type(exc).__name__,
            event.type,
            session_id,
            exc_info=exc,
        )
        on_error = self._on_error
        if on_error is not None:
            if ctx is None:
                ctx = CallContext(event, self.assistant, reply, None)
            try:
                actions = normalise(await on_error(exc, event, ctx), session_id, on_error.name)
            except Exception as hook_exc:
                logger.error(
                    "on_error hook %s raised %s on %s (session %s)",
                    on_error.name,
                    type(hook_exc).__name__,
                    event.type,
                    session_id,
                    exc_info=hook_exc,
                )
                if not answers:
                    return None
                error = HandlerError(event.type, session_id, on_error.name)
                error.__cause__ = hook_exc
                return error
        elif self.error_reply is not None:
            actions = normalise(self.error_reply, session_id, "error_reply")
        elif not answers:
            return None
        else:
            error = HandlerError(event.type, session_id, source)
            error.__cause__ = exc
            return error
        if actions and answers:
            await reply.emit(actions)
        return None

    # -- calls on this worker -----------------------------------------------------------------

    async def deliver(self, session_id: str, actions: list[ActionLike]) -> None:
        """Get actions to a call now: its WebSocket here or on another worker, else its
        outbox for the next HTTP reply. Actions for a call that has ended are dropped with a
        warning."""
        if not actions:
            return
        local = self.calls.get(session_id)
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
        try:
            if not await self.store.route(session_id, payload):
                await self.store.enqueue(session_id, payload)
        except StoreError as exc:
            logger.error(
                "%d action(s) for session %s not delivered: the state store failed: %s",
                len(actions),
                session_id,
                exc,
            )
            raise

    def attach(self, session_id: str, sender: Sender) -> Session:
        """A WebSocket of the call is open here: ``deliver`` sends through ``sender`` now."""
        live = self.calls.open(session_id)
        live.sender = sender
        return live

    async def claim(self, session_id: str) -> None:
        """Tell the store this worker holds the call's WebSocket, so that pushes from other
        workers reach it (a failure is logged: the call still works, pushes stay local)."""
        try:
            await self.store.claim(session_id, self.deliver)
        except StoreError as exc:
            logger.error("WebSocket of session %s not announced: %s", session_id, exc)

    async def detach(self, session_id: str, sender: Sender, *, claimed: bool) -> None:
        """The call's WebSocket here is gone (``claimed``: it was announced to the store)."""
        live = self.calls.get(session_id)
        if live is not None and live.sender == sender:
            live.sender = None
        if claimed:
            try:
                await self.store.unclaim(session_id)
            except StoreError as exc:
                logger.warning("WebSocket of session %s not released: %s", session_id, exc)

    def live(self, session_id: str) -> Session | None:
        """The call, if this worker has a WebSocket for it or is ending it."""
        return self.calls.get(session_id)

    # -- background work ----------------------------------------------------------------------

    def track(self, task: asyncio.Task[Any]) -> None:
        """Hold a background task (a handler outliving its reply) until it ends or aclose."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def respond(self, work: Coroutine[Any, Any, None], ready: asyncio.Future[_T]) -> _T:
        """Run ``work`` (a ``dispatch``, a webhook exchange) until ``ready`` has a result,
        and return it; what is left of ``work`` goes on in the background (``track``). For
        request/response transports whose reply may go out before the handler is done
        (framework adapters, ``handle_event``)."""
        task = start(work)
        if task is not None:
            self.track(task)

            def done(task: asyncio.Task[None]) -> None:
                if ready.done():
                    return
                if task.cancelled():
                    ready.cancel()
                else:  # it ended without answering: only an exception does that
                    error = task.exception()
                    ready.set_exception(error or RuntimeError("no reply was sent"))

            task.add_done_callback(done)
        return await ready

    async def aclose(self) -> None:
        """Cancel background tasks and stop the handler threads."""
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.pool.shutdown()
