"""Conversation scenarios (`aiflow test`): the format, the matching rules, the runner, the CLI."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from sipgate_ai_flow import AiFlowAssistant, SpeakAction
from sipgate_ai_flow.asgi import create_app
from sipgate_ai_flow.cli import main
from sipgate_ai_flow.demo import assistant as demo
from sipgate_ai_flow.emulator.record import read_transcript
from sipgate_ai_flow.emulator.scenario import (
    Scenario,
    ScenarioError,
    ScenarioResult,
    _regex,
    junit_xml,
    load_scenario,
    load_scenarios,
    match,
    parse_scenario,
    run_scenario,
)

ROOT = Path(__file__).parents[2]
SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))


def scenario(*steps: dict[str, Any], **top: Any) -> Scenario:
    return parse_scenario({"name": "t", "steps": list(steps), **top})


def run(s: Scenario, target: Any = demo, **options: Any) -> ScenarioResult:
    return asyncio.run(run_scenario(s, target, **options))


# -- the examples' scenarios: each file says how to run it ------------------------------------


def run_line(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    found = re.fullmatch(r"# Run: aiflow (test .+)", first)
    assert found, f"{path.name}: the first line must be '# Run: aiflow test ...'"
    return found.group(1).split()


def test_every_example_has_scenarios() -> None:
    targets = {run_line(p)[-1] for p in SCENARIOS}
    examples = {f"examples/{p.name}" for p in (ROOT / "examples").glob("*.py")}
    assert examples | {"sipgate_ai_flow.demo"} == targets


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_example_scenario_passes(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(run_line(path)) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "PASS " in out
    assert "1 passed, 0 failed" in out


def test_cli_runs_a_directory_concurrently_as_a_subprocess(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "sipgate_ai_flow.cli", "test", "examples/scenarios/",
         "--target", "sipgate_ai_flow.demo", "--jobs", "4", "--junit", str(junit)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # Only the demo's own scenarios fit the demo; the others fail, clearly.
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(lines) == len(SCENARIOS)
    passed = {line.split("(")[1].split(",")[0] for line in lines if line.startswith("PASS")}
    assert passed == {"examples/scenarios/demo.yaml", "examples/scenarios/demo_transfer.yaml"}
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(SCENARIOS))
    assert suite.get("failures") == str(len(SCENARIOS) - 2)
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert "step" in (failure.text or "")


# -- running ----------------------------------------------------------------------------------


def test_a_failure_names_the_step_what_was_expected_and_what_happened() -> None:
    result = run(
        scenario(
            {"expect": {"speak": "Welcome"}},
            {"say": "When are you open?"},
            {"expect": {"transfer": {}}},
        )
    )
    assert not result.passed
    assert result.error is not None
    assert result.error.startswith('step 3: {"expect": {"transfer": {}}}')
    assert "expected a transfer action; the next action is speak" in result.error
    assert "Monday to Friday" in result.error  # the actual action
    assert "around it:" in result.error
    assert "-> user_speak" in result.error


def test_expect_consumes_actions_in_order() -> None:
    twice = scenario({"expect": {"speak": "Welcome"}}, {"expect": {"speak": "Welcome"}})
    result = run(twice)
    assert result.error is not None
    assert "the app sent no further action" in result.error


def test_expect_waits_for_the_assistant_to_finish_speaking_but_not_for_timeouts() -> None:
    goodbye = scenario(
        {"say": "bye"},
        {"expect": {"speak": "Welcome"}},
        {"expect": {"speak": "Goodbye"}},
        {"expect": {"hangup": {}}},  # sent on assistant_speech_ended, after the playback
    )
    assert run(goodbye).passed
    no_timeout = scenario({"expect": {"speak": "Welcome"}}, {"expect": {"speak": "still there"}})
    result = run(no_timeout)
    assert result.error is not None
    assert "no further action" in result.error
    assert result.call is not None
    assert result.call.last_event("user_input_timeout") is None


def test_events_are_looked_for_after_the_event_the_last_action_answered() -> None:
    s = scenario(
        {"expect": {"speak": "Welcome"}},
        {"say": "hours"},
        {"expect": {"speak": "Monday"}},
        {"expect": {"event": "assistant_speech_ended"}},  # of the answer, not the greeting
        {"expect": {"event": "user_input_timeout"}},
    )
    result = run(s)
    assert result.error is not None
    assert result.error.startswith("step 5")
    assert "expected a user_input_timeout event; the emulator sent none" in result.error


def test_nothing_passes_only_when_no_action_is_pending() -> None:
    assert run(scenario({"expect": {"speak": ""}}, {"expect": {"nothing": {}}})).passed
    result = run(scenario({"expect": {"nothing": {}}}))
    assert result.error is not None
    assert "expected no action, got 1" in result.error


def test_silence_is_virtual_and_fires_timeouts() -> None:
    s = scenario({"silence": 600}, {"expect": {"event": "user_input_timeout"}})
    result = run(s)
    assert result.passed, result.error
    assert result.call is not None
    assert result.call.clock.virtual
    assert result.call.ended  # the demo hangs up after three silences


def test_realtime_uses_the_wall_clock() -> None:
    fast = AiFlowAssistant(on_session_start=lambda e: "Hi", on_user_speak=lambda e: "ok")
    s = scenario({"expect": {"speak": "Hi"}}, {"say": "yo"}, {"expect": {"speak": "ok"}})
    result = run(s, fast, realtime=True)
    assert result.passed, result.error
    assert result.call is not None
    assert not result.call.clock.virtual
    assert result.call.clock.now() > 0.2  # "Hi" plays for 0.3 s at least


def test_findings_fail_unless_allowed() -> None:
    sloppy = AiFlowAssistant(
        on_session_start=lambda e: {"type": "speak", "text": "hi", "session_id": e.session.id},
        on_user_speak=lambda e: {"type": "dance", "session_id": e.session.id},
    )
    s: list[dict[str, Any]] = [{"expect": {"speak": "hi"}}, {"say": "hello"}]
    result = run(scenario(*s[:2]), sloppy)
    assert result.error is not None
    assert "1 finding(s) during step 2" in result.error
    assert "unknown_action_type" in result.error
    allowed = run(parse_scenario({"name": "ok", "steps": s[:2], "allow_findings": True}), sloppy)
    assert allowed.passed, allowed.error
    assert allowed.call is not None
    assert [f.code for f in allowed.call.findings] == ["unknown_action_type"]


def test_a_call_that_ended_fails_the_next_caller_step() -> None:
    s = scenario({"say": "bye"}, {"silence": 5}, {"say": "hello?"})
    result = run(s)
    assert result.error is not None
    assert "step 3" in result.error
    assert "had already ended (the assistant hung up)" in result.error


@pytest.mark.parametrize("transport", ["http", "websocket"])
def test_a_named_transport_reaches_the_assistant_over_a_real_socket(transport: str) -> None:
    s = scenario(
        {"expect": {"speak": "Welcome"}},
        {"say": "agent"},
        {"expect": {"speak": "Connecting"}},
        {"expect": {"transfer": {"timeout": 30}}},
        transport=transport,
    )
    result = run(s)
    assert result.passed, result.error
    assert result.call is not None
    assert result.call.transport.name == transport
    started = result.call.last_event("user_speech_started")
    assert (started is not None) is (transport == "websocket")


def test_against_a_url(live_server: Any, tmp_path: Path) -> None:
    server = live_server(create_app(demo))
    s = scenario(
        {"expect": {"speak": "Welcome"}},
        {"press": "1"},
        {"expect": {"speak": "Connecting"}},
        {"expect": {"transfer": {}}},
    )
    assert run(s, server.http_url + "/webhook").passed
    assert run(s, server.ws_url + "/ws").passed
    wrong = parse_scenario({"name": "w", "steps": [{"hangup": {}}], "transport": "websocket"})
    result = run(wrong, server.http_url + "/webhook")
    assert result.error is not None
    assert "asks for transport websocket" in result.error
    gone = run(s, "http://127.0.0.1:9/webhook")
    assert gone.error is not None
    assert "cannot start the call: no reply from http://127.0.0.1:9/webhook" in gone.error


def test_record_writes_a_transcript_per_scenario(tmp_path: Path) -> None:
    path = tmp_path / "menu.yaml"
    path.write_text(
        "name: m\nsteps:\n  - press: '1'\n  - expect: {speak: Welcome}\n"
        "  - expect: {speak: Connecting}\n  - expect: {transfer: {}}\n"
    )
    code = main(["test", str(path), "--target", "sipgate_ai_flow.demo", "--record", str(tmp_path)])
    assert code == 0
    header, entries = read_transcript(tmp_path / "menu.jsonl")
    assert header["target"] == "sipgate_ai_flow.demo"
    kinds = [(e["kind"], e["data"].get("type")) for e in entries if e["kind"] != "note"]
    assert ("event", "dtmf_received") in kinds
    assert ("action", "transfer") in kinds


def test_junit_marks_files_that_did_not_load_as_errors() -> None:
    bad = ScenarioError("broken.yaml: 'name' is required (a non-empty string)")
    good = run(scenario({"expect": {"speak": "Welcome"}}))
    xml = ElementTree.fromstring(junit_xml([bad, good]).split("\n", 1)[1])
    suite = xml.find("testsuite")
    assert suite is not None
    assert suite.get("errors") == "1"
    assert suite.get("failures") == "0"
    assert suite.find("testcase/error") is not None


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: []\n")
    assert main(["test", str(bad), "--target", "sipgate_ai_flow.demo"]) == 1
    assert "ERROR " in capsys.readouterr().out
    assert main(["test", str(bad), "--target", "no_such_module_xyz"]) == 2
    assert "cannot import 'no_such_module_xyz'" in capsys.readouterr().err
    assert main(["test", str(tmp_path / "missing.yaml"), "--target", "sipgate_ai_flow.demo"]) == 1
    assert "cannot read" in capsys.readouterr().out


# -- the format -------------------------------------------------------------------------------


def test_the_issue_example_parses() -> None:
    text = """
