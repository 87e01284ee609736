"""``RedisStore``: per-call state, locks, outboxes and WebSocket routing shared by workers.

Each event costs two round trips: one script takes the call's lock and returns its outbox and
state, another writes the event's state changes and releases the lock. The lock expires by
itself (``lock_timeout``, renewed while a handler runs), so a crashed worker never blocks a
call for long. Pushes for a call whose WebSocket another worker holds travel over pub/sub.

The per-event scripts travel over one pipelined connection per store (``_Wire``): the
commands of one event-loop iteration go out in one write, and replies, parsed by hiredis,
resolve the waiting futures in order. A redis-py pool round trip costs several times the
Redis work itself on a slow interpreter. The rest (state outside events, outboxes, routing,
pub/sub) uses the redis-py client.

Keys (``{sid}`` keeps one call's keys in one cluster slot)::

    <prefix>:{<sid>}:state    hash of JSON values       <prefix>:{<sid>}:lock    lock token
    <prefix>:{<sid>}:outbox   list of JSON action lists <prefix>:{<sid>}:starts  session_starts
    <prefix>:{<sid>}:ws       worker holding the socket <prefix>:worker:<id>     pub/sub channel
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import StoreError
from .base import Deliver, EventScope, SessionStore

try:  # part of the [redis] extra; without it every command goes through redis-py
    import hiredis
except ImportError:  # pragma: no cover - the extra installs it
    hiredis = None  # type: ignore[assignment]

__all__ = ["RedisStore"]

logger = logging.getLogger("sipgate_ai_flow.state")


class _Script:
    """A Lua script, called by SHA (``EVALSHA``) and sent whole only after ``NOSCRIPT``."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()  # Redis names scripts by SHA-1


_ACQUIRE = _Script("""
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
  -- ours already: a retry after the connection died with the first reply unread
  return {{}, redis.call('HGETALL', KEYS[3]), tonumber(redis.call('GET', KEYS[4]) or '0')}
end
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
""")

_RELEASE = _Script("""
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
""")

