"""``aiflow serve TARGET``: serve an assistant over HTTP webhook and WebSocket with uvicorn."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._loader import load_assistant
from ._common import missing

# Each uvicorn worker (and the reloader's child) rebuilds the app from these variables.
_ENV_TARGET = "AIFLOW_SERVE_TARGET"
_ENV_WEBHOOK = "AIFLOW_SERVE_WEBHOOK_PATH"
_ENV_WS = "AIFLOW_SERVE_WEBSOCKET_PATH"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve an assistant over HTTP webhook and WebSocket",
        description="Serve TARGET (module:attr, a module, or a .py file holding an "
        "AiFlowAssistant) with uvicorn.",
    )
    parser.add_argument("target", help="module:attr, module, or path/to/file.py[:attr]")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--reload", action="store_true", help="restart when files change")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--webhook-path", default="/webhook")
    parser.add_argument("--websocket-path", default="/ws")
    parser.add_argument(
        "--token",
        help="shared secret the AI Flow service sends as X-API-TOKEN "
        "(default: $AIFLOW_WEBHOOK_TOKEN)",
    )
    parser.add_argument(
        "--store",
        help="where per-call state lives: redis://host:port/db to share it between workers "
        "(default: $AIFLOW_STORE_URL, else memory)",
    )
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(run=run)


def app_factory() -> Any:
    """Build the ASGI app from the environment (used by uvicorn in each process)."""
    from ..asgi import create_app

    assistant = load_assistant(os.environ[_ENV_TARGET])
    return create_app(
        assistant,
        webhook_path=os.environ.get(_ENV_WEBHOOK, "/webhook"),
        websocket_path=os.environ.get(_ENV_WS, "/ws"),
    )


def _server_options() -> dict[str, Any]:
    # httptools + uvloop when installed: the fastest uvicorn setup in bench/ (see README).
    options: dict[str, Any] = {}
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        options["http"] = "h11"
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        options["loop"] = "asyncio"
    return options


def run(args: argparse.Namespace) -> int:
    if missing("serve", "server", "uvicorn"):
        return 2
    import uvicorn

    from ..errors import ConfigurationError

    os.environ[_ENV_TARGET] = args.target
    os.environ[_ENV_WEBHOOK] = args.webhook_path
    os.environ[_ENV_WS] = args.websocket_path
    if args.token:
        os.environ["AIFLOW_WEBHOOK_TOKEN"] = args.token
    if args.store:
        os.environ["AIFLOW_STORE_URL"] = args.store
    try:
        assistant = load_assistant(args.target)  # fail here, clearly, not in every worker
    except ConfigurationError as exc:
        print(f"aiflow serve: {exc}")
        return 2
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    base = f"{shown}:{args.port}"
    print(f"Serving {args.target}")
    print(f"  Webhook:   http://{base}{args.webhook_path}")
    print(f"  WebSocket: ws://{base}{args.websocket_path}")
    print(f"  Health:    http://{base}/health")
    secured = "X-API-TOKEN required" if assistant.webhook_token else "no shared secret set"
    print(f"  Auth:      {secured}")
    print(f"  State:     {assistant.store!r}", flush=True)
    if args.workers > 1 and type(assistant.store).__name__ == "MemoryStore":
        print(
            "  Warning:   several workers with MemoryStore: each worker has its own state; "
            "use --store redis://..."
        )
    reload_dirs = None
    if args.reload:
        path = args.target.partition(":")[0]
        reload_dirs = [os.path.dirname(os.path.abspath(path))] if path.endswith(".py") else None
    uvicorn.run(
        "sipgate_ai_flow.cli.serve:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        reload=args.reload,
        reload_dirs=reload_dirs,
        workers=None if args.reload else args.workers,
        log_level=args.log_level,
        **_server_options(),
    )
    return 0
