"""One contract, every backend: MemoryStore and RedisStore (a real redis-server) behave alike."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
from redis.credentials import UsernamePasswordCredentialProvider

from sipgate_ai_flow import StoreError
from sipgate_ai_flow.state import MemoryStore, SessionState, SessionStore, store_from_url
from sipgate_ai_flow.state.redis import RedisStore, redact
from sipgate_ai_flow.testing.redis import RedisServer


@pytest.fixture(params=["memory", "redis", "redis-pool"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    made: SessionStore
    if request.param == "memory":
        made = MemoryStore(ttl=60)
    else:
        url = request.getfixturevalue("redis_url")
        made = RedisStore.from_url(url, prefix=f"t{uuid.uuid4().hex[:8]}", ttl=60)
        if request.param == "redis-pool":  # a client the wire cannot copy (e.g. Sentinel)
            made._spec = None
    await made.connect()
    yield made
    await made.close()


def sid() -> str:
    return str(uuid.uuid4())


async def test_event_scope_loads_and_saves_state(store: SessionStore):
    call = sid()
    scope = await store.acquire(call, start=True)
    assert (scope.data, scope.outbox, scope.starts) == ({}, [], 1)
    await store.release(scope, changes={"step": "address", "n": 2, "items": [1, {"a": None}]})
    scope = await store.acquire(call)
    assert scope.data == {"step": "address", "n": 2, "items": [1, {"a": None}]}
    await store.release(scope, changes={"n": 3}, deleted={"step"})
    assert await store.load(call) == {"n": 3, "items": [1, {"a": None}]}


async def test_starts_are_counted_and_drop_forgets_the_call(store: SessionStore):
    call = sid()
    assert not await store.exists(call)
    await store.release(await store.acquire(call, start=True), changes={"x": 1})
    assert await store.exists(call)
    again = await store.acquire(call, start=True)  # a failed transfer: the caller is back
    assert (again.starts, again.data) == (2, {"x": 1})
    await store.release(again, drop=True)
    assert not await store.exists(call)
    assert await store.load(call) == {}
    fresh = await store.acquire(call, start=True)
    assert (fresh.starts, fresh.data) == (1, {})
    await store.release(fresh)


async def test_one_event_of_a_call_at_a_time_other_calls_unaffected(store: SessionStore):
    call, other = sid(), sid()
    order: list[str] = []
    first = await store.acquire(call)

    async def second_event() -> None:
        scope = await store.acquire(call)
        order.append("second acquired")
        await store.release(scope)

    waiting = asyncio.create_task(second_event())
    await asyncio.sleep(0.05)
    assert order == []  # blocked by the first event
    elsewhere = await asyncio.wait_for(store.acquire(other), 5)  # another call is not
    await store.release(elsewhere)
    order.append("first released")
    await store.release(first)
    await asyncio.wait_for(waiting, 5)
    assert order == ["first released", "second acquired"]


async def test_outbox_is_taken_in_order_by_the_next_event(store: SessionStore):
    call = sid()
    await store.enqueue(call, [{"type": "speak", "session_id": call, "text": "one"}])
    await store.enqueue(call, [{"type": "hangup", "session_id": call}, {"type": "x"}])
    scope = await store.acquire(call)
    assert [a["type"] for a in scope.outbox] == ["speak", "hangup", "x"]
    await store.release(scope)
    scope = await store.acquire(call)
    assert scope.outbox == []
    await store.release(scope)


async def test_direct_state_operations(store: SessionStore):
    call = sid()
    await store.write(call, {"a": 1, "b": "two"}, set())
    await store.write(call, {}, {"a"})
    assert await store.load(call) == {"b": "two"}
    assert await store.incr(call, "n", 5) == 5
    assert await store.incr(call, "n", -2) == 3
    with pytest.raises(StoreError, match="'b'"):
        await store.incr(call, "b", 1)


async def test_incr_is_atomic_under_concurrency(store: SessionStore):
    call = sid()
    await asyncio.gather(*(store.incr(call, "hits", 1) for _ in range(50)))
    assert await store.load(call) == {"hits": 50}


async def test_session_state_facade_inside_and_outside_events(store: SessionStore):
    call = sid()
    outside = SessionState(store, call)
    await outside.set("name", "Ada")
    await outside.update({"tries": 0}, step="greeting")
    assert await outside.incr("tries") == 1
    scope = await store.acquire(call)
    inside = SessionState(store, call, scope.data)
    assert await inside.get("name") == "Ada"
    assert await inside.get("missing", "default") == "default"
    assert await inside.incr("tries", 2) == 3
    await inside.set("pair", (1, 2))  # JSON round trip: what Redis would give back
    await inside.delete("step")
    assert await inside.all() == {"name": "Ada", "tries": 3, "pair": [1, 2]}
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        await inside.set("bad", object())
    await store.release(scope, changes=inside.changes, deleted=inside.deleted)
    assert await outside.all() == {"name": "Ada", "tries": 3, "pair": [1, 2]}


async def test_state_expires_after_ttl_without_activity(store: SessionStore):
    store.ttl = 1
    call = sid()
    await store.release(await store.acquire(call, start=True), changes={"x": 1})
    assert await store.exists(call)
    await asyncio.sleep(2.1)  # Redis expiry has one-second resolution
    assert not await store.exists(call)
    assert await store.load(call) == {}


async def test_routing_reaches_the_worker_holding_the_websocket(store: SessionStore):
    call = sid()
    delivered: list[tuple[str, list[Any]]] = []

    async def deliver(session_id: str, actions: list[Any]) -> None:
        delivered.append((session_id, actions))

    actions = [{"type": "speak", "session_id": call, "text": "from elsewhere"}]
    if isinstance(store, MemoryStore):  # one process: the local registry delivers
        assert await store.route(call, actions) is False
        return
    assert isinstance(store, RedisStore)
    other = RedisStore.from_url(store.url, prefix=store.prefix, ttl=60)  # a second worker
    try:
        assert await other.route(call, actions) is False  # nobody holds the socket yet
        await store.claim(call, deliver)
        assert await other.route(call, actions) is True
        for _ in range(200):
            if delivered:
                break
            await asyncio.sleep(0.01)
        assert delivered == [(call, actions)]
        await store.unclaim(call)
        assert await other.route(call, actions) is False
    finally:
        await other.close()


async def test_redis_lock_of_a_crashed_worker_expires(redis_url: str):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    crashed = RedisStore.from_url(redis_url, prefix=prefix, lock_timeout=0.3)
    healthy = RedisStore.from_url(redis_url, prefix=prefix, lock_timeout=0.3)
    call = sid()
    scope = await crashed.acquire(call)
    await crashed.close()  # the worker dies: no renewal, no release
    taken = await asyncio.wait_for(healthy.acquire(call), 5)
    await healthy.release(taken)
    assert scope.token != taken.token
    await healthy.close()


async def test_redis_lock_is_renewed_while_a_slow_handler_runs(redis_url: str):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    slow = RedisStore.from_url(redis_url, prefix=prefix, lock_timeout=0.3)
    other = RedisStore.from_url(redis_url, prefix=prefix, lock_timeout=0.3, lock_wait=0.6)
    call = sid()
    scope = await slow.acquire(call)
    with pytest.raises(StoreError, match="stayed locked"):
        await other.acquire(call)  # 0.6 s > lock_timeout: only renewal keeps it locked
    await slow.release(scope)
    await other.release(await other.acquire(call))
    await slow.close()
    await other.close()


async def test_unreachable_redis_is_a_clear_error_without_the_password():
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = store_from_url(f"redis://:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(StoreError) as info:
        await store.connect()
    message = str(info.value)
    assert f"Redis at redis://:***@127.0.0.1:{port}/0 failed while connecting" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(store)
    await store.close()
    assert redact("redis://user:pw@h:1/2") == "redis://user:***@h:1/2"
    assert redact("redis://h:1") == "redis://h:1"


def test_store_from_url():
    assert isinstance(store_from_url("memory://"), MemoryStore)
    assert isinstance(store_from_url("redis://localhost:1/0"), RedisStore)
    with pytest.raises(ValueError, match="unknown store URL 'x:y/0'"):
        store_from_url("mongo://user:secret@x:y/0")


async def test_a_cancelled_waiter_never_keeps_the_lock(store: SessionStore):
    call = sid()
    first = await store.acquire(call)
    cancelled = asyncio.create_task(store.acquire(call))
    after = asyncio.create_task(store.acquire(call))
    await asyncio.sleep(0.02)
    cancelled.cancel()  # gives up while waiting
    await store.release(first)
    scope = await asyncio.wait_for(after, 10)  # the next waiter gets it, not the cancelled one
    outcome = await asyncio.wait_for(asyncio.gather(cancelled, return_exceptions=True), 10)
    assert isinstance(outcome[0], asyncio.CancelledError)
    racing = asyncio.create_task(store.acquire(call))
    await asyncio.sleep(0.02)
    await store.release(scope)  # hands the lock to `racing`...
    racing.cancel()  # ...which is cancelled before it runs: the lock must be passed on
    with contextlib.suppress(asyncio.CancelledError):
        leftover = await racing
        await store.release(leftover)  # it won the race after all
    final = await asyncio.wait_for(store.acquire(call), 5)
    await store.release(final)


# -- RedisStore's own connection for the per-event scripts ------------------------------------


def redis_store(url: str, **options: Any) -> RedisStore:
    return RedisStore.from_url(url, prefix=f"t{uuid.uuid4().hex[:8]}", ttl=60, **options)


async def test_redis_scripts_are_sent_again_after_script_flush(redis_url: str):
    store, admin = redis_store(redis_url), redis.asyncio.Redis.from_url(redis_url)
    call = sid()
    await store.release(await store.acquire(call, start=True), changes={"n": 1})
    await admin.script_flush()  # as a restarted Redis would: EVALSHA answers NOSCRIPT
    scope = await store.acquire(call)
    assert scope.data == {"n": 1}
    await admin.script_flush()
    await store.release(scope, changes={"n": 2})
    assert await store.load(call) == {"n": 2}
    await store.close()
    await admin.aclose()


async def test_redis_reconnects_when_its_connection_dies(redis_url: str):
    store, admin = redis_store(redis_url), redis.asyncio.Redis.from_url(redis_url)
    call = sid()
    await store.release(await store.acquire(call), changes={"n": 1})
    killed = store._wire
    await admin.client_kill_filter(_type="normal", skipme=True)  # a restart, an idle timeout
    scope = await asyncio.wait_for(store.acquire(call), 5)
    assert scope.data == {"n": 1}
    assert store._wire is not killed
    await store.release(scope)
    # Dead but not yet noticed when the command goes out: sent again on a fresh connection.
    assert store._wire is not None
    assert store._wire._transport is not None
    store._wire._transport.abort()
    scope = await store.acquire(call)  # at once: the loop has not reported the loss yet
    await store.release(scope, changes={"n": 2})
    assert await store.load(call) == {"n": 2}
    await store.close()
    await admin.aclose()


async def test_redis_acquire_cancelled_in_flight_gives_lock_and_outbox_back(redis_url: str):
    store = redis_store(redis_url, lock_timeout=30)  # only the give-back can free it in time
    call = sid()
    await store.connect()
    await store.release(await store.acquire(call, start=True))
    actions = [{"type": "speak", "session_id": call, "text": "pushed"}]
    await store.enqueue(call, actions)
    task = asyncio.create_task(store.acquire(call, start=True))
    await asyncio.sleep(0)  # the script is on its way: the lock will be taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    scope = await asyncio.wait_for(store.acquire(call, start=True), 2)
    assert (scope.outbox, scope.starts) == (actions, 2)  # nothing lost, the start not counted
    await store.release(scope)
    # Cancelled just after the reply arrived, before the task saw it: the same.
    await store.enqueue(call, actions)
    wire = store._wire
    assert wire is not None
    received = wire.data_received

    def then_cancel(data: bytes) -> None:
        received(data)
        task.cancel()

    wire.data_received = then_cancel  # type: ignore[method-assign]
    task = asyncio.create_task(store.acquire(call))
    with pytest.raises(asyncio.CancelledError):
        await task
    wire.data_received = received  # type: ignore[method-assign]
    scope = await asyncio.wait_for(store.acquire(call), 2)
    assert scope.outbox == actions
    await store.release(scope)
    await store.close()


async def test_redis_without_a_reply_is_a_timeout_not_a_hang():
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # reads the command, never answers
        await done.wait()
        writer.close()  # the server's close() leaves accepted connections open
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(StoreError, match=r"no reply from Redis within 0\.3 s"):
        await store.connect()
    assert asyncio.get_running_loop().time() - started < 2
    await store.close()
    done.set()
    server.close()
    await server.wait_closed()


def test_redis_store_under_uvloop(redis_url: str):
    uvloop = pytest.importorskip("uvloop")  # what `aiflow serve` runs on

    async def main() -> None:
        store = redis_store(redis_url, lock_timeout=0.3)
        call = sid()
        scope = await store.acquire(call, start=True)
        await asyncio.sleep(0.5)  # renewed meanwhile, else another worker could take it
        other = redis_store(redis_url, lock_timeout=0.3, lock_wait=0.1)
        other.prefix = store.prefix
        with pytest.raises(StoreError, match="stayed locked"):
            await other.acquire(call)
        await store.release(scope, changes={"n": 1})
        assert await store.load(call) == {"n": 1}
        await store.close()
        await other.close()

    uvloop.run(main())


async def test_redis_wire_authenticates_and_selects_the_db_without_logging_the_password(
    caplog: pytest.LogCaptureFixture,
):
    with RedisServer() as server:
        admin = redis.asyncio.Redis(port=server.port)
        await admin.config_set("requirepass", "hunter2")
        base = f"redis://:hunter2@127.0.0.1:{server.port}"
        store = redis_store(f"{base}/3")
        call = sid()
        await store.release(await store.acquire(call), changes={"n": 1})
        assert await store.load(call) == {"n": 1}
        in_db3 = redis.asyncio.Redis.from_url(f"{base}/3")
        assert await in_db3.exists(f"{store.prefix}:{{{call}}}:state")
        provided = redis_store(  # credentials from a provider (e.g. rotating tokens)
            f"redis://127.0.0.1:{server.port}/3",
            credential_provider=UsernamePasswordCredentialProvider(password="hunter2"),
        )
        provided.prefix = store.prefix
        scope = await provided.acquire(call)
        assert scope.data == {"n": 1}
        await provided.release(scope)
        wrong = redis_store(f"redis://:wrong-one@127.0.0.1:{server.port}/0")
        with pytest.raises(StoreError) as info:
            await wrong.acquire(call)
        assert "wrong-one" not in str(info.value)
        assert "redis://:***@127.0.0.1" in str(info.value)
        for made in (store, provided, wrong):
            await made.close()
        await in_db3.aclose()
        await admin.aclose()
    assert "hunter2" not in caplog.text
    assert "wrong-one" not in caplog.text
