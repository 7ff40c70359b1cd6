"""Copy a trained model into the package as a shipped model (bf16 weights, model card).

Reads the EMA model folder that training exported (``runs/<name>/model``), casts the weights to
bfloat16 (the loader computes in float32) and writes ``flexdownscale/_data/models/<name>`` with a
model card. The card's validation table is filled by ``benchmarks/skill.py --write-cards`` (the
numbers a user can reproduce with ``python benchmarks/skill.py --check-cards``). Run from the
repository root::

    python benchmarks/ship_models.py era5-t2m-x4 --machine "2-core CPU" --wall-minutes 40

The card's batch size, steps and precision are the run's own (``runs/<name>/config.toml``,
``launches.jsonl``; ``--run`` names another run folder, such as ``runs/gpu/<name>``), and a run
that ``benchmarks/gpu/run.sh`` trained fills ``--machine``, ``--wall-minutes`` and ``--history``
from its ``launches.jsonl`` and ``gpu_run.txt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import torch

from flexdownscale.config import TrainConfig, from_toml
from flexdownscale.data.datasets import from_config
from flexdownscale.diffusion import build_objective
from flexdownscale.hub import load_model_folder, save_model_folder
from flexdownscale.models import build_model, export_state_dict

SHIPPED = Path("flexdownscale/_data/models")
SKILL_MARKER = "<!-- skill table: written by benchmarks/skill.py --write-cards -->"
SKILL_END = "<!-- end of skill table -->"

DATA_TEXT = {
    "era5-t2m-x4": (
        "ERA5 reanalysis 2 m temperature `t2m` (K) over the British Isles (58N-50N, 10W-2E), "
        "hourly, March 2019, 0.25 degree (Copernicus Climate Change Service; contains modified "
        "Copernicus information). Coarse input: the area mean over 4 x 4 cells (1 degree)."
    ),
    "kolmogorov-x8": (
        "2-D forced turbulence (Kolmogorov flow, Kochkov et al. 2021) simulated with jax-cfd at "
        "Re = 1000 and Re = 4000, vorticity on 256 x 256 points of [0, 2 pi)^2. Coarse input: the "
        "area mean over 8 x 8 cells (32 x 32). The network is conditioned on Re / 40000 "
        "(`condition=`, or read from the input as training read it: a scalar `reynolds_number` "
        "coordinate or variable, as `ds.sel(reynolds_number=4000.0)` leaves it, before the "
        "input's `reynolds_number` attribute; when they disagree a warning names both)."
    ),
}


LIMITS_TEXT = {
    "kolmogorov-x8": (
        "Know the regime you are in. Scored per Reynolds number (the table's fields, 4 per "
        "Reynolds number, and members; `benchmarks/results/skill.md`), the model is better than "
        "interpolation at Re=4000 on every score (RMSE 1.23 against conservative 1.51, "
        "log-spectral distance 5.7 against 9.3), but at Re=1000 alone its 2-step default's "
        "spectrum is worse than conservative interpolation's (log-spectral distance 12.6 "
        "against 10.9; small-scale power 311 times the truth's, against 83 times for "
        "conservative interpolation): it adds small-scale vorticity that the smoother Re=1000 "
        "fields lack, although its RMSE stays lower (0.65 against 1.03). Over the table's 8 "
        "fields (of the split's 48) its log-spectral distance is below conservative "
        "interpolation's (4.9 against 7.9): the pooled spectra's small scales are those of the "
        "Re=4000 fields, far stronger than Re=1000's, which hides the Re=1000 deficit. At "
        "Re=1000 sample with `steps=10`: on the same 4 Re=1000 fields (16 members, seed 0) 10 "
        "DDIM steps gave a log-spectral distance of 8.8 against conservative interpolation's "
        "10.9 and the default's 12.6 (small-scale power 68 times the truth's), RMSE 0.64 and "
        "spread-skill 0.86, for 5 times the network evaluations (other step counts not tried; "
        "`benchmarks/results/calibration.md`); on the 4 Re=4000 fields 10 steps did not hurt "
        "(log-spectral distance 4.6 against the default's 5.7, fair CRPS 0.615 against 0.657, "
        "spread-skill 0.72 against 0.47, RMSE 1.22 against 1.23; helper-140, on the 2-core "
        "CPU). How much these numbers move: another sampling "
        "seed changes the log-spectral distances by at most 0.02 dB and the RMSE by about 0.002 "
        "(3 seeds), while the choice of fields matters more: single Re=1000 fields range over "
        "about +-1 dB, and other subsets of the validation split shift the pooled log-spectral "
        "distance by up to 0.35 dB (reviewer-136, session 36, on the project's 2-core CPU)."
    ),
}

#: How the 2-step default compares with interpolation, where it is not "better on both".
DEFAULT_SKILL_TEXT = {
    "kolmogorov-x8": (
        "beats interpolation on RMSE (its log-spectral distance over the table's fields is "
        "below conservative interpolation's: better at Re=4000, worse at Re=1000)"
    ),
}

#: What the calibrated setting (20 SDE steps, the stored Langevin strength) measured on the
#: validation fields (benchmarks/results/calibration.md, 2-core CPU).
CALIBRATION_TEXT = {
    "era5-t2m-x4": (
        "spread-skill 0.89, fair CRPS 0.112 K against 0.123 K for the default, RMSE 0.230 K, "
        "log-spectral distance 0.68 dB (conservative interpolation 6.3 dB), measured on 42 of the "
        "168 validation fields above (evenly spaced in time, 16 members: the calibration "
        "report's subset, on which the default's scores differ slightly from the table's; the "
        "strength was chosen on those same 42 fields, so these numbers are in-sample for it, "
        "and there is no test split: every number here is on the validation week. On 21 other "
        "hours of that week, 16 members, it gave spread-skill 0.90, fair CRPS 0.110 K against "
        "0.120 K for the default and log-spectral distance 0.69 dB against conservative "
        "interpolation's 6.37 dB, reviewer-136, session 36: a weak check, as they are the "
        "hourly neighbours of the 42)"
    ),
    "kolmogorov-x8": (
        "spread-skill 0.94 on 8 validation fields (8 members; the strength was chosen on these "
        "same fields, so the numbers are in-sample for it), fair CRPS 0.462 against 0.491 "
        "for the default, RMSE 1.01, log-spectral distance 6.6 (conservative interpolation 8.4, "
        "the default 8.5; at Re = 1000 alone 26.6 against conservative interpolation's 16.7; "
        "these four log-spectral distances were scored with the earlier definition, DCT spectra "
        "over every bin, not the table's FFT over the complete annuli, and are not re-measured; "
        "delta 1 scored 8.2, a tie with conservative interpolation within the 0.35 dB the "
        "choice of fields moves it)"
    ),
}


def calibration_text(name: str, delta: float) -> str:
    """The card's paragraph on ensemble calibration (wrapped)."""
    measured = CALIBRATION_TEXT.get(name)
    setting = (
        'For calibrated ensembles sample with `sampler="sde", steps=20`, which uses the Langevin '
        f"strength stored with this model (delta {delta:g})"
        + (
            f": {measured}, for 10 times the network evaluations (20 instead of 2). "
            if measured
            else ". "
        )
    )
    skill = DEFAULT_SKILL_TEXT.get(
        name,
        "beats interpolation on RMSE and, over the validation split, on the log-spectral distance",
    )
    return textwrap.fill(
        f"The 2-step DDIM default is fast and {skill}, but its ensembles are under-dispersed: "
        "two deterministic steps give an exact network a spread-skill ratio of at most 0.5 and "
        "a trained one stays near that (calibrated: 0.8-1.25), so read their spread as a lower "
        "bound of the uncertainty. "
        + setting
        + 'See the "How calibrated is 2-step DDIM?" section of the generative-engine docs and '
        "`benchmarks/results/calibration.md`.",
        width=96,
        break_on_hyphens=False,
    )


