"""Serve an assistant on a real local socket, in the running event loop.

``aiflow demo`` talks to the bundled assistant over HTTP this way, and scenarios that name a
``transport`` reach an in-process assistant over that real transport.

Example:
    >>> import asyncio
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.testing import simulate_call
    >>> async def main():
    ...     async with serve_locally(assistant) as server:
    ...         async with simulate_call(server.webhook_url) as call:
    ...             await call.say("When are you open?")
    ...     return call.transport.name, call.spoken[-1]
    >>> asyncio.run(main())
    ('http', 'We are open Monday to Friday, 9 to 5. Anything else?')
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..assistant import AiFlowAssistant

__all__ = ["LocalServer", "serve_locally"]


@dataclass(frozen=True)
class LocalServer:
    """Where a locally served assistant listens."""

    host: str
    port: int

    @property
    def webhook_url(self) -> str:
        return f"http://{self.host}:{self.port}/webhook"

    @property
    def websocket_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def url_for(self, transport: str) -> str:
        """The URL of ``transport`` (``http`` or ``websocket``)."""
        if transport == "http":
            return self.webhook_url
        if transport == "websocket":
            return self.websocket_url
        raise ValueError(f"a local server speaks http or websocket, not {transport!r}")


@contextlib.asynccontextmanager
async def serve_locally(
    assistant: AiFlowAssistant, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[LocalServer]:
    """Serve ``assistant`` (webhook at ``/webhook``, WebSocket at ``/ws``) with uvicorn until
    the block ends. ``port=0`` picks a free port. Needs the ``server`` extra (uvicorn)."""
    try:
        import uvicorn  # noqa: PLC0415 - the [server] / [cli] extra
    except ImportError as exc:  # pragma: no cover - installed with the cli extra
        raise RuntimeError(
            "serving locally needs uvicorn: pip install 'sipgate-ai-flow[server]'"
        ) from exc
    from ..asgi import create_app  # noqa: PLC0415 - keeps the emulator import light

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(assistant),
        lifespan="on",
        log_level="warning",
        access_log=False,
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    # The host program owns Ctrl-C; uvicorn's serve() would take over the signal handlers.
    # uvicorn has no public way to serve given sockets without its signal handlers.
    task = asyncio.get_running_loop().create_task(server._serve(sockets=[sock]))  # noqa: SLF001
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped the server
                raise RuntimeError("the local server stopped before it started")
            await asyncio.sleep(0.005)
        yield LocalServer(host, bound)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()
