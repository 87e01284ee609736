"""Events: what the AI Flow service sends to the application (protocol §3).

One class per event type, discriminated on ``type``. Any type this SDK does not know becomes an
``UnknownEvent`` instead of an error, because the service adds event types over time.

Example:
    >>> from sipgate_ai_flow import parse_event
    >>> event = parse_event('{"type": "user_speak", "text": "Hi", "session": {"id": "s1"}}')
    >>> type(event).__name__, event.text, event.barged_in
    ('UserSpeakEvent', 'Hi', False)
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import ConfigDict

from .models import AiFlowModel, SessionInfo

__all__ = [
    "AiFlowEvent",
    "AssistantSpeakEvent",
    "AssistantSpeechEndedEvent",
    "BaseEvent",
    "DtmfReceivedEvent",
    "KnownEvent",
    "SessionEndEvent",
    "SessionStartEvent",
    "SmsFailedEvent",
    "UnknownEvent",
    "UserBargeInEvent",
    "UserInputTimeoutEvent",
    "UserSpeakEvent",
    "UserSpeechStartedEvent",
]


class BaseEvent(AiFlowModel):
    """Fields common to every event. Unknown fields are kept (``event.model_extra``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    """The event type, e.g. ``"user_speak"`` (compare with ``AiFlowEventType``)."""
    session: SessionInfo
    """The call this event belongs to."""


class SessionStartEvent(BaseEvent):
    """The call was answered. Sent again with the same session id when a transfer with
    ``timeout`` failed and the caller is back with the assistant."""

    type: Literal["session_start"] = "session_start"


class UserSpeechStartedEvent(BaseEvent):
    """Voice onset of the caller, before any transcript (WebSocket only). Never answered."""

    type: Literal["user_speech_started"] = "user_speech_started"


class UserSpeakEvent(BaseEvent):
    """The caller finished a turn; ``text`` is the final transcript."""

    type: Literal["user_speak"] = "user_speak"
    text: str
    """Final speech-to-text transcript of the caller's turn."""
    barged_in: bool = False
    """``True`` when the caller interrupted the assistant's playback."""


class UserBargeInEvent(BaseEvent):
    """Legacy barge-in event of older services; current services send ``UserSpeakEvent`` with
    ``barged_in=True``. The assistant delivers both the same way."""

    type: Literal["user_barge_in"] = "user_barge_in"
    text: str
    """What the caller said while interrupting."""


class DtmfReceivedEvent(BaseEvent):
    """The caller pressed a key; one event per key."""

    type: Literal["dtmf_received"] = "dtmf_received"
    digit: str
    """The key: ``"0"``-``"9"``, ``"*"`` or ``"#"``."""


class AssistantSpeakEvent(BaseEvent):
    """Playback of the assistant's speech started (may be omitted by some TTS models)."""

    type: Literal["assistant_speak"] = "assistant_speak"
    text: str | None = None
    """The text being spoken."""
    ssml: str | None = None
    """The SSML being spoken, if SSML was sent."""
    duration_ms: int | float
    """Length of the synthesized speech in milliseconds."""
    speech_started_at: int | float
    """Unix epoch milliseconds when playback started."""


class AssistantSpeechEndedEvent(BaseEvent):
    """Playback finished; the service now waits for the caller."""

    type: Literal["assistant_speech_ended"] = "assistant_speech_ended"


class UserInputTimeoutEvent(BaseEvent):
    """The caller stayed silent for the last speak's ``user_input_timeout_seconds``."""

    type: Literal["user_input_timeout"] = "user_input_timeout"


class SmsFailedEvent(BaseEvent):
    """A ``send_sms`` action failed; the call goes on. The payload's other fields are not
    documented yet and are kept as sent (``event.model_extra``)."""

    type: Literal["sms_failed"] = "sms_failed"
    reason: Any = None
    """Why the SMS failed, as sent by the service (undocumented shape)."""


class SessionEndEvent(BaseEvent):
    """The call ended. For cleanup only: nothing returned for it is sent."""

    type: Literal["session_end"] = "session_end"


class UnknownEvent(BaseEvent):
    """An event whose ``type`` this SDK does not know (forward compatibility).

    It reaches the assistant's ``on_unknown`` handler, if any; otherwise nothing is answered.
    """

    session: SessionInfo | None = None  # type: ignore[assignment]
    """The call, when the payload carries a valid ``session`` object."""


KnownEvent = (
    SessionStartEvent
    | UserSpeechStartedEvent
    | UserSpeakEvent
    | UserBargeInEvent
    | DtmfReceivedEvent
    | AssistantSpeakEvent
    | AssistantSpeechEndedEvent
    | UserInputTimeoutEvent
    | SmsFailedEvent
    | SessionEndEvent
)
"""Any event type this SDK models."""

AiFlowEvent = KnownEvent | UnknownEvent
"""Any event the assistant can receive."""

KNOWN_EVENT_CLASSES: tuple[type[BaseEvent], ...] = get_args(KnownEvent)

EVENT_TYPES: tuple[str, ...] = tuple(
    cls.model_fields["type"].default for cls in KNOWN_EVENT_CLASSES
)
"""Every event type this SDK models, in protocol order: the one list the enum
(``AiFlowEventType``), the handler table and the emulator are checked against."""

HANDLER_EVENTS: frozenset[str] = frozenset(EVENT_TYPES)
"""The event types a handler may be registered for (``on_<type>``; ``user_barge_in`` also
takes barge-ins that come as ``user_speak`` with ``barged_in: true``)."""

NO_REPLY_EVENTS: frozenset[str] = frozenset({"session_end", "user_speech_started"})
"""Events the service takes no answer for (protocol §3.2, §3.10): over HTTP they get ``204``
at once, and what their handlers return is dropped with a warning."""
