"""``aiflow emulate``: run the fake sipgate outbound-call API against an app."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import missing


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "emulate",
        help="serve a fake sipgate API: outbound calls placed through it call your app",
        description="Serve POST /v3/ai-flows/{id}/call like the sipgate API. Every call "
        "placed through it is emulated against TARGET (a webhook or WebSocket URL).",
    )
    parser.add_argument(
        "--target", required=True, help="the app: http(s)://.../webhook or ws(s)://.../ws"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token", help="X-API-TOKEN sent to the app (its shared secret)")
    parser.add_argument(
        "--api-token",
        default="emulator-token",
        help="Bearer token the fake API accepts (default: emulator-token)",
    )
    parser.add_argument(
        "--flow",
        action="append",
        metavar="ID=PHONE",
        help="an AI Flow and its phone number (repeatable; ID= for one without a number). "
        "Default: demo=4921100000000",
    )
    parser.add_argument(
        "--hangup-after",
        type=float,
        default=30.0,
        help="seconds the callee stays on the line (default 30)",
    )
    parser.add_argument("--virtual", action="store_true", help="run calls on a virtual clock")
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="DIR",
        help="save each call as DIR/<session id>.jsonl (for aiflow replay)",
    )
    parser.set_defaults(run=run)


def parse_flows(values: list[str] | None) -> dict[str, str | None]:
    if not values:
        return {"demo": "4921100000000"}
    flows: dict[str, str | None] = {}
    for value in values:
        flow_id, sep, number = value.partition("=")
        if not sep or not flow_id:
            raise ValueError(f"--flow takes ID=PHONE, got {value!r}")
        flows[flow_id] = number or None
    return flows


def run(args: argparse.Namespace) -> int:
    if missing("emulate", "server", "uvicorn"):
        return 2
    import uvicorn

    from ..emulator.outbound_api import OutboundApi
    from ..emulator.target import TargetError

    try:
        flows = parse_flows(args.flow)
    except ValueError as exc:
        print(f"aiflow emulate: {exc}")
        return 2
    try:
        api = OutboundApi(
            args.target,
            api_token=args.api_token,
            flows=flows,
            app_token=args.token,
            realtime=not args.virtual,
            hangup_after=args.hangup_after,
            record=args.record,
        )
    except TargetError as exc:
        print(f"aiflow emulate: {exc}")
        return 2
    base = f"http://{args.host}:{args.port}"
    print(f"Fake sipgate API for outbound calls to {args.target}")
    print(f"  POST {base}/v3/ai-flows/<id>/call  (Bearer token: --api-token)")
    for flow_id, number in flows.items():
        print(f"    AI Flow {flow_id!r}: {number or 'no phone number (answers 400)'}")
    print(f"  GET  {base}/emulator/calls  (what happened in each call)")
    print(f"  In your app: AiFlowAssistant(token=..., base_url={base!r})", flush=True)
    uvicorn.run(api, host=args.host, port=args.port, log_level="warning")
    return 0
