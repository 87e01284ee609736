"""Parse + dispatch + dump of one ``user_speak`` vs the seed pages' hand-written handler.

The baseline is what the documentation's Flask example does per event, minus the web
framework: ``json.loads``, dict access, ``json.dumps``. The SDK does the same job with full
validation of the event, a typed handler, session-id stamping and the HTTP body rule.
"""

from __future__ import annotations

import json

from sipgate_ai_flow import AiFlowAssistant, UserSpeakEvent, dump_actions

from ._timing import Comparison, compare

BODY = json.dumps(
    {
        "type": "user_speak",
        "text": "Hello, I need help with my invoice",
        "barged_in": False,
        "session": {
            "id": "550e8400-e29b-41d4-a716-446655440000",
            "account_id": "account-123",
            "phone_number": "+1234567890",
            "direction": "inbound",
            "from_phone_number": "+9876543210",
            "to_phone_number": "+1234567890",
        },
    }
).encode()


def bare_handler(body: bytes) -> bytes | None:
    """The seed pages' webhook body, without Flask."""
    event = json.loads(body)
    if event["type"] == "user_speak":
        return json.dumps(
            {
                "type": "speak",
                "session_id": event["session"]["id"],
                "text": f"You said: {event['text']}",
            }
        ).encode()
    return None


assistant = AiFlowAssistant()


@assistant.on_user_speak
async def echo(event: UserSpeakEvent) -> str:
    return f"You said: {event.text}"


async def sdk_handler(body: bytes) -> bytes | None:
    return dump_actions(await assistant.handle_event(body))


async def run(*, rounds: int, iterations: int) -> Comparison:
    expected = json.loads(bare_handler(BODY) or b"")
    got = json.loads(await sdk_handler(BODY) or b"")
    if got != expected:  # the two must do the same work
        raise AssertionError(f"SDK answered {got}, bare handler {expected}")

    async def bare() -> object:
        return bare_handler(BODY)

    async def sdk() -> object:
        return await sdk_handler(BODY)

    return await compare(
        "dispatch: parse+dispatch+dump",
        "bare handler",
        bare,
        sdk,
        target=2.0,
        rounds=rounds,
        iterations=iterations,
    )
