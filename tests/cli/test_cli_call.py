"""`aiflow call`: the terminal softphone, as a real process (piped and on a pseudo-terminal)
against apps in process and behind real servers, and its console loop driven in process."""

from __future__ import annotations

import asyncio
import io
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sipgate_ai_flow import (
    AiFlowAssistant,
    BargeInConfig,
    BargeInStrategy,
    SpeakAction,
    TransferAction,
)
from sipgate_ai_flow._loader import load_assistant
from sipgate_ai_flow.asgi import create_app
from sipgate_ai_flow.cli import main
from sipgate_ai_flow.cli._console import Command, InputError, parse_line
from sipgate_ai_flow.cli.call import talk
from sipgate_ai_flow.emulator import CallConfig, InProcessTransport
from sipgate_ai_flow.emulator.record import read_transcript

ROOT = Path(__file__).parents[2]
ECHO = "examples/echo.py"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def aiflow(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "sipgate_ai_flow", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )


def in_order(text: str, *parts: str) -> None:
    """Each of ``parts`` occurs in ``text``, in this order."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} missing after position {at} in:\n{text}"
        at = found + len(part)


def events(entries: list[dict[str, Any]], kind: str = "event") -> list[dict[str, Any]]:
    return [e["data"] for e in entries if e["kind"] == kind]


# -- a real process, lines piped in ------------------------------------------------------------


def test_piped_call_to_an_example_in_process(tmp_path: Path):
    record = tmp_path / "call.jsonl"
    result = aiflow(
        "call", ECHO, "--speaking-rate", "500", "--record", str(record),
        stdin="hello there\n/dtmf 1\n\nbye\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # A polite caller: each line only after the assistant has finished answering the last one.
    in_order(
        out,
        "Calling examples/echo.py (in process).",
        "assistant Hello! Say something and I will repeat it.\n",
        "you       hello there\n",
        "assistant You said: hello there\n",
        "assistant Is there anything else I can help you with?\n",
        "you       press 1\n",
        "you       bye\n",
        "assistant You said: bye\n",
        "assistant Is there anything else I can help you with?\n",
        "end of input: hanging up",
        "call      ended: caller hung up",
        "summary",
        "call      caller hung up, after",
        "turns     3 caller turn(s): 2 spoken, 1 key(s); the assistant spoke 5 time(s)",
        "latency   ",
        "session_start ",
        "findings  none",
        f"recorded  {record}",
    )
    assert "Traceback" not in result.stderr

    header, entries = read_transcript(record)
    assert header["target"] == ECHO
    assert header["transport"] == "inprocess"
    assert header["clock"] == "real"
    sent = events(entries)
    assert [e["text"] for e in sent if e["type"] == "user_speak"] == ["hello there", "bye"]
    assert [e.get("barged_in") for e in sent if e["type"] == "user_speak"] == [False, False]
    assert [e["digit"] for e in sent if e["type"] == "dtmf_received"] == ["1"]
    assert sent[0]["type"] == "session_start"
    assert sent[-1]["type"] == "session_end"


def secured_assistant() -> AiFlowAssistant:
    assistant = AiFlowAssistant(webhook_token="s3cret-token")

    @assistant.on_session_start
    async def greet(event: Any) -> str:
        return "Secure line. Say something."

    @assistant.on_user_speak
    async def answer(event: Any) -> list[Any]:
        if "agent" in event.text:
            return [
                SpeakAction(text="Connecting you now."),
                TransferAction(
                    target_phone_number="4921100000000",
                    caller_id_name="Front desk",
                    caller_id_number="4921100000000",
                ),
            ]
        return [f"Got {event.text}."]

    return assistant


@pytest.mark.parametrize(("scheme", "path"), [("http", "/webhook"), ("ws", "/ws")])
def test_piped_call_to_a_real_server(live_server: Any, tmp_path: Path, scheme: str, path: str):
    server = live_server(create_app(secured_assistant()))
    base = server.http_url if scheme == "http" else server.ws_url
    url = base + path
    record = tmp_path / "call.jsonl"
    result = aiflow(
        "call", url, "--token", "s3cret-token", "--speaking-rate", "400",
        "--from", "+4917000000001", "--to", "+4930000000002", "--outbound",
        "--record", str(record),
        stdin="hello\nagent please\nnever sent\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    transport = "over HTTP" if scheme == "http" else "over WebSocket"
    in_order(
        out,
        f"Calling {url} ({transport}).",
        "outbound call from +4917000000001 to +4930000000002",
        "assistant Secure line. Say something.\n",
        "you       hello\n",
        "assistant Got hello.\n",
        "you       agent please\n",
        "transfer  to 4921100000000",
        "unplayed  Connecting you now.",  # the transfer stops speech that just started
        "call      ended: transferred to 4921100000000",
        "findings  none",
    )
    assert "never sent" not in out  # the call had ended: the rest of the input is not said
    assert "s3cret" not in out + result.stderr
    header, entries = read_transcript(record)
    assert header["transport"] == ("http" if scheme == "http" else "websocket")
    assert header["session"]["direction"] == "outbound"
    assert "s3cret" not in record.read_text()
    said = [e["text"] for e in events(entries) if e["type"] == "user_speak"]
    assert said == ["hello", "agent please"]


def test_findings_are_shown_and_exit_1(tmp_path: Path):
    app = tmp_path / "sloppy.py"
    app.write_text(
        "from sipgate_ai_flow import AiFlowAssistant\n"
        "assistant = AiFlowAssistant()\n"
        "@assistant.on_session_start\n"
        "def greet(event):\n"
        "    return {'type': 'speak', 'text': 'Hi', 'ssml': '<speak>Hi</speak>'}\n"
    )
    result = aiflow("call", str(app), "--speaking-rate", "500")
    assert result.returncode == 1, result.stdout + result.stderr
    in_order(
        result.stdout,
        "finding   [",
        "(answering session_start)",
        "summary",
        "findings  1",
    )


# -- bad targets and options: a clear line, exit 2, no traceback -------------------------------


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_bad_target_as_a_process():
    result = aiflow("call", "missing/app.py")
    assert result.returncode == 2
    assert result.stderr.strip() == "aiflow call: no such file: missing/app.py"
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_module_xyz:app"], "aiflow call: cannot import 'no_such_module_xyz'"),
        (["sipgate_ai_flow.demo:AGENT_NUMBER"], "is a str, not an AiFlowAssistant"),
        (["http://127.0.0.1:{port}/webhook"], "aiflow call: cannot reach http://127.0.0.1:"),
        (["ws://127.0.0.1:{port}/ws"], "aiflow call: cannot connect to ws://127.0.0.1:"),
        ([ECHO, "--speaking-rate", "0"], "--speaking-rate must be a positive number"),
        ([ECHO, "--speaking-rate", "nan"], "--speaking-rate must be a positive number"),
        ([ECHO, "--record", "no/such/dir/x.jsonl"], "no such directory 'no/such/dir'"),
    ],
)
def test_bad_targets_and_options(args: list[str], message: str, capsys: pytest.CaptureFixture[str]):
    port = closed_port()
    assert main(["call", *(a.format(port=port) for a in args)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.out + captured.err


def test_an_app_that_fails_to_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    broken = tmp_path / "broken.py"
    broken.write_text("import sipgate_ai_flow\nraise RuntimeError('no database')\n")
    assert main(["call", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"cannot load {broken}: RuntimeError: no database ({broken}:2)" in err
    bad_syntax = tmp_path / "syntax.py"
    bad_syntax.write_text("def (:\n")
    assert main(["call", str(bad_syntax)]) == 2
    assert "SyntaxError: invalid syntax" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(["call"])
    assert exit_info.value.code == 2
    assert "target" in capsys.readouterr().err


# -- the console loop, in process, with a fake input queue -----------------------------------


def run_talk(
    assistant: AiFlowAssistant,
    lines: list[str | None],
    *,
    interactive: bool = False,
    rate: float = 500.0,
    record: Path | None = None,
) -> tuple[int, str]:
    out = io.StringIO()

    async def main() -> int:
        inbox: asyncio.Queue[str | None] = asyncio.Queue()
        for line in lines:
            inbox.put_nowait(line)
        return await talk(
            InProcessTransport(assistant),
            CallConfig(speaking_rate=rate, caller_rate=rate),
            target="test",
            interactive=interactive,
            lines=inbox,
            record=str(record) if record else None,
            console=Console(file=out, width=100, soft_wrap=True, highlight=False),
        )

    code = asyncio.run(main())
    return code, out.getvalue()


def talker(strategy: BargeInStrategy) -> AiFlowAssistant:
    assistant = AiFlowAssistant()

    @assistant.on_session_start
    async def greet(event: Any) -> SpeakAction:
        return SpeakAction(
            text="This is a long announcement about our many opening hours and services.",
            barge_in=BargeInConfig(strategy=strategy, minimum_characters=3),
        )

    @assistant.on_user_speak
    async def answer(event: Any) -> str:
        return f"Barged in: {event.barged_in}."

    return assistant


def test_typing_during_speech_barges_in(tmp_path: Path):
    # The line is there as the greeting starts: typed mid-speech, it cuts the playback
    # (minimum_characters: 3) and reaches the app as a barge-in.
    record = tmp_path / "call.jsonl"
    code, out = run_talk(
        talker(BargeInStrategy.MINIMUM_CHARACTERS),
        ["stop please", "/wait 2", None],
        interactive=True,
        rate=10,
        record=record,
    )
    assert code == 0, out
    in_order(
        out,
        "assistant Th",
        "-- [cut off]",
        "you barged in at 0.",  # after 3 characters at 10 per second: 0.3 s and a bit
        "you       stop please  (barge-in)",
        "assistant Barged in: True.\n",
        "call      ended: caller hung up",
    )
    assert "about our many opening hours" not in out  # cut long before those words
    _, entries = read_transcript(record)
    speak = next(e for e in events(entries) if e["type"] == "user_speak")
    assert speak["barged_in"] is True
    assert any(e["type"] == "user_speech_started" for e in events(entries))


def test_barge_in_is_judged_by_the_playing_actions_config(tmp_path: Path):
    # strategy none: the same typing does not interrupt; the words arrive after the speech.
    record = tmp_path / "call.jsonl"
    code, out = run_talk(
        talker(BargeInStrategy.NONE),
        ["stop please", "/wait 1", None],
        interactive=True,
        rate=60,
        record=record,
    )
    assert code == 0, out
    assert "[cut off]" not in out
    in_order(
        out,
        "assistant This is a long announcement about our many opening hours and services.\n",
        "you       stop please\n",
        "assistant Barged in: False.",
    )
    _, entries = read_transcript(record)
    assert next(e for e in events(entries) if e["type"] == "user_speak")["barged_in"] is False


def test_wait_lets_user_input_timeout_fire(monkeypatch: pytest.MonkeyPatch):
    assistant = load_assistant(str(ROOT / "examples" / "timeout_reprompt.py"))
    module = sys.modules["aiflow_target_timeout_reprompt"]
    monkeypatch.setattr(module, "TIMEOUT_SECONDS", 1)  # read per call: one second, not five
    started = time.monotonic()
    code, out = run_talk(assistant, ["/wait 1.4", "4711", None])
    assert code == 0, out
    in_order(
        out,
        "assistant What is your account number?\n",
        "timer     user_input_timeout in 1 s unless you speak or press a key",
        "timer     user_input_timeout: you stayed silent",
        "assistant I didn't hear anything. Please respond. Attempt 1 of 3.\n",
        "you       4711\n",
        "assistant Thank you. I noted account number 4711.",
    )
    assert time.monotonic() - started < 10


def test_slash_commands_and_bad_input_keep_the_call_going():
    from sipgate_ai_flow.demo import assistant

    code, out = run_talk(
        assistant,
        [
            "/help",
            "/dtmf",
            "/dtmf 1x",
            "/wait",
            "/wait -3",
            "/frobnicate now",
            "/hangup now",
            "/events",
            "/dtmf 5",
            "/events",
            "hello",
            "/hangup",
            "never said",
        ],
    )
    assert code == 0, out
    in_order(
        out,
        "/dtmf 1#     press keys (0-9, * and #)",
        "!         usage: /dtmf KEYS, e.g. /dtmf 1# (keys 0-9, * and #)",
        "!         /dtmf: 'x' cannot be pressed; keys are 0-9, * and #",
        "!         usage: /wait SECONDS, e.g. /wait 5",
        "!         /wait takes seconds between 0 and 3600, e.g. /wait 5",
        "!         unknown command '/frobnicate'; commands: /dtmf KEYS, /wait SECONDS, ",
        "!         /hangup takes no argument",
        "raw event and action JSON shown",
        '-> app    {"type": "dtmf_received"',
        "you       press 5",
        '<- app    {"type": "speak"',
        "assistant You pressed 5. Press 1 for a person.",
        "raw event and action JSON hidden",
        "you       hello",
        "call      ended: caller hung up",
        "findings  none",
    )
    assert "never said" not in out
    assert "Traceback" not in out


def test_raw_json_only_while_events_are_shown():
    from sipgate_ai_flow.demo import assistant

    _, out = run_talk(assistant, ["/dtmf 5", "/events", "/dtmf 7", "/events", "/dtmf 8", None])
    shown = out[out.index("JSON shown") : out.index("JSON hidden")]
    before, after = out[: out.index("JSON shown")], out[out.index("JSON hidden") :]
    assert '"digit": "7"' in shown
    assert "-> app" not in before + after


def test_quit_hangs_up():
    from sipgate_ai_flow.demo import assistant

    code, out = run_talk(assistant, ["/quit", "hello"])
    assert code == 0
    assert "call      ended: caller hung up" in out
    assert "you       hello" not in out


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  hi there ", Command("say", "hi there")),
        ("", None),
        ("/DTMF 1 2 #", Command("dtmf", "12#")),
        ("/wait 2.5", Command("wait", 2.5)),
        ("/quit", Command("quit")),
    ],
)
def test_parse_line(line: str, expected: Command | None):
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", ["/", "/wait inf", "/wait 1e9", "/dtmf 1a", "/events on"])
def test_parse_line_rejects(line: str):
    with pytest.raises(InputError):
        parse_line(line)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_hangs_up_with_a_summary():
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipgate_ai_flow", "call", ECHO, "--speaking-rate", "500"],
        stdin=subprocess.PIPE,  # left open: the caller is still there
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        while "Say something and I will repeat it." not in proc.stdout.readline():
            assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    in_order(out, "Ctrl-C: hanging up", "call      ended: caller hung up", "findings  none")
    assert "Traceback" not in err


# -- the interactive path, on a real pseudo-terminal -----------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_interactive_call_on_a_terminal():
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipgate_ai_flow", "call", ECHO, "--speaking-rate", "200"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen = b""

    def until(text: str, timeout: float = 20) -> str:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in ANSI.sub("", seen.decode(errors="replace")):
            assert time.monotonic() < deadline, f"{text!r} never appeared in:\n{seen!r}"
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the process has closed the terminal
                    chunk = b""
                assert chunk, f"{text!r} never appeared before the end:\n{seen!r}"
                seen += chunk
        return ANSI.sub("", seen.decode(errors="replace"))

    try:
        until("You are the caller: type what you say")
        until("Say something and I will repeat it.")
        os.write(master, b"good morning\n")
        until("You said: good morning")
        until("Is there anything else I can help you with?")
        os.write(master, b"/nope\n")
        until("unknown command '/nope'")
        os.write(master, b"/hangup\n")
        text = until("findings  none")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert "\x1b[" in seen.decode(errors="replace")  # colour on a terminal
    in_order(text, "you       good morning", "call      ended: caller hung up", "summary")
