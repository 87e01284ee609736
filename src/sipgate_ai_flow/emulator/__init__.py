"""An emulator of the sipgate AI Flow service: call any AI Flow app without a phone.

``EmulatedCall`` plays the service's side of one call against an app reached through a
transport: ``HttpAppTransport`` (webhook URL), ``WebSocketAppTransport`` (``ws://`` URL) or
``InProcessTransport`` (an ``AiFlowAssistant``); ``resolve_target`` picks one for a URL, a
module or an assistant, and ``running`` drives a call from start to close. Everything the app
sends is checked strictly and problems are reported as ``Finding``s.
``sipgate_ai_flow.testing.simulate_call`` wraps this for tests; ``aiflow emulate`` serves the
fake outbound-call API.
"""

from .call import CallConfig, CallEndedError, EmulatedCall, RealClock, VirtualClock
from .lifecycle import CallStartError, running
from .target import Target, TargetError, resolve_target, transport_for
from .transports import (
    TRANSPORTS,
    AppTransport,
    Exchange,
    HttpAppTransport,
    InProcessTransport,
    WebSocketAppTransport,
)
from .validate import Finding, check_actions

__all__ = [
    "TRANSPORTS",
    "AppTransport",
    "CallConfig",
    "CallEndedError",
    "CallStartError",
    "EmulatedCall",
    "Exchange",
    "Finding",
    "HttpAppTransport",
    "InProcessTransport",
    "RealClock",
    "Target",
    "TargetError",
    "VirtualClock",
    "WebSocketAppTransport",
    "check_actions",
    "resolve_target",
    "running",
    "transport_for",
]
