"""Train the comparison models of ``benchmarks/skill.py`` with one data set and one budget.

Every run starts from a shipped model's config (``benchmarks/configs/<case>.toml``) and changes
only the backbone or the objective (and its sampler), plus the budget, so that the skill report
compares like with like. Runs go to ``runs/compare/<case>/<name>`` and end with an exported EMA
model folder ``.../model``; a finished run is skipped. Run from the repository root::

    python benchmarks/train_comparisons.py --case era5-t2m-x4 --steps 600

The exact command of every run is printed and appended to ``runs/compare/<case>/commands.txt``.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

#: name -> overrides of the case's config (the backbone or the objective with its sampler).
VARIANTS: dict[str, list[str]] = {
    "flex-vp": [],
    "unet-vp": ["model.backbone=unet"],
    "uvit-vp": ["model.backbone=uvit"],
    "dit-vp": ["model.backbone=dit"],
    "flex-flow-euler": ["diffusion.objective=flow", "sampler.sampler=euler", "sampler.steps=10"],
    "flex-cpn-sde": [
        "diffusion.objective=flow",
        "diffusion.base=coarse_plus_noise",
        "sampler.sampler=sde",
        "sampler.steps=10",
        "sampler.delta=0.2",
    ],
    "flex-idff": ["diffusion.objective=idff", "sampler.sampler=idff", "sampler.steps=10"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="era5-t2m-x4", help="config name in benchmarks/configs")
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps of every run")
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        choices=list(VARIANTS),
        help="run only this variant (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    config = Path("benchmarks/configs") / f"{args.case}.toml"
    root = Path("runs/compare") / args.case
    root.mkdir(parents=True, exist_ok=True)
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        run_dir = root / name
        if (run_dir / "model" / "config.json").is_file():
            print(f"{name}: done already ({run_dir / 'model'})")
            continue
        budget = [
            f"steps={args.steps}",
            f"run_dir={run_dir}",
            f"eval_every={args.steps}",
            f"checkpoint_every={args.steps}",
            "total_limit=1",
            "plot_every=1000",
            # the end-of-run validation only logs; benchmarks/skill.py scores the models
            "eval_fields=4",
            "eval_members=4",
        ]
        command = [
            sys.executable,
            "-m",
            "flexdownscale.train",
            "--config",
            str(config),
            *budget,
            *overrides,
        ]
        if any((run_dir / "checkpoints").glob("step_*/STATE_COMPLETE")):
            command.insert(5, "--resume")
        elif run_dir.exists():
            shutil.rmtree(run_dir)  # a run killed before its first state: start it again
        line = shlex.join(command)
        print(line, flush=True)
        with open(root / "commands.txt", "a") as log:
            log.write(line + "\n")
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
