"""How the emulator reaches the app: HTTP webhook, WebSocket, or an assistant in process.

Each transport sends one event and returns the app's answer as raw JSON values (validated by
the call, not here), plus findings about the exchange itself (status, JSON). What a transport
can do is said by its flags (``pairs_replies``, ``pushes_actions``, ``sends_speech_started``),
never by its name; the call reads the flags, and times the replies itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..codec import dump_action
from ..errors import HandlerError
from .validate import Finding, decode_frame, parse_reply

if TYPE_CHECKING:
    import httpx

    from ..assistant import AiFlowAssistant

__all__ = [
    "TRANSPORTS",
    "AppTransport",
    "AppUnreachableError",
    "Exchange",
    "HttpAppTransport",
    "InProcessTransport",
    "WebSocketAppTransport",
]

USER_AGENT = f"sipgate-ai-flow-emulator/{__version__}"


class AppUnreachableError(ConnectionError):
    """The app did not take the connection; the message says what it did, to follow its URL
    (``answered the WebSocket upgrade with HTTP 401``, ``refused the connection (...)``)."""


@dataclass
class Exchange:
    """What came back for one event."""

    items: list[Any] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    arrived: float | None = None
    """``time.perf_counter()`` when the first frame arrived, on a transport that does not pair
    replies with events (``None``: nothing came). The call turns it into a latency."""


class AppTransport:
    """Base of the transports; ``name`` (``http``, ``websocket``, ``inprocess``) is for people
    and records: behaviour follows the flags."""

    name = "base"
    sends_speech_started = False
    """Whether ``user_speech_started`` is delivered (WebSocket only in the real service)."""
    pairs_replies = True
    """Each answer comes back as the reply to its event (an HTTP response, a return value).
    Without it (WebSocket) frames carry no reply-to: the first frame after an event is taken
    as its answer."""
    pushes_actions = False
    """The app may send actions at any time, not only in a reply (``pushed`` returns them)."""

    def __init__(self, deadline: float = 5.0) -> None:
        self.deadline = deadline

    async def open(self, session_id: str) -> None:
        """Prepare for a call (the WebSocket transport connects here)."""

    async def send(self, event: dict[str, Any]) -> Exchange:
        raise NotImplementedError

    async def pushed(self, timeout: float) -> Exchange:
        """Actions the app sent on its own, waiting at most ``timeout`` seconds for the first.

        Over HTTP (and in process) pushes ride along with the next reply, so nothing arrives
        here: the wait is a plain sleep, which paces a call on the real clock.
        """
        if timeout > 0:
            await asyncio.sleep(timeout)
        return Exchange()

    async def close(self) -> None:
        """Release the connection."""


class HttpAppTransport(AppTransport):
    """POST each event to the app's webhook URL, as the service does."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        deadline: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(deadline)
        self.url = url
        self._token = token
        self._client = client
        self._own = client is None

    async def send(self, event: dict[str, Any]) -> Exchange:
        import httpx  # noqa: PLC0415 - imported on first use, like the outbound client

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.deadline * 2 + 1)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._token:
            headers["X-API-TOKEN"] = self._token
        try:
            response = await self._client.post(
                self.url, content=json.dumps(event).encode(), headers=headers
            )
        except httpx.HTTPError as exc:
            return Exchange(
                findings=[Finding("no_reply", f"no reply from {self.url}: {exc!r}", None)]
            )
        items, findings = parse_reply(
            response.status_code, response.content, response.headers.get("content-type")
        )
        return Exchange(items, findings)

    async def close(self) -> None:
        if self._client is not None and self._own:
            await self._client.aclose()
            self._client = None