name: greeting, echo, menu
transport: http
call:
  from: "+4915111111111"
  to: "+4921100000000"
  direction: inbound
steps:
  - expect: {speak: "(?i)welcome"}
  - say: "I need help with my invoice"
  - expect: {transfer: {target_phone_number: "+49211100200"}}
  - say: {text: "stop please", after_ms: 400}
  - press: "1"
  - silence: 6
  - expect: {event: user_input_timeout}
  - expect: {hangup: {}}
  - expect: {audio: {}}
  - expect: {nothing: {}}
  - expect: {barge_in: {}}
  - hangup: {}
  - expect: {event: session_end}
"""
    import yaml

    s = parse_scenario(yaml.safe_load(text))
    assert s.name == "greeting, echo, menu"
    assert s.transport == "http"
    assert s.config().from_number == "+4915111111111"
    assert s.config().direction == "inbound"
    assert [step.kind for step in s.steps][:6] == [
        "expect",
        "say",
        "expect",
        "say",
        "press",
        "silence",
    ]
    assert s.steps[3].value == ("stop please", 400)


BAD: list[tuple[Any, str]] = [
    ([], "a scenario is a mapping"),
    ({"steps": [{"hangup": {}}]}, "'name' is required"),
    ({"name": "x", "steps": [{"hangup": {}}], "colour": 1}, "unknown key(s) colour"),
    ({"name": "x"}, "'steps' must be a non-empty list"),
    ({"name": "x", "steps": [{"hangup": {}}], "transport": "smtp"}, "transport must be one of"),
    ({"name": "x", "steps": [{"hangup": {}}], "allow_findings": "yes"}, "allow_findings must"),
    ({"name": "x", "steps": [{"hangup": {}}], "call": {"colour": 1}}, "call.colour: unknown"),
    ({"name": "x", "steps": [{"hangup": {}}], "call": {"direction": "up"}}, "call.direction"),
    ({"name": "x", "steps": [{"hangup": {}}], "call": {"speaking_rate": 0}}, "positive number"),
    ({"name": "x", "steps": [{"dance": 1}]}, "step 1: unknown step 'dance'"),
    ({"name": "x", "steps": [{"say": "a", "press": "1"}]}, "exactly one of"),
    ({"name": "x", "steps": [{"say": ""}]}, "step 1: say: text"),
    ({"name": "x", "steps": [{"say": {"text": "a", "after_ms": "soon"}}]}, "after_ms an int"),
    ({"name": "x", "steps": [{"say": {"text": "a", "after_ms": -1}}]}, "must be >= 0"),
    ({"name": "x", "steps": [{"press": "1a"}]}, "press: DTMF keys 0-9, * and #, got '1a'"),
    ({"name": "x", "steps": [{"silence": -1}]}, "silence: seconds"),
    ({"name": "x", "steps": [{"hangup": {"now": 1}}]}, "hangup takes no options"),
    ({"name": "x", "steps": [{"expect": {"speek": "a"}}]}, "expect.speek: unknown action type"),
    ({"name": "x", "steps": [{"expect": {"transfer": "49"}}]}, "only works for speak"),
    ({"name": "x", "steps": [{"expect": {"event": 3}}]}, "an event type"),
    ({"name": "x", "steps": [{"expect": {"nothing": 1}}]}, "takes no options"),
    ({"name": "x", "steps": [{"expect": {"a": 1, "b": 2}}]}, "a mapping with one key"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_scenarios_are_refused_with_where_and_what(data: Any, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, source="s.yaml")
    assert str(caught.value).startswith("s.yaml: ")
    assert message in str(caught.value)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml: not valid YAML"):
        load_scenario(path)
    found = load_scenarios([tmp_path, tmp_path / "none"])
    assert all(isinstance(f, ScenarioError) for f in found)
    assert len(found) == 2


def test_match_rules() -> None:
    pattern = _regex("^49", "here")
    assert match(pattern, "4921") is None
    assert match(_regex("+49(1)", "here"), "call +49(1) now") is None  # literal text
    assert match(_regex("(", "here"), "a ( b") is None  # no regex: literal only
    assert match(_regex("(", "here"), "a b") == "value \"a b\" does not match '('"
    assert match(_regex("a.c", "here"), "abc") is None
    assert match(pattern, "+4921") == "value \"+4921\" does not match '^49'"
    assert match({"a": {"b": _regex("x", "here")}}, {"a": {"b": "yxz"}, "c": 1}) is None
    assert match({"a": {"b": 1}}, {"a": {}}) == "a.b is missing"
    assert match({"t": 30}, {"t": 30.0}) is None
    assert match({"t": True}, {"t": 1}) == "t is 1, expected true"
    assert match({"l": [1, 2]}, {"l": [1, 2]}) is None
    assert match({"l": [1, 2]}, {"l": [2, 1]}) == "l is [2, 1], expected [1, 2]"
    assert match({"x": 1}, "text") == 'value is "text", expected an object'


def test_speak_pattern_matches_ssml_too() -> None:
    ssml = AiFlowAssistant(on_session_start=lambda e: SpeakAction(ssml="<speak>Hallo</speak>"))
    assert run(scenario({"expect": {"speak": "Hallo"}}), ssml).passed
