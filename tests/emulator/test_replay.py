"""Record and replay (`aiflow replay`): golden tests for voice bots."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant, SpeakAction
from sipgate_ai_flow.asgi import create_app
from sipgate_ai_flow.cli import main
from sipgate_ai_flow.demo import assistant as demo
from sipgate_ai_flow.emulator.record import read_transcript, save_transcript
from sipgate_ai_flow.emulator.replay import replay
from sipgate_ai_flow.testing import simulate_call

ROOT = Path(__file__).parents[2]


def record(path: Path, target: Any = demo, **options: Any) -> None:
    async def go() -> None:
        async with simulate_call(target, **options) as call:
            await call.say("When are you open?")
            await call.press("5")
            await call.say("bye")
        save_transcript(call, path, target="sipgate_ai_flow.demo")

    asyncio.run(go())


def changed_demo(text: str) -> AiFlowAssistant:
    """The demo with the text of one answer changed."""

    async def changed(event: Any, budget: bool) -> list[Any]:
        actions = await demo.handle_event(event, budget=budget)
        if event.get("type") == "user_speak" and "open" in event.get("text", "").lower():
            return [
                a.model_copy(update={"text": text}) for a in actions if isinstance(a, SpeakAction)
            ]
        return actions

    class Changed(AiFlowAssistant):
        async def handle_event(self, event: Any, *, budget: bool = True) -> list[Any]:
            return await changed(event, budget=budget)

    return Changed()


def test_a_recording_replays_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "call.jsonl"
    record(path)
    assert main(["replay", str(path)]) == 0  # the target is named in the recording
    out = capsys.readouterr().out
    assert "the answers are the same" in out
    events = sum(1 for line in path.read_text().splitlines() if '"kind": "event"' in line)
    assert f"{events} events replayed" in out


def test_a_changed_answer_is_a_diff_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    record(path)
    result = asyncio.run(replay(path, changed_demo("We never close.")))
    assert not result.same
    assert [d.event["type"] for d in result.differences] == ["user_speak"]
    diff = result.differences[0].diff()
    assert '-    "text": "We are open Monday to Friday, 9 to 5. Anything else?",' in diff
    assert '+    "text": "We never close.",' in diff
    assert "When are you open?" in str(result.differences[0])
    ignored = asyncio.run(replay(path, changed_demo("We never close."), ignore=["text"]))
    assert ignored.same


def test_cli_records_and_diffs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    scenario = "examples/scenarios/echo.yaml"
    assert main(["test", scenario, "--target", "examples/echo.py", "--record", str(tmp_path)]) == 0
    path = tmp_path / "echo.jsonl"
    assert main(["replay", str(path)]) == 0
    app = tmp_path / "changed.py"
    app.write_text((ROOT / "examples" / "echo.py").read_text().replace("You said", "You told me"))
    capsys.readouterr()
    assert main(["replay", str(path), "--target", str(app)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("DIFF event 5 user_speak")
    assert '-    "text": "You said: the weather is nice",' in out
    assert '+    "text": "You told me: the weather is nice",' in out
    assert out.rstrip().endswith("1 answer(s) differ.")


def test_a_fresh_session_id_is_used_and_mapped_back(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    record(path)
    header, _ = read_transcript(path)
    seen: list[str] = []
    spy = AiFlowAssistant(on_session_start=lambda e: seen.append(e.session.id))
    asyncio.run(replay(path, spy))
    assert seen
    assert seen[0] != header["session"]["id"]
    seen.clear()
    asyncio.run(replay(path, spy, same_session=True))
    assert seen == [header["session"]["id"]]


def test_real_clock_recordings_replay_with_their_timing(tmp_path: Path) -> None:
    arrivals: list[float] = []

    def note(event: Any) -> None:
        arrivals.append(time.monotonic())

    app = AiFlowAssistant(on_session_start=note, on_user_speak=note)
    session = {"id": "s-1"}
    lines = [
        {"kind": "call", "format": 1, "session": session, "transport": "http", "clock": "real"},
        {"t": 0.0, "kind": "event", "data": {"type": "session_start", "session": session}},
        {
            "t": 0.4,
            "kind": "event",
            "data": {"type": "user_speak", "text": "hi", "session": session},
        },
    ]
    path = tmp_path / "timed.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    asyncio.run(replay(path, app))
    assert arrivals[1] - arrivals[0] >= 0.35
    arrivals.clear()
    asyncio.run(replay(path, app, timing=False))
    assert arrivals[1] - arrivals[0] < 0.35


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_replay_against_a_url(tmp_path: Path, live_server: Any, scheme: str) -> None:
    server = live_server(create_app(demo))
    url = server.http_url + "/webhook" if scheme == "http" else server.ws_url + "/ws"
    path = tmp_path / "call.jsonl"
    record(path, url)
    result = asyncio.run(replay(path, url))
    assert result.same, [str(d) for d in result.differences] + result.problems
    assert result.events >= 7


def test_unreachable_targets_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    record(path)
    result = asyncio.run(replay(path, "http://127.0.0.1:9/webhook"))
    assert not result.same
    assert result.problems[0].startswith("event 1 session_start: [no_reply]")


def test_bad_files_and_targets_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "call", "format": 1}\nnot json\n')
    assert main(["replay", str(bad), "--target", "sipgate_ai_flow.demo"]) == 2
    assert "line 2: not JSON" in capsys.readouterr().err
    anonymous = tmp_path / "anonymous.jsonl"
    anonymous.write_text('{"kind": "call", "format": 1, "target": null}\n')
    assert main(["replay", str(anonymous)]) == 2
    assert "names no target" in capsys.readouterr().err
    assert main(["replay", str(anonymous), "--target", "nope_module_xyz"]) == 2
    assert "cannot import" in capsys.readouterr().err


def test_simulate_call_records(tmp_path: Path) -> None:
    path = tmp_path / "driver.jsonl"

    async def go() -> None:
        async with simulate_call(demo, record=path) as call:
            await call.press("1")

    asyncio.run(go())
    header, entries = read_transcript(path)
    assert header["transport"] == "inprocess"
    assert [e["data"]["type"] for e in entries if e["kind"] == "action"] == [
        "speak",
        "speak",
        "transfer",
    ]
    assert asyncio.run(replay(path, demo)).same
