"""The ``flexdownscale`` command line.

``flexdownscale info`` prints the version, every backbone and preset with its super-resolution
parameter count, the regridding backends found and the compute device; ``flexdownscale info MODEL``
describes a model folder (variables, factor, grid, training data and skill from its model card).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence

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

    from . import __version__
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``flexdownscale`` command."""
    parser = argparse.ArgumentParser(
        prog="flexdownscale",
        description="Downscale climate and physics fields with FLEX diffusion models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="package, backbones, backends and device; or a model's card")
    info.add_argument("model", nargs="?", help="a model folder, shipped model name or Hub id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from .errors import FlexDownscaleError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            return _info_model(args.model) if args.model else _info_package()
    except FlexDownscaleError as err:
        print(f"flexdownscale {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
