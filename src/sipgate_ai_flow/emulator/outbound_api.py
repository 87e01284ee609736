"""A fake sipgate REST API for outbound calls (protocol §11), as an ASGI app.

``POST /v3/ai-flows/{id}/call`` with ``Authorization: Bearer <token>`` and
``{"billingDevice": "e2", "toPhoneNumber": "4915790000687"}`` answers ``201`` and starts an
outbound call (``direction: "outbound"``) against the configured app; ``400`` when the AI Flow
has no phone number (or the body is wrong), ``404`` for an unknown AI Flow, ``401`` without the
right token. ``GET /emulator/calls`` lists the calls placed so far with what happened in them.

Example:
    >>> from sipgate_ai_flow.demo import assistant
    >>> from sipgate_ai_flow.emulator.outbound_api import OutboundApi
    >>> api = OutboundApi(assistant, api_token="secret", flows={"demo": "4921100000000"})
    >>> # uvicorn serves `api`; AiFlowAssistant(token="secret", base_url=...).call(...) reaches it
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from .call import CallConfig, EmulatedCall, RealClock, VirtualClock
from .lifecycle import CallStartError, running
from .target import resolve_target

__all__ = ["OutboundApi"]

logger = logging.getLogger("sipgate_ai_flow.emulator")

_CALL_PATH = re.compile(r"^/v3/ai-flows/([^/]+)/call$")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class OutboundApi:
    """The fake API. Each accepted request starts a call in the background.

    Args:
        target: the app to call: an ``AiFlowAssistant``, a module or file naming one, or its
            URL (see ``resolve_target``); ``transport`` must agree with it.
        api_token: the Bearer token the API accepts.
        flows: AI Flow id -> its phone number (``None``: none configured, so ``400``).
        app_token: the ``X-API-TOKEN`` the emulated service sends to the app.
        realtime: pace the calls in wall-clock time (default) or run them on a virtual clock.
        hangup_after: the callee stays on the line this long (seconds) unless the app ends the
            call first; meanwhile they listen and stay silent.
        record: a directory; each call is saved there as ``<session id>.jsonl`` when it ends
            (a transcript for ``aiflow replay``).
    """

    def __init__(
        self,
        target: Any,
        *,
        api_token: str,
        flows: dict[str, str | None],
        app_token: str | None = None,
        transport: str | None = None,
        realtime: bool = True,
        hangup_after: float = 30.0,
        record: str | Path | None = None,
    ) -> None:
        self.target = resolve_target(target, transport)
        self._api_token = api_token
        self.flows = flows
        self._app_token = app_token
        self.realtime = realtime
        self.hangup_after = hangup_after
        self.record = Path(record) if record is not None else None
        self.calls: list[EmulatedCall] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, payload = await self._route(scope, body)
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _route(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        path, method = scope["path"], scope["method"]
        if path == "/emulator/calls" and method == "GET":
            return 200, [self._summary(call) for call in self.calls]
        match = _CALL_PATH.match(path)
        if match is None:
            return 404, {"error": "Not found"}
        if method != "POST":
            return 405, {"error": "Method not allowed"}
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("authorization") != f"Bearer {self._api_token}":
            return 401, {"error": "Unauthorized"}
        flow_id = match.group(1)
        if flow_id not in self.flows:
            return 404, {"error": f"AI Flow {flow_id!r} not found"}
        flow_number = self.flows[flow_id]
        if not flow_number:
            return 400, {"error": "The AI Flow has no phone number configured"}
        try:
            request = json.loads(body)
            to_number = request["toPhoneNumber"]
            device = request["billingDevice"]
            if not isinstance(to_number, str) or not isinstance(device, str):
                raise TypeError("strings expected")
        except (ValueError, KeyError, TypeError):
            return 400, {"error": 'Body must be {"billingDevice": "...", "toPhoneNumber": "..."}'}
        call = self._place(flow_number, to_number)
        return 201, {"sessionId": call.session_id}

    def _place(self, flow_number: str, to_number: str) -> EmulatedCall:
        config = CallConfig(direction="outbound", from_number=flow_number, to_number=to_number)
        call = EmulatedCall(
            self.target.transport(token=self._app_token),
            config,
            clock=RealClock() if self.realtime else VirtualClock(),
        )
        self.calls.append(call)
        task = asyncio.get_running_loop().create_task(self._run(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

    async def _run(self, call: EmulatedCall) -> None:
        record = None if self.record is None else self.record / f"{call.session_id}.jsonl"
        try:
            async with running(call, record=record, target=self.target.name):
                if not call.ended:  # the app may hang up on session_start
                    await call.silence(self.hangup_after)
        except CallStartError as exc:
            logger.warning("outbound call %s could not start: %s", call.session_id, exc)
        except Exception:
            logger.exception("outbound call %s failed", call.session_id)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    def _summary(call: EmulatedCall) -> dict[str, Any]:
        return {
            "session_id": call.session_id,
            "session": call.session,
            "ended": call.ended,
            "end_reason": call.end_reason,
            "events": [e["type"] for e in call.events],
            "actions": call.actions,
            "spoken": call.spoken,
            "findings": [f.to_dict() for f in call.findings],
        }
