"""Every example in examples/ holds a conversation, over HTTP webhook and over WebSocket."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sipgate_ai_flow._loader import load_assistant
from sipgate_ai_flow.asgi import create_app

EXAMPLES = Path(__file__).parents[2] / "examples"

Step = tuple[dict[str, Any], list[dict[str, Any]]]


def say(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "user_speak", "text": text, **extra}


def speak(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "speak", "text": text, **extra}


ENDED = {"type": "assistant_speech_ended"}
TIMEOUT = {"type": "user_input_timeout"}
START = {"type": "session_start"}

TRANSFER_SUPPORT = {
    "type": "transfer",
    "target_phone_number": "4921100000000",
    "caller_id_name": "Customer Service",
    "caller_id_number": "4921100000000",
    "timeout": 30,
}
ASK = {
    "barge_in": {"strategy": "immediate", "allow_after_ms": 500},
    "user_input_timeout_seconds": 8.0,
}
MENU = "Press 1 for sales, 2 to hear our address, or 0 to hang up."

CONVERSATIONS: dict[str, list[Step]] = {
    "echo.py": [
        (START, [speak("Hello! Say something and I will repeat it.")]),
        (ENDED, []),
        (say("Good morning"), [speak("You said: Good morning")]),
        (ENDED, [speak("Is there anything else I can help you with?")]),
        (ENDED, []),  # the follow-up is asked once
    ],
    "customer_service.py": [
        (START, [speak("Welcome to customer service! I can help with billing, support, or sales.", **ASK)]),
        (say("I have a billing question"), [speak("Your last invoice was sent on the first of the month. Anything else?", **ASK)]),
        (say("wait", barged_in=True), [speak("Sorry, go ahead. How can I help?", **ASK)]),
        (say("I need support"), [speak("I'm connecting you to our support team."), TRANSFER_SUPPORT]),
        (START, [speak("Welcome to customer service! I can help with billing, support, or sales.", **ASK)]),
        (say("no thanks, bye"), [speak("Thank you for calling. Goodbye!")]),
        (ENDED, [{"type": "hangup"}]),
    ],
    "timeout_reprompt.py": [
        (START, [speak("What is your account number?", user_input_timeout_seconds=5.0)]),
        (TIMEOUT, [speak("I didn't hear anything. Please respond. Attempt 1 of 3.", user_input_timeout_seconds=5.0)]),
        (TIMEOUT, [speak("I didn't hear anything. Please respond. Attempt 2 of 3.", user_input_timeout_seconds=5.0)]),
        (TIMEOUT, [{"type": "hangup"}]),
    ],
    "dtmf_menu.py": [
        (START, [speak(f"Welcome! {MENU}", user_input_timeout_seconds=10.0)]),
        ({"type": "dtmf_received", "digit": "7"}, [{"type": "barge_in"}, speak(f"You pressed 7. {MENU}")]),
        ({"type": "dtmf_received", "digit": "2"}, [{"type": "barge_in"}, speak(f"We are at Gladbacher Strasse 74. {MENU}")]),
        (
            {"type": "dtmf_received", "digit": "1"},
            [
                {"type": "barge_in"},
                speak("Connecting you to sales."),
                {"type": "transfer", "target_phone_number": "49211100200", "caller_id_name": "Menu", "caller_id_number": "49211100200"},
            ],
        ),
    ],
}  # fmt: skip


def test_every_example_has_a_conversation():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(CONVERSATIONS)


def stamped(actions: list[dict[str, Any]], session_id: str) -> Any:
    with_ids = [{**a, "session_id": session_id} for a in actions]
    return with_ids[0] if len(with_ids) == 1 else with_ids


@pytest.mark.parametrize("example", sorted(CONVERSATIONS))
@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_example_conversation(example: str, transport: str):
    assistant = load_assistant(str(EXAMPLES / example))
    session_id = str(uuid.uuid4())
    session = {"id": session_id, "account_id": "acc", "phone_number": "4921100000000"}
    steps = [*CONVERSATIONS[example], ({"type": "session_end"}, [])]
    with TestClient(create_app(assistant)) as client:
        if transport == "http":
            for event, expected in steps:
                response = client.post("/webhook", json={**event, "session": session})
                if expected:
                    assert response.status_code == 200, event
                    assert response.json() == stamped(expected, session_id), event
                else:
                    assert response.status_code == 204, (event, response.text)
        else:
            with client.websocket_connect("/ws") as ws:
                for event, expected in steps:
                    ws.send_text(json.dumps({**event, "session": session}))
                    if expected:
                        assert ws.receive_json() == stamped(expected, session_id), event
