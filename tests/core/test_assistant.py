"""Dispatch rules of AiFlowAssistant: return values, handler shapes, event rules, errors."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sipgate_ai_flow import (
    AiFlowAssistant,
    AssistantSpeakEvent,
    AssistantSpeechEndedEvent,
    BargeInAction,
    CallContext,
    ConfigurationError,
    DtmfReceivedEvent,
    HandlerError,
    HangupAction,
    InvalidActionError,
    InvalidEventError,
    SessionEndEvent,
    SessionStartEvent,
    SmsFailedEvent,
    SpeakAction,
    TransferAction,
    UnknownEvent,
    UserBargeInEvent,
    UserInputTimeoutEvent,
    UserSpeakEvent,
    UserSpeechStartedEvent,
    dump_actions,
    parse_event,
)

SID = "550e8400-e29b-41d4-a716-446655440000"
SESSION = {
    "id": SID,
    "account_id": "account-123",
    "phone_number": "+1234567890",
    "direction": "inbound",
    "from_phone_number": "+9876543210",
    "to_phone_number": "+1234567890",
}

EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "user_speak": {"text": "hello"},
    "user_barge_in": {"text": "wait"},
    "dtmf_received": {"digit": "5"},
    "assistant_speak": {"text": "Hi", "duration_ms": 900, "speech_started_at": 1700000000000},
}

EVENT_CLASSES: dict[str, type] = {
    "session_start": SessionStartEvent,
    "user_speech_started": UserSpeechStartedEvent,
    "user_speak": UserSpeakEvent,
    "dtmf_received": DtmfReceivedEvent,
    "assistant_speak": AssistantSpeakEvent,
    "assistant_speech_ended": AssistantSpeechEndedEvent,
    "user_input_timeout": UserInputTimeoutEvent,
    "sms_failed": SmsFailedEvent,
    "session_end": SessionEndEvent,
}
ANSWERABLE = [t for t in EVENT_CLASSES if t not in {"session_end", "user_speech_started"}]


def payload(event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "session": SESSION, **EXTRA_FIELDS.get(event_type, {}), **fields}


def speak(text: str) -> SpeakAction:
    return SpeakAction(session_id=SID, text=text)


# -- return values ---------------------------------------------------------------------------


async def test_string_becomes_speak_with_session_id():
    assistant = AiFlowAssistant(on_user_speak=lambda e: f"You said {e.text}")
    actions = await assistant.handle_event(payload("user_speak"))
    assert actions == [speak("You said hello")]
    assert dump_actions(actions) == (
        b'{"type":"speak","session_id":"' + SID.encode() + b'","text":"You said hello"}'
    )


async def test_action_without_session_id_is_stamped_and_explicit_one_kept():
    assistant = AiFlowAssistant()

    @assistant.on_user_speak
    async def reply(event: UserSpeakEvent) -> list[Any]:
        return [HangupAction(), BargeInAction(session_id="other")]

    actions = await assistant.handle_event(payload("user_speak"))
    assert actions == [HangupAction(session_id=SID), BargeInAction(session_id="other")]


async def test_list_keeps_order_and_mixes_kinds():
    transfer = TransferAction(
        target_phone_number="4912345678", caller_id_name="Support", caller_id_number="4912345678"
    )

    async def reply(event: Any) -> tuple[Any, ...]:
        return ("One moment", transfer, {"type": "future_action", "x": 1})

    assistant = AiFlowAssistant(on_dtmf_received=reply)
    actions = await assistant.handle_event(payload("dtmf_received"))
    assert actions == [
        speak("One moment"),
        transfer.model_copy(update={"session_id": SID}),
        {"type": "future_action", "session_id": SID, "x": 1},
    ]
    body = json.loads(dump_actions(actions) or b"")
    assert [a["type"] for a in body] == ["speak", "transfer", "future_action"]


async def test_dict_passes_through_unvalidated_and_keeps_its_session_id():
    raw = {"type": "speak", "session_id": "explicit", "text": "x", "new_field": True}
    assistant = AiFlowAssistant(on_session_start=lambda e: raw)
    assert await assistant.handle_event(payload("session_start")) == [raw]


@pytest.mark.parametrize("result", [None, [], ()])
async def test_nothing(result: Any):
    assistant = AiFlowAssistant(on_session_start=lambda e: result)
    assert await assistant.handle_event(payload("session_start")) == []


@pytest.mark.parametrize(
    ("result", "detail"),
    [
        (42, "returned int; expected str, an action, a dict, a list of those, or None"),
        ({"text": "no type"}, "returned a dict without a 'type' string"),
        ([["nested"]], "returned a nested list"),
    ],
)
async def test_bad_return_value_is_a_handler_failure(result: Any, detail: str):
    def bad(event: Any) -> Any:
        return result

    assistant = AiFlowAssistant(on_session_start=bad)
    with pytest.raises(HandlerError) as info:
        await assistant.handle_event(payload("session_start"))
    cause = info.value.__cause__
    assert isinstance(cause, InvalidActionError)
    assert "bad" in cause.details[0]
    assert detail in cause.details[0]


# -- handler shapes --------------------------------------------------------------------------


async def test_sync_handler_runs_in_worker_thread_without_blocking_the_loop():
    release = threading.Event()
    seen: dict[str, str] = {}

    def blocking(event: UserSpeakEvent) -> str:
        seen["thread"] = threading.current_thread().name
        # Blocks until a coroutine on the event loop sets it: proves the loop is not blocked.
        assert release.wait(timeout=5)
        return "done"

    async def unblock() -> None:
        await asyncio.sleep(0)
        release.set()

    assistant = AiFlowAssistant(on_user_speak=blocking)
    actions, _ = await asyncio.gather(assistant.handle_event(payload("user_speak")), unblock())
    assert actions == [speak("done")]
    assert seen["thread"].startswith("aiflow-handler")


async def test_generators_async_and_sync_yield_actions_in_order():
    async def agen(event: Any) -> AsyncIterator[str]:
        yield "one"
        yield "two"

    def gen(event: Any) -> Iterator[Any]:
        yield "three"
        yield HangupAction()

    assistant = AiFlowAssistant(on_user_speak=agen, on_dtmf_received=gen)
    assert await assistant.handle_event(payload("user_speak")) == [speak("one"), speak("two")]
    assert await assistant.handle_event(payload("dtmf_received")) == [
        speak("three"),
        HangupAction(session_id=SID),
    ]


async def test_callable_object_partial_and_sync_returning_coroutine():
    class Greeter:
        async def __call__(self, event: Any, ctx: CallContext) -> str:
            return f"hi {ctx.session_id}"

    async def with_prefix(prefix: str, event: DtmfReceivedEvent) -> str:
        return prefix + event.digit

    async def later(event: Any) -> str:
        return "later"

    assistant = AiFlowAssistant(
        on_session_start=Greeter(),
        on_dtmf_received=functools.partial(with_prefix, "key "),
        on_user_input_timeout=lambda event: later(event),  # noqa: PLW0108 - sync returning a coroutine
    )
    assert await assistant.handle_event(payload("session_start")) == [speak(f"hi {SID}")]
    assert await assistant.handle_event(payload("dtmf_received")) == [speak("key 5")]
    assert await assistant.handle_event(payload("user_input_timeout")) == [speak("later")]


async def test_context_carries_event_session_and_logger(caplog: pytest.LogCaptureFixture):
    seen: list[CallContext] = []

    async def handler(event: UserSpeakEvent, ctx: CallContext) -> None:
        seen.append(ctx)
        ctx.logger.info("caller said %s", event.text)

    assistant = AiFlowAssistant(on_user_speak=handler)
    with caplog.at_level(logging.INFO, logger="sipgate_ai_flow"):
        await assistant.handle_event(payload("user_speak"))
    (ctx,) = seen
    assert isinstance(ctx.event, UserSpeakEvent)
    assert ctx.session is not None
    assert ctx.session.from_phone_number == "+9876543210"
    assert ctx.session_id == SID
    assert ctx.assistant is assistant
    assert f"[{SID}] caller said hello" in caplog.text


def test_handler_without_arguments_is_rejected_at_registration():
    with pytest.raises(ConfigurationError, match=r"takes 0 positional argument\(s\)"):
        AiFlowAssistant(on_user_speak=lambda: "x")
    with pytest.raises(ConfigurationError, match="must be callable"):
        AiFlowAssistant(on_user_speak="not callable")  # type: ignore[arg-type]


def test_second_handler_for_one_event_is_rejected():
    assistant = AiFlowAssistant(on_user_speak=lambda e: None)
    with pytest.raises(ConfigurationError, match="already registered"):
        assistant.on_user_speak(lambda e: None)


@pytest.mark.parametrize("event_type", list(EVENT_CLASSES))
@pytest.mark.parametrize("style", ["option", "decorator"])
async def test_every_event_type_reaches_its_handler(event_type: str, style: str):
    received: list[Any] = []

    def handler(event: Any) -> str:
        received.append(event)
        return "ok"

    if style == "option":
        options: dict[str, Any] = {f"on_{event_type}": handler}
        assistant = AiFlowAssistant(**options)
    else:
        assistant = AiFlowAssistant()
        assert getattr(assistant, f"on_{event_type}")(handler) is handler
    actions = await assistant.handle_event(payload(event_type))
    assert [type(e) for e in received] == [EVENT_CLASSES[event_type]]
    assert actions == ([speak("ok")] if event_type in ANSWERABLE else [])


async def test_event_without_handler_gets_nothing():
    assistant = AiFlowAssistant(on_session_start=lambda e: "hi")
    for event_type in ANSWERABLE[1:]:
        assert await assistant.handle_event(payload(event_type)) == []


# -- event rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["session_end", "user_speech_started"])
async def test_results_for_unanswerable_events_are_dropped_with_a_warning(
    event_type: str, caplog: pytest.LogCaptureFixture
):
    options: dict[str, Any] = {f"on_{event_type}": lambda e: "ignored"}
    assistant = AiFlowAssistant(**options)
    with caplog.at_level(logging.WARNING, logger="sipgate_ai_flow"):
        assert await assistant.handle_event(payload(event_type)) == []
    assert f"returned 1 action(s) for {event_type}" in caplog.text
    assert SID in caplog.text


async def test_unknown_event_goes_to_on_unknown_or_nowhere():
    raw = {"type": "call_recording_ready", "session": SESSION, "url": "https://x/y.wav"}
    assert await AiFlowAssistant().handle_event(raw) == []
    seen: list[UnknownEvent] = []

    async def unknown(event: UnknownEvent) -> str:
        seen.append(event)
        return "noted"

    assistant = AiFlowAssistant(on_unknown=unknown)
    assert await assistant.handle_event(raw) == [speak("noted")]
    assert seen[0].type == "call_recording_ready"
    assert seen[0].model_extra == {"url": "https://x/y.wav"}


async def test_barged_in_user_speak_prefers_on_user_barge_in():
    plain = AiFlowAssistant(on_user_speak=lambda e: f"speak:{e.barged_in}")
    assert await plain.handle_event(payload("user_speak", barged_in=True)) == [speak("speak:True")]
    both = AiFlowAssistant(
        on_user_speak=lambda e: "speak", on_user_barge_in=lambda e: f"barge:{e.text}"
    )
    assert await both.handle_event(payload("user_speak", barged_in=True)) == [speak("barge:hello")]
    assert await both.handle_event(payload("user_speak", barged_in=False)) == [speak("speak")]


async def test_legacy_user_barge_in_is_delivered_as_barged_in_user_speak():
    seen: list[Any] = []

    def record(event: Any) -> None:
        seen.append(event)

    legacy = payload("user_barge_in", extra_field=1)
    assert isinstance(parse_event(legacy), UserBargeInEvent)
    await AiFlowAssistant(on_user_barge_in=record).handle_event(legacy)
    await AiFlowAssistant(on_user_speak=record).handle_event(legacy)
    for event in seen:
        assert isinstance(event, UserSpeakEvent)
        assert (event.text, event.barged_in, event.session.id) == ("wait", True, SID)
        assert event.model_extra == {"extra_field": 1}
    assert len(seen) == 2


async def test_handle_event_accepts_models_dicts_str_and_bytes():
    assistant = AiFlowAssistant(on_user_speak=lambda e: e.text)
    raw = payload("user_speak")
    for form in (raw, json.dumps(raw), json.dumps(raw).encode(), parse_event(raw)):
        assert await assistant.handle_event(form) == [speak("hello")]
    with pytest.raises(InvalidEventError, match=r"user_speak\.text: Field required"):
        await assistant.handle_event({"type": "user_speak", "session": SESSION})


# -- errors ----------------------------------------------------------------------------------


def failing(event: Any) -> str:
    raise RuntimeError("database down")


async def test_failure_without_hooks_raises_handler_error_and_logs(
    caplog: pytest.LogCaptureFixture,
):
    assistant = AiFlowAssistant(on_user_speak=failing)
    with (
        caplog.at_level(logging.ERROR, logger="sipgate_ai_flow"),
        pytest.raises(HandlerError) as info,
    ):
        await assistant.handle_event(payload("user_speak"))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert (info.value.event_type, info.value.session_id) == ("user_speak", SID)
    assert "failing" in info.value.handler
    record = caplog.records[-1]
    assert "failing raised RuntimeError on user_speak" in record.getMessage()
    assert SID in record.getMessage()
    assert record.exc_info is not None


async def test_error_reply_answers_for_the_failed_handler():
    assistant = AiFlowAssistant(on_user_speak=failing, error_reply="Sorry, try again.")
    assert await assistant.handle_event(payload("user_speak")) == [speak("Sorry, try again.")]
    listed = AiFlowAssistant(
        on_user_speak=failing, error_reply=[SpeakAction(text="Sorry."), HangupAction()]
    )
    assert await listed.handle_event(payload("user_speak")) == [
        speak("Sorry."),
        HangupAction(session_id=SID),
    ]


async def test_on_error_hook_receives_error_event_and_ctx_and_wins_over_error_reply():
    calls: list[tuple[Any, ...]] = []

    async def on_error(error: Exception, event: Any, ctx: CallContext) -> str:
        calls.append((error, event, ctx))
        return f"apology for {event.type}"

    assistant = AiFlowAssistant(on_user_speak=failing, on_error=on_error, error_reply="unused")
    assert await assistant.handle_event(payload("user_speak")) == [speak("apology for user_speak")]
    error, event, ctx = calls[0]
    assert isinstance(error, RuntimeError)
    assert isinstance(event, UserSpeakEvent)
    assert ctx.session_id == SID

    two_args = AiFlowAssistant(on_user_speak=failing, on_error=lambda error, event: None)
    assert await two_args.handle_event(payload("user_speak")) == []


async def test_on_error_that_raises_is_a_handler_error():
    def broken_hook(error: Exception, event: Any) -> None:
        raise ValueError("hook broke")

    assistant = AiFlowAssistant(on_user_speak=failing, on_error=broken_hook)
    with pytest.raises(HandlerError) as info:
        await assistant.handle_event(payload("user_speak"))
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ConfigurationError, match="it must accept 2 to 3"):
        AiFlowAssistant(on_error=lambda error: None)


async def test_session_end_failure_never_raises():
    assistant = AiFlowAssistant(on_session_end=failing)
    assert await assistant.handle_event(payload("session_end")) == []
