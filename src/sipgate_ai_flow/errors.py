"""Every error the SDK raises, in one tree::

    AiFlowError                 base of every SDK error
    ├── ConfigurationError      a setup mistake found at registration time (bad handler, no token)
    ├── InvalidEventError       a payload that is not a valid event; ``.details`` lists each problem
    ├── InvalidActionError      an action (model, dict or handler result) that is not valid
    ├── HandlerError            a handler raised; neither ``on_error`` nor ``error_reply`` answered
    ├── SessionNotFoundError    ``push`` to a call this process does not serve (also a LookupError)
    ├── OutboundCallError       the outbound-call API failed; carries ``status_code`` and ``body``
    └── StoreError              the state store (Redis) failed or holds something unexpected

``InvalidEventError`` and ``InvalidActionError`` are also ``ValueError``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AiFlowError",
    "ConfigurationError",
    "HandlerError",
    "InvalidActionError",
    "InvalidEventError",
    "OutboundCallError",
    "SessionNotFoundError",
    "StoreError",
]


class AiFlowError(Exception):
    """Base class of every error raised by this SDK."""


class ConfigurationError(AiFlowError):
    """The assistant was set up wrongly (for example a handler that takes no argument)."""


class _ValidationProblem(AiFlowError, ValueError):
    what = "payload"

    def __init__(self, details: Sequence[str], errors: Sequence[dict[str, Any]] = ()) -> None:
        self.details: list[str] = list(details)
        """One line per problem: ``location: message``."""
        self.errors: list[dict[str, Any]] = list(errors)
        """The same problems as data (``loc``, ``msg``, ``type``), as pydantic reports them."""
        count = len(self.details)
        head = f"Invalid {self.what}: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n  ".join([head, *self.details]))


class InvalidEventError(_ValidationProblem):
    """A payload is not a valid AI Flow event.

    ``details`` names every problem with its location, e.g. ``user_speak.text: Field required``.
    """

    what = "event"


class InvalidActionError(_ValidationProblem):
    """An action is not valid: a model built with bad fields, a dict without ``type``, or a
    handler that returned something that is not an action."""

    what = "action"


class HandlerError(AiFlowError):
    """A handler raised and neither ``on_error`` nor ``error_reply`` produced an answer.

    Transports turn it into the TypeScript SDK's convention: HTTP 500
    ``{"error": "Internal server error"}``. The original exception is ``__cause__``.
    """

    def __init__(self, event_type: str, session_id: str | None, handler: str) -> None:
        self.event_type = event_type
        self.session_id = session_id
        self.handler = handler
        super().__init__(f"handler {handler} failed on {event_type} (session {session_id})")


class SessionNotFoundError(AiFlowError, LookupError):
    """``assistant.push`` named a call this process does not serve (never seen, or ended)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} is not served by this process: no event of it arrived "
            "here, or it has ended"
        )


class OutboundCallError(AiFlowError):
    """Placing an outbound call failed.

    ``status_code`` is the HTTP status (``None`` when no response arrived) and ``body`` the
    response text.
    """

    def __init__(self, message: str, status_code: int | None = None, body: str = "") -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(message)


class StoreError(AiFlowError):
    """The session store failed: Redis unreachable or lost, a value that is not JSON, a
    counter that is not an integer. An event that meets it gets the error reply."""
