"""Speed of the ensemble CRPS against properscoring and scores, in one run.

    OMP_NUM_THREADS=1 python benchmarks/metrics_speed.py [--points 100000] [--members 8 50 200]
    OMP_NUM_THREADS=1 python benchmarks/metrics_speed.py --points 500 --members 4 --out /tmp/m

Times ``flexdownscale.metrics.crps_ensemble`` (ecdf and fair), ``scores.probability.
crps_for_ensemble`` (method "ecdf" and "fair") and ``properscoring.crps_ensemble`` (ecdf) on
the same random ensembles (members first, as the downscaling pipeline returns them), each
computing the CRPS at every point and then the mean over points. Checks that all agree, and
writes the table to ``--out`` (or ``--output``): a folder (``metrics_speed.md`` is written into it; created if
needed) or a file path ending in ``.md``; default ``benchmarks/results/metrics_speed.md``, the
reference report, which only a run with the default settings may rewrite (others are refused
there: pass ``--out``).

properscoring's fast path needs numba; without numba it falls back to an O(N M^2)-memory
numpy version, which we run in blocks of points to stay within memory, and for large
ensembles on a subset of the points (``--properscoring-max-points``), scaled linearly to the
full size (its cost is exactly linear in the number of points). The table says which.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import properscoring
import scores
import scores.probability
import xarray as xr
from _outputs import thread_prefix

import flexdownscale
from flexdownscale.metrics import crps_ensemble

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_speed.md"
#: The reference report's settings (the defaults of the options).
REFERENCE = {
    "points": 100_000,
    "members": [8, 50, 200],
    "repeats": 3,
    "properscoring_max_points": 10_000,
}


def output_file(path: Path) -> Path:
    """The report file of ``--out path``: ``path`` itself for an existing file or a path
    ending in ``.md``, else ``path/metrics_speed.md`` (a folder, created if needed)."""
    as_file = path.is_file() or (path.suffix == ".md" and not path.is_dir())
    target = path if as_file else path / RESULTS.name
    if target.is_dir():
        raise ValueError(f"{target} is a folder; give another file name or its parent folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot make the folder {target.parent}: a file is in its way") from None
    if not os.access(target.parent, os.W_OK):
        raise ValueError(f"the folder {target.parent} is not writable")
    return target


def best_time(
    fn: Callable[..., float], repeats: int, *args: Any, **kwargs: Any
) -> tuple[float, float]:
    """Best wall time of ``repeats`` calls ``fn(*args, **kwargs)``, and the last result."""
    best, out = np.inf, np.nan
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _mean_of(score: Callable[..., xr.DataArray], *args: Any, **kwargs: Any) -> float:
    """Call an xarray score (which averages over all points) and bring the value to Python."""
    return float(score(*args, **kwargs))


def properscoring_blocks(obs: np.ndarray, fcst_pm: np.ndarray, m: int) -> float:
    """Mean ecdf CRPS with properscoring, in blocks of points (fcst as (points, members))."""
    block = max(1, int(2e6 // (m * m)))  # ~16 MB per (block, M, M) temporary: cache friendly
    total = 0.0
    for start in range(0, obs.size, block):
        total += properscoring.crps_ensemble(
            obs[start : start + block], fcst_pm[start : start + block]
        ).sum()
    return total / obs.size


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--members", type=int, nargs="+", default=[8, 50, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--properscoring-max-points",
        type=int,
        default=10_000,
        help="run properscoring on at most this many points when M >= 50",
    )
    parser.add_argument(
        "--out",
        "--output",
        dest="output",
        type=Path,
        default=RESULTS,
        metavar="PATH",
        help="a folder (metrics_speed.md is written into it, created if needed) or a file path "
        "ending in .md (default: benchmarks/results/metrics_speed.md, the reference report: "
        "only the default settings may rewrite it)",
    )
    args = parser.parse_args(argv)
    try:  # before the timing runs, which take minutes at the default sizes
        output = output_file(args.output)
    except ValueError as err:
        parser.error(f"--out {args.output}: {err}")
    differ = [k for k, v in REFERENCE.items() if getattr(args, k) != v]
    if output.resolve() == RESULTS.resolve() and differ:
        flags = ", ".join("--" + k.replace("_", "-") for k in differ)
        parser.error(
            f"settings other than the reference report's ({flags}) would overwrite it; pass "
            "--out PATH (a folder or a .md file) to write this run elsewhere"
        )

    rng = np.random.default_rng(0)
    rows = []
    for m in args.members:
        n = args.points
        x = rng.normal(size=(m, n)) * rng.uniform(0.5, 2.0, size=n) + 0.2
        y = rng.normal(size=n)
        fcst = xr.DataArray(x, dims=("member", "point"))
        obs = xr.DataArray(y, dims="point")
        reps = args.repeats if m <= 50 else max(1, args.repeats - 1)

        sc_crps = scores.probability.crps_for_ensemble
        t_ours, v_ours = best_time(_mean_of, reps, crps_ensemble, fcst, obs, fair=False)
        t_ours_fair, v_ours_fair = best_time(_mean_of, reps, crps_ensemble, fcst, obs, fair=True)
        t_sc, v_sc = best_time(_mean_of, reps, sc_crps, fcst, obs, "member", method="ecdf")
        t_sc_fair, v_sc_fair = best_time(
            _mean_of, reps, sc_crps, fcst, obs, "member", method="fair"
        )
        n_ps = n if m < 50 else min(n, args.properscoring_max_points)
        x_pm = np.ascontiguousarray(x[:, :n_ps].T)
        t_ps, v_ps = best_time(properscoring_blocks, 1, y[:n_ps], x_pm, m)
        t_ps_full = t_ps * n / n_ps
        v_ours_sub = float(
            crps_ensemble(
                fcst.isel(point=slice(0, n_ps)), obs.isel(point=slice(0, n_ps)), fair=False
            )
        )
        agree = max(abs(v_ours - v_sc), abs(v_ours_fair - v_sc_fair), abs(v_ours_sub - v_ps))
        if agree > 1e-10:
            raise SystemExit(f"libraries disagree for M={m}: max difference {agree:g}")
        fastest_other_ecdf = min(t_sc, t_ps_full)
        rows.append(
            {
                "M": m,
                "ours_ecdf": t_ours,
                "ours_fair": t_ours_fair,
                "scores_ecdf": t_sc,
                "scores_fair": t_sc_fair,
                "properscoring": t_ps_full,
                "ps_points": n_ps,
                "speedup_ecdf": fastest_other_ecdf / t_ours,
                "speedup_fair": t_sc_fair / t_ours_fair,
                "agree": agree,
            }
        )
        print(
            f"M={m:4d}: ours ecdf {t_ours:.3f}s fair {t_ours_fair:.3f}s | scores ecdf {t_sc:.3f}s "
            f"fair {t_sc_fair:.3f}s | properscoring {t_ps_full:.3f}s"
            f"{'' if n_ps == n else f' (scaled from {n_ps} points)'} | max diff {agree:.1e}",
            flush=True,
        )

    numba = importlib.util.find_spec("numba") is not None
    given = sys.argv[1:] if argv is None else argv
    command = thread_prefix() + " ".join(["python", "benchmarks/metrics_speed.py", *given])
    lines = [
        "# CRPS speed: flexdownscale vs scores vs properscoring",
        "",
        f"Command: `{command}` (from the repository root; written by the script).",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPU cores, {platform.system()} "
        f"{platform.release()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        f"Versions: Python {platform.python_version()}, numpy {np.__version__}, xarray "
        f"{xr.__version__}, flexdownscale {flexdownscale.__version__}, scores {scores.__version__}, "
        f"properscoring {getattr(properscoring, '__version__', '0.1')}, numba "
        f"{'installed' if numba else 'not installed (properscoring uses its O(M^2) numpy fallback)'}.",
        "",
        f"Data: {args.points:,} points x M members, float64, members first (`(member, point)`), "
        "random normal with varying spread. Each call computes the CRPS at every point and "
        "averages over points; best of "
        f"{args.repeats} runs (fewer for M > 50). All results agree to < 1e-10.",
        "",
        "| M | flexdownscale ecdf [s] | flexdownscale fair [s] | scores ecdf [s] | scores fair [s] "
        "| properscoring ecdf [s] | speed-up ecdf (fastest other / ours) | speed-up fair (scores / ours) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ps_note = (
            ""
            if r["ps_points"] == args.points
            else f" (x{args.points // r['ps_points']} from {r['ps_points']:,} pts)"
        )
        lines.append(
            f"| {r['M']} | {r['ours_ecdf']:.3f} | {r['ours_fair']:.3f} | {r['scores_ecdf']:.3f} | "
            f"{r['scores_fair']:.3f} | {r['properscoring']:.2f}{ps_note} | {r['speedup_ecdf']:.1f}x | "
            f"{r['speedup_fair']:.1f}x |"
        )
    lines += [
        "",
        "How: one contiguous float64 copy with members last, an in-place `np.sort` along members, "
        "the spread term from the sort identity `sum_ij |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i)` "
        "as one matrix-vector product, then one in-place pass for `|x_i - y|`; rows with NaN "
        "members take a separate vectorised path. No Python loop over points.",
        "",
    ]
    output.write_text("\n".join(lines))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
