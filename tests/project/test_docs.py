"""Every Python example in the README runs, and prints what its comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int):
    code = BLOCKS[index]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # A "# <expected>" comment after a print(...), on its line or the next, states an output line.
    expected = [m.strip() for m in re.findall(r"print\(.*\)[ \t]*\n?[ \t]*# (.*)", code)]
    assert expected or "print(" not in code, "an example that prints states what it prints"
    out_lines = result.stdout.splitlines()
    for line in expected:
        if line.startswith(("[", "{")):
            assert line in out_lines, f"expected {line!r} in {out_lines!r}"
