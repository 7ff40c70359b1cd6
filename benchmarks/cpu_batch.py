"""Tiles per network call on a CPU: the time of one downscaling call by batch size.

``Downscaler`` picks ``batch_size`` on a CPU by fine cells per call
(``flexdownscale.diffusion.samplers.CPU_CELLS_PER_CALL``): larger calls leave the caches and run slower
per cell. This benchmark measures the shipped ``kolmogorov-x8`` model on one 256 x 256 field of
the demo sample (8 members, one Reynolds number) with tiles of 64, 128 and the whole field
(288 x 288 with its periodic halos), every batch size alternating round by round, and writes
``<out>/cpu_batch.md`` (``--out``, default ``benchmarks/results``, the reference report). About
12 minutes on a 2-core CPU::

    python benchmarks/cpu_batch.py
    python benchmarks/cpu_batch.py --out /tmp/cpu_batch   # leave the reference report alone
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from flexdownscale.demo import CASES
from flexdownscale.diffusion.samplers import CPU_CELLS_PER_CALL
from flexdownscale.pipeline import Downscaler, _auto_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _outputs import add_out_option, make_out_folder
from speed import demo_input

BATCHES = (1, 2, 4, 8, 16)
TILES = (64, 128, None)  # None: the default, one tile for the whole periodic field
ROUNDS = 3


def measure() -> list[str]:
    """The report's table rows: median seconds per batch size, for each tile size."""
    case = next(c for c in CASES if c.model == "kolmogorov-x8")
    _, coarse, demo_kw = demo_input(case)
    value = demo_kw["condition"]
    down = Downscaler.from_pretrained(case.model)
    rows = []
    for tile in TILES:
        kw = {**demo_kw, "tile": tile}
        calls = {b: (lambda b=b, kw=kw: down(coarse, batch_size=b, **kw)) for b in BATCHES}
        for call in calls.values():  # warm-up: one-off primitive creation per shape
            call()
        seconds: dict[int, list[float]] = {b: [] for b in BATCHES}
        for _ in range(ROUNDS):
            for b, call in calls.items():
                start = time.perf_counter()
                call()
                seconds[b].append(time.perf_counter() - start)
        median = {b: statistics.median(v) for b, v in seconds.items()}
        out = down(coarse, members=1, seed=0, condition=value, tile=tile, progress=False)
        n_tiles = out.attrs["flexdownscale_tiles"]
        side = 288 if tile is None else tile
        chosen = _auto_batch(torch.device("cpu"), (side, side), 1)
        label = f"{side} x {side}" + (" (whole field with halos)" if tile is None else "")
        best = min(median, key=median.get)
        rows.append(
            f"| {label} | {n_tiles} | "
            + " | ".join(f"{median[b]:.2f}" for b in BATCHES)
            + f" | {best} | {chosen} |"
        )
        print(rows[-1], flush=True)
    return rows


def write_report(rows: list[str], out: Path, command: str) -> Path:
    """``out/cpu_batch.md`` with the table ``rows`` measured by ``command``."""
    machine = f"CPU ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)"
    lines = [
        "# Tiles per network call on a CPU",
        "",
        f"Machine: {machine}; torch {torch.__version__}; Python {platform.python_version()}.",
        f"Model: shipped `kolmogorov-x8`, one 256 x 256 field, 8 members, 2-step DDIM; medians "
        f"of {ROUNDS} rounds, the batch sizes alternating within each round.",
        f"Command: `{command}`",
        "",
        "| tile | tiles | " + " | ".join(f"batch {b} (s)" for b in BATCHES) + " | fastest | "
        f"default (`CPU_CELLS_PER_CALL` = {CPU_CELLS_PER_CALL}) |",
        "|---|---|" + "---|" * (len(BATCHES) + 2),
        *rows,
        "",
    ]
    path = out / "cpu_batch.md"
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_out_option(parser, "the report cpu_batch.md")
    args = parser.parse_args(argv)
    make_out_folder(parser, args.out)  # before the 12 minutes of timing
    command = " ".join(
        ["python benchmarks/cpu_batch.py", *(sys.argv[1:] if argv is None else argv)]
    )
    print(f"wrote {write_report(measure(), args.out, command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
