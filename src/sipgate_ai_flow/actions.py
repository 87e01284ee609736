"""Actions: what the application sends back to the AI Flow service (protocol §4).

Handlers build actions without ``session_id``; the assistant fills it from the event. Every
range and rule the protocol states is checked when the action is built, and unknown fields are
an error, so mistakes fail in your code rather than on a live call. A plain ``dict`` returned by
a handler is sent as it is (the escape hatch for fields this SDK does not know yet).

Example:
    >>> from sipgate_ai_flow import BargeInConfig, SpeakAction
    >>> SpeakAction(text="Hello!", barge_in=BargeInConfig(strategy="none")).text
    'Hello!'
"""

from __future__ import annotations

import base64
import binascii
from os import PathLike
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field, StringConstraints, field_validator, model_validator

from .config import BargeInConfig, OutgoingModel, TtsConfig, VadConfig
from .enums import SttProvider

__all__ = [
    "AiFlowAction",
    "AudioAction",
    "BargeInAction",
    "BaseAction",
    "ConfigureTranscriptionAction",
    "ConfigureVoiceToVoiceAction",
    "HangupAction",
    "MixAudioAction",
    "SendSmsAction",
    "SpeakAction",
    "TransferAction",
]


class BaseAction(OutgoingModel):
    """Fields common to every action."""

    type: str
    """The action type, e.g. ``"speak"`` (compare with ``AiFlowActionType``)."""
    session_id: str | None = None
    """The call to act on; filled in by the assistant from the event being answered."""


def _check_base64(value: str | None) -> str | None:
    if value is not None:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be valid base64 (a base64-encoded WAV file)") from None
    return value


def _encode_wav(source: bytes | str | PathLike[str]) -> str:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return base64.b64encode(data).decode("ascii")


class SpeakAction(BaseAction):
    """Say something, as plain ``text`` or as ``ssml`` (exactly one of them).

    Example:
        >>> SpeakAction(text="What is your account number?", user_input_timeout_seconds=5).type
        'speak'
    """

    type: Literal["speak"] = "speak"
    text: str | None = None
    """Plain text to speak."""
    ssml: str | None = None
    """An SSML document (``<speak>...</speak>``) to speak instead of ``text``."""
    tts: TtsConfig | None = None
    """Voice; omitted means the voice configured for the AI Flow."""
    barge_in: BargeInConfig | None = None
    """Whether the caller may interrupt; omitted means ``minimum_characters`` with 3."""
    user_input_timeout_seconds: float | None = Field(default=None, ge=0)
    """Seconds of caller silence after playback before ``user_input_timeout`` fires."""
    vad: VadConfig | None = None
    """End-of-turn tuning for the caller's next reply; persists until changed."""

    @model_validator(mode="after")
    def _exactly_one_of_text_or_ssml(self) -> SpeakAction:
        if (self.text is None) == (self.ssml is None):
            which = "both were given" if self.text is not None else "neither was given"
            raise ValueError(f"exactly one of 'text' or 'ssml' is required ({which})")
        return self


class AudioAction(BaseAction):
    """Play a WAV file (16 kHz, mono, 16-bit PCM), base64-encoded in ``audio``.

    Example:
        >>> AudioAction.from_wav(b"RIFF").audio
        'UklGRg=='
    """

    type: Literal["audio"] = "audio"
    audio: str
    """Base64 of a complete WAV file: 16 kHz, mono, 16-bit signed PCM."""
    barge_in: BargeInConfig | None = None
    """Whether the caller may interrupt the playback."""

    _valid_audio = field_validator("audio")(_check_base64)

    @classmethod
    def from_wav(
        cls, source: bytes | str | PathLike[str], *, barge_in: BargeInConfig | None = None
    ) -> AudioAction:
        """Build from WAV bytes or a WAV file path (encodes it as base64)."""
        return cls(audio=_encode_wav(source), barge_in=barge_in)