# Undo an acquire whose caller was cancelled before it saw the reply: unlock, put the taken
# outbox back in front (ARGV[4..] newest first, as LPUSH wants) and uncount the start.
_GIVE_BACK = _Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then redis.call('DECR', KEYS[3]) end
if #ARGV >= 4 then
  redis.call('LPUSH', KEYS[2], unpack(ARGV, 4, #ARGV))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
""")

_RENEW = _Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
""")

_UNCLAIM = _Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(cancelling()) if cancelling is not None else False


# json.loads / json.dumps without their per-call argument handling (and json.loads's
# encoding sniffing of bytes): a third of the client's time per event on a slow build.
_loads = json.JSONDecoder().decode
_dumps = json.JSONEncoder().encode


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pack(args: Sequence[str | bytes | int]) -> bytes:
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # stub: 1-tuple
    return packed


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


_Orphan = Callable[["_Wire", Any], None]
"""Takes the reply to a command whose caller was cancelled before it arrived."""


class _Wire(asyncio.Protocol):
    """One pipelined connection to Redis: each command is written at once, without waiting
    for earlier replies, and each reply resolves the oldest waiting future (Redis answers a
    connection's commands in order). Speaks RESP2; errors are ``RedisError``s."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.closed = False
        self._reader = hiredis.Reader(replyError=ResponseError)
        # Per command sent: its caller's future (None: nobody waits, see ``forget``) and
        # who takes the reply should the caller be cancelled before it arrives.
        self._waiting: deque[tuple[asyncio.Future[Any] | None, _Orphan | None]] = deque()
        self._transport: asyncio.WriteTransport | None = None
        # Timeouts: one watchdog per connection, not a timer per command (a timer costs
        # more than the rest of the client's work). Replies come in order, so the oldest
        # command waiting longer than ``timeout`` without any reply arriving means a stall.
        self._progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        # Commands of one loop iteration go out in one write (one syscall here, one read
        # and one reply write in Redis) once the iteration's other callbacks have run.
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, hence the cast
        self._transport = cast(asyncio.WriteTransport, transport)
        self._watchdog = self.loop.call_later(self.timeout / 4, self._watch)

    def _watch(self) -> None:
        if self._waiting and time.monotonic() - self._progress > self.timeout:
            self.abort(RedisTimeoutError(f"no reply from Redis within {self.timeout:g} s"))
        elif not self.closed:
            self._watchdog = self.loop.call_later(self.timeout / 4, self._watch)

    def data_received(self, data: bytes) -> None:
        self._progress = time.monotonic()
        self._reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(RedisConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:  # the rest has not arrived yet
                return
            if not waiting:
                self.abort(RedisConnectionError("a reply from Redis nobody asked for"))
                return
            future, orphan = waiting.popleft()
            if future is None:
                continue
            if not future.done():
                future.set_result(reply)
            elif orphan is not None:  # the caller was cancelled
                orphan(self, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection to Redis lost: {exc}" if exc else "connection to Redis closed"
        self._fail(RedisConnectionError(reason))

    def _fail(self, error: RedisError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if future is not None and not future.done():
                future.set_exception(error)

    def abort(self, error: RedisError) -> None:
        """Drop the connection: its replies can no longer be matched to their commands."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._outgoing:
            self._flush()
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.close()

    def _write(self, packed: bytes) -> None:
        if not self._outgoing:
            self.loop.call_soon(self._flush)
        self._outgoing.append(packed)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(outgoing))

    def forget(self, packed: bytes) -> None:
        """Send a command whose reply nobody needs."""
        if not self.closed and self._transport is not None:
            if not self._waiting:
                self._progress = time.monotonic()
            self._waiting.append((None, None))
            self._write(packed)

    async def call(self, packed: bytes, orphan: _Orphan | None = None) -> Any:
        """Send one packed command and wait for its reply; a cancelled caller's reply goes to
        ``orphan``, if given."""
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection to Redis closed")
        future = self.loop.create_future()
        if not self._waiting:
            self._progress = time.monotonic()
        self._waiting.append((future, orphan))
        self._write(packed)
        try:
            reply = await future
        except asyncio.CancelledError:
            # Cancelled after the reply came: hand it over here (else data_received does).
            if orphan is not None and not future.cancelled() and future.exception() is None:
                orphan(self, future.result())
            raise
        if isinstance(reply, ResponseError):
            if str(reply).startswith("NOSCRIPT"):
                raise NoScriptError(*reply.args)
            raise reply
        return reply


