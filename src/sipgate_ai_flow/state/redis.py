"""``RedisStore``: per-call state, locks, outboxes and WebSocket routing shared by workers.

Each event costs two round trips: one script takes the call's lock and returns its outbox and
state, another writes the event's state changes and releases the lock. The lock expires by
itself (``lock_timeout``, renewed while a handler runs), so a crashed worker never blocks a
call for long. Pushes for a call whose WebSocket another worker holds travel over pub/sub.

Keys (``{sid}`` keeps one call's keys in one cluster slot)::

    <prefix>:{<sid>}:state    hash of JSON values       <prefix>:{<sid>}:lock    lock token
    <prefix>:{<sid>}:outbox   list of JSON action lists <prefix>:{<sid>}:starts  session_starts
    <prefix>:{<sid>}:ws       worker holding the socket <prefix>:worker:<id>     pub/sub channel
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..errors import StoreError
from .base import Deliver, EventScope, SessionStore

__all__ = ["RedisStore"]

logger = logging.getLogger("sipgate_ai_flow.state")

_ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local outbox = redis.call('LRANGE', KEYS[2], 0, -1)
if #outbox > 0 then redis.call('DEL', KEYS[2]) end
local starts
if ARGV[4] == '1' then
  starts = redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
else
  starts = tonumber(redis.call('GET', KEYS[4]) or '0')
end
return {outbox, redis.call('HGETALL', KEYS[3]), starts}
"""

