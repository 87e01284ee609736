"""The benchmark harness runs and compares like with like (timings are not asserted here)."""

from __future__ import annotations

import json

from bench._timing import table

from bench import dispatch


async def test_dispatch_benchmark_runs_and_both_sides_do_the_same_work():
    row = await dispatch.run(rounds=2, iterations=20)
    assert len(row.candidate_us) == len(row.baseline_us) == 2
    assert all(t > 0 for t in row.candidate_us + row.baseline_us)
    assert "dispatch: parse+dispatch+dump" in table([row])
    sdk = json.loads(await dispatch.sdk_handler(dispatch.BODY) or b"")
    assert sdk == json.loads(dispatch.bare_handler(dispatch.BODY) or b"")
    assert sdk["text"] == "You said: Hello, I need help with my invoice"


def test_all_runs_every_benchmark_and_prints_one_summary(monkeypatch, capsys):
    import bench.__main__ as cli
    from bench._summary import SummaryRow

    ran: list[str] = []

    def fake(name: str, status: int, met: bool | None):
        def run(*args: object, **options: object):
            ran.append(name)
            return status, [SummaryRow(name, "1 x", "2 y", 0.5, ">= 0.4x", met)]

        return run

    monkeypatch.setattr(cli, "run_dispatch", fake("dispatch", 0, True))
    monkeypatch.setattr(cli, "run_http", fake("http", 0, True))
    monkeypatch.setattr(cli, "run_ws", fake("websocket", 1, False))
    monkeypatch.setattr(cli, "run_state", fake("state", 0, True))
    monkeypatch.setattr(cli, "run_memory", fake("memory", 0, None))
    assert cli.main(["--all", "--quick"]) == 1  # one target missed
    assert ran == ["dispatch", "http", "websocket", "state", "memory"]
    out = capsys.readouterr().out
    summary = out[out.index("Summary of `python -m bench --all --quick`") :].splitlines()
    assert summary[3].split() == ["benchmark", "figure", "baseline", "ratio", "target", "met?"]
    rows = [line.split() for line in summary[5:]]
    assert [row[0] for row in rows] == ran
    assert [row[-1] for row in rows] == ["yes", "yes", "NO", "yes", "-"]
    assert rows[0][5] == "0.50x"

    ran.clear()
    assert cli.main(["--ws"]) == 1  # a single benchmark: no dispatch, no summary
    assert ran == ["websocket"]
    assert "Summary" not in capsys.readouterr().out


def test_http_summary_rows_come_from_the_json_results():
    from bench.__main__ import http_rows

    results = {
        "main": {
            "sdk": {"requests_per_s": 8_000.0},
            "ceiling": {"requests_per_s": 10_000.0},
            "flask": {"requests_per_s": 1_000.0},
        },
        "targets": [
            {"baseline": "ceiling", "target": 0.8, "ratio": 0.79, "ok": False},
            {"baseline": "flask", "target": 5.0, "ratio": 8.1, "ok": True},
        ],
    }
    rows = http_rows(results)
    assert [(r.figure, r.baseline, r.ratio, r.target, r.met) for r in rows] == [
        ("SDK 8,000 req/s", "10,000 req/s", 0.79, ">= 0.8x", False),
        ("SDK 8,000 req/s", "1,000 req/s", 8.1, ">= 5.0x", True),
    ]
    assert rows[0].benchmark == "HTTP webhook: req/s vs raw ASGI"


def test_instruction_count_drivers_answer_every_event_on_both_apps():
    # What callgrind counts must be the same work on both sides: every event answered.
    from bench import instructions

    for which in ("sdk", "ceiling"):
        assert instructions.drive_ws(which, events=3, sockets=4) == 4 * (1 + 3)
