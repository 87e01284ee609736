"""The memory benchmark harness: RSS from /proc, checked calls, a real quick run, the CLI.

RSS figures are not judged here (``python -m bench --memory`` does that); the quick run
checks that real numbers came out: RSS parsed at every checkpoint, calls completed and
answered correctly, open WebSocket calls cost memory.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bench import http, memory, websocket

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def test_rss_is_read_from_proc_in_kib():
    rss = websocket.rss_kib(os.getpid())
    assert 10_000 < rss < 10_000_000  # a Python process with pytest: tens of MiB
    with pytest.raises(http.BenchError, match="cannot read the memory"):
        websocket.rss_kib(2**22 + 12345)  # above the kernel's pid_max


def test_calls_are_checked_answer_by_answer(tmp_path: Path):
    # The HTTP benchmark's raw ASGI app answers user_speak but not session_start's greeting.
    spec = http.uvicorn_spec("ceiling", "raw ASGI", "ceiling_app", http="h11", loop="asyncio")
    with (
        http.running([spec], tmp_path, cpu=None) as [server],
        pytest.raises(http.BenchError, match=r"answered \(204, b''\), expected \(200"),
    ):
        asyncio.run(memory.http_calls(server.port, 0, 1))


def test_quick_run_reads_rss_at_every_checkpoint():
    report = memory.measure(warmup_calls=10, checkpoints=(20, 200), sockets=50, rounds=1)
    [result] = report.rounds
    assert list(result.checkpoints) == [20, 200]
    assert all(20_000 < kib < 1_000_000 for kib in result.checkpoints.values())  # KiB
    assert 20_000 < result.warmup_rss < 1_000_000
    assert 0.5 < report.growth < 2.0
    for key in ("raw", "sdk"):
        assert result.ws_base[key] > 20_000
        assert result.ws_open[key] > result.ws_base[key]  # 50 open calls hold memory
        assert report.per_call_kib(key) > 0
    text = memory.table(report)
    assert "RSS after 200 / after 20 calls" in text
    rows = memory.summary_rows(report)
    assert rows[0].met is report.ok
    assert rows[1].met is None


def test_growth_is_judged_last_over_first_checkpoint():
    flat = memory.MemoryRound(40_000, {100: 40_000, 1_000: 41_000, 10_000: 43_000})
    grown = memory.MemoryRound(40_000, {100: 40_000, 1_000: 44_000, 10_000: 48_000})
    for round_ in (flat, grown):
        round_.ws_base.update(raw=30_000, sdk=40_000)
        round_.ws_open.update(raw=40_000, sdk=60_000)
    assert flat.growth == pytest.approx(1.075)
    assert memory.Report([flat], 500, 1_000).ok
    assert not memory.Report([grown], 500, 1_000).ok
    report = memory.Report([flat], 500, 1_000)
    assert report.per_call_kib("sdk") == pytest.approx(20.0)
    assert report.ws_ratio == pytest.approx(2.0)
    with pytest.raises(ValueError, match="increasing"):
        memory.measure(checkpoints=(1_000, 100))


def test_cli_flags(monkeypatch: pytest.MonkeyPatch):
    from bench.__main__ import main

    calls: list[dict[str, object]] = []

    def fake(**options: object) -> tuple[int, list[object]]:
        calls.append(options)
        return 1, []

    monkeypatch.setattr(memory, "main", fake)
    assert main(["--memory"]) == 1  # a missed target is exit status 1
    assert calls[-1] == {}  # the full run: memory's own defaults
    assert main(["--memory", "--quick"]) == 1
    assert calls[-1] == {
        "warmup_calls": 50,
        "checkpoints": (100, 1_000),
        "sockets": 200,
        "rounds": 1,
    }
