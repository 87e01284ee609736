"""A customer-service bot in the style of the SDK docs: intents by keyword, a transfer to a
person, a goodbye with a hang-up once it has been spoken, and barge-in handling.

    aiflow serve examples/customer_service.py
"""

from __future__ import annotations

from sipgate_ai_flow import (
    AiFlowAssistant,
    AssistantSpeechEndedEvent,
    BargeInConfig,
    BargeInStrategy,
    CallContext,
    HangupAction,
    SessionEndEvent,
    SessionStartEvent,
    SpeakAction,
    TransferAction,
    UserSpeakEvent,
)

assistant = AiFlowAssistant(error_reply="Sorry, something went wrong. Please call again later.")

SUPPORT_NUMBER = "4921100000000"
_hanging_up: set[str] = set()


def ask(text: str) -> SpeakAction:
    """A question the caller may interrupt as soon as they start talking."""
    return SpeakAction(
        text=text,
        barge_in=BargeInConfig(strategy=BargeInStrategy.IMMEDIATE, allow_after_ms=500),
        user_input_timeout_seconds=8,
    )


@assistant.on_session_start
async def welcome(event: SessionStartEvent) -> SpeakAction:
    return ask("Welcome to customer service! I can help with billing, support, or sales.")


@assistant.on_user_speak
async def route(
    event: UserSpeakEvent, ctx: CallContext
) -> SpeakAction | list[SpeakAction | TransferAction]:
    text = event.text.lower()
    ctx.logger.info("intent request: %r (barged in: %s)", event.text, event.barged_in)
    if "billing" in text or "invoice" in text:
        return ask("Your last invoice was sent on the first of the month. Anything else?")
    if "support" in text or "help" in text or "human" in text:
        return [
            SpeakAction(text="I'm connecting you to our support team."),
            TransferAction(
                target_phone_number=SUPPORT_NUMBER,
                caller_id_name="Customer Service",
                caller_id_number=SUPPORT_NUMBER,
                timeout=30,
            ),
        ]
    if "sales" in text:
        return ask("Our sales team is available weekdays from 9 to 5. Anything else?")
    if "bye" in text or "no thanks" in text:
        _hanging_up.add(event.session.id)
        return SpeakAction(text="Thank you for calling. Goodbye!")
    if event.barged_in:
        return ask("Sorry, go ahead. How can I help?")
    return ask("I can help with billing, support, or sales. Which would you like?")


@assistant.on_assistant_speech_ended
async def hang_up_after_goodbye(event: AssistantSpeechEndedEvent) -> HangupAction | None:
    if event.session.id in _hanging_up:
        return HangupAction()
    return None


@assistant.on_session_end
async def cleanup(event: SessionEndEvent) -> None:
    _hanging_up.discard(event.session.id)