#: The card's sentence on what the model is, by the device type the run recorded.
SCOPE_TEXT = {
    "cpu": "This is a small model trained on a small machine",
    "cuda": "This is a small model trained briefly on one GPU",
}


def card_text(
    name: str,
    config: TrainConfig,
    extra: dict,
    machine: str,
    minutes: float,
    history: str,
    *,
    model_folder: Path | None = None,
    device_type: str = "cpu",
    precision: str = "no",
) -> str:
    """The shipped model's card (its skill table left empty for ``skill.py --write-cards``).

    Parameters
    ----------
    name
        The shipped name (``benchmarks/configs/<name>.toml`` is the case's config).
    config
        The configuration the run trained with (its run folder's ``config.toml``): the card's
        batch size, precision and optimiser come from it.
    extra
        The exported model's ``extra`` (``train_steps``, ``train_samples``).
    machine, minutes, history
        Where it trained, its wall time and how the run went, for the card.
    model_folder
        The exported model folder whose parameters are counted (default
        ``runs/<name>/model``).
    device_type
        The device type the run's ``launches.jsonl`` recorded (``"cpu"``, ``"cuda"``): it picks
        the sentence on what the model is.
    precision
        The mixed precision the run's ``launches.jsonl`` recorded (``"no"``: float32, which the
        card leaves unsaid; ``"bf16"``, ``"fp16"``).
    """
    data = config.data
    folder = Path("runs") / name / "model" if model_folder is None else model_folder
    precision = "" if precision in ("no", "fp32") else f", {precision} mixed precision"
    scope = SCOPE_TEXT.get(device_type, f"This is a small model trained on a {device_type}")
    data_licence = (
        " (ERA5: Copernicus\nlicence, attribution above)"
        if "ERA5" in DATA_TEXT.get(name, "")
        else ""
    )
    params = sum(t.numel() for t in load_model_folder(folder).state_dict.values())
    return f"""# {name}

FLEX ({config.model.preset} preset, {params / 1e6:.2f} M parameters), variance-preserving
diffusion with the v target ({build_objective(config.diffusion).loss_kind.upper()} loss), trained to super-resolve
{", ".join(data.variables)} by x{data.factor}. Default sampler: {config.sampler.sampler} with
{config.sampler.steps} steps. Weights: the EMA (decay {config.optim.ema_decay}) in bfloat16.

## Use

```python
import flexdownscale
from flexdownscale import Downscaler

fine = Downscaler.from_pretrained("{name}")(coarse, members=16)
# or, picking the shipped model from the variables and the factor:
fine = coarse.flex.downscale(factor={data.factor}, members=16)
```

## Data

{DATA_TEXT.get(name, "")}

- files: {", ".join(Path(p).name for p in data.paths)}
- split along `{data.split_dim}`: train {list(data.train)}, validation {list(data.validation)}
- random crops of {data.crop_size} x {data.crop_size} fine cells; upsampling of the coarse
  field (the residual's base): {data.upsample}

## Training

- {extra.get("train_steps")} optimiser steps, {extra.get("train_samples")} samples, batch
  {config.batch_size}{precision}, {config.optim.optimizer} lr {config.optim.lr} (warm-up
  {config.optim.warmup_steps} steps, cosine)
- cost: about {minutes:.0f} minutes on {machine}
- config: `benchmarks/configs/{name}.toml`; command:
  `python -m flexdownscale.train --config benchmarks/configs/{name}.toml`
{f"- how this run went: {history}" if history else ""}

{scope}: it is the package's offline default and a
demonstration, not a production model. Larger presets train with the same config
(`model.preset=small`, on a GPU) and load from a folder or a Hugging Face Hub id.

## Validation skill

{SKILL_MARKER}
{SKILL_END}

{card_prose(name, config.sampler.delta)}

## Licence

Weights: MIT, like the code. The training data keep their own licences{data_licence}.
"""


