"""The HTTP benchmark harness, without wrk or Node: parser, apps, server lifecycle, tables.

The timings themselves are not asserted; ``python -m bench --http`` measures them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from bench.dispatch import BODY

from bench import _http_apps, http

# Captured from `wrk -t1 -c64 -d2s --latency -s post.lua URL` against the ceiling app.
WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:39112/webhook
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    11.05ms   14.63ms 228.19ms   97.69%
    Req/Sec     6.81k     1.00k    9.13k    75.00%
  Latency Distribution
     50%    9.34ms
     75%   11.16ms
     90%   13.00ms
     99%   89.62ms
  13628 requests in 2.02s, 2.83MB read
Requests/sec:   6754.52
Transfer/sec:      1.40MB
"""

# The same shape with errors, as wrk prints them (404s and a few dropped sockets).
WRK_OUTPUT_ERRORS = """\
Running 1s test @ http://127.0.0.1:39112/nothere
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.06ms    1.31ms  12.50ms   86.02%
    Req/Sec    12.01k     4.74k   17.90k    70.00%
  Latency Distribution
     50%  455.00us
     75%  620.00us
     90%  800.00us
     99%  950.00us
  11980 requests in 1.01s, 1.29MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 11980
Requests/sec:  11888.98
Transfer/sec:      1.28MB
"""


def test_parse_wrk_reads_requests_per_second_and_p99():
    result = http.parse_wrk(WRK_OUTPUT)
    assert result.requests_per_s == pytest.approx(6754.52)
    assert result.p99_ms == pytest.approx(89.62)
    assert result.requests == 13628
    assert result.errors == 0


def test_parse_wrk_converts_units_and_counts_errors():
    result = http.parse_wrk(WRK_OUTPUT_ERRORS)
    assert result.requests_per_s == pytest.approx(11888.98)
    assert result.p99_ms == pytest.approx(0.95)
    assert result.non_2xx == 11980
    assert result.socket_errors == 6
    seconds = WRK_OUTPUT.replace("     99%   89.62ms", "     99%    1.70s")
    assert http.parse_wrk(seconds).p99_ms == pytest.approx(1700.0)


def test_parse_wrk_refuses_output_without_latency_distribution():
    without = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%" not in line)
    with pytest.raises(http.BenchError, match="--latency"):
        http.parse_wrk(without)


def test_lua_script_posts_the_body_verbatim():
    script = http.lua_script(BODY)
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert f"[[{BODY.decode()}]]" in script
    tricky = http.lua_script(b'{"text": "a]]b]=]c"}')
    assert 'wrk.body = [==[{"text": "a]]b]=]c"}]==]' in tricky


async def post(transport: httpx.AsyncBaseTransport) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        return await client.post(
            "/webhook", content=BODY, headers={"content-type": "application/json"}
        )


async def test_sdk_app_and_ceiling_answer_the_same_bytes():
    sdk = await post(httpx.ASGITransport(app=_http_apps.sdk_app()))
    ceiling = await post(httpx.ASGITransport(app=_http_apps.ceiling_app()))
    assert sdk.status_code == ceiling.status_code == 200
    assert sdk.content == ceiling.content
    assert sdk.headers["content-type"] == ceiling.headers["content-type"] == "application/json"
    assert sdk.json() == http.EXPECTED
    assert http.EXPECTED == {
        "type": "speak",
        "session_id": "550e8400-e29b-41d4-a716-446655440000",
        "text": "You said: Hello, I need help with my invoice",
    }


async def test_fastapi_baseline_does_the_same_work():
    fastapi = await post(httpx.ASGITransport(app=_http_apps.fastapi_app()))
    assert fastapi.status_code == 200
    assert fastapi.json() == http.EXPECTED


def test_flask_baseline_does_the_same_work():
    with httpx.Client(
        transport=httpx.WSGITransport(app=_http_apps.flask_app()), base_url="http://bench"
    ) as client:
        flask = client.post("/webhook", content=BODY, headers={"content-type": "application/json"})
    assert flask.status_code == 200
    assert flask.json() == http.EXPECTED


async def test_every_app_answers_other_events_with_204():
    other = json.dumps({**json.loads(BODY), "type": "assistant_speech_ended"}).encode()
    for app in (_http_apps.sdk_app(), _http_apps.ceiling_app(), _http_apps.fastapi_app()):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            response = await client.post("/webhook", content=other)
        assert response.status_code == 204


def test_express_server_is_the_seed_handler_and_pinned():
    package = json.loads((http.NODE_DIR / "package.json").read_text())
    version = package["dependencies"]["express"]
    assert version[0].isdigit()  # an exact version, no range
    source = (http.NODE_DIR / "server.js").read_text()
    assert "app.use(express.json())" in source
    assert "res.json({" in source
    assert "'127.0.0.1'" in source


def test_server_specs_are_single_worker_and_cover_every_uvicorn_setup():
    specs = {spec.key: spec for spec in [*http.main_specs(), *http.setup_specs()]}
    assert list(specs)[:5] == ["ceiling", "sdk", "fastapi", "flask", "express"]
    assert {http.setup_key(*setup) for setup in http.SETUPS} <= set(specs)
    for key in ("ceiling", "sdk", "fastapi"):
        argv = specs[key].command(8000)
        assert argv[argv.index("--http") + 1] == http.MAIN_HTTP
        assert argv[argv.index("--loop") + 1] == http.MAIN_LOOP
        assert "--workers" not in argv
        assert "--no-access-log" in argv
    gunicorn = specs["flask"].command(8000)
    assert gunicorn[gunicorn.index("--workers") + 1] == "1"
    assert gunicorn[gunicorn.index("--worker-class") + 1] == "sync"


