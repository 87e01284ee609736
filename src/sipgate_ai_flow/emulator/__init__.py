"""An emulator of the sipgate AI Flow service: call any AI Flow app without a phone.

``EmulatedCall`` plays the service's side of one call against an app reached through a
transport: ``HttpAppTransport`` (webhook URL), ``WebSocketAppTransport`` (``ws://`` URL) or
``InProcessTransport`` (an ``AiFlowAssistant``). Everything the app sends is checked strictly
and problems are reported as ``Finding``s. ``sipgate_ai_flow.testing.simulate_call`` wraps
this for tests; ``aiflow emulate`` serves the fake outbound-call API.
"""

from .call import CallConfig, CallEndedError, EmulatedCall, RealClock, VirtualClock
from .transports import (
    AppTransport,
    Exchange,
    HttpAppTransport,
    InProcessTransport,
    WebSocketAppTransport,
    transport_for,
)
from .validate import Finding, check_actions

__all__ = [
    "AppTransport",
    "CallConfig",
    "CallEndedError",
    "EmulatedCall",
    "Exchange",
    "Finding",
    "HttpAppTransport",
    "InProcessTransport",
    "RealClock",
    "VirtualClock",
    "WebSocketAppTransport",
    "check_actions",
    "transport_for",
]
