"""The benchmark harness runs and compares like with like (timings are not asserted here)."""

from __future__ import annotations

import json

from bench import dispatch
from bench._timing import table


async def test_dispatch_benchmark_runs_and_both_sides_do_the_same_work():
    row = await dispatch.run(rounds=2, iterations=20)
    assert len(row.candidate_us) == len(row.baseline_us) == 2
    assert all(t > 0 for t in row.candidate_us + row.baseline_us)
    assert "dispatch: parse+dispatch+dump" in table([row])
    sdk = json.loads(await dispatch.sdk_handler(dispatch.BODY) or b"")
    assert sdk == json.loads(dispatch.bare_handler(dispatch.BODY) or b"")
    assert sdk["text"] == "You said: Hello, I need help with my invoice"
