"""String enums whose values are the exact AI Flow wire strings.

Each enum is a ``str`` subclass, so members compare equal to their wire value::

    >>> from sipgate_ai_flow import BargeInStrategy
    >>> BargeInStrategy.IMMEDIATE == "immediate"
    True
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "AiFlowActionType",
    "AiFlowEventType",
    "BargeInStrategy",
    "Direction",
    "SttProvider",
    "TtsProvider",
]


class _WireEnum(str, Enum):
    # ``StrEnum`` needs Python 3.11; this keeps ``str(member)`` equal to the wire value on 3.10.
    def __str__(self) -> str:
        return str(self.value)


class AiFlowEventType(_WireEnum):
    """Every event type the AI Flow service sends (protocol §3)."""

    SESSION_START = "session_start"
    USER_SPEECH_STARTED = "user_speech_started"
    USER_SPEAK = "user_speak"
    USER_BARGE_IN = "user_barge_in"
    """Legacy: current services send ``user_speak`` with ``barged_in: true`` instead."""
    DTMF_RECEIVED = "dtmf_received"
    ASSISTANT_SPEAK = "assistant_speak"
    ASSISTANT_SPEECH_ENDED = "assistant_speech_ended"
    USER_INPUT_TIMEOUT = "user_input_timeout"
    SMS_FAILED = "sms_failed"
    SESSION_END = "session_end"


class AiFlowActionType(_WireEnum):
    """Every action type an application may send back (protocol §4)."""

    SPEAK = "speak"
    AUDIO = "audio"
    MIX_AUDIO = "mix_audio"
    HANGUP = "hangup"
    TRANSFER = "transfer"
    BARGE_IN = "barge_in"
    CONFIGURE_TRANSCRIPTION = "configure_transcription"
    SEND_SMS = "send_sms"
    CONFIGURE_VOICE_TO_VOICE = "configure_voice_to_voice"


class BargeInStrategy(_WireEnum):
    """How the caller may interrupt playback (protocol §5)."""

    NONE = "none"
    """Playback cannot be interrupted by the caller."""
    MANUAL = "manual"
    """Only a ``barge_in`` action interrupts."""
    MINIMUM_CHARACTERS = "minimum_characters"
    """Interrupt once the caller's transcript reaches ``minimum_characters`` (service default)."""
    IMMEDIATE = "immediate"
    """Interrupt at voice onset (20-100 ms)."""


class TtsProvider(_WireEnum):
    """Text-to-speech providers for ``TtsConfig.provider`` (lower case on the wire)."""

    AZURE = "azure"
    ELEVEN_LABS = "eleven_labs"


class SttProvider(_WireEnum):
    """Speech-to-text providers for ``configure_transcription`` (upper case on the wire)."""

    AZURE = "AZURE"
    DEEPGRAM = "DEEPGRAM"
    ELEVEN_LABS = "ELEVEN_LABS"


class Direction(_WireEnum):
    """Call direction in ``SessionInfo.direction``."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
