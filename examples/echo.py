"""Echo with a follow-up question (ported from the seed pages).

The assistant repeats what the caller said; when it has finished speaking it asks once whether
there is anything else (the docs' ``assistant_speech_ended`` "trigger follow-up" example).

    aiflow serve examples/echo.py
"""

from __future__ import annotations

from sipgate_ai_flow import (
    AiFlowAssistant,
    AssistantSpeechEndedEvent,
    SessionEndEvent,
    SessionStartEvent,
    UserSpeakEvent,
)

assistant = AiFlowAssistant()

FOLLOW_UP = "Is there anything else I can help you with?"
_answered: set[str] = set()  # calls whose last answer still awaits the follow-up question


@assistant.on_session_start
async def greet(event: SessionStartEvent) -> str:
    return "Hello! Say something and I will repeat it."


@assistant.on_user_speak
async def echo(event: UserSpeakEvent) -> str:
    _answered.add(event.session.id)
    return f"You said: {event.text}"


@assistant.on_assistant_speech_ended
async def follow_up(event: AssistantSpeechEndedEvent) -> str | None:
    if event.session.id in _answered:  # ask once per answer, not after the question itself
        _answered.discard(event.session.id)
        return FOLLOW_UP
    return None


@assistant.on_session_end
async def forget(event: SessionEndEvent) -> None:
    _answered.discard(event.session.id)