def card_prose(name: str, delta: float) -> str:
    """The paragraphs after the skill table: limits (if any) and calibration."""
    limits = (
        textwrap.fill(LIMITS_TEXT[name], width=96, break_on_hyphens=False) + "\n\n"
        if name in LIMITS_TEXT
        else ""
    )
    return limits + calibration_text(name, delta)


def refresh_card_prose(name: str) -> Path:
    """Rewrite the prose after a shipped card's skill table from LIMITS_TEXT and
    CALIBRATION_TEXT, leaving the weights, the table and everything else as they are (after
    the reports those paragraphs quote were rerun). The card is not checksummed."""
    card = SHIPPED / name / "README.md"
    text = card.read_text(encoding="utf-8")
    start = text.index(SKILL_END) + len(SKILL_END)
    end = text.index("\n## Licence")
    delta = load_model_folder(SHIPPED / name).sampler.delta
    card.write_text(
        text[:start] + "\n\n" + card_prose(name, delta) + "\n" + text[end:], encoding="utf-8"
    )
    return card


def bf16_weights(folder) -> dict[str, torch.Tensor]:
    """The folder's weights in bfloat16, the time embeddings' frequencies kept float32."""
    model = build_model(folder.model)
    model.load_state_dict(dict(folder.state_dict))
    return export_state_dict(model, torch.bfloat16)


