"""``Reply``: where one event's actions go, and the one home of the hold and budget rules.

For transports. The runtime (``CallRuntime.dispatch``) writes a call's answer to a ``Reply``;
the transport decides how it reaches the caller by overriding ``send``:

- an **open** reply (HTTP, in process) collects every action of the event and ``send``\\s them
  once, as one response: when the handler is done and the call's state is saved, or earlier
  when the response budget runs out;
- a **streaming** reply (WebSocket) ``send``\\s each batch as it comes.

The rules, the same on every transport:

- **Budget** (open replies of events that take an answer): the response goes out at most
  ``response_timeout`` seconds after the event arrived, with whatever is ready. What the
  handler produces later reaches the call through ``CallRuntime.deliver`` (the next HTTP
  reply, or the call's WebSocket).
- **Hold** (``hold_after``): once per handler run, ``hold_after`` seconds after the handler
  *started* (never while the event waits for its call's lock, never for an event without a
  handler), if it has sent nothing yet, the hold reply goes out. An open reply closes then,
  with what is ready or else the hold reply.
- **Order**: actions pushed to the call before this event (its outbox) come first.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Generator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ._handlers import normalise
from .codec import ActionLike
from .errors import HandlerError

if TYPE_CHECKING:
    from .runtime import CallRuntime

__all__ = ["Reply", "ReplyRules"]

logger = logging.getLogger("sipgate_ai_flow.dispatch")


class ReplyRules:
    """The hold and budget settings a reply follows (read from the assistant).

    ``hold_after``: seconds after a handler started when the hold reply goes out (``None``:
    never). ``hold_reply``: what it says. ``response_timeout``: an open reply goes out at most
    this many seconds after its event arrived.
    """

    __slots__ = ("hold_after", "hold_reply", "response_timeout")

    def __init__(self, hold_after: float | None, hold_reply: Any, response_timeout: float) -> None:
        self.hold_after = hold_after
        self.hold_reply = hold_reply
        self.response_timeout = response_timeout


class Reply:
    """The reply to one event. Transports override ``send`` (and set ``open``).

    The runtime calls, in this order: ``take_outbox`` (actions queued for the call),
    ``arm`` (the budget starts), ``started`` (a handler runs), ``emit`` for each batch sent
    during the handler (yields, ``ctx.send``), ``answer`` with what the handler returned, and,
    once the call's state is saved, ``finish``. ``abandon`` replaces ``finish`` when the event
    fails. ``expire`` is called by the budget's timer.

    Example:
        >>> import asyncio
        >>> from sipgate_ai_flow import AiFlowAssistant, parse_event
        >>> class Printed(Reply):
        ...     async def send(self, actions):
        ...         print([a.text for a in actions])
        >>> assistant = AiFlowAssistant(on_session_start=lambda event: "Hello!")
        >>> event = parse_event({"type": "session_start", "session": {"id": "s1"}})
        >>> reply = Printed(assistant.runtime, "s1", True)
        >>> asyncio.run(assistant.runtime.dispatch(event, reply))
        ['Hello!']
    """

    __slots__ = (
        "actions",
        "armed",
        "channel",
        "early",
        "emitted",
        "open",
        "pending",
        "running",
        "runtime",
        "session_id",
    )

    streaming: ClassVar[bool] = False
    """Whether ``send`` takes each batch as it comes (WebSocket) rather than the response
    once (a class attribute, so that a reply costs one store less to make)."""

    def __init__(
        self, runtime: CallRuntime, session_id: str | None, open: bool, channel: Any = None
    ) -> None:
        self.runtime = runtime
        self.channel = channel
        """The transport's own handle (a ``respond`` callable, a connection): subclasses
        read it in ``send``, so they need no ``__init__`` of their own (one call less per
        event on the hot path)."""
        self.session_id = session_id
        self.open = open
        """Collecting one response (HTTP, in process); ``False``: each batch is sent at once."""
        self.actions: list[ActionLike] = []
        self.pending: list[ActionLike] = []
        self.emitted = False
        """Whether the handler has produced anything for the caller yet."""
        self.running = False
        """Whether a handler has started for this event."""
        self.armed: _Deadlines | None = None
        self.early: asyncio.Task[None] | None = None

    # -- what the transport provides ----------------------------------------------------------

    async def send(self, actions: list[ActionLike]) -> None:
        """Get ``actions`` to the caller. An open reply calls this once, with the whole
        response (possibly empty); a streaming one for each batch. The default hands them to
        the call (its WebSocket or its outbox)."""
        if actions and self.session_id is not None:
            await self.runtime.deliver(self.session_id, actions)

    async def send_failure(self, error: HandlerError) -> None:
        """Tell the caller nothing answers this event (open replies; HTTP answers 500).
        The default does nothing."""

    # -- what the runtime calls ---------------------------------------------------------------

    def take_outbox(self, actions: Sequence[ActionLike]) -> None:
        """Actions queued for the call before this event: they go out first."""
        self.pending = [*actions, *self.pending]

    def arm(self) -> None:
        """Start the response budget (the runtime does, for open replies)."""
        # Inlined _deadlines()/add: every webhook request arms a budget (measured: two calls
        # less per request, bench.instructions).
        deadlines = _current
        loop = asyncio.get_running_loop()
        if deadlines is None or deadlines.loop is not loop:
            deadlines = _deadlines()
        deadlines.due[self] = loop.time() + self.runtime.rules.response_timeout
        if deadlines.handle is None:
            deadlines.start()
        self.armed = deadlines

    def started(self) -> None:
        """A handler has started: from now on the hold rule applies (the runtime calls this
        only when ``hold_after`` is set)."""
        self.running = True
        hold_after = self.runtime.rules.hold_after
        if hold_after is not None and (self.open or self.session_id is not None):
            self.armed = deadlines = _deadlines()
            deadlines.add(self, hold_after)

    async def emit(self, actions: list[ActionLike]) -> None:
        """Actions sent while the handler runs (a yield, ``ctx.send``, an error reply)."""
        self.emitted = True
        if self.open:
            self.actions.extend(actions)
        elif self.session_id is None:
            logger.warning("%d action(s) for an event without a session dropped", len(actions))
        elif self.streaming:
            await self.send(actions)
        else:  # an open reply that already went out: the rest goes to the call
            await self.runtime.deliver(self.session_id, actions)

    def answer(self, actions: list[ActionLike]) -> None:
        """What the handler returned: sent by ``finish``, after the call's state is saved."""
        self.emitted = True
        if self.actions:
            self.actions.extend(actions)
        else:  # the runtime hands over a list of its own
            self.actions = actions

    def finish(self) -> Awaitable[None]:
        """The handler is done and the state saved: send the reply (or what is left of it).

        Returns the awaitable that does it: for an open reply, ``send`` itself. (A plain
        method returning ``send``'s coroutine: one coroutine less on every webhook request,
        measured with bench.instructions.)
        """
        armed = self.armed
        if armed is not None:
            armed.due.pop(self, None)
        if self.open:  # close(), inlined, for the same reason
            self.open = False
            actions = self.actions
            if self.pending:
                actions = [*self.pending, *actions]
            return self.send(actions)
        if self.early is None:
            actions = self.actions
            if not actions:
                return _DONE
            if self.streaming and self.session_id is not None:
                self.actions = []
                return self.send(actions)
        return self._finish_late()

    async def _finish_late(self) -> None:
        # A streaming reply's answer, or what came after an early response.
        if self.early is not None:  # the early reply (or the hold) goes out first
            await self.early
        if self.actions:
            actions, self.actions = self.actions, []
            if self.session_id is None:
                logger.warning("%d action(s) for an event without a session dropped", len(actions))
            elif self.streaming:
                await self.send(actions)
            else:
                await self.runtime.deliver(self.session_id, actions)

    def close(self) -> list[ActionLike]:
        """Stop collecting; return the response: the call's pending actions, then this
        event's. Actions that come later go to the call (``deliver``)."""
        self.open = False
        actions = self.actions
        self.actions = []
        if self.pending:
            pending, self.pending = self.pending, []
            return [*pending, *actions]
        return actions

    async def fail(self, error: HandlerError) -> None:
        """Nothing answers the event (its handler raised; no ``on_error``/``error_reply``).
        What the handler did send, and the call's pending actions, wait for its next event."""
        was_open = self.open
        await self.abandon()
        if was_open:
            await self.send_failure(error)

    async def abandon(self) -> None:
        """The event ends without a reply (it failed, or was cancelled): stop collecting;
        what was collected waits for the call's next event."""
        armed = self.armed
        if armed is not None:
            armed.due.pop(self, None)
        if self.open:
            self.open = False
            kept = [*self.pending, *self.actions]
            self.pending, self.actions = [], []
            if kept and self.session_id is not None:
                await self.runtime.deliver(self.session_id, kept)
        if self.early is not None:
            await self.early

    def expire(self) -> None:
        """The budget or the hold time is up (called by the timer, so nothing awaits here).

        An open reply goes out now with what is ready, or the hold reply if a handler is
        running and nothing is; a streaming one gets the hold reply if nothing went out yet.
        """
        rules = self.runtime.rules
        if self.open:
            actions = self.close()
            if not actions and self.running and rules.hold_after is not None:
                actions = normalise(rules.hold_reply, self.session_id, "hold_reply")
            logger.info(
                "session %s still running: replied early with %d action(s); the rest follows "
                "with the call's next reply",
                self.session_id,
                len(actions),
            )
        elif self.running and not self.emitted:  # (so it is held at most once)
            self.emitted = True
            actions = normalise(rules.hold_reply, self.session_id, "hold_reply")
        else:
            return
        self.early = asyncio.get_running_loop().create_task(self.send(actions))


