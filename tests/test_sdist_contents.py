"""The source distribution ships ``tests/``, and the tests read files of the repository beside
the package (reviewer-95: an sdist without ``docs/``, ``mkdocs.yml`` and ``benchmarks/`` gave 2
collection errors and failures, for a packager who tests from it). Every top-level path a test
names through the repository root must be in the sdist's ``include`` list."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ``ROOT / "docs"`` or ``Path(__file__).resolve().parents[1] / "benchmarks"`` in a test
READS = re.compile(r"(?:\bROOT|parents\[1\])\s*/\s*\"([^\"/]+)")


def _sdist_includes() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {p.lstrip("/") for p in config["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]}


def test_the_sdist_holds_every_file_the_tests_read():
    read = {
        name
        for path in (ROOT / "tests").glob("*.py")
        for name in READS.findall(path.read_text(encoding="utf-8"))
    }
    assert {"docs", "mkdocs.yml", "benchmarks"} <= read  # the scan finds what it should
    assert read <= _sdist_includes(), sorted(read - _sdist_includes())


def test_the_sdist_holds_what_the_test_command_runs():
    """.ci/test is the README's test command's second half; constraints.txt pins its set."""
    assert {"tests", ".ci", "constraints.txt", "pyproject.toml", "README.md"} <= _sdist_includes()