def run_config(run: Path, name: str) -> TrainConfig:
    """The configuration the run trained with: its folder's ``config.toml`` (batch size, steps,
    precision as launched), else ``benchmarks/configs/<name>.toml`` for a run folder that holds
    only ``model/``."""
    own = run / "config.toml"
    return from_toml(
        TrainConfig, own if own.is_file() else Path("benchmarks/configs") / f"{name}.toml"
    )


def run_record(run: Path) -> dict[str, str | float]:
    """What the run recorded about where and how long it trained.

    Returns
    -------
    dict
        ``device_type``, ``device`` and ``precision`` from the last line of ``launches.jsonl``
        (absent: ``"cpu"``, no device, ``"no"``), and ``wall_minutes`` and ``command`` from the
        ``gpu_run.txt`` that ``benchmarks/gpu/run.sh`` writes, where there is one.
    """
    record: dict[str, str | float] = {"device_type": "cpu", "precision": "no"}
    launches = run / "launches.jsonl"
    if launches.is_file():
        lines = launches.read_text(encoding="utf-8").splitlines()
        last = json.loads(lines[-1]) if lines else {}
        for key in ("device_type", "device", "precision"):
            if last.get(key):
                record[key] = str(last[key])
    gpu_run = run / "gpu_run.txt"
    if gpu_run.is_file():
        for line in gpu_run.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(": ")
            if key == "wall_seconds":
                record["wall_minutes"] = float(value) / 60
            elif key == "command":
                record["command"] = value
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="shipped name: the model of --run is shipped as <name>")
    parser.add_argument(
        "--run",
        type=Path,
        help="the run folder (default runs/<name>); its config.toml, launches.jsonl and "
        "gpu_run.txt fill the card",
    )
    parser.add_argument(
        "--machine",
        help="where it was trained, for the card (default: the device the run recorded)",
    )
    parser.add_argument(
        "--wall-minutes",
        type=float,
        help="training wall time (default: wall_seconds / 60 of the run's gpu_run.txt)",
    )
    parser.add_argument(
        "--history",
        default=None,
        help="how the run went (resumes, overrides; default: the command in gpu_run.txt)",
    )
    parser.add_argument(
        "--refresh-prose",
        action="store_true",
        help="only rewrite the shipped card's paragraphs after the skill table",
    )
    args = parser.parse_args(argv)
    if args.refresh_prose:
        print(f"rewrote {refresh_card_prose(args.name)}")
        return 0
    run = Path("runs") / args.name if args.run is None else args.run
    recorded = run_record(run)
    machine = args.machine if args.machine is not None else recorded.get("device")
    minutes = args.wall_minutes if args.wall_minutes is not None else recorded.get("wall_minutes")
    history = args.history if args.history is not None else str(recorded.get("command", ""))
    if machine is None or minutes is None:
        parser.error(
            f"--machine and --wall-minutes are required to ship a model ({run} records no "
            "device in launches.jsonl or no wall_seconds in gpu_run.txt)"
        )
    args.machine, args.wall_minutes, args.history = str(machine), float(minutes), history
    source = run / "model"
    folder = load_model_folder(source)
    config = run_config(run, args.name)
    extra = dict(folder.extra)
    extra.update({"machine": args.machine, "train_wall_minutes": args.wall_minutes})
    if args.history:
        extra["train_history"] = args.history
    condition = dict(folder.condition) if folder.condition is not None else None
    if condition is not None and "range" not in condition:
        # runs exported before the range was recorded: the training split's values
        seen = from_config(config.data, "train", normalizer=None).condition_range()
        if seen is not None:
            condition["range"] = list(seen)
    target = save_model_folder(
        SHIPPED / args.name,
        state_dict=bf16_weights(folder),
        model=folder.model,
        diffusion=folder.diffusion,
        sampler=folder.sampler,
        variables=folder.variables,
        units=folder.units,
        factor=folder.factor,
        normalization=folder.normalization,
        grid=folder.grid,
        card=card_text(
            args.name,
            config,
            extra,
            args.machine,
            args.wall_minutes,
            args.history,
            model_folder=source,
            device_type=str(recorded["device_type"]),
            precision=str(recorded["precision"]),
        ),
        task=folder.task,
        condition=condition,
        extra=extra,
        overwrite=True,
    )
    size = sum(p.stat().st_size for p in target.iterdir())
    print(f"shipped {source} as {target} ({size / 1e6:.2f} MB)")
    print(json.dumps(extra.get("validation", {}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
