"""The WebSocket transport of protocol §9, free of any WebSocket library.

The AI Flow service connects to the application, normally once per call, and sends one JSON
event per text frame. Each batch of actions goes back as one text frame: an object for one
action, an array for several, nothing for none. Actions may also be sent at any other time
(``ctx.send``, ``assistant.push``, the yields of an async-generator handler, the answer that
follows a hold reply).

``serve_websocket`` is the TypeScript SDK's ``assistant.ws(ws)`` for any library: give it a
``receive_text`` that returns the next frame (``str``; ``bytes`` for a binary frame; ``None``
once the peer has gone) and a ``send_text``.

Example (the ``websockets`` library)::

    async def handler(ws):
        async def receive():
            try:
                return await ws.recv()
            except websockets.ConnectionClosed:
                return None
        await serve_websocket(assistant, receive, ws.send)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._handlers import normalise
from ._sessions import Reply, Session
from .codec import ActionLike, dump_actions, parse_event
from .errors import HandlerError, InvalidActionError, InvalidEventError, StoreError
from .events import BaseEvent

if TYPE_CHECKING:
    from .assistant import AiFlowAssistant

__all__ = ["asgi_text_channel", "serve_websocket"]

logger = logging.getLogger("sipgate_ai_flow.transport")

_CLEANUP_GRACE = 5.0  # seconds a session_end handler may finish after the socket closed

ReceiveText = Callable[[], Awaitable["str | bytes | None"]]
SendText = Callable[[str], Awaitable[None]]


class _Connection:
    """One socket: a worker per session keeps each call's events in order."""

    def __init__(self, assistant: AiFlowAssistant, send_text: SendText) -> None:
        self.assistant = assistant
        self._send_text = send_text
        self._send_lock = asyncio.Lock()
        self._queues: dict[str | None, deque[BaseEvent]] = {}
        self._workers: dict[str | None, asyncio.Task[None]] = {}
        self._idle: dict[str | None, asyncio.Future[None]] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self._sessions: dict[str, Session] = {}
        self._ending: set[str | None] = set()
        self._claimed: set[str] = set()
        self.closed = False

    async def send(self, actions: list[ActionLike]) -> None:
        if self.closed or not actions:
            return
        try:
            body = dump_actions(actions)
        except InvalidActionError as exc:
            logger.error("actions could not be serialised, not sent: %s", exc)
            return
        if body is None:
            return
        async with self._send_lock:  # frames never interleave
            await self._send_text(body.decode())

    def accept(self, event: BaseEvent) -> None:
        session = event.session
        key = session.id if session is not None else None
        if session is not None and session.id not in self._sessions:
            live = self.assistant._sessions.open(session.id)
            live.sender = self.send
            self._sessions[session.id] = live
        if event.type == "session_end":
            self._ending.add(key)
        queue = self._queues.setdefault(key, deque())
        queue.append(event)
        waiter = self._idle.pop(key, None)
        if waiter is not None:
            waiter.set_result(None)
        elif key not in self._workers:
            self._workers[key] = asyncio.get_running_loop().create_task(self._drain(key))

    async def _drain(self, key: str | None) -> None:
        # One long-lived worker per call, parked on a future between events: waking it is
        # cheaper than a new task per event, and the call's events stay in order.
        queue = self._queues[key]
        loop = asyncio.get_running_loop()
        try:
            while True:
                while queue:
                    event = queue.popleft()
                    await self._handle(event)
                    if event.type == "session_end" and not queue:
                        return
                waiter = self._idle[key] = loop.create_future()
                await waiter
        finally:
            # No await between the last check and here: accept() sees a consistent state.
            del self._workers[key]
            self._idle.pop(key, None)
            if not queue:
                del self._queues[key]

    async def _handle(self, event: BaseEvent) -> None:
        session = event.session
        session_id = session.id if session is not None else None
        assistant = self.assistant
        if session_id is not None and session_id not in self._claimed:
            self._claimed.add(session_id)
            try:  # pushes from other workers reach this socket
                await assistant.store.claim(session_id, assistant._deliver)
            except StoreError as exc:
                logger.error("WebSocket of session %s not announced: %s", session_id, exc)
        reply = Reply(session_id, assistant._deliver, open=False)
        timer = None
        answers = event.type not in ("session_end", "user_speech_started")
        if assistant.hold_after is not None and session_id is not None and answers:
            timer = asyncio.get_running_loop().call_later(
                assistant.hold_after, self._hold, reply, session_id
            )
        try:
            await assistant._dispatch(event, reply)
        except HandlerError:
            pass  # logged by the assistant; the socket stays open and nothing is sent
        finally:
            if timer is not None:
                timer.cancel()
            if event.type == "session_end" and session_id is not None:
                self._sessions.pop(session_id, None)

    def _hold(self, reply: Reply, session_id: str) -> None:
        if reply.emitted or self.closed:
            return
        reply.emitted = True
        actions = normalise(self.assistant.hold_reply, session_id, "hold_reply")
        task = asyncio.get_running_loop().create_task(self.send(actions))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def close(self) -> None:
        """Cancel this connection's pending work and detach its calls.

        Calls whose ``session_end`` already arrived get a short grace period so their cleanup
        handler completes; everything else is cancelled at once.
        """
        self.closed = True
        ending = [task for key, task in self._workers.items() if key in self._ending]
        if ending:
            await asyncio.wait(ending, timeout=_CLEANUP_GRACE)
        tasks = [*self._workers.values(), *self._timers]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for live in self._sessions.values():
            if live.sender == self.send:
                live.sender = None
        self._sessions.clear()
        for session_id in self._claimed:
            try:
                await self.assistant.store.unclaim(session_id)
            except StoreError as exc:
                logger.warning("WebSocket of session %s not released: %s", session_id, exc)


def asgi_text_channel(
    receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> tuple[ReceiveText, SendText]:
    """``receive_text``/``send_text`` over an accepted ASGI WebSocket's raw messages.

    ``receive_text`` returns ``None`` once the peer disconnects; after that, or after a failed
    send, ``send_text`` does nothing (actions for a gone call are dropped, not raised).
    """
    closed = False

    async def receive_text() -> str | bytes | None:
        nonlocal closed
        message = await receive()
        if message["type"] != "websocket.receive":
            closed = True
            return None
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes = message.get("bytes") or b""
        return data

    async def send_text(text: str) -> None:
        nonlocal closed
        if closed:
            return
        try:
            await send({"type": "websocket.send", "text": text})
        except Exception as exc:  # the peer went away mid-send
            closed = True
            logger.info("WebSocket send failed, connection closed: %s", exc)

    return receive_text, send_text


async def serve_websocket(
    assistant: AiFlowAssistant, receive_text: ReceiveText, send_text: SendText
) -> None:
    """Serve one WebSocket connection until the peer goes away.

    A bad frame (binary, not JSON, not a valid event) is logged and answered with nothing;
    the next good frame is answered. A slow handler of one call never delays another call.
    On return (or cancellation) the connection's pending work is cancelled.
    """
    connection = _Connection(assistant, send_text)
    try:
        while True:
            frame = await receive_text()
            if frame is None:
                return
            if isinstance(frame, (bytes, bytearray)):
                logger.warning(
                    "binary WebSocket frame ignored (%d bytes): events are text", len(frame)
                )
                continue
            try:
                event = parse_event(frame)
            except InvalidEventError as exc:
                logger.warning("invalid WebSocket frame ignored: %s", "; ".join(exc.details))
                continue
            connection.accept(event)
    finally:
        await connection.close()
