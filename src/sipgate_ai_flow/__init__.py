"""sipgate AI Flow for Python: typed models, an assistant that turns call events into actions,
and (in later modules) servers, an emulator of the AI Flow service and test tools.

Example:
    >>> from sipgate_ai_flow import AiFlowAssistant
    >>> assistant = AiFlowAssistant(on_session_start=lambda event: "Hello! How can I help?")
"""

from ._version import __version__
from .actions import (
    AiFlowAction,
    AudioAction,
    BargeInAction,
    BaseAction,
    ConfigureTranscriptionAction,
    ConfigureVoiceToVoiceAction,
    HangupAction,
    MixAudioAction,
    SendSmsAction,
    SpeakAction,
    TransferAction,
)
from .assistant import AiFlowAssistant, ErrorReply
from .codec import (
    ActionLike,
    dump_action,
    dump_actions,
    dump_event,
    parse_action,
    parse_actions,
    parse_event,
)
from .config import BargeInConfig, TtsConfig, VadConfig
from .context import CallContext
from .enums import (
    AiFlowActionType,
    AiFlowEventType,
    BargeInStrategy,
    Direction,
    SttProvider,
    TtsProvider,
)
from .errors import (
    AiFlowError,
    ConfigurationError,
    HandlerError,
    InvalidActionError,
    InvalidEventError,
    OutboundCallError,
    SessionNotFoundError,
    StoreError,
)
from .events import (
    AiFlowEvent,
    AssistantSpeakEvent,
    AssistantSpeechEndedEvent,
    BaseEvent,
    DtmfReceivedEvent,
    SessionEndEvent,
    SessionStartEvent,
    SmsFailedEvent,
    UnknownEvent,
    UserBargeInEvent,
    UserInputTimeoutEvent,
    UserSpeakEvent,
    UserSpeechStartedEvent,
)
from .models import SessionInfo

__all__ = [
    "ActionLike",
    "AiFlowAction",
    "AiFlowActionType",
    "AiFlowAssistant",
    "AiFlowError",
    "AiFlowEvent",
    "AiFlowEventType",
    "AssistantSpeakEvent",
    "AssistantSpeechEndedEvent",
    "AudioAction",
    "BargeInAction",
    "BargeInConfig",
    "BargeInStrategy",
    "BaseAction",
    "BaseEvent",
    "CallContext",
    "ConfigurationError",
    "ConfigureTranscriptionAction",
    "ConfigureVoiceToVoiceAction",
    "Direction",
    "DtmfReceivedEvent",
    "ErrorReply",
    "HandlerError",
    "HangupAction",
    "InvalidActionError",
    "InvalidEventError",
    "MixAudioAction",
    "OutboundCallError",
    "SendSmsAction",
    "SessionEndEvent",
    "SessionInfo",
    "SessionNotFoundError",
    "SessionStartEvent",
    "SmsFailedEvent",
    "SpeakAction",
    "StoreError",
    "SttProvider",
    "TransferAction",
    "TtsConfig",
    "TtsProvider",
    "UnknownEvent",
    "UserBargeInEvent",
    "UserInputTimeoutEvent",
    "UserSpeakEvent",
    "UserSpeechStartedEvent",
    "VadConfig",
    "__version__",
    "dump_action",
    "dump_actions",
    "dump_event",
    "parse_action",
    "parse_actions",
    "parse_event",
]
