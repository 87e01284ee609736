"""The emulator's seam: transport flags, one target resolver, timing in the call, one life cycle."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant
from sipgate_ai_flow.emulator import (
    AppTransport,
    CallStartError,
    EmulatedCall,
    Exchange,
    InProcessTransport,
    RealClock,
    Target,
    TargetError,
    resolve_target,
    running,
    transport_for,
)
from sipgate_ai_flow.emulator.local import serve_locally
from sipgate_ai_flow.emulator.replay import replay


def _speaker(delay: float = 0.0) -> AiFlowAssistant:
    assistant = AiFlowAssistant()

    @assistant.on_session_start
    async def hello(event: Any) -> str:
        return "Hello"

    @assistant.on_user_speak
    async def answer(event: Any) -> str:
        await asyncio.sleep(delay)
        return f"You said {event.text}"

    return assistant


class _Scripted(AppTransport):
    """A transport named like none of ours: the call must go by its flags alone."""

    name = "carrier-pigeon"

    def __init__(self, *, pairs: bool, pushes: bool, delay: float = 0.0) -> None:
        super().__init__(deadline=0.05)
        self.pairs_replies = pairs
        self.pushes_actions = pushes
        self.delay = delay
        self.pushes: list[Exchange] = []
        self.pushed_calls = 0

    async def send(self, event: dict[str, Any]) -> Exchange:
        await asyncio.sleep(self.delay)
        return Exchange()

    async def pushed(self, timeout: float) -> Exchange:
        self.pushed_calls += 1
        return self.pushes.pop(0) if self.pushes else Exchange()


# -- flags, not names -------------------------------------------------------------------------


async def test_a_transport_that_pushes_is_asked_for_pushes_whatever_its_name():
    transport = _Scripted(pairs=False, pushes=True)
    call = EmulatedCall(transport)
    reminder = {"type": "speak", "session_id": call.session_id, "text": "Reminder"}
    transport.pushes.append(Exchange(items=[reminder]))
    await call.start()
    await call.receive(0.01)
    assert call.spoken == ["Reminder"]
    await call.hangup()


async def test_a_transport_that_does_not_push_is_never_asked():
    transport = _Scripted(pairs=True, pushes=False)
    call = EmulatedCall(transport)
    await call.start()
    await call.receive(0.01)
    await call.silence(30)
    assert transport.pushed_calls == 0
    await call.hangup()


# -- timing, measured once in the call --------------------------------------------------------


async def test_paired_replies_are_timed_by_the_call_and_slow_ones_are_findings():
    call = EmulatedCall(_Scripted(pairs=True, pushes=False, delay=0.08))
    await call.start()
    (event_type, seconds), *_ = call.latencies
    assert event_type == "session_start"
    assert seconds >= 0.08
    slow = [f for f in call.findings if f.code == "slow_reply"]
    assert slow
    assert slow[0].event == "session_start"
    assert "the service waits about 0.05 s" in slow[0].message
    await call.hangup()


async def test_unpaired_events_without_a_frame_have_no_latency():
    call = EmulatedCall(_Scripted(pairs=False, pushes=True))
    await call.start()
    await call.say("hello")
    await call.hangup()
    assert call.latencies == []
    assert not [f for f in call.findings if f.code == "slow_reply"]


async def test_websocket_latency_is_the_time_to_the_first_frame_even_after_the_window():
    async with serve_locally(_speaker(delay=0.3)) as server:
        call = EmulatedCall(transport_for(server.websocket_url), clock=RealClock())
        async with running(call):
            await call.say("hi")
            await call.receive(2.0)  # the answer comes after the 50 ms collection window
    answered = dict(call.latencies)
    assert "You said hi" in call.spoken
    assert answered["user_speak"] >= 0.3
    assert "session_end" not in answered  # nothing answered it, so no latency
    assert "user_speech_started" not in answered


# -- one resolver -----------------------------------------------------------------------------


def test_urls_resolve_to_their_transport():
    assert resolve_target("http://h/webhook") == Target(
        "http", url="http://h/webhook", name="http://h/webhook"
    )
    assert resolve_target("wss://h/ws").kind == "websocket"
    assert resolve_target("https://h/webhook").transport().name == "http"


def test_a_module_or_file_resolves_to_its_assistant_in_process(tmp_path: Path):
    app = tmp_path / "bot.py"
    app.write_text("from sipgate_ai_flow import AiFlowAssistant\nassistant = AiFlowAssistant()\n")
    target = resolve_target(str(app))
    assert target.kind == "inprocess"
    assert isinstance(target.assistant, AiFlowAssistant)
    assert target.name == str(app)
    assert isinstance(target.transport(), InProcessTransport)
    assert resolve_target("sipgate_ai_flow.demo:assistant").kind == "inprocess"


@pytest.mark.parametrize(
    ("target", "transport", "message"),
    [
        ("ftp://h/app", None, "a target URL starts with http(s):// or ws(s)://, got 'ftp://h/app'"),
        ("http://h/webhook", "websocket", "is an HTTP URL; it cannot be reached with transport"),
        ("ws://h/ws", "http", "is a WebSocket URL; it cannot be reached with transport 'http'"),
        ("bot.py", "http", "an HTTP target must be an http(s):// URL, got 'bot.py'"),
        (
            "http://h/webhook",
            "pigeon",
            "unknown transport 'pigeon': use http, websocket, inprocess",
        ),
        (
            42,
            None,
            "expected an AiFlowAssistant, an app built from one, a URL or a module, got int",
        ),
        (AiFlowAssistant(), "http", "an assistant in process cannot use transport 'http'"),
        ("no/such/app.py", None, "no such file: no/such/app.py"),
    ],
)
def test_bad_targets_say_what_was_wrong(target: Any, transport: str | None, message: str):
    with pytest.raises(TargetError) as caught:
        resolve_target(target, transport)
    assert message in str(caught.value)


def test_an_app_that_fails_to_import_is_one_line_naming_the_place(tmp_path: Path):
    app = tmp_path / "broken.py"
    app.write_text("import json\n\nraise RuntimeError('no database')\n")
    with pytest.raises(TargetError) as caught:
        resolve_target(str(app))
    text = str(caught.value)
    assert text.startswith(f"cannot load {app}: RuntimeError: no database (")
    assert text.endswith("broken.py:3)")
    missing = tmp_path / "needs.py"
    missing.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(TargetError, match=r"ModuleNotFoundError: No module named 'no_such_dep"):
        resolve_target(str(missing))


# -- one life cycle ---------------------------------------------------------------------------


async def test_running_hangs_up_records_and_reports_the_hangup_findings(tmp_path: Path):
    record = tmp_path / "calls" / "one.jsonl"
    call = EmulatedCall(InProcessTransport(_speaker()))
    async with running(call, record=record, target="bot.py"):
        await call.say("hi")
    assert call.end_reason == "caller hung up"
    assert call.events[-1]["type"] == "session_end"
    assert call.hangup_findings == []
    header = json.loads(record.read_text().splitlines()[0])
    assert header["target"] == "bot.py"


async def test_running_records_and_hangs_up_when_the_block_fails(tmp_path: Path):
    record = tmp_path / "failed.jsonl"
    call = EmulatedCall(InProcessTransport(_speaker()))

    async def fail_midway() -> None:
        async with running(call, record=record):
            await call.say("hi")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail_midway()
    assert call.events[-1]["type"] == "session_end"
    assert record.is_file()


async def test_a_cancelled_call_is_abandoned_without_session_end():
    call = EmulatedCall(InProcessTransport(_speaker()))
    entered = asyncio.Event()

    async def drive() -> None:
        async with running(call):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(drive())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.ended
    assert call.end_reason == "cancelled"
    assert [e["type"] for e in call.events] == ["session_start", "assistant_speak"][
        : len(call.events)
    ]
    assert "session_end" not in [e["type"] for e in call.events]


async def test_a_refused_connection_is_a_call_start_error_of_one_line():
    call = EmulatedCall(transport_for("ws://127.0.0.1:9/ws"))
    with pytest.raises(CallStartError) as caught:
        async with running(call):
            pytest.fail("the block must not run")
    assert not caught.value.connected
    assert "\n" not in str(caught.value)
    assert call.events == []  # nothing was sent, not even session_end


async def test_an_app_that_does_not_answer_session_start_is_a_call_start_error():
    call = EmulatedCall(transport_for("http://127.0.0.1:9/webhook"))
    with pytest.raises(CallStartError) as caught:
        async with running(call):
            pytest.fail("the block must not run")
    assert caught.value.connected
    assert str(caught.value).startswith("no reply from http://127.0.0.1:9/webhook")
    assert [e["type"] for e in call.events] == ["session_start"]  # no session_end after it


async def test_replay_runs_on_the_same_life_cycle_over_a_websocket():
    assistant = _speaker()
    call = EmulatedCall(InProcessTransport(assistant))
    async with running(call):
        await call.say("hi")
    header = {"session": call.session, "transport": "inprocess", "clock": "virtual"}
    async with serve_locally(assistant) as server:
        result = await replay((header, call.log), server.websocket_url)
    assert result.problems == []
    assert result.same, [d.diff() for d in result.differences]
