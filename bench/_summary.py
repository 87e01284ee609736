"""One row per judged figure of ``python -m bench --all``, and the table printing them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SummaryRow:
    """A figure, the baseline it was measured next to in the same run, and the verdict.

    ``ratio`` is what the target judges (for paired measurements the median of the per-round
    ratios, so it need not equal figure / baseline exactly). ``met`` is ``None`` for a figure
    that is reported without a target.
    """

    benchmark: str
    figure: str
    baseline: str
    ratio: float | None
    target: str = "-"
    met: bool | None = None


def failed(benchmark: str, why: str) -> SummaryRow:
    """The row of a benchmark that produced no figure (a server or tool failed)."""
    return SummaryRow(benchmark, why, "-", None, "-", False)


def summary_table(rows: list[SummaryRow]) -> str:
    cells = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


HEADERS = ("benchmark", "figure", "baseline", "ratio", "target", "met?")


def _cells(row: SummaryRow) -> tuple[str, ...]:
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
    met = "-" if row.met is None else ("yes" if row.met else "NO")
    return (row.benchmark, row.figure, row.baseline, ratio, row.target, met)


def all_met(rows: list[SummaryRow]) -> bool:
    return all(row.met is not False for row in rows)
