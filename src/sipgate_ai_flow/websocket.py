"""The WebSocket transport of protocol §9, free of any WebSocket library.

The AI Flow service connects to the application, normally once per call, and sends one JSON
event per text frame. Each batch of actions goes back as one text frame: an object for one
action, an array for several, nothing for none. Actions may also be sent at any other time
(``ctx.send``, ``assistant.push``, the yields of an async-generator handler, the answer that
follows a hold reply).

``serve_websocket`` is the TypeScript SDK's ``assistant.ws(ws)`` for any library: give it a
``receive_text`` that returns the next frame (``str``; ``bytes`` for a binary frame; ``None``
once the peer has gone) and a ``send_text``. ``serve_asgi_websocket`` serves an accepted ASGI
WebSocket (what ``create_app`` and the FastAPI adapter use).

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

from ._eager import start
from ._sessions import Session
from .codec import ActionLike, dump_actions, parse_event
from .errors import InvalidActionError, InvalidEventError
from .events import BaseEvent
from .reply import Reply

if TYPE_CHECKING:
    from .assistant import AiFlowAssistant

__all__ = ["serve_asgi_websocket", "serve_websocket"]

logger = logging.getLogger("sipgate_ai_flow.transport")

_CLEANUP_GRACE = 5.0  # seconds a session_end handler may finish after the socket closed

ReceiveText = Callable[[], Awaitable["str | bytes | None"]]
SendText = Callable[[str], Awaitable[None]]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


class _Connection:
    """One socket: each call's events are handled in order, different calls concurrently."""

    def __init__(self, assistant: AiFlowAssistant, send: Send) -> None:
        self.runtime = assistant.runtime
        self._send = send  # ASGI's: one message per frame
        # Frames never interleave: one send at a time, the others wait in order (a lock
        # that costs nothing when free, unlike asyncio.Lock's two coroutines per send).
        self._sending = False
        self._send_waiters: deque[asyncio.Future[None]] = deque()
        # Calls with a handler waiting on something (a slow handler, Redis), and the events
        # that arrived for them meanwhile. A call not in here is idle.
        self.workers: dict[str | None, asyncio.Task[None]] = {}
        self.queues: dict[str | None, deque[BaseEvent]] = {}
        self.sessions: dict[str, Session] = {}
        self.ending: set[str | None] = set()
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
        if self._sending:  # (it stays set while anyone waits: each turn is handed on)
            waiter = asyncio.get_running_loop().create_future()
            self._send_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._next_sender()  # our turn came as we were cancelled: pass it on
                elif waiter in self._send_waiters:  # (_next_sender drops cancelled ones)
                    self._send_waiters.remove(waiter)
                raise
        self._sending = True
        try:
            await self._send({"type": "websocket.send", "text": body.decode()})
        except Exception as exc:  # the peer went away mid-send: nothing more goes out
            self.closed = True
            logger.info("WebSocket send failed, connection closed: %s", exc)
        finally:
            if self._send_waiters:
                self._next_sender()
            else:
                self._sending = False

    def _next_sender(self) -> None:
        waiters = self._send_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # its turn: _sending stays True for it
                return
        self._sending = False

    async def serve(self, key: str | None, event: BaseEvent) -> None:
        """Handle ``event`` and then the events of its call that arrived meanwhile.

        Runs at once from the read loop; only if it has to wait does it become the call's
        worker (``workers[key]``), and the read loop queues the call's next events for it.
        """
        runtime = self.runtime
        try:
            while True:
                session = event.session
                session_id = session.id if session is not None else None
                if session_id is not None and session_id not in self._claimed:
                    self._claimed.add(session_id)
                    await runtime.claim(session_id)  # pushes from other workers reach us
                try:
                    await runtime.dispatch(event, _Turn(runtime, session_id, False, self))
                finally:
                    if event.type == "session_end" and session_id is not None:
                        self.sessions.pop(session_id, None)
                queue = self.queues.get(key)
                if not queue:
                    return
                event = queue.popleft()
        finally:
            # No await between the last check and here: the read loop sees a consistent state.
            self.workers.pop(key, None)
            self.queues.pop(key, None)

    async def close(self) -> None:
        """Cancel this connection's pending work and detach its calls.

        Calls whose ``session_end`` already arrived get a short grace period so their cleanup
        handler completes; everything else is cancelled at once.
        """
        self.closed = True
        ending = [task for key, task in self.workers.items() if key in self.ending]
        if ending:
            await asyncio.wait(ending, timeout=_CLEANUP_GRACE)
        tasks = list(self.workers.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for session_id in {*self.sessions, *self._claimed}:
            await self.runtime.detach(session_id, self.send, claimed=session_id in self._claimed)
        self.sessions.clear()


class _Turn(Reply):
    """The reply to one event on this socket (``channel``): its actions go straight out."""

    __slots__ = ()
    streaming = True

    async def send(self, actions: list[ActionLike]) -> None:
        connection: _Connection = self.channel
        session_id = self.session_id
        live = connection.sessions.get(session_id) if session_id is not None else None
        if live is None or live.ended or connection.closed:
            await Reply.send(self, actions)  # the runtime drops them (with a warning) or routes
            return
        await connection.send(actions)


async def serve_asgi_websocket(assistant: AiFlowAssistant, receive: Receive, send: Send) -> None:
    """Serve one accepted ASGI WebSocket until the peer goes away.

    A bad frame (binary, not JSON, not a valid event) is logged and answered with nothing;
    the next good frame is answered. A slow handler of one call never delays another call.
    On return (or cancellation) the connection's pending work is cancelled. After a failed
    send nothing more is sent on the socket.
    """
    connection = _Connection(assistant, send)
    runtime = connection.runtime
    sessions = connection.sessions
    workers = connection.workers
    queues = connection.queues
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            frame = message.get("text")
            if frame is None:
                size = len(message.get("bytes") or b"")
                logger.warning("binary WebSocket frame ignored (%d bytes): events are text", size)
                continue
            try:
                event = parse_event(frame)
            except InvalidEventError as exc:
                logger.warning("invalid WebSocket frame ignored: %s", "; ".join(exc.details))
                continue
            session = event.session
            key = session.id if session is not None else None
            if key is not None and key not in sessions:
                sessions[key] = runtime.attach(key, connection.send)
            if event.type == "session_end":
                connection.ending.add(key)
            if key in workers:  # still handling an earlier event: this one waits its turn
                queues[key].append(event)
                continue
            try:
                task = start(connection.serve(key, event))
            except Exception:  # serve lets only bugs through; keep serving the socket
                logger.exception("%s of session %s failed", event.type, key)
                continue
            except asyncio.CancelledError:
                # Raised by the handling itself (this loop's own cancellation arrives only
                # where it awaits): as for a cancelled task, that event ends, the socket not.
                logger.warning("handling of %s (session %s) was cancelled", event.type, key)
                continue
            if task is not None:
                workers[key] = task
                queues[key] = deque()
    finally:
        await connection.close()


async def serve_websocket(
    assistant: AiFlowAssistant, receive_text: ReceiveText, send_text: SendText
) -> None:
    """Serve one WebSocket connection of any library until the peer goes away.

    ``receive_text`` returns the next frame (``str``; ``bytes`` for a binary frame; ``None``
    once the peer has gone); ``send_text`` sends one text frame. Otherwise as
    ``serve_asgi_websocket``.
    """

    async def receive() -> dict[str, Any]:
        frame = await receive_text()
        if frame is None:
            return {"type": "websocket.disconnect"}
        if isinstance(frame, str):
            return {"type": "websocket.receive", "text": frame}
        return {"type": "websocket.receive", "bytes": bytes(frame)}

    async def send(message: dict[str, Any]) -> None:
        await send_text(message["text"])

    await serve_asgi_websocket(assistant, receive, send)
