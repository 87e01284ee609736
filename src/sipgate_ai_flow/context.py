"""``CallContext``: what a two-argument handler gets besides the event."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._handlers import normalise
from .state import SessionState

if TYPE_CHECKING:
    from .assistant import AiFlowAssistant
    from .codec import ActionLike
    from .events import AiFlowEvent, BaseEvent
    from .models import SessionInfo
    from .reply import Reply
    from .state import EventScope

__all__ = ["CallContext"]

_logger = logging.getLogger("sipgate_ai_flow.handler")


class _SessionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['session_id'] if self.extra else '-'}] {msg}", kwargs


class CallContext:
    """The call an event belongs to, handed to handlers that take ``(event, ctx)``.

    Example:
        >>> from sipgate_ai_flow import AiFlowAssistant
        >>> assistant = AiFlowAssistant()
        >>> @assistant.on_user_speak
        ... async def echo(event, ctx):
        ...     ctx.logger.info("caller said %s", event.text)
        ...     return f"You said {event.text}"
    """

    __slots__ = ("_logger", "_reply", "_state", "_state_data", "assistant", "event", "returning")

    def __init__(
        self,
        event: BaseEvent,
        assistant: AiFlowAssistant,
        reply: Reply,
        scope: EventScope | None = None,
    ) -> None:
        # Events reach here parsed, so always one of the AiFlowEvent classes.
        self.event: AiFlowEvent = event  # type: ignore[assignment]
        """The event being handled."""
        self.assistant: AiFlowAssistant = assistant
        """The assistant handling it."""
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self._reply = reply
        self._state: SessionState | None = None
        self._state_data = scope.data if scope is not None else None
        self.returning: bool = scope is not None and scope.starts > 1
        """``True`` on a repeated ``session_start``: the caller is back from a failed transfer."""

    @property
    def state(self) -> SessionState:
        """This call's state (``await ctx.state.get("step")``); it lives in the assistant's
        store, so it holds across events and, with ``RedisStore``, across workers."""
        if self._state is None:
            session_id = self.session_id
            if session_id is None:
                raise RuntimeError("this event has no session, so it has no call state")
            if self._state_data is None:  # outside the call's lock: straight to the store
                self._state = self.assistant.state(session_id)
            else:  # loaded with the call's lock: saved when the handler ends
                self._state = SessionState(self.assistant.store, session_id, self._state_data)
        return self._state

    @property
    def used_state(self) -> SessionState | None:
        """The state the handler looked at (``None`` if it never did): what the runtime
        saves before the reply goes out."""
        return self._state

    async def send(self, *actions: str | ActionLike) -> None:
        """Push actions to this call now, during the handler or any time later.

        Over WebSocket they are sent at once. Over HTTP they join the reply to this event
        while it is still being assembled, and otherwise the reply to the call's next event.
        A ``str`` is spoken, like a handler's return value.
        """
        await self._reply.emit(normalise(list(actions), self.session_id, "ctx.send"))

    @property
    def session(self) -> SessionInfo | None:
        """The event's session (``None`` only for an ``UnknownEvent`` without one)."""
        return self.event.session

    @property
    def session_id(self) -> str | None:
        """The session id every action of this call carries."""
        session = self.event.session
        return session.id if session is not None else None

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger (``sipgate_ai_flow.handler``) that prefixes each line with the session id."""
        if self._logger is None:
            self._logger = _SessionLogger(_logger, {"session_id": self.session_id})
        return self._logger

    def __repr__(self) -> str:
        return f"CallContext(event={self.event.type!r}, session_id={self.session_id!r})"
