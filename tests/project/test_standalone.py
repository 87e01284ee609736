"""The repository stands alone: its tests read nothing outside the checkout.

A copy of the repository's files (tracked, plus untracked ones git does not ignore) in an empty
directory, with nothing beside it, runs the tests that read the protocol reference and the
fixtures. A second check greps the repository's text files for reads of a directory beside the
checkout, so a new one fails here with its file and line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

# The tests that read files of the repository other than their own: the protocol reference,
# the fixtures and the README.
STANDALONE_TESTS = [
    "tests/core/test_conformance.py",
    "tests/core/test_properties.py",
    "tests/project/test_docs.py",
]

# Ways to reach outside the checkout. Spelled in pieces so this file does not match itself.
OUTSIDE_READS = ("../" + "shared", "parents" + "[3]", "/work/" + "shared")

# Without git (an unpacked archive) the files are listed by walking the tree, minus these.
_NOT_SOURCE = {
    ".git",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "node_modules",
    "htmlcov",
    "dist",
    "build",
    "results",
}


def _repository_files() -> list[str]:
    """The repository's files relative to ``ROOT``: ``git ls-files``, tracked and untracked."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        files = []
        for directory, subdirs, names in os.walk(ROOT):
            subdirs[:] = [
                d for d in subdirs if d not in _NOT_SOURCE and not d.endswith(".egg-info")
            ]
            files += [str((Path(directory) / n).relative_to(ROOT)) for n in names]
        return sorted(files)
    # A file deleted in the working tree but not yet in the index is listed and absent.
    return sorted({name for name in listed.split("\0") if name and (ROOT / name).is_file()})


def test_the_repository_lists_its_own_files():
    files = _repository_files()
    for name in [*STANDALONE_TESTS, "docs/protocol.md", "tests/fixtures/README.md"]:
        assert name in files, name
    assert not [f for f in files if f.startswith((".venv/", ".git/"))]


def test_the_protocol_tests_pass_in_a_copy_with_nothing_beside_it(tmp_path: Path):
    copy = tmp_path / "repo"
    for name in _repository_files():
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(copy / "src")
    where = subprocess.run(
        [sys.executable, "-c", "import sipgate_ai_flow; print(sipgate_ai_flow.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to(copy.resolve()), (
        f"the copy imported {where}, not its own package"
    )

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *STANDALONE_TESTS],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error" not in output.lower(), output
    assert " passed" in output, output


def _outside_reads() -> list[str]:
    found = []
    this_file = Path(__file__).resolve()
    for name in _repository_files():
        path = ROOT / name
        if path.resolve() == this_file:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (WAVs and the like) read nothing
        for number, line in enumerate(text.splitlines(), start=1):
            found += [f"{name}:{number}: {line.strip()}" for p in OUTSIDE_READS if p in line]
    return found


def test_no_file_reads_outside_the_checkout():
    found = _outside_reads()
    assert not found, "paths outside the repository checkout:\n" + "\n".join(found)