class WebSocketAppTransport(AppTransport):
    """One WebSocket per call to the app's URL; actions are accepted at any time.

    After each event the transport collects frames until the app has been quiet for
    ``settle`` seconds; frames that come later are picked up as pushes.
    """

    name = "websocket"
    sends_speech_started = True
    pairs_replies = False
    pushes_actions = True

    def __init__(
        self, url: str, *, token: str | None = None, deadline: float = 5.0, settle: float = 0.05
    ) -> None:
        super().__init__(deadline)
        self.url = url
        self._token = token
        self.settle = settle
        self._ws: Any = None
        # Each frame with the perf_counter() it arrived at: the call times replies by it.
        self._frames: asyncio.Queue[tuple[str | bytes, float] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.closed_by_app = False

    async def open(self, session_id: str) -> None:
        """Connect; ``AppUnreachableError`` says in one line why that failed."""
        import websockets  # noqa: PLC0415 - the [emulator] extra
        from websockets.exceptions import (  # noqa: PLC0415 - the [emulator] extra
            InvalidHandshake,
            InvalidStatus,
            InvalidURI,
        )

        headers = {"User-Agent": USER_AGENT}
        if self._token:
            headers["X-API-TOKEN"] = self._token
        try:
            self._ws = await websockets.connect(
                self.url, additional_headers=headers, open_timeout=self.deadline
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = " (is --token right?)" if status in (401, 403) else ""
            raise AppUnreachableError(
                f"answered the WebSocket upgrade with HTTP {status}{hint}"
            ) from exc
        except InvalidURI as exc:
            raise AppUnreachableError(f"is not a WebSocket URL ({exc})") from exc
        except InvalidHandshake as exc:
            cause = exc.__cause__
            if isinstance(cause, EOFError) or "closed" in str(exc):
                raise AppUnreachableError("closed the connection during the upgrade") from exc
            raise AppUnreachableError(
                f"did not answer the WebSocket upgrade with HTTP ({exc})"
            ) from exc
        except asyncio.TimeoutError as exc:
            raise AppUnreachableError(
                f"did not answer the WebSocket upgrade within {self.deadline:g} s"
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise AppUnreachableError(f"refused the connection ({reason})") from exc
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        import websockets  # noqa: PLC0415 - the [emulator] extra

        try:
            async for frame in self._ws:
                await self._frames.put((frame, time.perf_counter()))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_by_app = True
            await self._frames.put(None)

    async def send(self, event: dict[str, Any]) -> Exchange:
        if self._ws is None or self.closed_by_app:
            return Exchange(
                findings=[Finding("connection_closed", "the WebSocket is closed", None)]
            )
        try:
            await self._ws.send(json.dumps(event))
        except Exception as exc:
            return Exchange(findings=[Finding("connection_closed", f"send failed: {exc!r}", None)])
        return await self._collect(self.settle)

    async def pushed(self, timeout: float) -> Exchange:
        return await self._collect(timeout)

    async def _collect(self, first_wait: float) -> Exchange:
        exchange = Exchange()
        wait = first_wait
        while True:
            try:
                got = await asyncio.wait_for(self._frames.get(), max(wait, 0))
            except asyncio.TimeoutError:
                return exchange
            if got is None:
                self._frames.put_nowait(None)  # stays closed for later reads
                return exchange
            frame, arrived = got
            if exchange.arrived is None:
                exchange.arrived = arrived
            items, findings = decode_frame(frame)
            exchange.items.extend(items)
            exchange.findings.extend(findings)
            wait = self.settle

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class InProcessTransport(AppTransport):
    """Call an ``AiFlowAssistant`` directly; its replies follow the HTTP rules (pushes ride
    along with the next reply) and it also receives ``user_speech_started``."""

    name = "inprocess"
    sends_speech_started = True

    def __init__(self, assistant: AiFlowAssistant, *, deadline: float = 5.0) -> None:
        super().__init__(deadline)
        self.assistant = assistant

    async def send(self, event: dict[str, Any]) -> Exchange:
        try:
            actions = await self.assistant.handle_event(event)
        except HandlerError as exc:
            cause = exc.__cause__
            return Exchange(
                findings=[
                    Finding(
                        "handler_error",
                        f"{exc} ({type(cause).__name__}: {cause}); over HTTP this is a 500",
                        None,
                    )
                ]
            )
        return Exchange([dump_action(a) for a in actions])


TRANSPORTS: dict[str, type[AppTransport]] = {
    "http": HttpAppTransport,
    "websocket": WebSocketAppTransport,
    "inprocess": InProcessTransport,
}
"""The transports by ``name``: what ``--transport`` and a scenario's ``transport:`` accept."""