_RELEASE = """
local ttl = ARGV[2]
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
else
  local n = tonumber(ARGV[4])
  if n > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, 5, 4 + 2 * n)) end
  if #ARGV >= 5 + 2 * n then redis.call('HDEL', KEYS[2], unpack(ARGV, 5 + 2 * n, #ARGV)) end
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_UNCLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(cancelling()) if cancelling is not None else False


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class RedisStore(SessionStore):
    """State in Redis, shared by every worker (extra: ``sipgate-ai-flow[redis]``).

    Example:
        >>> store = RedisStore.from_url("redis://localhost:6379/0", ttl=3600)
        >>> store
        RedisStore(url='redis://localhost:6379/0', prefix='aiflow', ttl=3600)
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        url: str = "redis://",
        prefix: str = "aiflow",
        ttl: float = 3600.0,
        lock_timeout: float = 5.0,
        lock_wait: float = 30.0,
    ) -> None:
        self._redis = client
        self.url = redact(url)
        self.prefix = prefix
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self.worker_id = uuid.uuid4().hex
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._unclaim = client.register_script(_UNCLAIM)
        self._claims: dict[str, Deliver] = {}
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        self._renewals: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """A store for ``redis://[:password@]host:port/db`` (also ``rediss://``,
        ``unix://``). Options: ``prefix``, ``ttl``, ``lock_timeout``, ``lock_wait``."""
        own = {
            k: options.pop(k)
            for k in ("prefix", "ttl", "lock_timeout", "lock_wait")
            if k in options
        }
        client = aioredis.Redis.from_url(url, decode_responses=False, **options)
        return cls(client, url=url, **own)

    def __repr__(self) -> str:
        return f"RedisStore(url={self.url!r}, prefix={self.prefix!r}, ttl={self.ttl:g})"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise StoreError(
                f"Redis at {self.url} failed while {what}: {type(exc).__name__}: {exc}"
            ) from exc

    def _keys(self, sid: str) -> tuple[str, str, str, str]:
        base = f"{self.prefix}:{{{sid}}}"
        return f"{base}:lock", f"{base}:outbox", f"{base}:state", f"{base}:starts"

    def _ttl(self) -> int:
        return max(int(self.ttl), 1)

    async def connect(self) -> None:
        with self._errors("connecting"):
            await self._redis.ping()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    # -- one event ----------------------------------------------------------------------------

    async def acquire(self, session_id: str, *, start: bool = False) -> EventScope:
        lock, outbox, state, starts = self._keys(session_id)
        token = uuid.uuid4().hex
        args: list[str | int] = [
            token,
            int(self.lock_timeout * 1000),
            self._ttl(),
            "1" if start else "0",
        ]
        deadline = time.monotonic() + self.lock_wait
        pause = 0.002
        while True:
            with self._errors(f"locking session {session_id}"):
                result = await self._acquire(keys=[lock, outbox, state, starts], args=args)
            if _cancel_requested():
                # A cancellation that arrived mid-command can be swallowed by the client:
                # honour it here, and never keep a lock nobody will release.
                if result:
                    with contextlib.suppress(RedisError, OSError):
                        await self._unclaim(keys=[lock], args=[token])
                raise asyncio.CancelledError
            if result:
                break
            if time.monotonic() > deadline:
                raise StoreError(
                    f"session {session_id} stayed locked for {self.lock_wait:g} s "
                    "(another worker is still handling one of its events)"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        raw_outbox, raw_state, count = result  # bytes: the client does not decode
        actions = [a for entry in raw_outbox for a in json.loads(entry)]
        data = {
            _text(raw_state[i]): json.loads(raw_state[i + 1]) for i in range(0, len(raw_state), 2)
        }
        scope = EventScope(session_id, token, actions, data, int(count))
        self._watch(scope, lock)
        return scope

    def _watch(self, scope: EventScope, lock: str) -> None:
        # Renew the lock while a slow handler runs; a timer costs nothing for fast ones.
        loop = asyncio.get_running_loop()
        every = self.lock_timeout / 3

        def fire() -> None:
            task = loop.create_task(self._renew_once(lock, scope.token))
            self._renewals.add(task)
            task.add_done_callback(self._renewals.discard)
            handles[0] = loop.call_later(every, fire)

        handles = [loop.call_later(every, fire)]
        self._timers[scope.token] = handles

    async def _renew_once(self, lock: str, token: str) -> None:
        try:
            await self._renew(keys=[lock], args=[token, int(self.lock_timeout * 1000)])
        except (RedisError, OSError) as exc:
            logger.warning("could not renew a session lock at %s: %s", self.url, exc)

    async def release(
        self,
        scope: EventScope,
        *,
        changes: Mapping[str, Any] | None = None,
        deleted: frozenset[str] | set[str] = frozenset(),
        drop: bool = False,
    ) -> None:
        handles = self._timers.pop(scope.token, None)
        if handles:
            handles[0].cancel()
        lock, outbox, state, starts = self._keys(scope.session_id)
        changes = changes or {}
        args: list[str | int] = [scope.token, self._ttl(), "1" if drop else "0", len(changes)]
        for key, value in changes.items():
            args.extend((key, json.dumps(value)))
        args.extend(k for k in deleted if k not in changes)
        with self._errors(f"saving session {scope.session_id}"):
            ours = await self._release(keys=[lock, state, starts, outbox], args=args)
        if not ours:
            logger.warning(
                "the lock of session %s expired while its event was handled (longer than "
                "%g s without renewal); its state was saved anyway",
                scope.session_id,
                self.lock_timeout,
            )

    # -- state outside events -----------------------------------------------------------------

    async def load(self, session_id: str) -> dict[str, Any]:
        with self._errors(f"reading session {session_id}"):
            raw = await self._redis.hgetall(self._keys(session_id)[2])
        return {_text(k): json.loads(v) for k, v in raw.items()}

    async def write(
        self, session_id: str, changes: Mapping[str, Any], deleted: frozenset[str] | set[str]
    ) -> None:
        key = self._keys(session_id)[2]
        with self._errors(f"writing session {session_id}"):
            async with self._redis.pipeline(transaction=True) as pipe:
                if changes:
                    pipe.hset(key, mapping={k: json.dumps(v) for k, v in changes.items()})
                if deleted:
                    pipe.hdel(key, *deleted)
                pipe.expire(key, self._ttl())
                await pipe.execute()

    async def incr(self, session_id: str, key: str, by: int) -> int:
        name = self._keys(session_id)[2]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(name, key, by)
                pipe.expire(name, self._ttl())
                value, _ = await pipe.execute()
        except RedisError as exc:
            if "not an integer" in str(exc):
                raise StoreError(f"state key {key!r} does not hold an integer") from exc
            raise StoreError(f"Redis at {self.url} failed while counting {key!r}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"Redis at {self.url} failed while counting {key!r}: {exc}") from exc
        return int(value)

    async def exists(self, session_id: str) -> bool:
        with self._errors(f"looking up session {session_id}"):
            return bool(await self._redis.exists(self._keys(session_id)[3]))

    # -- late actions -------------------------------------------------------------------------

    async def enqueue(self, session_id: str, actions: list[dict[str, Any]]) -> None:
        key = self._keys(session_id)[1]
        with self._errors(f"queueing actions for session {session_id}"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, json.dumps(actions))
                pipe.expire(key, self._ttl())
                await pipe.execute()

    def _ws_key(self, session_id: str) -> str:
        return f"{self.prefix}:{{{session_id}}}:ws"

    def _channel(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    async def claim(self, session_id: str, deliver: Deliver) -> None:
        self._claims[session_id] = deliver
        with self._errors(f"claiming the WebSocket of session {session_id}"):
            if self._listener is None:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self._channel(self.worker_id))
                self._listener = asyncio.get_running_loop().create_task(self._listen())
            await self._redis.set(self._ws_key(session_id), self.worker_id, ex=self._ttl())

    async def unclaim(self, session_id: str) -> None:
        self._claims.pop(session_id, None)
        with self._errors(f"releasing the WebSocket of session {session_id}"):
            await self._unclaim(keys=[self._ws_key(session_id)], args=[self.worker_id])

    async def route(self, session_id: str, actions: list[dict[str, Any]]) -> bool:
        with self._errors(f"routing actions for session {session_id}"):
            value = await self._redis.get(self._ws_key(session_id))
            if value is None:
                return False
            owner = value.decode() if isinstance(value, bytes) else value
            if owner == self.worker_id:
                deliver = self._claims.get(session_id)
                if deliver is None:
                    return False
                await deliver(session_id, actions)
                return True
            message = json.dumps({"session_id": session_id, "actions": actions})
            receivers = await self._redis.publish(self._channel(owner), message)
        return bool(receivers)

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                logger.warning("WebSocket routing from %s interrupted: %s", self.url, exc)
                await asyncio.sleep(1.0)
                continue
            if message is None:
                continue
            try:
                routed = json.loads(message["data"])
                session_id, actions = routed["session_id"], routed["actions"]
                deliver = self._claims.get(session_id)
                if deliver is not None:
                    await deliver(session_id, actions)
                else:  # the socket closed meanwhile: the next HTTP event takes them
                    await self.enqueue(session_id, actions)
            except Exception:
                logger.exception("could not deliver routed actions")
