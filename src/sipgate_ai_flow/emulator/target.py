"""What a tool points at, resolved once: an app's URL, or an assistant to call in process.

Every tool (``aiflow call``, ``test``, ``load``, ``replay``, ``emulate``, ``simulate_call``)
turns its target into a ``Target`` here and asks it for a transport; no tool parses URLs or
loads modules itself.

Example:
    >>> target = resolve_target("ws://localhost:8080/ws")
    >>> target.kind, target.how
    ('websocket', 'over WebSocket')
    >>> resolve_target("sipgate_ai_flow.demo").kind
    'inprocess'
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._loader import load_assistant
from ..assistant import AiFlowAssistant
from ..errors import ConfigurationError
from .transports import (
    TRANSPORTS,
    AppTransport,
    AppUnreachableError,
    HttpAppTransport,
    InProcessTransport,
    WebSocketAppTransport,
)

__all__ = ["Target", "TargetError", "resolve_target", "transport_for"]

_SCHEMES = {"http://": "http", "https://": "http", "ws://": "websocket", "wss://": "websocket"}
_HOW = {"http": "over HTTP", "websocket": "over WebSocket", "inprocess": "in process"}
_URL_KIND = {"http": "an HTTP", "websocket": "a WebSocket"}
_URL_FORM = {"http": "an http(s):// URL", "websocket": "a ws(s):// URL"}


class TargetError(ConfigurationError, ValueError):
    """A target that names no app: a bad URL, a transport it cannot use, a module that fails."""


@dataclass(frozen=True)
class Target:
    """An app to call: ``url`` for ``http``/``websocket``, ``assistant`` for ``inprocess``."""

    kind: str
    url: str | None = None
    assistant: AiFlowAssistant | None = None
    name: str | None = None
    """The target as the user wrote it (a URL, ``app.py``, ``pkg.mod:attr``), for records."""

    @property
    def how(self) -> str:
        """``over HTTP``, ``over WebSocket`` or ``in process``."""
        return _HOW[self.kind]

    async def probe(self, *, token: str | None = None, timeout: float = 5.0) -> str | None:
        """Why the app cannot be reached, in one line naming it, or ``None``. Every tool asks
        before its first call: over HTTP one TCP connection (no event is sent), over a
        WebSocket one upgrade with the token, closed at once."""
        if self.url is None:
            return None
        if self.kind == "websocket":
            socket = WebSocketAppTransport(self.url, token=token, deadline=timeout)
            try:
                await socket.open("probe")
            except AppUnreachableError as exc:
                return f"{self.url} {exc}"
            finally:
                await socket.close()
            return None
        parts = urlsplit(self.url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            return f"bad URL {self.url}: {exc}"
        if not parts.hostname:
            return f"bad URL {self.url}: no host"
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port), timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            return f"{self.url}: cannot connect to {parts.hostname}:{port}: {reason}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None

    def kind_for(self, wanted: str | None) -> str:
        """The transport a scenario asking for ``wanted`` gets: an assistant can be reached
        any way (over a local socket for ``http``/``websocket``), a URL only its own way."""
        if self.assistant is not None:
            return wanted or "inprocess"
        if wanted not in (None, self.kind):
            raise TargetError(
                f"the scenario asks for transport {wanted}, but the target "
                f"{self.name} is reached {self.how}"
            )
        return self.kind

    def transport(self, *, token: str | None = None, deadline: float = 5.0) -> AppTransport:
        """A fresh transport for one call."""
        if self.assistant is not None:
            return InProcessTransport(self.assistant, deadline=deadline)
        assert self.url is not None
        if self.kind == "http":
            return HttpAppTransport(self.url, token=token, deadline=deadline)
        return WebSocketAppTransport(self.url, token=token, deadline=deadline)


def resolve_target(target: Any, transport: str | None = None) -> Target:
    """The ``Target`` for a URL, a ``.py`` file or module (``[:attr]``), or an assistant.

    ``transport`` (``http``, ``websocket``, ``inprocess``) must agree with the target; by
    default it is what the target implies. Raises ``TargetError`` naming what was wrong.
    """
    if transport is not None and transport not in TRANSPORTS:
        raise TargetError(f"unknown transport {transport!r}: use {', '.join(TRANSPORTS)}")
    if isinstance(target, str):
        kind = next((k for s, k in _SCHEMES.items() if target.startswith(s)), None)
        if kind is None:
            if "://" in target:
                raise TargetError(
                    f"a target URL starts with http(s):// or ws(s)://, got {target!r}"
                )
            if transport in _URL_KIND:
                raise TargetError(
                    f"{_URL_KIND[transport]} target must be {_URL_FORM[transport]}, got {target!r}"
                )
            try:
                assistant = load_assistant(target)
            except ConfigurationError as exc:
                raise TargetError(str(exc)) from exc.__cause__
            return Target("inprocess", assistant=assistant, name=target)
        if transport not in (None, kind):
            raise TargetError(
                f"{target} is {_URL_KIND[kind]} URL; it cannot be reached with transport "
                f"{transport!r}"
            )
        return Target(kind, url=target, name=target)
    inner = target if isinstance(target, AiFlowAssistant) else getattr(target, "assistant", None)
    if not isinstance(inner, AiFlowAssistant):
        raise TargetError(
            f"expected an AiFlowAssistant, an app built from one, a URL or a module, "
            f"got {type(target).__name__}"
        )
    if transport not in (None, "inprocess"):
        raise TargetError(f"an assistant in process cannot use transport {transport!r}")
    return Target("inprocess", assistant=inner)


def transport_for(
    target: Any, transport: str | None = None, *, token: str | None = None, deadline: float = 5.0
) -> AppTransport:
    """A transport for ``target`` (see ``resolve_target``): ``inprocess`` for an assistant,
    ``http`` for ``http(s)://``, ``websocket`` for ``ws(s)://``."""
    return resolve_target(target, transport).transport(token=token, deadline=deadline)
