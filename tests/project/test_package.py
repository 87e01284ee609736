"""The package surface: exports, py.typed, a lean core import, the CLI and the demo."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import sipgate_ai_flow
from sipgate_ai_flow.cli import main

EXPECTED_EXPORTS = {
    # models
    "SessionInfo", "BaseEvent", "AiFlowEvent", "UnknownEvent",
    "SessionStartEvent", "UserSpeechStartedEvent", "UserSpeakEvent", "UserBargeInEvent",
    "DtmfReceivedEvent", "AssistantSpeakEvent", "AssistantSpeechEndedEvent",
    "UserInputTimeoutEvent", "SmsFailedEvent", "SessionEndEvent",
    "BaseAction", "AiFlowAction", "ActionLike",
    "SpeakAction", "AudioAction", "MixAudioAction", "TransferAction", "HangupAction",
    "BargeInAction", "ConfigureTranscriptionAction", "SendSmsAction",
    "ConfigureVoiceToVoiceAction",
    "TtsConfig", "BargeInConfig", "VadConfig",
    # enums
    "AiFlowEventType", "AiFlowActionType", "BargeInStrategy", "TtsProvider", "SttProvider",
    "Direction",
    # codec
    "parse_event", "dump_event", "parse_action", "parse_actions", "dump_action", "dump_actions",
    # assistant and errors
    "AiFlowAssistant", "CallContext", "ErrorReply",
    "AiFlowError", "ConfigurationError", "InvalidEventError", "InvalidActionError",
    "HandlerError", "OutboundCallError", "SessionNotFoundError", "StoreError",
    "__version__",
}  # fmt: skip


def test_exported_members_are_pinned():
    assert set(sipgate_ai_flow.__all__) == EXPECTED_EXPORTS
    for name in EXPECTED_EXPORTS:
        assert getattr(sipgate_ai_flow, name) is not None


def test_package_is_typed():
    assert (Path(sipgate_ai_flow.__file__).parent / "py.typed").is_file()


def test_core_imports_no_web_framework_or_optional_dependency():
    code = (
        "import sys, sipgate_ai_flow, sipgate_ai_flow.cli;"
        "banned = {'starlette', 'fastapi', 'flask', 'django', 'uvicorn', 'websockets',"
        " 'redis', 'rich', 'yaml', 'click', 'httpx'};"
        "print(sorted(banned & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_aiflow_version_console_script():
    script = Path(sys.executable).with_name("aiflow")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"aiflow {sipgate_ai_flow.__version__}"


def test_python_dash_m_and_help(capsys: pytest.CaptureFixture[str]):
    out = subprocess.run(
        [sys.executable, "-m", "sipgate_ai_flow", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sipgate_ai_flow.__version__ in out.stdout
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_runs_a_scripted_call(capsys: pytest.CaptureFixture[str]):
    # stdin is no terminal under pytest: the demo's script plays the caller
    # (tests/cli/test_cli_demo.py)
    assert main(["demo", "--speaking-rate", "500"]) == 0
    out = capsys.readouterr().out
    assert "assistant Welcome to the demo front desk!" in out
    assert "assistant We are open Monday to Friday, 9 to 5. Anything else?" in out
    assert "hangup    the assistant hangs up" in out
    assert out.rstrip().endswith("findings  none")


def test_demo_assistant_transfers_on_key_one():
    from sipgate_ai_flow import TransferAction
    from sipgate_ai_flow.demo import AGENT_NUMBER, assistant

    event = {"type": "dtmf_received", "digit": "1", "session": {"id": "s1"}}
    actions = asyncio.run(assistant.handle_event(event))
    assert isinstance(actions[-1], TransferAction)
    assert actions[-1].target_phone_number == AGENT_NUMBER
    assert actions[-1].session_id == "s1"
