"""Instructions per webhook request (or WebSocket event): the SDK app vs the raw ASGI ceiling.

Wall-clock figures on a shared VM swing with the host's load; instruction counts from
``valgrind --tool=callgrind`` do not. Each app answers the same ``user_speak`` request N and
M times in a fresh interpreter; the difference divided by M - N is the cost of one request
without start-up. It leaves out the server (uvicorn's HTTP parsing and writes are the same
for both apps), so it isolates exactly what the SDK adds.

``--ws`` counts the WebSocket path instead: 50 call sockets on uvloop, each answering
``session_start`` and then ``user_speak`` events in a closed loop (the next frame once the reply
went out), the SDK app of ``bench._ws_apps`` against its raw ASGI handler.

Run: ``python -m bench.instructions [--ws]`` (needs valgrind: ``apt-get install valgrind``).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import _ws_apps
from ._http_apps import ceiling_app, sdk_app
from .dispatch import BODY

WS_SOCKETS = 50

ROOT = Path(__file__).parents[1]


def drive(which: str, requests: int) -> None:
    """Answer ``requests`` webhook requests with the ``sdk`` or ``ceiling`` app."""
    app: Any = sdk_app() if which == "sdk" else ceiling_app()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhook",
        "root_path": "",
        "headers": [(b"content-length", str(len(BODY)).encode())],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def main() -> None:
        for _ in range(requests):
            await app(scope, receive, send)

    asyncio.run(main())


def drive_ws(which: str, events: int, sockets: int = WS_SOCKETS) -> int:
    """``sockets`` calls of ``events`` ``user_speak`` each on the ``sdk`` or ``ceiling`` app;
    returns the number of frames the app sent."""
    import uvloop  # noqa: PLC0415 - the loop aiflow serve runs on; only this mode needs it

    app: Any = _ws_apps.sdk_app() if which == "sdk" else _ws_apps.ceiling_app()
    sent = 0

    async def call(index: int) -> None:
        loop = asyncio.get_running_loop()
        speak = json.loads(BODY)
        speak["session"]["id"] = f"call-{index}"
        start = {"type": "session_start", "session": speak["session"]}
        frames = [json.dumps(start)] + [json.dumps(speak)] * events
        replied: asyncio.Future[None] = loop.create_future()
        replied.set_result(None)
        position = -1

        async def receive() -> dict[str, Any]:
            nonlocal position, replied
            if position == -1:
                position = 0
                return {"type": "websocket.connect"}
            await replied  # closed loop: the next frame once the reply went out
            if position >= len(frames):
                return {"type": "websocket.disconnect", "code": 1000}
            position += 1
            replied = loop.create_future()
            return {"type": "websocket.receive", "text": frames[position - 1]}

        async def send(message: dict[str, Any]) -> None:
            nonlocal sent
            if message["type"] == "websocket.send":
                sent += 1
                if not replied.done():
                    replied.set_result(None)

        scope = {"type": "websocket", "path": "/ws", "root_path": "", "headers": []}
        await app(scope, receive, send)

    async def main() -> None:
        await asyncio.gather(*(call(i) for i in range(sockets)))

    uvloop.run(main())
    return sent


def count(which: str, requests: int, mode: str = "--drive") -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    result = subprocess.run(
        [
            valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-m", "bench.instructions", mode, which, str(requests),
        ],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{result.stderr}")
    return int(match.group(1))


def per_request(which: str, low: int = 200, high: int = 2200) -> float:
    return (count(which, high) - count(which, low)) / (high - low)


def per_ws_event(which: str, low: int = 10, high: int = 60) -> float:
    return (count(which, high, "--drive-ws") - count(which, low, "--drive-ws")) / (
        (high - low) * WS_SOCKETS
    )


def main(argv: list[str]) -> int:
    if "--ws" in argv:
        sdk, ceiling = per_ws_event("sdk"), per_ws_event("ceiling")
        what = f"WebSocket event ({WS_SOCKETS} call sockets on uvloop)"
    else:
        sdk, ceiling = per_request("sdk"), per_request("ceiling")
        what = "webhook request"
    print(f"instructions per {what}, in process (callgrind; the server excluded)")
    print(f"  ceiling: raw ASGI app     {ceiling:>10,.0f}")
    print(f"  SDK app (create_app)      {sdk:>10,.0f}   {sdk / ceiling:.2f}x the ceiling")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--drive":
        drive(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--drive-ws":
        drive_ws(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main(sys.argv[1:]))
