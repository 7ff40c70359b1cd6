"""The ``flexdownscale`` command line.

``flexdownscale info`` prints the version, every backbone and preset with its super-resolution
parameter count, the regridding backends found and the compute device; ``flexdownscale info MODEL``
describes a model folder (variables, factor, grid, training data and skill from its model card).
``flexdownscale downscale IN OUT --model M`` downscales a netCDF/zarr file (zarr out when OUT ends
in ``.zarr``); ``flexdownscale evaluate PRED TRUTH --out DIR`` writes a metrics table (markdown)
and spectra / rank-histogram plots.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _backends() -> list[tuple[str, bool, str]]:
    """Optional backends: (name, available, what it is for / how to get it)."""
    table = [
        ("xarray-regrid", "xarray_regrid", "default regridding (installed with the package)"),
        (
            "xesmf",
            "xesmf",
            "curvilinear regridding: pip install 'flexdownscale[esmf]' + conda esmpy",
        ),
        (
            "huggingface_hub",
            "huggingface_hub",
            "models by Hub id: pip install 'flexdownscale[hub]'",
        ),
        ("accelerate", "accelerate", "training: pip install 'flexdownscale[train]'"),
        ("dask.distributed", "distributed", "inference on a cluster: pip install distributed"),
        ("wandb", "wandb", "the wandb logger: pip install 'flexdownscale[wandb]'"),
    ]
    found = []
    for name, module, hint in table:
        try:
            available = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            available = False
        found.append((name, available, hint))
    return found


def _device_line() -> str:
    import torch

    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        return f"cuda ({torch.cuda.device_count()} x {', '.join(sorted(names))})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({torch.get_num_threads()} threads)"


def _info_package() -> int:
    import torch

    from ._version import __version__
    from .models.registry import parameter_table

    print(
        f"flexdownscale {__version__} (torch {torch.__version__}, Python {sys.version.split()[0]})"
    )
    print()
    print("backbones (super-resolution model, 1 channel, 128 x 128; parameters):")
    for backbone, preset, count in parameter_table():
        print(f"  {backbone:<5} {preset:<7} {count / 1e6:8.2f} M")
    print()
    print("backends:")
    for name, available, hint in _backends():
        print(f"  {name:<17} {'found' if available else 'missing':<8} {hint}")
    print()
    print(f"device: {_device_line()}")
    return 0


def _info_model(name: str) -> int:
    from .hub import load_model_folder

    folder = load_model_folder(name)
    print(f"model: {name} ({folder.path})")
    print(f"  task: {folder.task}, factor: {folder.factor}")
    described = ", ".join(f"{v} [{folder.units.get(v, '')}]" for v in folder.variables)
    print(f"  variables: {described}")
    print(f"  backbone: {folder.model.backbone} {folder.model.preset}")
    print(
        f"  objective: {folder.diffusion.objective}; sampler default: {folder.sampler.sampler} "
        f"{folder.sampler.steps} steps"
    )
    if folder.condition:
        print(f"  physical condition: {json.dumps(dict(folder.condition))}")
    print(f"  grid: {json.dumps(dict(folder.grid))}")
    print()
    print(folder.card)
    return 0


def _open(path: str) -> Any:
    import xarray as xr

    from .errors import DataError

    if not Path(path).exists():
        raise DataError(f"input {path!r} does not exist")
    if path.rstrip("/").endswith(".zarr"):
        return xr.open_zarr(path, consolidated=False)
    return xr.open_dataset(path)


def _downscale(args: argparse.Namespace) -> int:
    from .pipeline import resolve_downscaler

    ds = _open(args.input)
    if args.time_chunk:
        ds = ds.chunk({d: args.time_chunk for d in ds.dims if d in ("time", "valid_time")})
    names = tuple(map(str, ds.data_vars))
    downscaler = resolve_downscaler(args.model, variables=names, factor=args.factor)
    out = downscaler(
        ds,
        factor=args.factor,
        members=args.members,
        steps=args.steps,
        sampler=args.sampler,
        seed=args.seed,
        tile=args.tile,
        overlap=args.overlap,
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    target = args.output
    if target.rstrip("/").endswith(".zarr"):
        out.to_zarr(target, mode="w", consolidated=False)
    else:
        out.to_netcdf(target)
    if not args.quiet:
        sizes = ", ".join(f"{k}: {v}" for k, v in out.sizes.items() if k != "bnds")
        print(f"wrote {target} ({sizes})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from . import metrics
    from .data.grid import find_axes, normalize_grid
    from .errors import GridError, MissingVariableError
    from .plot import plot_rank_histogram, plot_spectra

    pred = _open(args.prediction)
    truth = normalize_grid(_open(args.truth))
    names = [v for v in map(str, pred.data_vars) if v in truth.data_vars]
    if not names:
        raise MissingVariableError(
            f"prediction variables {list(map(str, pred.data_vars))} and truth variables "
            f"{list(map(str, truth.data_vars))} have none in common"
        )
    axes = find_axes(pred[names[0]])
    tol = {}
    for dim in (axes.y, axes.x):
        step = float(np.abs(np.diff(pred[dim].values)).mean()) if pred.sizes[dim] > 1 else 1.0
        tol[dim] = 1e-3 * step
    try:
        truth = truth.reindex(
            {d: pred[d].values for d in (axes.y, axes.x)},
            method="nearest",
            tolerance=min(tol.values()),
        )
    except KeyError as err:  # pragma: no cover - reindex raises KeyError for some misses
        raise GridError(f"the truth grid does not contain the prediction grid: {err}") from err
    if axes.time is not None and axes.time in truth.dims:
        truth = truth.sel({axes.time: pred[axes.time]})
    if any(bool(truth[v].isnull().all()) for v in names):
        raise GridError(
            "the truth has no values on the prediction grid; give truth on the fine grid "
            "the prediction was made on"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    has_members = "member" in pred.dims and pred.sizes["member"] > 1
    rows = []
    for v in names:
        p, t = pred[v], truth[v]
        mean = p.mean("member") if "member" in p.dims else p
        row = {
            "variable": v,
            "units": str(p.attrs.get("units", "")),
            "RMSE (ens. mean)": float(metrics.rmse(mean, t)),
            "MAE (ens. mean)": float(metrics.mae(mean, t)),
            "bias": float(metrics.bias(mean, t)),
        }
        if has_members:
            row["CRPS"] = float(metrics.crps_ensemble(p, t))
            row["spread/skill"] = float(metrics.spread_skill_ratio(p, t))
        rows.append(row)
        spatial = [axes.y, axes.x]
        fig = plot_spectra(
            {"truth": t, "prediction": p},  # member spectra are averaged, not the mean's
            reference="truth",
            dims=spatial,
            title=f"{v}: power spectra",
        )
        fig.savefig(out / f"spectra_{v}.png", dpi=100)
        if has_members:
            fig = plot_rank_histogram(p, t, title=f"{v}: rank histogram")
            fig.savefig(out / f"rank_histogram_{v}.png", dpi=100)
        import matplotlib.pyplot as plt

        plt.close("all")
    columns = list(rows[0])
    lines = [
        f"# Evaluation of {args.prediction} against {args.truth}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [
            f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flexdownscale`` command."""
    parser = argparse.ArgumentParser(
        prog="flexdownscale",
        description="Downscale climate and physics fields with FLEX diffusion models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="package, backbones, backends and device; or a model's card")
    info.add_argument("model", nargs="?", help="a model folder, shipped model name or Hub id")

    down = sub.add_parser("downscale", help="downscale a netCDF / zarr file with a model")
    down.add_argument("input", help="coarse input file (netCDF or .zarr)")
    down.add_argument("output", help="output file: netCDF, or zarr when it ends in .zarr")
    down.add_argument("--model", default=None, help="model folder, shipped name or Hub id")
    down.add_argument("--factor", type=int, default=None, help="must be the model's factor")
    down.add_argument(
        "--members", type=int, default=None, help="ensemble size (default: 1, no member dim)"
    )
    down.add_argument("--steps", type=int, default=None, help="sampler steps (model default)")
    down.add_argument("--sampler", default=None, choices=["ddim", "euler", "heun", "sde", "idff"])
    down.add_argument("--seed", type=int, default=0)
    down.add_argument("--tile", type=int, default=None, help="tile side in fine cells (x16)")
    down.add_argument("--overlap", type=int, default=None, help="tile overlap in fine cells")
    down.add_argument("--batch-size", type=int, default=None, help="tiles per network call")
    down.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: auto)")
    down.add_argument("--time-chunk", type=int, default=None, help="process lazily in time chunks")
    down.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    demo = sub.add_parser(
        "demo", help="downscale the shipped real-data sample offline; write data, plots, report"
    )
    demo.add_argument(
        "--out", default="flexdownscale-demo", help="output folder (default: flexdownscale-demo)"
    )
    demo.add_argument("--members", type=int, default=8, help="ensemble size (default: 8)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--case", action="append", default=None, help="run only this case (repeatable)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    ev = sub.add_parser("evaluate", help="metrics table and plots of a prediction vs the truth")
    ev.add_argument("prediction", help="downscaled file (netCDF or .zarr), with or without members")
    ev.add_argument("truth", help="fine-grid truth (netCDF or .zarr)")
    ev.add_argument("--out", required=True, help="folder for metrics.md, metrics.json and plots")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .errors import FlexDownscaleError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return _info_model(args.model) if args.model else _info_package()
        if args.command == "downscale":
            return _downscale(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "demo":
            from .demo import run_demo

            run_demo(
                args.out,
                members=args.members,
                seed=args.seed,
                progress=not args.quiet,
                cases=tuple(args.case) if args.case else None,
                log=None if args.quiet else print,
            )
            return 0
    except FlexDownscaleError as err:
        print(f"flexdownscale {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