class MixAudioAction(BaseAction):
    """Loop background audio under the call, or stop it with ``stop=True``."""

    type: Literal["mix_audio"] = "mix_audio"
    audio: str | None = None
    """Base64 WAV (16 kHz, mono, 16-bit) to loop; required unless ``stop`` is true."""
    volume: float | None = Field(default=None, ge=0, le=1)
    """Loop volume 0.0-1.0 (service default 0.5)."""
    stop: bool | None = None
    """``True`` removes the current loop."""

    _valid_audio = field_validator("audio")(_check_base64)

    @model_validator(mode="after")
    def _audio_unless_stop(self) -> MixAudioAction:
        if self.audio is None and not self.stop:
            raise ValueError("'audio' is required unless 'stop' is true")
        return self


class TransferAction(BaseAction):
    """Transfer the caller to another number.

    With ``timeout`` (5-120 s) a failed transfer returns the caller to the assistant as a new
    ``session_start`` with the same session id; without it a failed transfer ends the call.
    """

    type: Literal["transfer"] = "transfer"
    target_phone_number: str
    """Where to transfer to (E.164, leading ``+`` optional)."""
    caller_id_name: str
    """Display name shown to the transfer target."""
    caller_id_number: str
    """Number shown to the transfer target."""
    timeout: int | None = Field(default=None, ge=5, le=120)
    """Seconds to wait for an answer, 5-120; enables the fallback to the assistant."""


class HangupAction(BaseAction):
    """End the call. Speak a goodbye first and hang up on ``assistant_speech_ended``."""

    type: Literal["hangup"] = "hangup"


class BargeInAction(BaseAction):
    """Stop whatever is playing now. Send ``[BargeInAction(), SpeakAction(...)]`` to replace it."""

    type: Literal["barge_in"] = "barge_in"


Vocabulary = Annotated[str, StringConstraints(max_length=200)]


class ConfigureTranscriptionAction(BaseAction):
    """Change speech-to-text mid-call; each given field replaces the current value."""

    type: Literal["configure_transcription"] = "configure_transcription"
    provider: SttProvider | None = None
    """``AZURE``, ``DEEPGRAM`` or ``ELEVEN_LABS``."""
    languages: list[str] | None = Field(default=None, min_length=1, max_length=4)
    """1-4 BCP-47 language codes."""
    custom_vocabulary: list[Vocabulary] | None = Field(default=None, max_length=100)
    """Up to 100 words or phrases of up to 200 characters each."""
    vad: VadConfig | None = None
    """End-of-turn tuning for the rest of the session."""


class SendSmsAction(BaseAction):
    """Send an SMS to a phone number (access-gated); failure arrives as ``sms_failed``."""

    type: Literal["send_sms"] = "send_sms"
    phone_number: str
    """Recipient, E.164 digits (a leading ``+`` is accepted)."""
    message: str
    """The message text."""


class ConfigureVoiceToVoiceAction(BaseAction):
    """Switch the call to a speech-to-speech model (preview, access-gated)."""

    type: Literal["configure_voice_to_voice"] = "configure_voice_to_voice"
    system_prompt: str
    """Instructions for the model."""
    greeting: str | None = None
    """What the model says first."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature 0-2 (default 0.8)."""
    language: str | None = None
    """Language hint such as ``de`` or ``en``."""


AiFlowAction = (
    SpeakAction
    | AudioAction
    | MixAudioAction
    | TransferAction
    | HangupAction
    | BargeInAction
    | ConfigureTranscriptionAction
    | SendSmsAction
    | ConfigureVoiceToVoiceAction
)
"""Any action the application can send."""

ACTION_CLASSES: tuple[type[BaseAction], ...] = get_args(AiFlowAction)

ACTION_TYPES: frozenset[str] = frozenset(cls.model_fields["type"].default for cls in ACTION_CLASSES)
"""Every action type this SDK models (what the emulator accepts as known)."""
