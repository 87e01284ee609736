"""The app the state benchmark serves: every event reads and writes the call's state."""

from __future__ import annotations

from sipgate_ai_flow import AiFlowAssistant, CallContext, UserSpeakEvent
from sipgate_ai_flow.asgi import AiFlowApp, create_app


def create() -> AiFlowApp:
    assistant = AiFlowAssistant()  # the store comes from AIFLOW_STORE_URL

    @assistant.on_user_speak
    async def remember(event: UserSpeakEvent, ctx: CallContext) -> str:
        turns = await ctx.state.incr("turns")
        await ctx.state.set("last", event.text)
        return f"Turn {turns}: {event.text}"

    return create_app(assistant)