def python_spec(key: str, code: str, *args: str) -> http.ServerSpec:
    return http.ServerSpec(key, key, lambda port: [sys.executable, "-c", code, *args])


def test_a_server_that_exits_is_reported_with_its_output(tmp_path: Path):
    spec = python_spec("broken", "import sys; print('no app here'); sys.exit(3)")
    server = http.Server(spec, tmp_path, cpu=None)
    server.start()
    try:
        with pytest.raises(http.BenchError, match=r"exited \(3\)[\s\S]*no app here"):
            server.wait_ready(timeout=10)
    finally:
        server.stop()


def test_running_stops_every_started_server_when_one_fails(tmp_path: Path):
    pid_file = tmp_path / "silent.pid"
    silent = python_spec(  # starts, but never answers HTTP
        "silent",
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)",
        str(pid_file),
    )
    with (
        pytest.raises(http.BenchError, match="silent did not answer"),
        http.running([silent], tmp_path, cpu=None, start_timeout=2),
    ):
        pytest.fail("running() must not yield when a server fails")  # pragma: no cover
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_the_sdk_app_starts_under_uvicorn_and_passes_the_health_check(tmp_path: Path):
    spec = http.uvicorn_spec("sdk", "SDK app", "sdk_app", http="h11", loop="asyncio")
    with http.running([spec], tmp_path, cpu=None) as [server]:
        status, body = http.post_event(server.port)
        assert status == 200
        assert json.loads(body) == http.EXPECTED
        if sys.platform == "linux":  # the CPU accounting reads /proc
            cpu = server.cpu_seconds()
            assert cpu is not None
            assert cpu > 0  # it imported uvicorn and the SDK
        process = server.process
    assert process is not None
    assert process.returncode is not None  # stopped on exit


def measured(label: str, rps: float, cpu_us: float = 100.0) -> http.Measured:
    requests = int(rps) * 10
    result = http.WrkResult(rps, 1.0, requests, cpu_s=cpu_us * requests / 1e6)
    return http.Measured(label, [result])


def test_tables_show_ratios_and_targets():
    report = http.Report(
        main={
            "ceiling": measured("ceiling", 10_000, cpu_us=90),
            "sdk": measured("SDK app", 8_500, cpu_us=100),
            "fastapi": measured("FastAPI", 4_000),
            "flask": measured("Flask", 1_000),
            "express": measured("Express", 5_000),
        },
        setups={
            "sdk-h11-asyncio": measured("a", 3_000),
            "sdk-h11-uvloop": measured("b", 3_500),
            "sdk-httptools-asyncio": measured("c", 7_000),
            "sdk": measured("SDK app", 8_500),
        },
    )
    assert report.ratio("sdk", "ceiling") == pytest.approx(0.85)
    targets = {baseline: met for baseline, _, _, met in report.targets()}
    assert targets == {"ceiling": True, "express": False, "flask": True}
    assert not report.ok
    text = http.table(report)
    assert "measured   0.85x  ok  (0.90x per CPU-second)" in text
    assert report.round_ratios("sdk", "ceiling") == [pytest.approx(0.85)]
    assert report.main["sdk"].spread == "-"
    two = http.Measured("x", [http.WrkResult(900, 1, 9), http.WrkResult(1100, 1, 11)])
    assert two.spread == "900-1100"
    assert two.requests_per_s == 1000
    assert "100 us" in text
    assert "measured   1.70x  NO" in text
    assert "measured   8.50x  ok" in text
    assert report.fastest_setup() == ("httptools", "uvloop")
    setups = http.setups_table(report)
    assert "--http httptools --loop uvloop" in setups.splitlines()[-1]
    assert setups.splitlines()[-1].endswith("<- fastest")
    saved = http.to_json(report)
    assert saved["fastest_setup"] == "httptools+uvloop"
    assert saved["main"]["sdk"]["cpu_us_per_request"] == pytest.approx(100.0)
    assert [t["ok"] for t in saved["targets"]] == [True, False, True]
    json.dumps(saved)  # plain JSON


def test_main_exits_2_when_a_server_fails_to_start(monkeypatch: pytest.MonkeyPatch, capsys):
    def fail(**options: object) -> http.Report:
        raise http.BenchError("Express (Node, 1 process) exited (1) before serving")

    monkeypatch.setattr(http, "run", fail)
    assert http.main(duration=1) == 2
    assert "exited (1) before serving" in capsys.readouterr().err


def test_cli_flags(monkeypatch: pytest.MonkeyPatch):
    from bench.__main__ import main

    calls: list[dict[str, object]] = []

    def fake_http(**options: object) -> int:
        calls.append(options)
        return 0

    monkeypatch.setattr(http, "main", fake_http)
    assert main(["--http", "--duration", "2", "--rounds", "3"]) == 0
    assert calls[-1]["duration"] == 2
    assert calls[-1]["rounds"] == 3
    assert calls[-1]["connections"] == http.DEFAULT_CONNECTIONS
    with pytest.raises(SystemExit):
        main(["--http", "--all"])
    with pytest.raises(SystemExit):
        main(["--http", "--duration", "0"])


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_cpu_accounting_reads_proc():
    stat = http.proc_stat()
    assert stat is not None
    busy, accounted = stat
    assert 0 < busy <= accounted
    used = http.cpu_busy(0.2)
    assert used is not None
    assert 0.0 <= used <= 1.0
    assert http.session_cpu_seconds(os.getsid(0)) is not None
