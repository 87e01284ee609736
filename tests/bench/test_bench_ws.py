"""The WebSocket benchmark harness: frames, servers, a real quick run with tiny sizes, the CLI.

The timings themselves are not asserted; ``python -m bench --ws`` measures them. The quick
run checks that real numbers came out: round trips counted, positive rates and latencies,
CPU accounted, every reply the expected frame.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from bench.http import BenchError, ServerSpec
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bench import _ws_apps, _ws_client, websocket

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, uses taskset")


@pytest.mark.parametrize("size", [0, 10, 125, 126, 300, 70_000])
def test_client_frames_are_masked_frames_websockets_parses(size: int):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    reader = StreamReader()
    reader.feed_data(_ws_client.client_frame(payload))
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame: Frame = done.value.value
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data == payload


def test_both_hand_written_servers_answer_what_the_sdk_answers():
    sid = "550e8400-e29b-41d4-a716-446655440000"
    start = _ws_client.event("session_start", sid)
    speak = _ws_client.event("user_speak", sid, text=_ws_client.TEXT)
    assert _ws_apps.reply(start) == _ws_client.speak(sid, _ws_apps.GREETING).decode()
    assert _ws_apps.reply(speak) == _ws_client.speak(sid, f"You said: {_ws_client.TEXT}").decode()
    assert _ws_apps.reply(_ws_client.event("session_end", sid)) is None
    assert json.loads(_ws_apps.reply(speak) or "") == {
        "type": "speak",
        "session_id": sid,
        "text": "You said: Hello, I need help with my invoice",
    }


def test_the_sdk_server_runs_with_aiflow_serves_uvicorn_settings():
    argv = websocket.sdk_spec().command(8000)
    assert argv[argv.index("--http") + 1] == "httptools"
    assert argv[argv.index("--loop") + 1] == "uvloop"
    assert argv[argv.index("--ws") + 1] == "auto"  # aiflow serve leaves uvicorn's default
    assert "--workers" not in argv
    # websockets is installed: uvicorn picks one of its two websockets protocols, not wsproto.
    assert websocket.ws_auto_impl() in {"WebSocketsSansIOProtocol", "WebSocketProtocol"}


def test_a_server_answering_wrongly_fails_the_health_check(tmp_path: Path):
    echo = (
        "import sys, asyncio\n"
        "from websockets.asyncio.server import serve\n"
        "async def echo(ws):\n"
        "    async for message in ws:\n"
        "        await ws.send(message)\n"
        "async def main():\n"
        "    async with serve(echo, '127.0.0.1', int(sys.argv[1])) as server:\n"
        "        await server.serve_forever()\n"
        "asyncio.run(main())\n"
    )
    spec = ServerSpec("echo", "echo server", lambda port: [sys.executable, "-c", echo, str(port)])
    with (
        pytest.raises(BenchError, match="echo server failed the health check: greeting"),
        websocket.running([spec], tmp_path, None),
    ):
        pytest.fail("running() must not yield when a server fails")  # pragma: no cover


def test_quick_run_measures_real_round_trips(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(websocket, "RETRIES", 0)  # keep the smoke run short on a busy host
    lines: list[str] = []
    report = websocket.measure(sockets=20, seconds=1.0, warmup=0.3, rounds=1, progress=lines.append)
    assert list(report.servers) == ["raw", "ceiling", "sdk"]
    assert len(lines) == 4  # three in turn, then the SDK and the raw server at once
    assert "shared CPU 1/1" in lines[3]
    [(sdk_together, raw_together)] = report.shared
    for result in (sdk_together, raw_together):
        assert result.errors == 0
        assert result.events > 20
    for row in report.servers.values():
        [result] = row.results
        assert result.errors == 0  # every reply was the expected frame
        assert result.events > 20  # more than one round trip per socket
        assert result.events_per_s > 0
        assert 0 < result.p50_ms <= result.p99_ms
        assert 0 < result.client_load < 1.5
        assert result.cpu_us_per_event is not None
        assert result.cpu_us_per_event > 0
    assert report.ratio() > 0
    assert len(report.round_ratios()) == 1
    text = websocket.table(report)
    assert "target: SDK events/s >= 0.8x the raw server's" in text
    assert "sharing one CPU, loaded at once" in text
    shared = report.shared_ratio
    assert shared is not None
    assert shared > 0
    rows = websocket.summary_rows(report)
    assert [row.met for row in rows] == [report.ok, shared >= 0.8, None, None]


def measured(label: str, rates: list[float], errors: int = 0) -> websocket.Measured:
    return websocket.Measured(
        label,
        [
            websocket.WsResult(int(rate), errors, 1.0, 1.0, 1000 / rate * 10, 0.3, rate * 1e-4)
            for rate in rates
        ],
    )


def test_the_target_is_the_median_of_paired_ratios_and_wrong_replies_fail_it():
    report = websocket.Report(
        {
            "raw": measured("raw", [10_000, 5_000, 10_000]),
            "ceiling": measured("ceiling", [10_000, 5_000, 10_000]),
            "sdk": measured("sdk", [9_000, 3_000, 7_000]),
        },
        200,
    )
    assert report.round_ratios() == [pytest.approx(0.9), pytest.approx(0.6), pytest.approx(0.7)]
    assert report.ratio() == pytest.approx(0.7)
    assert not report.ok
    assert report.cpu_ratio() == pytest.approx(1.0)  # same CPU per event in this fake
    good = websocket.Report(
        {"raw": measured("raw", [10_000]), "sdk": measured("sdk", [8_500])}, 200
    )
    assert good.ok
    wrong = websocket.Report(
        {"raw": measured("raw", [10_000]), "sdk": measured("sdk", [9_000], errors=3)}, 200
    )
    assert not wrong.ok
    assert "measured 0.90x NO" in websocket.table(wrong)
    [slow] = measured("sdk", [7_000]).results
    [fast] = measured("raw", [10_000]).results
    shared_miss = websocket.Report(good.servers, 200, shared=[(slow, fast)] * 3)
    assert shared_miss.shared_ratio == pytest.approx(0.7)
    assert not shared_miss.ok  # met in turn, missed sharing a CPU: not met
    assert "loaded at once: SDK events/s / raw server's = 0.70x NO" in websocket.table(shared_miss)


def test_round_order_keeps_the_sdk_next_to_the_raw_server(tmp_path: Path):
    servers = [
        websocket.WsServer(spec, tmp_path, None)
        for spec in (websocket.raw_spec(), websocket.ceiling_spec(), websocket.sdk_spec())
    ]
    first = [s.spec.key for s in websocket.round_order(servers, 0)]
    second = [s.spec.key for s in websocket.round_order(servers, 1)]
    assert first == ["ceiling", "raw", "sdk"]
    assert second == ["sdk", "raw", "ceiling"]


def test_cli_flags(monkeypatch: pytest.MonkeyPatch):
    from bench.__main__ import main

    calls: list[dict[str, object]] = []

    def fake(**options: object) -> tuple[int, list[object]]:
        calls.append(options)
        return 0, []

    monkeypatch.setattr(websocket, "main", fake)
    assert main(["--ws", "--rounds", "2", "--duration", "3", "--sockets", "50"]) == 0
    assert calls[-1] == {"sockets": 50, "seconds": 3, "warmup": 1.0, "rounds": 2}
    assert main(["--ws", "--quick"]) == 0
    assert calls[-1] == {"sockets": 200, "seconds": 2.0, "warmup": 0.5, "rounds": 1}
    with pytest.raises(SystemExit):
        main(["--ws", "--http"])


def test_probe_fails_without_a_server():
    from bench.http import free_port

    with pytest.raises(ConnectionRefusedError):  # wait_ready retries on this
        asyncio.run(_ws_client.probe(free_port()))
