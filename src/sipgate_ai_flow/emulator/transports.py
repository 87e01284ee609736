"""How the emulator reaches the app: HTTP webhook, WebSocket, or an assistant in process.

Each transport sends one event and returns the app's answer as raw JSON values (validated by
the call, not here), plus findings about the exchange itself (status, JSON, latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
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
    "AppTransport",
    "Exchange",
    "HttpAppTransport",
    "InProcessTransport",
    "WebSocketAppTransport",
    "transport_for",
]

USER_AGENT = f"sipgate-ai-flow-emulator/{__version__}"


@dataclass
class Exchange:
    """What came back for one event."""

    items: list[Any] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    latency: float = 0.0
    """Seconds (wall clock) until the answer arrived."""


class AppTransport:
    """Base of the transports; ``name`` is ``http``, ``websocket`` or ``inprocess``."""

    name = "base"
    sends_speech_started = False
    """Whether ``user_speech_started`` is delivered (WebSocket only in the real service)."""

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

    def _late(self, exchange: Exchange, event: dict[str, Any]) -> None:
        if exchange.latency > self.deadline:
            exchange.findings.append(
                Finding(
                    "slow_reply",
                    f"the reply took {exchange.latency:.2f} s; the service waits about "
                    f"{self.deadline:g} s",
                    None,
                )
            )


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
        started = time.perf_counter()
        try:
            response = await self._client.post(
                self.url, content=json.dumps(event).encode(), headers=headers
            )
        except httpx.HTTPError as exc:
            return Exchange(
                findings=[Finding("no_reply", f"no reply from {self.url}: {exc!r}", None)],
                latency=time.perf_counter() - started,
            )
        items, findings = parse_reply(
            response.status_code, response.content, response.headers.get("content-type")
        )
        exchange = Exchange(items, findings, time.perf_counter() - started)
        self._late(exchange, event)
        return exchange

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

    def __init__(
        self, url: str, *, token: str | None = None, deadline: float = 5.0, settle: float = 0.05
    ) -> None:
        super().__init__(deadline)
        self.url = url
        self._token = token
        self.settle = settle
        self._ws: Any = None
        self._frames: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.closed_by_app = False
        self.on_reply: Callable[[str, float], None] | None = None
        """Called with an event's type and the seconds until the first frame after it (over
        a WebSocket nothing pairs a frame with an event; ``aiflow load`` times replies so)."""
        self._pending: tuple[str, float] | None = None

    async def open(self, session_id: str) -> None:
        import websockets  # noqa: PLC0415 - the [emulator] extra

        headers = {"User-Agent": USER_AGENT}
        if self._token:
            headers["X-API-TOKEN"] = self._token
        self._ws = await websockets.connect(self.url, additional_headers=headers)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        import websockets  # noqa: PLC0415 - the [emulator] extra

        try:
            async for frame in self._ws:
                await self._frames.put(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_by_app = True
            await self._frames.put(None)

    async def send(self, event: dict[str, Any]) -> Exchange:
        started = time.perf_counter()
        if self._ws is None or self.closed_by_app:
            return Exchange(
                findings=[Finding("connection_closed", "the WebSocket is closed", None)]
            )
        self._pending = (event["type"], started)
        try:
            await self._ws.send(json.dumps(event))
        except Exception as exc:
            return Exchange(findings=[Finding("connection_closed", f"send failed: {exc!r}", None)])
        exchange = await self._collect(self.settle)
        exchange.latency = time.perf_counter() - started
        return exchange

    async def pushed(self, timeout: float) -> Exchange:
        return await self._collect(timeout)

    async def _collect(self, first_wait: float) -> Exchange:
        exchange = Exchange()
        wait = first_wait
        while True:
            try:
                frame = await asyncio.wait_for(self._frames.get(), max(wait, 0))
            except asyncio.TimeoutError:
                return exchange
            if frame is None:
                self._frames.put_nowait(None)  # stays closed for later reads
                return exchange
            if self._pending is not None:
                event_type, sent = self._pending
                self._pending = None
                if self.on_reply is not None:
                    self.on_reply(event_type, time.perf_counter() - sent)
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
        started = time.perf_counter()
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
                ],
                latency=time.perf_counter() - started,
            )
        exchange = Exchange([dump_action(a) for a in actions], [], time.perf_counter() - started)
        self._late(exchange, event)
        return exchange


def transport_for(
    target: Any, transport: str | None = None, *, token: str | None = None, deadline: float = 5.0
) -> AppTransport:
    """A transport for an ``AiFlowAssistant`` (or an app built from one) or a URL.

    ``transport`` defaults to what the target implies: ``inprocess`` for an assistant,
    ``http`` for ``http(s)://``, ``websocket`` for ``ws(s)://``.
    """
    from ..assistant import AiFlowAssistant  # noqa: PLC0415 - avoids an import cycle

    assistant = (
        target if isinstance(target, AiFlowAssistant) else getattr(target, "assistant", None)
    )
    if isinstance(assistant, AiFlowAssistant):
        if transport not in (None, "inprocess"):
            raise ValueError(f"an assistant in process cannot use transport {transport!r}")
        return InProcessTransport(assistant, deadline=deadline)
    if not isinstance(target, str):
        raise TypeError(f"expected an AiFlowAssistant or a URL, got {type(target).__name__}")
    kind = transport or ("websocket" if target.startswith(("ws://", "wss://")) else "http")
    if kind == "http":
        if not target.startswith(("http://", "https://")):
            raise ValueError(f"an HTTP target must be an http(s):// URL, got {target!r}")
        return HttpAppTransport(target, token=token, deadline=deadline)
    if kind == "websocket":
        if not target.startswith(("ws://", "wss://")):
            raise ValueError(f"a WebSocket target must be a ws(s):// URL, got {target!r}")
        return WebSocketAppTransport(target, token=token, deadline=deadline)
    raise ValueError(f"unknown transport {kind!r}: use http, websocket or inprocess")