def _direct_spec(client: aioredis.Redis) -> AbstractConnection | None:
    """An unconnected redis-py connection holding ``client``'s settings (address, TLS,
    credentials, db, timeouts), when a ``_Wire`` can reproduce them; else ``None``."""
    pool = client.connection_pool
    if hiredis is None or type(pool) not in (ConnectionPool, BlockingConnectionPool):
        return None  # e.g. Sentinel: the address is only known when connecting
    if pool.connection_class not in (Connection, SSLConnection, UnixDomainSocketConnection):
        return None
    spec: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
    return spec


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
        self._spec = _direct_spec(client)
        self._wire: _Wire | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._claims: dict[str, Deliver] = {}
        # Locks held by events running here (token: lock key), renewed together by one
        # timer while there are any: cheaper than a timer per event.
        self._held: dict[str, str] = {}
        self._ticker: asyncio.TimerHandle | None = None
        self._ticker_loop: asyncio.AbstractEventLoop | None = None
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

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"Redis at {self.url} failed while {what}: {type(exc).__name__}: {exc}")

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            raise self._error(what, exc) from exc

    def _keys(self, sid: str) -> tuple[str, str, str, str]:
        base = f"{self.prefix}:{{{sid}}}"
        return f"{base}:lock", f"{base}:outbox", f"{base}:state", f"{base}:starts"

    def _ttl(self) -> int:
        return max(int(self.ttl), 1)

    # -- the per-event connection -------------------------------------------------------------

    async def _run(
        self, args: Sequence[str | bytes | int], orphan: _Orphan | None = None, retry: bool = True
    ) -> Any:
        """One command, over the wire when there is one (else through redis-py).

        ``retry``: the command is safe to run twice, so when the connection turns out to be
        dead (Redis restarted, an idle timeout) it is sent once more on a fresh one.
        """
        wire = self._wire
        if wire is None or wire.closed or wire.loop is not asyncio.get_running_loop():
            if self._spec is None:
                return await self._redis.execute_command(*args)  # type: ignore[no-untyped-call]
            return await (await self._reconnect()).call(_pack(args), orphan)
        try:
            return await wire.call(_pack(args), orphan)
        except RedisConnectionError:
            if not retry:
                raise
            return await (await self._reconnect()).call(_pack(args), orphan)

    async def _script(
        self,
        script: _Script,
        keys: Sequence[str],
        args: Sequence[str | bytes | int],
        orphan: _Orphan | None = None,
        retry: bool = True,
    ) -> Any:
        try:
            return await self._run(("EVALSHA", script.sha, len(keys), *keys, *args), orphan, retry)
        except NoScriptError:  # a restarted or flushed Redis: EVAL caches it again
            return await self._run(("EVAL", script.body, len(keys), *keys, *args), orphan, retry)

    async def _reconnect(self) -> _Wire:
        loop = asyncio.get_running_loop()
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:  # one connection attempt at a time
            wire = self._wire
            if wire is None or wire.closed or wire.loop is not loop:
                if wire is not None and wire.loop is loop:
                    wire.close()
                self._wire = None
                self._wire = wire = await self._open(loop)
            return wire

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Wire:
        spec = self._spec
        assert spec is not None
        timeout = spec.socket_timeout or 10.0  # redis-py before 8 waits forever by default
        connect_timeout = spec.socket_connect_timeout or timeout

        def protocol() -> _Wire:
            return _Wire(loop, timeout)

        opening: Awaitable[tuple[asyncio.BaseTransport, _Wire]]
        if isinstance(spec, UnixDomainSocketConnection):
            opening = loop.create_unix_connection(protocol, spec.path)
        else:
            assert isinstance(spec, Connection)
            ssl = spec.ssl_context.get() if isinstance(spec, SSLConnection) else None
            opening = loop.create_connection(protocol, spec.host, spec.port, ssl=ssl)
        try:
            transport, wire = await asyncio.wait_for(opening, connect_timeout)
        except asyncio.TimeoutError:  # not an OSError before Python 3.11
            raise RedisTimeoutError(f"no connection within {connect_timeout:g} s") from None
        sock = transport.get_extra_info("socket")
        if isinstance(spec, Connection) and spec.socket_keepalive and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            options = cast("Mapping[int, int | bytes]", spec.socket_keepalive_options or {})
            for option, value in options.items():
                sock.setsockopt(socket.SOL_TCP, option, value)
        try:
            username, password = spec.username, spec.password
            provider = spec.credential_provider
            if provider is not None:
                get_async = getattr(provider, "get_credentials_async", None)  # redis-py 5.1+
                credentials: tuple[str, ...] = tuple(
                    await get_async() if get_async else provider.get_credentials()
                )
                username, password = (None, *credentials) if len(credentials) == 1 else credentials
            if password:
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                await wire.call(_pack(auth))
            if spec.db:
                await wire.call(_pack(("SELECT", spec.db)))
            if spec.client_name:
                await wire.call(_pack(("CLIENT", "SETNAME", spec.client_name)))
        except BaseException:
            wire.close()
            raise
        return wire

    async def connect(self) -> None:
        with self._errors("connecting"):
            await self._run(("PING",))

    async def close(self) -> None:
        self._stop_renewing()  # locks still held expire by themselves
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    # -- one event ----------------------------------------------------------------------------

    async def acquire(self, session_id: str, *, start: bool = False) -> EventScope:
        keys = self._keys(session_id)
        lock = keys[0]
        token = os.urandom(16).hex()
        args = (token, int(self.lock_timeout * 1000), self._ttl(), "1" if start else "0")
        orphan = partial(self._give_back, keys, token, start)
        deadline = time.monotonic() + self.lock_wait
        pause = 0.002
        while True:
            try:
                result = await self._script(_ACQUIRE, keys, args, orphan)
            except (RedisError, OSError) as exc:
                raise self._error(f"locking session {session_id}", exc) from exc
            if self._spec is None and _cancel_requested():
                # redis-py can swallow a cancellation that arrived mid-command: honour it
                # here, and never keep a lock nobody will release.
                if result:
                    with contextlib.suppress(RedisError, OSError):
                        await self._script(_UNCLAIM, (lock,), (token,))
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
        actions = [a for entry in raw_outbox for a in _loads(_text(entry))]
        data = {
            _text(raw_state[i]): _loads(_text(raw_state[i + 1]))
            for i in range(0, len(raw_state), 2)
        }
        self._hold(token, lock)
        return EventScope(session_id, token, actions, data, int(count))

    def _give_back(
        self, keys: tuple[str, str, str, str], token: str, start: bool, wire: _Wire, reply: Any
    ) -> None:
        """The caller of an acquire was cancelled, and the script took the lock anyway: undo
        it, queued behind it on the same connection (so nobody else saw the lock free)."""
        if not reply or isinstance(reply, RedisError):
            return
        lock, outbox, _, starts = keys
        args = (token, "1" if start else "0", self._ttl(), *reversed(reply[0]))
        wire.forget(_pack(("EVAL", _GIVE_BACK.body, 3, lock, outbox, starts, *args)))

    def _hold(self, token: str, lock: str) -> None:
        # Renew the lock while a slow handler runs: every lock_timeout / 3, all locks held
        # then are renewed, so none goes longer than that without renewal.
        self._held[token] = lock
        loop = asyncio.get_running_loop()
        if self._ticker is None or self._ticker_loop is not loop:
            self._ticker_loop = loop
            self._ticker = loop.call_later(self.lock_timeout / 3, self._renew_held)

    def _renew_held(self) -> None:
        self._ticker = None
        if not self._held or self._ticker_loop is None:
            return
        loop = self._ticker_loop
        task = loop.create_task(self._renew_all(list(self._held.items())))
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)
        self._ticker = loop.call_later(self.lock_timeout / 3, self._renew_held)

    async def _renew_all(self, held: list[tuple[str, str]]) -> None:
        lock_ms = int(self.lock_timeout * 1000)
        try:  # pipelined over the wire: one round trip for all of them
            await asyncio.gather(
                *(self._script(_RENEW, (lock,), (token, lock_ms)) for token, lock in held)
            )
        except (RedisError, OSError) as exc:
            logger.warning("could not renew a session lock at %s: %s", self.url, exc)

    def _stop_renewing(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._held.clear()

    async def release(
        self,
        scope: EventScope,
        *,
        changes: Mapping[str, Any] | None = None,
        deleted: frozenset[str] | set[str] = frozenset(),
        drop: bool = False,
    ) -> None:
        self._held.pop(scope.token, None)
        lock, outbox, state, starts = self._keys(scope.session_id)
        args: list[str | int] = [scope.token, self._ttl(), "1" if drop else "0"]
        if changes:
            args.append(len(changes))
            for key, value in changes.items():
                args.extend((key, _dumps(value)))
            args.extend(k for k in deleted if k not in changes)
        else:
            args.append(0)
            args.extend(deleted)
        try:
            # Not retried: had the first one run, another worker may have taken the lock
            # and saved newer state since, which a second run would overwrite.
            ours = await self._script(_RELEASE, (lock, state, starts, outbox), args, retry=False)
        except (RedisError, OSError) as exc:
            raise self._error(f"saving session {scope.session_id}", exc) from exc
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
            await self._script(_UNCLAIM, (self._ws_key(session_id),), (self.worker_id,))

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
