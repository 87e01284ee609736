"""``CallRuntime.dispatch`` against a fake ``Reply``: the core on its own, no transport.

The fake records every ``send`` and ``send_failure`` and, at each send, what the store holds
for the call, so these tests see exactly what a transport would get and when.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant, SpeakAction, parse_event
from sipgate_ai_flow.codec import ActionLike
from sipgate_ai_flow.errors import HandlerError
from sipgate_ai_flow.reply import Reply


class Recorded(Reply):
    """An open reply (like HTTP) that keeps what it was given."""

    async def send(self, actions: list[ActionLike]) -> None:
        state = await self.runtime.store.load(self.session_id or "")
        self.channel.append(("send", [_text(a) for a in actions], state))

    async def send_failure(self, error: HandlerError) -> None:
        self.channel.append(("failure", str(error), None))


def _text(action: ActionLike) -> Any:
    if isinstance(action, SpeakAction):
        return action.text
    return action.get("text", action) if isinstance(action, dict) else action  # queued: JSON


def _event(event_type: str, **fields: Any) -> Any:
    return parse_event({"type": event_type, "session": {"id": "call-1"}, **fields})


async def _dispatch(assistant: AiFlowAssistant, event: Any) -> list[tuple[str, Any, Any]]:
    sent: list[tuple[str, Any, Any]] = []
    await assistant.runtime.dispatch(event, Recorded(assistant.runtime, "call-1", True, sent))
    return sent


async def test_queued_actions_go_out_before_the_handler_answer():
    assistant = AiFlowAssistant(on_user_speak=lambda event: "answer")
    await assistant.runtime.deliver("call-1", [SpeakAction(session_id="call-1", text="queued")])
    sent = await _dispatch(assistant, _event("user_speak", text="hi"))
    assert [texts for kind, texts, _ in sent if kind == "send"] == [["queued", "answer"]]


async def test_state_is_saved_before_the_reply_leaves():
    assistant = AiFlowAssistant()

    @assistant.on_user_speak
    async def count(event: Any, ctx: Any) -> str:
        turns = await ctx.state.get("turns", 0) + 1
        await ctx.state.set("turns", turns)  # buffered: written when the event is done
        return f"turn {turns}"

    first = await _dispatch(assistant, _event("user_speak", text="a"))
    second = await _dispatch(assistant, _event("user_speak", text="b"))
    assert first == [("send", ["turn 1"], {"turns": 1})]  # saved when the reply was sent
    assert second == [("send", ["turn 2"], {"turns": 2})]


async def test_a_session_end_answer_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture):
    assistant = AiFlowAssistant()

    @assistant.on_session_end
    def goodbye(event: Any) -> str:
        return "Goodbye"

    with caplog.at_level(logging.WARNING, logger="sipgate_ai_flow"):
        sent = await _dispatch(assistant, _event("session_end"))
    assert all(texts == [] for kind, texts, _ in sent if kind == "send")
    assert any(
        "returned 1 action(s) for session_end" in r.getMessage() and "dropped" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


async def test_the_error_hook_answers_instead_of_the_failing_handler():
    assistant = AiFlowAssistant()
    seen: list[str] = []

    @assistant.on_user_speak
    def broken(event: Any) -> str:
        raise KeyError("no such customer")

    @assistant.on_error
    def sorry(error: Exception, event: Any) -> str:
        seen.append(type(error).__name__)
        return "Sorry, something went wrong."

    sent = await _dispatch(assistant, _event("user_speak", text="hi"))
    assert sent == [("send", ["Sorry, something went wrong."], {})]
    assert seen == ["KeyError"]


async def test_without_a_hook_the_reply_is_told_nothing_answers():
    def broken(event: Any) -> str:
        raise KeyError("no such customer")

    sent = await _dispatch(AiFlowAssistant(on_user_speak=broken), _event("user_speak", text="x"))
    assert len(sent) == 1
    kind, message, _ = sent[0]
    assert kind == "failure"
    assert "broken" in message
    assert "user_speak" in message


async def test_an_event_without_a_handler_is_an_empty_answer_and_no_hold():
    assistant = AiFlowAssistant(hold_after=0.01)
    sent = await _dispatch(
        assistant, _event("assistant_speak", text="Hello", duration_ms=900, speech_started_at=1)
    )
    assert sent == [("send", [], {})]
