"""The command-line options the report-writing benchmark scripts share.

``--out DIR``: its default is ``benchmarks/results``, where the reference reports live; a trial
run writes elsewhere with ``--out DIR``. :func:`positive_int` reads counts (fields, members);
:func:`thread_prefix` starts a report's command line as it was run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def add_out_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--out DIR`` (default :data:`RESULTS`); ``what`` names the files it receives."""
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help=f"folder of {what}, created if needed (default: benchmarks/results, the "
        "reference reports)",
    )


def make_out_folder(parser: argparse.ArgumentParser, out: Path) -> None:
    """Create ``out`` before any work; a file in its place is a usage error of ``parser``."""
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a folder (created if needed)")
    out.mkdir(parents=True, exist_ok=True)


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1 (``0`` fields or members is no run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number (1 or more)")
    return value


def thread_prefix() -> str:
    """``"OMP_NUM_THREADS=N "`` when this run has the variable set, else ``""``: the start of a
    report's command line as it was run (not as a docstring suggests running it)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return "" if threads is None else f"OMP_NUM_THREADS={threads} "
