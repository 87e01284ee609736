"""A lean HTTP/1.1 client for ``aiflow load``: keep-alive connections to one origin, shared.

With httpx the load generator needed 3.3 ms of CPU per event at 250 calls, and more with
more connections, since its pool walks every connection for each request
(encode/httpcore#1035); with this client it needs 0.2-0.3 ms per event, emulation and checks
included (README, "Load-test your app: aiflow load"). It does only what a webhook POST needs:
one request at a time per connection, ``Content-Length`` or chunked bodies, keep-alive, one
retry when a reused connection turns out to be closed, and a deadline per request, on
``asyncio.Protocol`` (no streams, no task per request).

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.emulator.local import serve_locally
    >>> async def main():
    ...     async with serve_locally(assistant) as server:
    ...         async with HttpPool(server.webhook_url) as pool:
    ...             transport = LeanHttpTransport(server.webhook_url, pool=pool)
    ...             event = {"type": "session_start", "session": {"id": "s1"}}
    ...             exchange = await transport.send(event)
    ...     return exchange.items[0]["type"], exchange.findings
    >>> asyncio.run(main())
    ('speak', [])
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from .transports import USER_AGENT, AppTransport, Exchange
from .validate import Finding, parse_reply

__all__ = ["HttpPool", "HttpProtocolError", "LeanHttpTransport"]

_MAX_HEAD = 64 * 1024


class HttpProtocolError(ConnectionError):
    """The server sent something that is not an HTTP/1.x response we can read."""


class _StaleConnection(ConnectionError):
    """A kept-alive connection closed before any byte of the response: safe to retry."""


@dataclass
class Response:
    status: int
    content_type: str | None
    body: bytes
    keep_alive: bool


class _Connection(asyncio.Protocol):
    """One TCP connection; ``exchange`` sends a request and waits for its response."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.lost = False
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.head_end = -1
        self.status = 0
        self.content_type: str | None = None
        self.framing = ""  # length | chunked | eof | none
        self.length = 0
        self.keep_alive = True

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None:  # nothing asked for: a server that talks out of turn
            self.close()
            return
        try:
            self._parse()
        except HttpProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.head_end >= 0 and self.framing == "eof":
            self._done(bytes(self.buffer[self.head_end :]))
        elif not self.buffer and self.reused:
            self._fail(_StaleConnection("the kept-alive connection was closed"))
        else:
            self._fail(ConnectionResetError(f"the server closed the connection ({exc or 'EOF'})"))

    # -- one request --------------------------------------------------------------------------

    async def exchange(self, data: bytes, timeout: float) -> Response:
        assert self.transport is not None
        loop = self.pool.loop
        self.waiter = waiter = loop.create_future()
        self.buffer.clear()
        self._reset()
        self.transport.write(data)
        # A timer handle, not wait_for: no extra task per request.
        timer = loop.call_later(timeout, self._timed_out, timeout)
        try:
            response: Response = await waiter
            return response
        finally:
            timer.cancel()
            self.waiter = None

    def _timed_out(self, timeout: float) -> None:
        self._fail(TimeoutError(f"no response within {timeout:g} s"))  # closes: never reused

    def _done(self, body: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Response(self.status, self.content_type, body, self.keep_alive))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.keep_alive = False
        self.close()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> None:
        buffer = self.buffer
        if self.head_end < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise HttpProtocolError("the response head is too large")
                return
            self._read_head(bytes(buffer[:end]))
            self.head_end = end + 4
            if self.status < 200:  # 1xx interim responses: skip, the final one follows
                del buffer[: self.head_end]
                self._reset()
                self._parse()
                return
        start = self.head_end
        if self.framing == "length":
            if len(buffer) - start >= self.length:
                if len(buffer) - start > self.length:
                    self.keep_alive = False  # bytes nobody asked for: do not reuse
                self._done(bytes(buffer[start : start + self.length]))
        elif self.framing == "chunked":
            parsed = _dechunk(buffer, start)
            if parsed is not None:
                body, end = parsed
                if end != len(buffer):
                    self.keep_alive = False
                self._done(body)
        elif self.framing == "none":
            self._done(b"")
        # "eof": the body ends when the server closes the connection (connection_lost)

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        self.status = int(parts[1])
        self.keep_alive = parts[0] != b"HTTP/1.0"
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    raise HttpProtocolError(f"bad Content-Length: {value!r}") from None
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"content-type":
                self.content_type = value.strip().decode("latin-1")
            elif key == b"connection":
                token = value.strip().lower()
                if token == b"close":
                    self.keep_alive = False
                elif token == b"keep-alive":
                    self.keep_alive = True
        if self.status in (204, 304):
            self.framing = "none"
        elif chunked:
            self.framing = "chunked"
        elif length is not None:
            self.framing, self.length = "length", length
        else:
            self.framing, self.keep_alive = "eof", False


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body from ``buffer[start:]`` and where it ends, or ``None`` if incomplete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size_text = bytes(buffer[at:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        at = line_end + 2
        if size == 0:
            # Trailers (rare) end with an empty line.
            end = buffer.find(b"\r\n\r\n", line_end)
            if end < 0:
                return None
            return bytes(body), end + 4
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class HttpPool:
    """Keep-alive connections to the origin of ``url``, shared by many transports.

    The most recently used idle connection is reused first, so a steady load runs on a few
    hot connections and the rest time out at the server instead of being kept warm.
    ``connections`` counts what is open; ``opened`` what was ever opened.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an HTTP target must be an http(s):// URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()
        self.opened = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def connections(self) -> int:
        return len(self._open)

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def request(self, data: bytes, *, timeout: float) -> Response:
        """Send one complete request (head and body) and return the response."""
        for _ in range(2):
            connection = self._take()
            if connection is None:
                connection = await self._connect()
            try:
                response = await connection.exchange(data, timeout)
            except _StaleConnection:
                continue  # the server closed it while idle: once more on a fresh one
            if response.keep_alive and not connection.lost:
                connection.reused = True
                self._idle.append(connection)
            else:
                connection.close()
            return response
        raise ConnectionResetError("the server closed two connections in a row")

    def _take(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.lost:
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = self.loop
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"cannot connect to {self.host}:{self.port} within {self.connect_timeout:g} s"
            ) from None
        self.opened += 1
        self._open.add(protocol)
        return protocol

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        # Closed while idle (the server's keep-alive timeout): do not hand it out again.
        if connection.waiter is None and connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        """Close every connection."""
        for connection in list(self._open):
            connection.close()
        self._idle.clear()


class LeanHttpTransport(AppTransport):
    """``HttpAppTransport`` on an ``HttpPool``: POST each event to the webhook URL.

    The reply is judged exactly as ``HttpAppTransport`` judges it (``parse_reply``; the call
    times it); only the client underneath differs. ``timeout``: seconds before a request is
    given up (``no_reply``); ``2 * deadline + 1`` by default.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        deadline: float = 5.0,
        pool: HttpPool | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(deadline)
        self.url = url
        self._own = pool is None
        self._pool = pool or HttpPool(url)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Content-Type: application/json\r\nAccept: */*\r\n"
        )
        if token:
            head += f"X-API-TOKEN: {token}\r\n"
        self._head = (head + "Content-Length: ").encode("latin-1")
        # By default HttpAppTransport's httpx timeout: a reply this late is lost, not just slow.
        self.timeout = deadline * 2 + 1 if timeout is None else timeout

    async def send(self, event: dict[str, Any]) -> Exchange:
        body = json.dumps(event).encode()
        data = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        try:
            response = await self._pool.request(data, timeout=self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            return Exchange(
                findings=[Finding("no_reply", f"no reply from {self.url}: {exc!r}", None)]
            )
        items, findings = parse_reply(response.status, response.body, response.content_type)
        return Exchange(items, findings)

    async def close(self) -> None:
        if self._own:
            self._pool.close()
