"""`aiflow load`: the engine in process and over real sockets, the lean HTTP client, the CLI.

Calls run on the real clock with a fast speaking rate, so a call takes well under a second
(except where a script has a silence), and the counts per event type are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowAssistant
from sipgate_ai_flow._loader import load_assistant
from sipgate_ai_flow.asgi import create_app
from sipgate_ai_flow.emulator._fasthttp import HttpPool, LeanHttpTransport
from sipgate_ai_flow.emulator.load import LoadReport, LoadTest, run_load
from sipgate_ai_flow.emulator.scenario import parse_scenario

ROOT = Path(__file__).parents[2]
ECHO = ROOT / "examples" / "echo.py"
ECHO_SCRIPT = ROOT / "examples" / "scenarios" / "echo.yaml"
AIFLOW = str(Path(sys.executable).with_name("aiflow"))
FAST = {"speaking_rate": 2000.0, "caller_rate": 2000.0, "end_of_turn_ms": 20}

# A short conversation with echo: greeting, one line, its echo, the follow-up, hang up.
SHORT = parse_scenario(
    {
        "name": "short echo",
        "steps": [
            {"expect": {"speak": "(?i)say something"}},
            {"say": "hi there"},
            {"expect": {"speak": "^You said: hi there$"}},
            {"expect": {"speak": "anything else"}},
            {"hangup": {}},
        ],
    }
)
GREET = parse_scenario({"name": "greet", "steps": [{"expect": {"speak": {}}}, {"hangup": {}}]})
# Per call over HTTP: greeting, echo and follow-up each play (assistant_speak) and end
# (assistant_speech_ended), one user_speak, hang up.
SHORT_EVENTS = {
    "session_start": 1,
    "assistant_speak": 3,
    "assistant_speech_ended": 3,
    "user_speak": 1,
    "session_end": 1,
}


@pytest.fixture(scope="module")
def echo() -> AiFlowAssistant:
    return load_assistant(str(ECHO))


def assert_counts(report: LoadReport, per_call: dict[str, int], calls: int) -> None:
    counts = {name: stats.count for name, stats in report.events.items()}
    assert counts == {name: n * calls for name, n in per_call.items()}
    assert report.total().count == sum(per_call.values()) * calls
    assert (report.calls_started, report.calls_completed, report.calls_failed) == (calls, calls, 0)


# -- the engine -------------------------------------------------------------------------------


async def test_default_conversation_in_process_adds_up(echo: AiFlowAssistant):
    report = await run_load(echo, calls=6, concurrency=6, call_options=FAST)
    # In process the caller's speech onset is sent too (user_speech_started), as over WS.
    per_call = {
        "session_start": 1,
        "assistant_speak": 4,
        "assistant_speech_ended": 3,
        "user_speech_started": 2,
        "user_speak": 2,
        "session_end": 1,
    }
    assert_counts(report, per_call, 6)
    for stats in report.events.values():  # every in-process event has a timed reply
        assert len(stats.latencies) == stats.count
        assert (stats.errors, stats.timeouts, stats.findings) == (0, 0, 0)
    assert report.peak_alive == 6
    assert report.transport == "inprocess"
    assert report.scenario == "default conversation"
    assert report.loop_lag
    assert report.seconds >= 2.0
    data = report.to_dict()
    assert data["calls"]["completed"] == 6
    assert data["total"]["count"] == 13 * 6
    assert data["generator"]["loop_lag_p99_ms"] is not None
    assert data["passed"] is True


async def test_concurrency_caps_the_calls_alive(echo: AiFlowAssistant):
    pause = parse_scenario({"name": "pause", "steps": [{"silence": 0.05}, {"hangup": {}}]})
    report = await run_load(echo, scenario=pause, calls=12, concurrency=3, call_options=FAST)
    assert report.peak_alive == 3
    assert report.calls_completed == 12


async def test_a_failing_script_fails_every_call_with_one_grouped_reason(echo: AiFlowAssistant):
    wrong = parse_scenario({"name": "wrong", "steps": [{"expect": {"speak": "(?i)goodbye"}}]})
    report = await run_load(echo, scenario=wrong, calls=5, concurrency=5, call_options=FAST)
    assert (report.calls_completed, report.calls_failed) == (0, 5)
    assert not report.passed
    assert len(report.failures) == 1
    failure = report.failures[0]
    assert failure.count == 5
    assert "step 1" in failure.reason
    assert "goodbye" in failure.reason
    assert "around it" in failure.example  # the full message keeps the call's context


async def test_handler_errors_and_slow_replies_are_counted_and_fail_calls():
    app = AiFlowAssistant()

    @app.on_session_start
    async def greet(event: Any) -> str:
        return "Hello"

    @app.on_user_speak
    async def slow(event: Any) -> str:
        await asyncio.sleep(0.15)
        return "late"

    @app.on_assistant_speech_ended
    async def broken(event: Any) -> None:
        raise RuntimeError("boom")

    script = parse_scenario(
        {"name": "s", "allow_findings": True, "steps": [{"say": "hello"}, {"hangup": {}}]}
    )
    report = await run_load(
        app, scenario=script, calls=3, concurrency=3, deadline=0.1, call_options=FAST
    )
    assert report.calls_failed == 3
    assert report.events["user_speak"].timeouts == 3
    assert report.events["assistant_speech_ended"].errors >= 3
    assert report.finding_codes["slow_reply"] == 3
    assert report.finding_codes["handler_error"] >= 3
    assert "in time" in report.failures[0].reason


async def test_duration_and_rate_pace_the_calls(echo: AiFlowAssistant):
    report = await run_load(echo, scenario=GREET, duration=1.0, rate=8, call_options=FAST)
    # Starts at 0, 1/8, ... 7/8 s: eight calls (a ninth only if the timer fires late).
    assert 7 <= report.calls_started <= 9
    assert report.calls_completed == report.calls_started
    assert report.to_dict()["options"]["rate"] == 8


async def test_stop_with_abort_ends_running_calls(echo: AiFlowAssistant):
    waits = parse_scenario({"name": "waits", "steps": [{"silence": 30}]})
    test = LoadTest(echo, scenario=waits, calls=4, concurrency=4, call_options=FAST)
    running = asyncio.ensure_future(test.run())
    for _ in range(500):  # until all four calls are in their silence
        if test.live.alive == 4:
            break
        await asyncio.sleep(0.01)
    test.stop(abort=True)
    report = await asyncio.wait_for(running, 5)
    assert (report.calls_aborted, report.calls_failed, report.calls_completed) == (4, 0, 0)


async def test_an_assistant_is_served_locally_when_the_script_names_a_transport(
    echo: AiFlowAssistant,
):
    over_http = parse_scenario(
        {"name": "http", "transport": "http", "steps": [{"expect": {"speak": {}}}]}
    )
    test = LoadTest(echo, scenario=over_http, calls=3, concurrency=3, call_options=FAST)
    report = await test.run()
    assert report.transport == "http"
    assert report.calls_completed == 3
    assert report.http_connections is not None
    with pytest.raises(RuntimeError, match="runs once"):
        await test.run()


def test_bad_options_are_refused_before_anything_runs(echo: AiFlowAssistant):
    with pytest.raises(ValueError, match="concurrency must be greater than 0"):
        LoadTest(echo, concurrency=0)
    ws_only = parse_scenario({"name": "w", "transport": "websocket", "steps": [{"hangup": {}}]})
    with pytest.raises(ValueError, match="asks for transport websocket"):
        LoadTest("http://127.0.0.1:9/webhook", scenario=ws_only)
    with pytest.raises(ValueError, match="starts with http"):
        LoadTest("ftp://example.com/app")
    with pytest.raises(ValueError, match="call_options"):
        LoadTest(echo, call_options={"speed": 2})


# -- over real sockets ------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["lean", "httpx"])
async def test_http_webhook_over_a_real_socket(echo: AiFlowAssistant, live_server: Any, client):
    server = live_server(create_app(echo))
    report = await run_load(
        f"{server.http_url}/webhook",
        scenario=SHORT,
        calls=10,
        concurrency=10,
        call_options=FAST,
        http_client=client,
    )
    assert_counts(report, SHORT_EVENTS, 10)
    assert all(len(s.latencies) == s.count for s in report.events.values())
    assert report.transport == "http"
    if client == "lean":  # kept alive and shared: never more connections than calls
        assert report.http_connections is not None
        assert 1 <= report.http_connections <= 10


async def test_the_token_reaches_a_secured_app(live_server: Any):
    secured = AiFlowAssistant(webhook_token="s3cret")

    @secured.on_session_start
    async def greet(event: Any) -> str:
        return "Secure line."

    url = f"{live_server(create_app(secured)).http_url}/webhook"
    allowed = await run_load(url, scenario=GREET, calls=2, token="s3cret", call_options=FAST)
    assert (allowed.calls_completed, allowed.calls_failed) == (2, 0)
    refused = await run_load(url, scenario=GREET, calls=2, call_options=FAST)
    assert refused.calls_failed == 2
    assert refused.events["session_start"].errors == 2
    assert refused.finding_codes["http_status"] >= 2


async def test_websocket_over_a_real_socket(echo: AiFlowAssistant, live_server: Any):
    server = live_server(create_app(echo))
    report = await run_load(
        f"{server.ws_url}/ws", scenario=SHORT, calls=8, concurrency=8, call_options=FAST
    )
    assert_counts(report, {**SHORT_EVENTS, "user_speech_started": 1}, 8)
    # Only events echo answers have a latency over a WebSocket: the start, the line, and the
    # end of the echo (the follow-up question).
    replies = {name: len(s.latencies) for name, s in report.events.items()}
    assert replies["session_start"] == 8
    assert replies["user_speak"] == 8
    assert replies["assistant_speak"] == 0
    assert replies["assistant_speech_ended"] == 8


# -- the lean HTTP client ---------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A plain TCP server answering with ``handler``; yields its URL. Each connection's writer
    is closed, and every handler has finished, when the block ends."""
    running: list[asyncio.Task[Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        running.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()
        await asyncio.gather(*running, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


EVENT = {"type": "session_start", "session": {"id": "s1"}}
ACTION = b'{"type":"speak","session_id":"s1","text":"Hi"}'


async def test_lean_client_reads_chunked_and_close_delimited_bodies():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        half = len(ACTION) // 2
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (half, ACTION[:half], len(ACTION) - half, ACTION[half:])
        )
        await writer.drain()
        await read_request(reader)  # the same connection again: kept alive
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + ACTION)
        writer.close()

    async with raw_server(handler) as url, HttpPool(url) as pool:
        transport = LeanHttpTransport(url, pool=pool, token="t0k")
        first = await transport.send(EVENT)
        second = await transport.send(EVENT)
    assert first.items == second.items == [json.loads(ACTION)]
    assert first.findings == second.findings == []
    assert pool.opened == 1


async def test_lean_client_notices_idle_closes_and_retries_a_dropped_reuse():
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        if len(seen) == 1:
            writer.close()  # keep-alive was implied, but the server hangs up (idle timeout)
            return
        # The next request on this connection is read and dropped unanswered: what a client
        # sees when the server closes a kept-alive connection just as it is reused.
        seen.append(await read_request(reader))
        writer.close()

    async with raw_server(handler) as url, HttpPool(url) as pool:
        transport = LeanHttpTransport(url, pool=pool)
        await transport.send(EVENT)
        await asyncio.sleep(0.05)  # the close reaches the idle connection: it is dropped
        assert pool.connections == 0
        second = await transport.send(EVENT)  # a new connection
        third = await transport.send(EVENT)  # reused, dropped, sent again on a fresh one
    assert second.findings == third.findings == []
    assert len(seen) == 4
    assert pool.opened == 3


async def test_lean_client_reports_timeouts_statuses_and_refusals():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # one connection, kept alive
            body = await read_request(reader)
            if b"user_speak" in body:
                await asyncio.sleep(0.3)  # answers too late
                return
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")
            await writer.drain()

    async with raw_server(handler) as url:
        transport = LeanHttpTransport(url, timeout=0.1)
        status = await transport.send(EVENT)
        late = await transport.send({"type": "user_speak", "session": {"id": "s1"}})
        await transport.close()
    assert [f.code for f in status.findings] == ["http_status"]
    assert [f.code for f in late.findings] == ["no_reply"]
    assert "TimeoutError" in late.findings[0].message
    refused = await LeanHttpTransport(url).send(EVENT)
    assert [f.code for f in refused.findings] == ["no_reply"]


# -- the command line -------------------------------------------------------------------------


def aiflow_load(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIFLOW, "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def write_script(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "script.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def test_cli_runs_a_script_and_writes_the_json_report(tmp_path: Path):
    out = tmp_path / "report.json"
    result = aiflow_load(
        str(ECHO),
        "--script",
        str(ECHO_SCRIPT),
        "--calls",
        "4",
        "--concurrency",
        "4",
        "--speaking-rate",
        "1000",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "calls 4/4 done (0 failed)" in result.stdout  # the plain progress line
    assert "calls: 4 started, 4 completed, 0 failed" in result.stdout
    assert "loop lag" in result.stdout
    data = json.loads(out.read_text())
    assert set(data) == {
        "target", "transport", "scenario", "options", "seconds", "calls", "events", "total",
        "findings", "failures", "generator", "machine", "passed", "bounds",
    }  # fmt: skip
    assert data["scenario"] == "echo repeats and asks once for more"
    assert data["transport"] == "inprocess"
    assert data["calls"]["completed"] == 4
    assert data["calls"]["failed"] == 0
    assert data["passed"] is True
    assert data["failures"] == []
    row = data["events"]["user_speak"]
    assert set(row) == {
        "count", "replies", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "timeouts",
        "findings",
    }  # fmt: skip
    assert row["count"] == 4
    assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert data["events"]["session_start"]["count"] == 4
    assert set(data["generator"]) >= {"loop_lag_p50_ms", "loop_lag_p99_ms", "cpu_percent"}
    assert data["bounds"] == {"p99_max_ms": None, "broken": []}


def test_cli_fails_when_the_script_fails(tmp_path: Path):
    script = write_script(
        tmp_path, {"name": "wrong greeting", "steps": [{"expect": {"speak": "(?i)goodbye"}}]}
    )
    result = aiflow_load(str(ECHO), "--script", str(script), "--calls", "3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 failed" in result.stdout
    assert "FAILED x3" in result.stdout
    assert "goodbye" in result.stdout


def test_cli_p99_bound_names_what_broke_it(tmp_path: Path):
    script = write_script(
        tmp_path, {"name": "greeting", "steps": [{"expect": {"speak": {}}}, {"hangup": {}}]}
    )
    out = tmp_path / "report.json"
    result = aiflow_load(
        str(ECHO), "--script", str(script), "--calls", "3", "--p99-max", "0.000001", "--json",
        str(out),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "p99 bound broken" in result.stdout
    assert "session_start p99" in result.stdout
    data = json.loads(out.read_text())
    assert data["calls"]["failed"] == 0  # the calls were fine: the bound failed the run
    assert any(line.startswith("session_start p99") for line in data["bounds"]["broken"])


def test_cli_bad_target_exits_2_without_a_traceback():
    result = aiflow_load("no/such/app.py")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "aiflow load: no such file: no/such/app.py\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:9/webhook"], "cannot connect to 127.0.0.1:9"),
        (["ftp://example.com/app"], "a target URL starts with http(s):// or ws(s)://"),
        ([str(ECHO), "--script", "missing.yaml"], "missing.yaml: cannot read"),
        ([str(ECHO), "--concurrency", "0"], "--concurrency must be greater than 0"),
        ([str(ECHO), "--rate", "nan"], "--rate must be greater than 0"),
        ([str(ECHO), "--json", "."], "--json . is a directory"),
    ],
)
def test_cli_bad_target_script_or_option_exits_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
):
    from sipgate_ai_flow.cli import main

    assert main(["load", *args]) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert out == ""
