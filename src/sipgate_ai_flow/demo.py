"""The bundled demo assistant (``aiflow demo`` calls it): a small front desk.

It greets the caller, answers "opening hours", transfers on "agent" or key 1, says goodbye and
hangs up on "bye", repeats what it did not understand, and hangs up after three silences.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> event = {"type": "user_speak", "text": "opening hours?", "session": {"id": "s1"}}
    >>> asyncio.run(assistant.handle_event(event))[0].text
    'We are open Monday to Friday, 9 to 5. Anything else?'
"""

from __future__ import annotations

from .actions import HangupAction, SpeakAction, TransferAction
from .assistant import AiFlowAssistant
from .config import BargeInConfig
from .context import CallContext
from .enums import BargeInStrategy
from .events import (
    AssistantSpeechEndedEvent,
    DtmfReceivedEvent,
    SessionEndEvent,
    SessionStartEvent,
    UserInputTimeoutEvent,
    UserSpeakEvent,
)

__all__ = ["assistant"]

assistant = AiFlowAssistant(error_reply="Sorry, something went wrong on our side.")

AGENT_NUMBER = "4921100000000"
_MAX_SILENCES = 3
# Per-call memory in one process; the state store (ctx.state) replaces this for many workers.
_silences: dict[str, int] = {}
_leaving: set[str] = set()


def _ask(text: str) -> SpeakAction:
    return SpeakAction(
        text=text,
        user_input_timeout_seconds=5,
        barge_in=BargeInConfig(strategy=BargeInStrategy.MINIMUM_CHARACTERS, minimum_characters=3),
    )


@assistant.on_session_start
async def greet(event: SessionStartEvent) -> SpeakAction:
    who = "Thanks for taking our call" if event.session.direction == "outbound" else "Welcome"
    return _ask(
        f"{who} to the demo front desk! Ask for our opening hours, say 'agent' or press 1 "
        "to talk to a person, or say 'bye' to hang up."
    )


@assistant.on_user_speak
async def answer(
    event: UserSpeakEvent, ctx: CallContext
) -> SpeakAction | list[SpeakAction | TransferAction]:
    text = event.text.lower()
    _silences.pop(event.session.id, None)
    if "hour" in text or "open" in text:
        return _ask("We are open Monday to Friday, 9 to 5. Anything else?")
    if "agent" in text or "person" in text or "human" in text:
        return _transfer()
    if "bye" in text:
        _leaving.add(event.session.id)
        return SpeakAction(text="Goodbye, and thanks for calling!")
    ctx.logger.info("did not understand %r", event.text)
    prefix = "Sorry for talking over you. " if event.barged_in else ""
    return _ask(f"{prefix}You said: {event.text}. Ask for opening hours, or say 'agent'.")


@assistant.on_dtmf_received
async def menu(event: DtmfReceivedEvent) -> SpeakAction | list[SpeakAction | TransferAction]:
    if event.digit == "1":
        return _transfer()
    return _ask(f"You pressed {event.digit}. Press 1 for a person.")


def _transfer() -> list[SpeakAction | TransferAction]:
    return [
        SpeakAction(text="Connecting you to a person now."),
        TransferAction(
            target_phone_number=AGENT_NUMBER,
            caller_id_name="Demo front desk",
            caller_id_number=AGENT_NUMBER,
            timeout=30,
        ),
    ]


@assistant.on_assistant_speech_ended
async def maybe_hang_up(event: AssistantSpeechEndedEvent) -> HangupAction | None:
    if event.session.id in _leaving:
        return HangupAction()
    return None


@assistant.on_user_input_timeout
async def nudge(event: UserInputTimeoutEvent) -> SpeakAction | HangupAction:
    count = _silences.get(event.session.id, 0) + 1
    _silences[event.session.id] = count
    if count >= _MAX_SILENCES:
        _leaving.add(event.session.id)
        return SpeakAction(text="I can't hear you, so I'll hang up now. Goodbye!")
    return _ask(f"Are you still there? ({count} of {_MAX_SILENCES})")


@assistant.on_session_end
async def forget(event: SessionEndEvent) -> None:
    _silences.pop(event.session.id, None)
    _leaving.discard(event.session.id)
