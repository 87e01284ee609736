"""The examples, called like a person would: through the emulator, over every transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant
from sipgate_ai_flow._loader import load_assistant
from sipgate_ai_flow.testing import simulate_call

EXAMPLES = Path(__file__).parents[2] / "examples"
TRANSPORTS = ["inprocess", "http", "websocket"]


@pytest.fixture(params=TRANSPORTS)
def reach(request: pytest.FixtureRequest, live_server: Any) -> Any:
    """Open a call to an example over the parametrized transport."""

    def call(example: str, **options: Any) -> Any:
        assistant = load_assistant(str(EXAMPLES / example))
        if request.param == "inprocess":
            return simulate_call(assistant, **options)
        server = live_server(assistant.asgi())
        url = f"{server.http_url}/webhook" if request.param == "http" else f"{server.ws_url}/ws"
        return simulate_call(url, **options)

    return call


def kinds(call: Any) -> list[str]:
    return [a["type"] for a in call.actions]


async def test_echo_repeats_and_asks_once(reach: Any):
    async with reach("echo.py") as call:
        await call.say("Good morning")
        await call.wait_until_quiet()
        assert call.spoken == [
            "Hello! Say something and I will repeat it.",
            "You said: Good morning",
            "Is there anything else I can help you with?",
        ]
        await call.silence(30)
        assert len(call.spoken) == 3  # the question is not repeated
    assert call.events[-1]["type"] == "session_end"
    assert call.findings == []


async def test_customer_service_transfer_and_barge_in(reach: Any):
    async with reach("customer_service.py") as call:
        # The welcome allows immediate barge-in after 500 ms: interrupt it at 800 ms.
        await call.say("billing please", after_ms=800)
        user_speak = next(e for e in call.events if e["type"] == "user_speak")
        assert user_speak["barged_in"] is True
        assert "invoice" in call.spoken[-1]
        await call.say("I need support")
        assert kinds(call)[-2:] == ["speak", "transfer"]
        assert call.ended
        assert call.state["transfers"][0]["target_phone_number"] == "4921100000000"
    assert call.findings == []


async def test_customer_service_transfer_fallback_and_goodbye(reach: Any):
    async with reach("customer_service.py", transfer_outcome="failed") as call:
        await call.say("support")
        await call.silence(31)  # the transfer rings out after its 30 s timeout
        assert [e["type"] for e in call.events].count("session_start") == 2
        assert call.spoken[-1].startswith("Welcome to customer service")
        await call.say("no thanks, bye")
        await call.wait_until_quiet()
        assert kinds(call)[-1] == "hangup"
        assert call.ended
    assert call.findings == []


async def test_timeout_reprompt_hangs_up_after_three_silences(reach: Any):
    async with reach("timeout_reprompt.py") as call:
        await call.silence(60)
        assert [e["type"] for e in call.events].count("user_input_timeout") == 3
        assert call.spoken[1:] == [
            "I didn't hear anything. Please respond. Attempt 1 of 3.",
            "I didn't hear anything. Please respond. Attempt 2 of 3.",
        ]
        assert call.ended
        assert call.end_reason == "the assistant hung up"
    assert call.findings == []


async def test_timeout_reprompt_counter_resets_on_an_answer(reach: Any):
    async with reach("timeout_reprompt.py") as call:
        await call.silence(10)
        await call.say("12345")
        assert call.spoken[-1] == "Thank you. I noted account number 12345."
        await call.silence(20)
        assert not call.ended  # the thank-you has no timeout
    assert call.findings == []


async def test_dtmf_menu(reach: Any):
    async with reach("dtmf_menu.py") as call:
        await call.press("2")
        assert kinds(call)[-2:] == ["barge_in", "speak"]
        assert call.spoken[-1].startswith("We are at Gladbacher Strasse 74.")
        await call.press("1")
        assert kinds(call)[-3:] == ["barge_in", "speak", "transfer"]
        assert call.ended
    assert call.findings == []


def test_every_example_has_a_driver_test():
    tested = {"echo.py", "customer_service.py", "timeout_reprompt.py", "dtmf_menu.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested
    for name in tested:
        assert isinstance(load_assistant(str(EXAMPLES / name)), AiFlowAssistant)
