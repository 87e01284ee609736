"""The call runtime's reply rules, tested on the core and over real transports."""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import httpx
import pytest

from sipgate_ai_flow import AiFlowAssistant, AiFlowEventType, ConfigurationError
from sipgate_ai_flow.actions import ACTION_TYPES
from sipgate_ai_flow.enums import AiFlowActionType
from sipgate_ai_flow.events import HANDLER_EVENTS
from sipgate_ai_flow.websocket import serve_websocket


def ev(kind: str, sid: str = "c1", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "session": {"id": sid}, **fields}


def slow_assistant() -> AiFlowAssistant:
    assistant = AiFlowAssistant(hold_after=0.1, response_timeout=2.0)

    @assistant.on_user_speak
    async def slow(event: Any) -> str:
        await asyncio.sleep(0.4)
        return "Here it is."

    return assistant


def texts(actions: list[Any]) -> list[str]:
    return [a["text"] if isinstance(a, dict) else a.text for a in actions]


async def test_in_process_holds_once_and_the_answer_follows_with_the_next_event():
    assistant = slow_assistant()
    first = await assistant.handle_event(ev("user_speak", text="hi"))
    # An event without a handler, waiting for the lock: no second hold reply.
    second = await assistant.handle_event(ev("user_input_timeout"))
    assert texts(first) == ["One moment, please."]
    assert texts(second) == ["Here it is."]
    await assistant.aclose()


async def test_budget_off_waits_for_the_handler():
    assistant = slow_assistant()
    actions = await assistant.handle_event(ev("user_speak", text="hi"), budget=False)
    assert texts(actions) == ["Here it is."]


async def test_http_gives_the_caller_what_in_process_gives():
    assistant = slow_assistant()
    transport = httpx.ASGITransport(app=assistant.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = await client.post("/webhook", json=ev("user_speak", text="hi"))
        second = await client.post("/webhook", json=ev("user_input_timeout"))
    assert json.loads(first.content)["text"] == "One moment, please."
    assert json.loads(second.content)["text"] == "Here it is."


async def test_websocket_holds_once_then_sends_the_answer():
    assistant = slow_assistant()
    inbox: asyncio.Queue[str | None] = asyncio.Queue()
    sent: list[str] = []

    async def send_text(text: str) -> None:
        sent.append(json.loads(text)["text"])

    serving = asyncio.create_task(serve_websocket(assistant, inbox.get, send_text))
    inbox.put_nowait(json.dumps(ev("user_speak", text="hi")))
    inbox.put_nowait(json.dumps(ev("user_input_timeout")))
    await asyncio.sleep(0.7)
    inbox.put_nowait(None)
    await serving
    assert sent == ["One moment, please.", "Here it is."]


async def test_middlewares_run_in_order_and_may_answer_or_replace():
    assistant = AiFlowAssistant(on_user_speak=lambda event: f"echo {event.text}")
    seen: list[str] = []

    @assistant.middleware
    async def outer(event: Any, ctx: Any, call_next: Any) -> Any:
        seen.append("outer")
        if event.text == "blocked":
            return "Sorry, no."
        return await call_next()

    async def inner(event: Any, ctx: Any, call_next: Any) -> Any:
        seen.append("inner")
        actions = await call_next()
        return [*actions, "and more"]

    assistant.use(inner)
    assert texts(await assistant.handle_event(ev("user_speak", text="a"))) == [
        "echo a",
        "and more",
    ]
    assert seen == ["outer", "inner"]
    assert texts(await assistant.handle_event(ev("user_speak", text="blocked"))) == ["Sorry, no."]
    with pytest.raises(ConfigurationError, match="async function"):
        assistant.use(lambda e, c, n: None)  # type: ignore[arg-type,return-value]


async def test_middleware_sees_the_handler_exception():
    def boom(event: Any) -> None:
        raise ValueError("x")

    assistant = AiFlowAssistant(on_user_speak=boom)
    caught: list[str] = []

    @assistant.middleware
    async def guard(event: Any, ctx: Any, call_next: Any) -> Any:
        try:
            return await call_next()
        except ValueError as exc:
            caught.append(str(exc))
            return "Recovered."

    assert texts(await assistant.handle_event(ev("user_speak", text="a"))) == ["Recovered."]
    assert caught == ["x"]


async def test_legacy_barge_in_carrying_barged_in_is_a_barge_in():
    assistant = AiFlowAssistant(on_user_barge_in=lambda e: f"barged {e.barged_in}")
    actions = await assistant.handle_event(ev("user_barge_in", text="stop", barged_in=True))
    assert texts(actions) == ["barged True"]


async def test_sync_handlers_serve_100_blocking_calls_at_once():
    import time

    def blocking(event: Any) -> str:
        time.sleep(0.3)
        return "done"

    assistant = AiFlowAssistant(on_user_speak=blocking, response_timeout=5)
    results = await asyncio.gather(
        *(
            assistant.handle_event(ev("user_speak", sid=f"c{n}", text="x"), budget=False)
            for n in range(100)
        )
    )
    assert all(texts(r) == ["done"] for r in results)
    assert assistant.runtime.pool.size == 128
    with pytest.raises(ConfigurationError, match="sync_handler_threads"):
        AiFlowAssistant(sync_handler_threads=0)
    await assistant.aclose()


def test_one_list_of_event_and_action_types():
    params = inspect.signature(AiFlowAssistant).parameters
    options = {name[3:] for name in params if name.startswith("on_")} - {"unknown", "error"}
    decorators = {name[3:] for name in dir(AiFlowAssistant) if name.startswith("on_")} - {
        "unknown",
        "error",
    }
    assert options == decorators == set(HANDLER_EVENTS) == {t.value for t in AiFlowEventType}
    assert {t.value for t in AiFlowActionType} == ACTION_TYPES


def test_a_decorator_for_no_event_type_cannot_be_declared():
    from sipgate_ai_flow.assistant import _OnEvent

    with pytest.raises((TypeError, RuntimeError)) as caught:

        class Misspelled(AiFlowAssistant):
            on_user_speek = _OnEvent("typo")

    error = caught.value if isinstance(caught.value, TypeError) else caught.value.__cause__
    assert "Misspelled.on_user_speek: 'user_speek' is not an event type" in str(error)


def test_each_decorator_registers_its_own_event_type():
    assistant = AiFlowAssistant()
    for event_type in sorted(HANDLER_EVENTS):
        getattr(assistant, f"on_{event_type}")(lambda event, t=event_type: t)
    assert assistant.runtime.handler_names() == sorted(HANDLER_EVENTS)
