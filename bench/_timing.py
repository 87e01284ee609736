"""Interleaved timing rounds: baseline and candidate alternate, so drift hits both alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class Comparison:
    name: str
    baseline: str
    candidate_us: list[float]
    baseline_us: list[float]
    target: float

    @property
    def ratio(self) -> float:
        return statistics.median(self.candidate_us) / statistics.median(self.baseline_us)

    @property
    def ok(self) -> bool:
        return self.ratio <= self.target


async def compare(
    name: str,
    baseline_name: str,
    baseline: Callable[[], Awaitable[object]],
    candidate: Callable[[], Awaitable[object]],
    *,
    target: float,
    rounds: int,
    iterations: int,
) -> Comparison:
    """Median per-call microseconds of ``candidate`` and ``baseline`` over alternating rounds."""

    async def one_round(fn: Callable[[], Awaitable[object]]) -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            await fn()
        return (time.perf_counter() - start) / iterations * 1e6

    await one_round(baseline)  # warm-up: imports, caches, branch predictors
    await one_round(candidate)
    base: list[float] = []
    cand: list[float] = []
    for _ in range(rounds):
        base.append(await one_round(baseline))
        cand.append(await one_round(candidate))
    return Comparison(name, baseline_name, cand, base, target)


def table(rows: list[Comparison]) -> str:
    head = f"{'benchmark':<34} {'median':>10} {'baseline':>28} {'ratio':>7} {'target':>8}  ok"
    lines = [head, "-" * len(head)]
    lines.extend(_row(row) for row in rows)
    return "\n".join(lines)


def _row(row: Comparison) -> str:
    baseline = f"{row.baseline} {statistics.median(row.baseline_us):.2f}us"
    return (
        f"{row.name:<34} {statistics.median(row.candidate_us):>8.2f}us {baseline:>28} "
        f"{row.ratio:>6.2f}x {'<=' + format(row.target, '.1f') + 'x':>8}  "
        f"{'yes' if row.ok else 'NO'}"
    )
