"""Re-prompt on silence and hang up after three timeouts (the SDK docs' ``onUserInputTimeout``
example with its per-call counter).

    aiflow serve examples/timeout_reprompt.py
"""

from __future__ import annotations

from sipgate_ai_flow import (
    AiFlowAssistant,
    HangupAction,
    SessionEndEvent,
    SessionStartEvent,
    SpeakAction,
    UserInputTimeoutEvent,
    UserSpeakEvent,
)

assistant = AiFlowAssistant()

MAX_TIMEOUTS = 3
TIMEOUT_SECONDS = 5
_timeouts: dict[str, int] = {}


@assistant.on_session_start
async def ask_account(event: SessionStartEvent) -> SpeakAction:
    return SpeakAction(
        text="What is your account number?", user_input_timeout_seconds=TIMEOUT_SECONDS
    )


@assistant.on_user_speak
async def got_answer(event: UserSpeakEvent) -> str:
    _timeouts.pop(event.session.id, None)
    return f"Thank you. I noted account number {event.text}."


@assistant.on_user_input_timeout
async def reprompt(event: UserInputTimeoutEvent) -> SpeakAction | HangupAction:
    count = _timeouts.get(event.session.id, 0) + 1
    _timeouts[event.session.id] = count
    if count >= MAX_TIMEOUTS:
        return HangupAction()
    return SpeakAction(
        text=f"I didn't hear anything. Please respond. Attempt {count} of {MAX_TIMEOUTS}.",
        user_input_timeout_seconds=TIMEOUT_SECONDS,
    )


@assistant.on_session_end
async def forget(event: SessionEndEvent) -> None:
    _timeouts.pop(event.session.id, None)
