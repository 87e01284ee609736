"""Instructions per webhook request: the SDK ASGI app vs the raw ASGI ceiling, in process.

Wall-clock figures on a shared VM swing with the host's load; instruction counts from
``valgrind --tool=callgrind`` do not. Each app answers the same ``user_speak`` request N and
M times in a fresh interpreter; the difference divided by M - N is the cost of one request
without start-up. It leaves out the server (uvicorn's HTTP parsing and writes are the same
for both apps), so it isolates exactly what the SDK adds.

Run: ``python -m bench.instructions`` (needs valgrind: ``apt-get install valgrind``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._http_apps import ceiling_app, sdk_app
from .dispatch import BODY

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


def count(which: str, requests: int) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    result = subprocess.run(
        [
            valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-m", "bench.instructions", "--drive", which, str(requests),
        ],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{result.stderr}")
    return int(match.group(1))


def per_request(which: str, low: int = 200, high: int = 2200) -> float:
    return (count(which, high) - count(which, low)) / (high - low)


def main() -> int:
    sdk, ceiling = per_request("sdk"), per_request("ceiling")
    print("instructions per webhook request, in process (callgrind; the server excluded)")
    print(f"  ceiling: raw ASGI app     {ceiling:>10,.0f}")
    print(f"  SDK app (create_app)      {sdk:>10,.0f}   {sdk / ceiling:.2f}x the ceiling")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--drive":
        drive(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
