"""Nested configuration objects used inside actions: TTS voice, barge-in and VAD (protocol §5-§7).

Example:
    >>> from sipgate_ai_flow import BargeInConfig, BargeInStrategy
    >>> BargeInConfig(strategy=BargeInStrategy.IMMEDIATE, allow_after_ms=500).allow_after_ms
    500
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from ._validation import problems
from .enums import BargeInStrategy, TtsProvider
from .errors import InvalidActionError
from .models import AiFlowModel

__all__ = ["BargeInConfig", "OutgoingModel", "TtsConfig", "VadConfig"]


class OutgoingModel(AiFlowModel):
    """Base of everything the application sends: unknown fields are an error.

    Building one with bad fields raises ``InvalidActionError`` naming each problem.
    """

    model_config = ConfigDict(extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            details, errors = problems(exc, prefix=_wire_name(type(self)))
            raise InvalidActionError(details, errors) from None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # The __init__ above is for direct construction only. Left as a "custom init",
        # pydantic would route nested validation through it too, flattening every nested
        # problem into one error at the outer model; so validation bypasses it.
        super().__pydantic_init_subclass__(**kwargs)
        cls.__pydantic_custom_init__ = False
        cls.model_rebuild(force=True)


def _wire_name(cls: type[OutgoingModel]) -> str:
    field = cls.model_fields.get("type")
    if field is not None and isinstance(field.default, str):
        return field.default
    return cls.__name__


class TtsConfig(OutgoingModel):
    """Voice for a ``speak`` action. Omit it to use the voice configured for the AI Flow.

    Example:
        >>> TtsConfig(provider="azure", language="de-DE", voice="de-DE-KatjaNeural").provider
        <TtsProvider.AZURE: 'azure'>
    """

    provider: TtsProvider
    """``azure`` or ``eleven_labs``."""
    language: str | None = None
    """BCP-47 language, e.g. ``en-US`` (Azure)."""
    voice: str | None = None
    """Azure voice name (``en-US-JennyNeural``) or ElevenLabs voice id."""


class BargeInConfig(OutgoingModel):
    """Whether and how the caller may interrupt this playback (protocol §5).

    Without ``barge_in`` the service uses ``minimum_characters`` with 3 characters.
    """

    strategy: BargeInStrategy
    """``none``, ``manual``, ``minimum_characters`` or ``immediate``."""
    minimum_characters: int | None = Field(default=None, ge=1, le=100)
    """For ``minimum_characters``: transcript length that interrupts, 1-100 (default 3)."""
    allow_after_ms: int | None = Field(default=None, ge=0, le=10000)
    """Protection window from playback start, 0-10000 ms (default 0)."""


class VadConfig(OutgoingModel):
    """End-of-turn detection for the caller's replies (protocol §7)."""

    end_of_turn_silence_ms: int | None = Field(default=None, gt=0)
    """Silence that closes the caller's turn; 150-2000 ms recommended."""
