"""ctx.state in handlers: lifecycle across a call, both stores, and Redis failures."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sipgate_ai_flow import (
    AiFlowAssistant,
    CallContext,
    HandlerError,
    SessionStartEvent,
    StoreError,
    UserSpeakEvent,
)
from sipgate_ai_flow.state import MemoryStore, SessionStore
from sipgate_ai_flow.state.redis import RedisStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    made: SessionStore
    if request.param == "memory":
        made = MemoryStore()
    else:
        url = request.getfixturevalue("redis_url")
        made = RedisStore.from_url(url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield made
    await made.close()


def event(event_type: str, session_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": event_type, "session": {"id": session_id}, **fields}


def texts(actions: list[Any]) -> list[str]:
    return [a.text if hasattr(a, "text") else a["text"] for a in actions]


def counting_assistant(store: SessionStore, seen_at_end: list[dict[str, Any]]) -> AiFlowAssistant:
    assistant = AiFlowAssistant(store=store)

    @assistant.on_session_start
    async def start(e: SessionStartEvent, ctx: CallContext) -> str:
        if ctx.returning:
            return f"Welcome back, {await ctx.state.get('name')}."
        await ctx.state.update(name="Ada", turns=0)
        return "Hello."

    @assistant.on_user_speak
    async def speak(e: UserSpeakEvent, ctx: CallContext) -> str:
        turns = await ctx.state.incr("turns")
        await ctx.state.set("last", e.text)
        return f"Turn {turns}: {e.text}"

    @assistant.on_session_end
    async def end(e: Any, ctx: CallContext) -> None:
        seen_at_end.append(await ctx.state.all())

    return assistant


async def test_state_lives_for_the_call_and_survives_a_returning_caller(store: SessionStore):
    seen_at_end: list[dict[str, Any]] = []
    assistant = counting_assistant(store, seen_at_end)
    call = str(uuid.uuid4())
    assert texts(await assistant.handle_event(event("session_start", call))) == ["Hello."]
    assert texts(await assistant.handle_event(event("user_speak", call, text="a"))) == ["Turn 1: a"]
    assert texts(await assistant.handle_event(event("user_speak", call, text="b"))) == ["Turn 2: b"]
    # A failed transfer brings the caller back: same session id, state kept.
    again = await assistant.handle_event(event("session_start", call))
    assert texts(again) == ["Welcome back, Ada."]
    assert await assistant.state(call).get("turns") == 2
    await assistant.handle_event(event("session_end", call))
    assert seen_at_end == [{"name": "Ada", "turns": 2, "last": "b"}]  # readable in cleanup
    assert await assistant.state(call).all() == {}  # deleted after session_end
    other = str(uuid.uuid4())
    assert texts(await assistant.handle_event(event("session_start", other))) == ["Hello."]


async def test_state_outside_handlers_and_calls_are_separate(store: SessionStore):
    assistant = counting_assistant(store, [])
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await assistant.handle_event(event("session_start", first))
    await assistant.handle_event(event("session_start", second))
    await assistant.state(first).set("crm", {"id": 7})
    assert await assistant.state(first).incr("turns", 10) == 10
    reply = await assistant.handle_event(event("user_speak", first, text="x"))
    assert texts(reply) == ["Turn 11: x"]
    assert await assistant.state(first).get("crm") == {"id": 7}
    assert await assistant.state(second).get("turns") == 0


async def test_changes_of_a_failed_handler_are_still_saved(store: SessionStore):
    # State written before an exception is kept: the handler's own writes happened.
    assistant = AiFlowAssistant(store=store, error_reply="Sorry.")

    @assistant.on_user_speak
    async def broken(e: UserSpeakEvent, ctx: CallContext) -> str:
        await ctx.state.incr("attempts")
        raise RuntimeError("boom")

    call = str(uuid.uuid4())
    assert texts(await assistant.handle_event(event("user_speak", call, text="x"))) == ["Sorry."]
    assert await assistant.state(call).get("attempts") == 1


async def test_unreachable_redis_at_startup_is_a_clear_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assistant = AiFlowAssistant(store=f"redis://:pw@127.0.0.1:{port}/0")
    with pytest.raises(StoreError, match=rf"Redis at redis://:\*\*\*@127.0.0.1:{port}/0 failed"):
        await assistant.startup()
    await assistant.aclose()


async def test_redis_lost_mid_call_gets_the_error_reply_and_recovers(
    redis_server: Any, caplog: pytest.LogCaptureFixture
):
    if not redis_server.running:
        redis_server.start()
    store = RedisStore.from_url(redis_server.url, prefix=f"t{uuid.uuid4().hex[:8]}")
    assistant = counting_assistant(store, [])
    plain = AiFlowAssistant(store=store, on_user_speak=lambda e: "ok")
    polite = AiFlowAssistant(
        store=store, on_user_speak=lambda e: "ok", error_reply="Sorry, one moment."
    )
    call = str(uuid.uuid4())
    try:
        await assistant.startup()
        await assistant.handle_event(event("session_start", call))
        redis_server.stop()
        with caplog.at_level(logging.ERROR, logger="sipgate_ai_flow"):
            reply = await polite.handle_event(event("user_speak", call, text="x"))
            assert texts(reply) == ["Sorry, one moment."]
            with pytest.raises(HandlerError) as info:  # no error reply: a 500 over HTTP
                await plain.handle_event(event("user_speak", call, text="x"))
            assert isinstance(info.value.__cause__, StoreError)
        assert f"state store unavailable for user_speak (session {call})" in caplog.text
        redis_server.start()  # same port: the client reconnects by itself
        reply = await assistant.handle_event(event("user_speak", call, text="back"))
        assert texts(reply) == ["Turn 1: back"]  # Redis restarted empty: the count restarts
    finally:
        if not redis_server.running:
            redis_server.start()
        await store.close()


async def test_redis_connection_lost_between_lock_and_save_is_logged_and_the_call_goes_on(
    redis_url: str, caplog: pytest.LogCaptureFixture
):
    store = RedisStore.from_url(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}", lock_timeout=0.3)
    assistant = AiFlowAssistant(store=store)

    @assistant.on_user_speak
    async def count(e: UserSpeakEvent, ctx: CallContext) -> str:
        n = await ctx.state.incr("n")
        if e.text == "cut":  # the connection dies while the handler runs
            assert store._wire is not None
            assert store._wire._transport is not None
            store._wire._transport.abort()
        return f"n={n}"

    call = str(uuid.uuid4())
    try:
        await assistant.startup()
        assert texts(await assistant.handle_event(event("user_speak", call, text="a"))) == ["n=1"]
        with caplog.at_level(logging.ERROR, logger="sipgate_ai_flow"):
            # The reply still goes out; saving is not retried (had it run, another worker
            # may hold newer state by now), so the lock is left to expire.
            reply = await assistant.handle_event(event("user_speak", call, text="cut"))
        assert texts(reply) == ["n=2"]
        assert f"state of session {call} not saved" in caplog.text
        reply = await assistant.handle_event(event("user_speak", call, text="b"))
        assert texts(reply) == ["n=2"]  # a fresh connection, once the lock expired
    finally:
        await assistant.aclose()
