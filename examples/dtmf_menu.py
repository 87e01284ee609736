"""A key-press menu with a transfer (the docs' ``dtmf_received`` example, using the current
transfer fields instead of the page's outdated ``transfer_to``).

    aiflow serve examples/dtmf_menu.py
"""

from __future__ import annotations

from sipgate_ai_flow import (
    AiFlowAssistant,
    BargeInAction,
    DtmfReceivedEvent,
    HangupAction,
    SessionStartEvent,
    SpeakAction,
    TransferAction,
)

assistant = AiFlowAssistant()

SALES_NUMBER = "49211100200"
MENU = "Press 1 for sales, 2 to hear our address, or 0 to hang up."


@assistant.on_session_start
async def menu(event: SessionStartEvent) -> SpeakAction:
    return SpeakAction(text=f"Welcome! {MENU}", user_input_timeout_seconds=10)


@assistant.on_dtmf_received
async def choose(
    event: DtmfReceivedEvent,
) -> list[SpeakAction | TransferAction | BargeInAction | HangupAction]:
    # barge_in first: a key press cuts off the menu that may still be playing.
    if event.digit == "1":
        return [
            BargeInAction(),
            SpeakAction(text="Connecting you to sales."),
            TransferAction(
                target_phone_number=SALES_NUMBER,
                caller_id_name="Menu",
                caller_id_number=SALES_NUMBER,
            ),
        ]
    if event.digit == "2":
        return [BargeInAction(), SpeakAction(text=f"We are at Gladbacher Strasse 74. {MENU}")]
    if event.digit == "0":
        return [BargeInAction(), HangupAction()]
    return [BargeInAction(), SpeakAction(text=f"You pressed {event.digit}. {MENU}")]
