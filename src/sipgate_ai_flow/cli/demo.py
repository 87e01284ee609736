"""``aiflow demo``: run a scripted call against the bundled demo assistant, in process."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from ..assistant import AiFlowAssistant
from ..codec import dump_action

_CALLER = "+4915111111111"
_FLOW = "+4921100000000"

# (what the caller does, event payload fields) - the emulator replaces this script later.
_SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("(the call is answered)", {"type": "session_start"}),
    ("", {"type": "assistant_speech_ended"}),
    ('says "When are you open?"', {"type": "user_speak", "text": "When are you open?"}),
    ("", {"type": "assistant_speech_ended"}),
    ("(stays silent)", {"type": "user_input_timeout"}),
    ('says "Tell me a joke"', {"type": "user_speak", "text": "Tell me a joke"}),
    ("presses 5", {"type": "dtmf_received", "digit": "5"}),
    ('says "OK, bye!"', {"type": "user_speak", "text": "OK, bye!"}),
    ("", {"type": "assistant_speech_ended"}),
    ("(the line goes quiet)", {"type": "session_end"}),
]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="run a scripted call against the bundled demo assistant"
    )
    parser.add_argument("--json", action="store_true", help="also print the raw actions")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import assistant

    return asyncio.run(play(assistant, show_json=args.json))


async def play(assistant: AiFlowAssistant, *, show_json: bool = False) -> int:
    """Send the demo script's events to ``assistant`` and print the conversation."""
    session = {
        "id": str(uuid.uuid4()),
        "account_id": "demo-account",
        "phone_number": _FLOW,
        "direction": "inbound",
        "from_phone_number": _CALLER,
        "to_phone_number": _FLOW,
    }
    print(f"Inbound call from {_CALLER} to {_FLOW} (session {session['id']})\n")
    for caller, fields in _SCRIPT:
        if caller:
            print(f"  caller    {caller}")
        started = time.perf_counter()
        actions = await assistant.handle_event({**fields, "session": session})
        took = (time.perf_counter() - started) * 1000
        print(f"            -> {fields['type']}  ({len(actions)} action(s), {took:.1f} ms)")
        for action in actions:
            data = dump_action(action)
            print(f"  assistant {_describe(data)}")
            if show_json:
                print(f"            {json.dumps(data)}")
        if any(dump_action(a).get("type") == "hangup" for a in actions):
            print("            (the service ends the call: session_end follows)")
    print("\nCall ended.")
    return 0


def _describe(action: dict[str, Any]) -> str:
    kind = action.get("type")
    if kind == "speak":
        return f'says "{action.get("text") or action.get("ssml")}"'
    if kind == "transfer":
        return f"transfers the call to {action.get('target_phone_number')}"
    if kind == "hangup":
        return "hangs up"
    return f"sends {kind}"