class _Done:
    """An awaitable that is already done (``finish`` with nothing left to send)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        return
        yield  # a generator that ends at once


_DONE = _Done()

_TICK = 0.02  # resolution of reply deadlines, in seconds


class _Deadlines:
    """One timer ticking for all armed replies of a loop, instead of a timer per reply (each
    of which would sit, cancelled, in the loop's heap for the whole budget)."""

    __slots__ = ("due", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[Reply, float] = {}
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.handle = self.loop.call_later(_TICK, self._tick)

    def add(self, reply: Reply, seconds: float) -> None:
        due = self.loop.time() + seconds
        current = self.due.get(reply)
        if current is None or due < current:
            self.due[reply] = due
        if self.handle is None:
            self.start()

    def _tick(self) -> None:
        now = self.loop.time()
        for reply in [r for r, at in self.due.items() if at <= now]:
            del self.due[reply]
            reply.expire()
        self.handle = self.loop.call_later(_TICK, self._tick) if self.due else None


_current: _Deadlines | None = None
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)


def _deadlines() -> _Deadlines:
    global _current  # noqa: PLW0603 - one per event loop; the common case is one loop
    loop = asyncio.get_running_loop()
    if _current is None or _current.loop is not loop:
        _current = _by_loop.get(loop)
        if _current is None:
            _current = _by_loop[loop] = _Deadlines(loop)
    return _current
