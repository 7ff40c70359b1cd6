"""Skill of the shipped models on their validation splits, against interpolation and other models.

For each case (``era5-t2m-x4``, ``kolmogorov-x8``) the validation split named in
``benchmarks/configs/<case>.toml`` is coarsened with the training operator (area mean), then
downscaled back by

- the shipped FLEX model: an ensemble (16 members, the model's default sampler) and its mean,
  plus the same model with other sampler settings (how calibration depends on the sampler);
- interpolation baselines: bilinear, bicubic and conservative;
- the comparison models of ``benchmarks/train_comparisons.py`` (other backbones and objectives
  trained on the same data with the same budget), when their runs exist under
  ``runs/compare/<case>``.

Every prediction is scored by :func:`flexdownscale.metrics.downscaling_skill` (RMSE, RFNE, CRPS
fair, spread-skill Fortin, log-spectral distance, spectral ratio at the smallest resolved
scales). Each case's results are saved to ``<out>/skill_<case>.json`` (with the command and
machine that produced them) and the report ``<out>/skill.md`` is written from every case saved
in that folder, with spectra, rank histograms and example panels (``<out>`` is ``--out``,
default ``benchmarks/results``, the reference reports). Run from the repository root (the data
are read from ``../shared/data``)::

    python benchmarks/skill.py                  # both cases, writes the report
    python benchmarks/skill.py --case era5-t2m-x4   # one case; the other keeps its saved results
    python benchmarks/skill.py --write-cards    # also writes the shipped models' card tables
    python benchmarks/skill.py --check-cards    # recompute the cards' numbers and compare
    python benchmarks/skill.py --fields 2 --members 4 --no-variants --out /tmp/skill  # a trial

Settings other than the reference's (``--fields`` other than the report's, ``--members`` other
than 16, ``--no-variants``) are refused into the default folder: pass ``--out DIR`` so that the
reference reports are not overwritten. ``--write-cards`` (which rewrites the model cards inside
the package) only goes with the default ``--out``; ``--check-cards`` writes nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import xarray as xr

from flexdownscale.config import SamplerConfig, TrainConfig, from_toml
from flexdownscale.data import degrade, normalize_grid
from flexdownscale.data.degrade import up
from flexdownscale.data.grid import grid_spec
from flexdownscale.hub import load_model_folder, shipped_models
from flexdownscale.metrics import SKILL_COLUMNS, downscaling_skill
from flexdownscale.pipeline import Downscaler
from flexdownscale.plot import plot_panels, plot_rank_histogram, plot_spectra

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _outputs import RESULTS, add_out_option, make_out_folder, positive_int
from train_comparisons import VARIANTS as COMPARISON_VARIANTS

ROOT = Path(__file__).resolve().parents[1]
CASES = ("era5-t2m-x4", "kolmogorov-x8")
BASELINES = ("bilinear", "bicubic", "conservative")
MEMBERS = 16
SEED = 0
#: Fields per case (per Reynolds number for Kolmogorov), evenly spaced in the validation split;
#: ``None``: all. A 256 x 256 field costs ~1 s per member and network call on one CPU core.
CASE_FIELDS: dict[str, int | None] = {"era5-t2m-x4": None, "kolmogorov-x8": 4}
#: Fields of the report tables (variants and comparison models cost up to 20 network calls per
#: member): ERA5 every 4th hour of the validation week.
REPORT_FIELDS: dict[str, int | None] = {"era5-t2m-x4": 42, "kolmogorov-x8": 4}
#: Cases on which the sampler variants run (they cost 10-20 network calls per member).
CASE_VARIANTS = ("era5-t2m-x4",)
#: How ``lsd`` and ``spectral_ratio_small`` are computed now (recorded in every saved case).
SPECTRAL_DEFINITION = (
    "FFT spectra on a doubly periodic grid (DCT elsewhere), averaged over the complete annuli "
    "only (wavenumbers up to the Nyquist wavenumber of the FFT, the highest complete one of the "
    "DCT)"
)
#: The definition of the reports saved before ``SPECTRAL_DEFINITION`` was recorded.
EARLIER_SPECTRAL_DEFINITION = (
    "DCT spectra on every grid, the periodic Kolmogorov box included; the LSD averaged over "
    "every bin, the partly filled corner bins beyond the Nyquist wavenumber included, and "
    "spectral_ratio_small over the wavenumbers in (0.75, 1] x Nyquist (the definitions before "
    "reviewer-126's findings)"
)
CARD_MARKER = "<!-- skill table: written by benchmarks/skill.py --write-cards -->"
CARD_END = "<!-- end of skill table -->"
#: Sampler settings tried on the shipped model besides its default (label -> settings).
SAMPLER_VARIANTS = {
    "ddim 20 steps": SamplerConfig(sampler="ddim", steps=20),
    "heun 10 steps (19 network calls)": SamplerConfig(sampler="heun", steps=10),
    "sde 10 steps, delta 1": SamplerConfig(sampler="sde", steps=10, delta=1.0),
}


def _config(case: str) -> TrainConfig:
    return from_toml(TrainConfig, ROOT / "benchmarks" / "configs" / f"{case}.toml")


def _data_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def validation_truth(case: str, fields: int | None = None) -> xr.Dataset:
    """The validation split of ``case`` on its fine grid (trimmed to whole coarse cells).

    ``fields`` keeps that many fields, evenly spaced (``None``: all).
    """
    config = _config(case)
    data = config.data
    var = data.variables[0]
    if case.startswith("era5"):
        with xr.open_dataset(_data_path(data.paths[0])) as ds:
            start, stop = data.validation
            fine = normalize_grid(ds[[var]].sel(time=slice(start, stop)).load())
        sample_dim = "time"
    else:
        parts = []
        for path in data.paths:
            with xr.open_dataset(_data_path(path)) as ds:
                re = float(ds.attrs["reynolds_number"])
                sel = ds[[var]].sel(trajectory=list(data.validation)).load()
            sel = sel.stack(sample=("trajectory", "time")).transpose("sample", ...)
            sel = sel.reset_index("sample").drop_vars(["trajectory", "time"])
            parts.append(sel.expand_dims(reynolds_number=[re]))
        fine = normalize_grid(xr.concat(parts, "reynolds_number"))
        # the concatenation keeps the first file's global reynolds_number (1000) for every
        # field: dropped, the coordinate holds each field's, passed as condition= by downscale
        fine.attrs.pop("reynolds_number", None)
        sample_dim = "sample"
    spec = grid_spec(fine[var])
    f = data.factor
    fine = fine.isel({spec.y: slice(0, spec.ny // f * f), spec.x: slice(0, spec.nx // f * f)})
    if fields is not None and fields < fine.sizes[sample_dim]:
        keep = np.unique(np.linspace(0, fine.sizes[sample_dim] - 1, fields).round().astype(int))
        fine = fine.isel({sample_dim: keep})
    return fine


def _coarse(case: str, fine: xr.Dataset) -> xr.Dataset:
    data = _config(case).data
    coarse = degrade(fine, data.factor, method=data.degradation)
    for v in data.variables:
        coarse[v].attrs = dict(fine[v].attrs)
    return coarse


#: Tiles per network call of the reports and cards (the CPU default when they were computed):
#: pinned, so that ``--check-cards`` reproduces them bit for bit whatever the default becomes
#: (outputs of other batch sizes agree to float32 rounding, docs/inference.md).
REPORT_BATCH = 8


def downscale(
    model: Downscaler, coarse: xr.Dataset, fine: xr.Dataset, *, members: int = MEMBERS
) -> xr.Dataset:
    """Ensemble on the truth's grid (the Reynolds number, where present, is the condition)."""
    spec = grid_spec(fine[model.variables[0]])
    if "reynolds_number" in coarse.dims:
        parts = []
        for re in coarse["reynolds_number"].values:
            one = coarse.sel(reynolds_number=re, drop=True).rename(sample="time")
            out = model(
                one,
                members=members,
                seed=SEED,
                condition=float(re),
                progress=False,
                batch_size=REPORT_BATCH,
            )
            parts.append(out.rename(time="sample").expand_dims(reynolds_number=[re]))
        ens = xr.concat(parts, "reynolds_number", combine_attrs="override")
    else:
        ens = model(coarse, members=members, seed=SEED, progress=False, batch_size=REPORT_BATCH)
    order = ("member", *fine[model.variables[0]].dims)
    return ens.assign_coords({d: fine[d] for d in (spec.y, spec.x)}).transpose(*order, ...)


def _baseline(case: str, coarse: xr.Dataset, fine: xr.Dataset, method: str) -> xr.Dataset:
    spec = grid_spec(fine)
    out = up(coarse, _config(case).data.factor, method=method)
    return out.assign_coords({d: fine[d] for d in (spec.y, spec.x)}).transpose(
        *fine[_config(case).data.variables[0]].dims, ...
    )


def _with_sampler(model: Downscaler, sampler: SamplerConfig) -> Downscaler:
    other = Downscaler.__new__(Downscaler)
    other.__dict__.update(model.__dict__)
    other.sampler = sampler
    return other


def _sampler_label(s: SamplerConfig) -> str:
    extra = {"ddim": f", eta {s.eta:g}", "sde": f", delta {s.delta:g}", "idff": ""}.get(
        s.sampler, ""
    )
    return f"{s.sampler} {s.steps} steps{extra}"


def evaluate_shipped(case: str, fine: xr.Dataset, members: int = MEMBERS) -> dict[str, Any]:
    """Skill of the shipped model with its default sampler (the model card's numbers)."""
    model = Downscaler.from_pretrained(case)
    var = model.variables[0]
    coarse = _coarse(case, fine)
    ens = downscale(model, coarse, fine, members=members)
    return {
        "model": model,
        "coarse": coarse,
        "ensemble": ens,
        "skill": downscaling_skill(ens[var], fine[var]),
        "mean_skill": downscaling_skill(ens[var].mean("member"), fine[var]),
    }


@functools.cache
def split_size(case: str) -> int:
    """Number of fields in the validation split of ``case`` (all of its times / samples); read
    once per case (the report and the card both say it)."""
    fine = validation_truth(case)
    var = _config(case).data.variables[0]
    return int(np.prod([fine.sizes[d] for d in fine[var].dims[:-2]]))


def fields_of_split(case: str, fields: int) -> str:
    """``"168 fields"`` for the whole split, ``"8 of its 48 fields, evenly spaced"`` for part."""
    total = split_size(case)
    if fields >= total:
        return f"{fields} fields"
    return f"{fields} of its {total} fields, evenly spaced"


def card_table(case: str, rows: dict[str, dict[str, float]], fields: int, members: int) -> str:
    """The markdown table written into a shipped model's card."""
    config = _config(case)
    cols = list(SKILL_COLUMNS)
    lines = [
        f"Validation split ({config.data.split_dim} {list(config.data.validation)}; "
        f"{fields_of_split(case, fields)}), {members} members, seed {SEED}; reproduce with "
        f"`python benchmarks/skill.py --check-cards`.",
        "",
        "| prediction | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.4g}"


def _card_rows(case: str, fine: xr.Dataset, shipped: dict[str, Any]) -> dict[str, dict]:
    var = shipped["model"].variables[0]
    label = _sampler_label(shipped["model"].sampler)
    rows = {
        f"FLEX ensemble ({label})": shipped["skill"],
        "FLEX ensemble mean": shipped["mean_skill"],
    }
    for method in BASELINES:
        base = _baseline(case, shipped["coarse"], fine, method)
        rows[f"{method} interpolation"] = downscaling_skill(base[var], fine[var])
    return rows


def card_for(case: str, fields: int | None = None, members: int = MEMBERS) -> str:
    """Recompute the card table of the shipped model ``case`` (what ``--check-cards`` compares)."""
    fine = validation_truth(case, fields)
    var = _config(case).data.variables[0]
    n_fields = int(np.prod([fine.sizes[d] for d in fine[var].dims[:-2]]))
    shipped = evaluate_shipped(case, fine, members)
    return card_table(case, _card_rows(case, fine, shipped), n_fields, members)


def _card_path(case: str) -> Path:
    return shipped_models()[case] / "README.md"


def write_card(case: str, table: str) -> None:
    path = _card_path(case)
    text = path.read_text()
    head, sep, rest = text.partition(CARD_MARKER)
    _, end, tail = rest.partition(CARD_END)
    if not sep or not end:
        raise SystemExit(f"{path} has no skill markers; re-ship it with benchmarks/ship_models.py")
    path.write_text(f"{head}{CARD_MARKER}\n\n{table}\n\n{CARD_END}{tail}")


def check_card(case: str, table: str) -> bool:
    text = _card_path(case).read_text()
    ok = table in text
    print(f"{case}: card numbers {'reproduced' if ok else 'DIFFER'}")
    if not ok:
        print(table)
    return ok


def _figures(
    case: str, fine: xr.Dataset, preds: dict[str, xr.DataArray], var: str, out: Path
) -> list[str]:
    """Spectra, rank histogram and panels of ``case`` saved in ``out``; their file names."""
    names = []
    spectra = {"truth": fine[var], **preds}
    fig = plot_spectra(spectra, reference="truth", title=f"{case}: validation power spectra")
    name = f"skill_{case}_spectra.png"
    fig.savefig(out / name, dpi=90)
    names.append(name)
    flex = next(iter(preds.values()))
    fig = plot_rank_histogram(flex, fine[var], title=f"{case}: FLEX rank histogram")
    name = f"skill_{case}_rank_histogram.png"
    fig.savefig(out / name, dpi=90)
    names.append(name)
    spec = grid_spec(fine[var])
    first = {d: 0 for d in fine[var].dims if d not in (spec.y, spec.x)}
    fig = plot_panels(
        None,
        fine[var].isel(first),
        flex.isel(first),
        n_members=3,
        cmap="RdBu_r" if var == "vorticity" else "viridis",
        title=f"{case}: first validation field",
    )
    name = f"skill_{case}_panels.png"
    fig.savefig(out / name, dpi=90)
    names.append(name)
    plt.close("all")
    return names


def run_case(
    case: str,
    *,
    fields: int | None,
    card_fields: int | None,
    members: int,
    variants: bool,
    out: Path = RESULTS,
) -> dict[str, Any]:
    """Every row of the report for ``case`` on ``fields`` fields, and the card table (on
    ``card_fields`` fields: recomputed when they differ); the figures go to ``out``."""
    t0 = time.perf_counter()
    fine = validation_truth(case, fields)
    var = _config(case).data.variables[0]
    n_fields = int(np.prod([fine.sizes[d] for d in fine[var].dims[:-2]]))
    shipped = evaluate_shipped(case, fine, members)
    seconds = {"FLEX (shipped, default sampler)": time.perf_counter() - t0}
    rows = _card_rows(case, fine, shipped)
    if card_fields == fields:
        card = card_table(case, rows, n_fields, members)
    else:
        card = card_for(case, card_fields, members)
    preds = {
        "FLEX members": shipped["ensemble"][var],
        "FLEX mean": shipped["ensemble"][var].mean("member"),
        "bicubic": _baseline(case, shipped["coarse"], fine, "bicubic")[var],
    }
    if variants:
        for label, sampler in SAMPLER_VARIANTS.items():
            t1 = time.perf_counter()
            model = _with_sampler(shipped["model"], sampler)
            ens = downscale(model, shipped["coarse"], fine, members=members)
            rows[f"FLEX ensemble ({label})"] = downscaling_skill(ens[var], fine[var])
            seconds[f"FLEX ({label})"] = time.perf_counter() - t1
    compare_root = ROOT / "runs" / "compare" / case
    for folder in sorted(compare_root.glob("*/model")) if compare_root.is_dir() else []:
        t1 = time.perf_counter()
        model = Downscaler.from_pretrained(folder)
        ens = downscale(model, shipped["coarse"], fine, members=members)
        steps = load_model_folder(folder).extra.get("train_steps", "?")
        label = f"{folder.parent.name}, {steps} steps ({_sampler_label(model.sampler)})"
        rows[label] = downscaling_skill(ens[var], fine[var])
        seconds[label] = time.perf_counter() - t1
    figures = _figures(case, fine, preds, var, out)
    return {
        "by_condition": _by_condition(case, fine, shipped),
        "machine": _machine(),
        "members": members,
        "shipped_steps": load_model_folder(shipped_models()[case]).extra.get("train_steps"),
        "rows": rows,
        "card": card,
        "figures": figures,
        "fields": n_fields,
        "units": str(fine[var].attrs.get("units", "")),
        "seconds": seconds,
        "total_seconds": time.perf_counter() - t0,
        "grid": f"{fine.sizes[grid_spec(fine[var]).y]} x {fine.sizes[grid_spec(fine[var]).x]}",
    }


def _by_condition(case: str, fine: xr.Dataset, shipped: dict[str, Any]) -> dict[str, dict]:
    """The shipped model and the interpolation baselines scored separately for each value of a
    condition dimension of the validation data (``reynolds_number``; none for ERA5)."""
    var = shipped["model"].variables[0]
    dims = [d for d in fine[var].dims[:-2] if d not in ("time", "sample")]
    preds = {f"FLEX ensemble ({_sampler_label(shipped['model'].sampler)})": shipped["ensemble"]}
    preds |= {f"{m} interpolation": _baseline(case, shipped["coarse"], fine, m) for m in BASELINES}
    out: dict[str, dict] = {}
    for dim in dims:
        for value in fine[dim].values:
            truth = fine[var].sel({dim: value})
            out[f"{dim} = {value:g}"] = {
                name: downscaling_skill(pred[var].sel({dim: value}), truth)
                for name, pred in preds.items()
            }
    return out


def _machine() -> str:
    device = "no GPU" if not torch.cuda.is_available() else torch.cuda.get_device_name()
    return (
        f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs), "
        f"torch {torch.__version__}, {device}"
    )


def _case_json(case: str, out: Path = RESULTS) -> Path:
    return out / f"skill_{case}.json"


def _is_comparison_row(label: str) -> bool:
    return label.split(",")[0] in COMPARISON_VARIANTS


def carry_saved_rows(case: str, result: dict[str, Any], out: Path = RESULTS) -> list[str]:
    """Keep the comparison rows of the saved ``skill_<case>.json`` that this run did not
    compute (their models are not under ``runs/compare/<case>`` here), with their sampling
    times, each marked in ``result["carried_rows"]`` with the spectral definition it was
    scored with (its labels, in the saved order)."""
    path = _case_json(case, out)
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    definition = saved.get("spectral_definition", EARLIER_SPECTRAL_DEFINITION)
    earlier = saved.get("carried_rows", {})
    carried = {}
    for label, row in saved.get("rows", {}).items():
        if label in result["rows"] or not _is_comparison_row(label):
            continue
        result["rows"][label] = row
        if label in saved.get("seconds", {}):
            result["seconds"][label] = saved["seconds"][label]
        carried[label] = earlier.get(label, {"definition": definition, "command": saved["command"]})
    result["carried_rows"] = carried
    return list(carried)


def save_case(case: str, result: dict[str, Any], command: str, out: Path = RESULTS) -> None:
    """Keep one case's results (without the card) for the report: cases can be rerun alone."""
    record = {k: v for k, v in result.items() if k != "card"} | {
        "command": command,
        "spectral_definition": SPECTRAL_DEFINITION,
    }
    _case_json(case, out).write_text(json.dumps(record, indent=1, default=str))


def _verdict(rows: dict[str, dict[str, float]], calibration: str) -> list[str]:
    """The acceptance checks of the shipped model, computed from the rows (``calibration``: the
    markdown link to the calibration report)."""
    flex = next(v for k, v in rows.items() if k.startswith("FLEX ensemble ("))
    base = {m: rows[f"{m} interpolation"] for m in BASELINES}

    def beats(col: str) -> str:
        margins = ", ".join(f"{m} {b[col]:.4g}" for m, b in base.items())
        ok = all(flex[col] < b[col] for b in base.values())
        return f"{'yes' if ok else 'NO'} ({flex[col]:.4g} against {margins})"

    ss = flex["spread_skill"]
    calibrated = "yes" if 0.8 <= ss <= 1.25 else "NO: under-dispersed" if ss < 0.8 else "NO"
    return [
        "Checks on the shipped model's default ensemble:",
        "",
        f"- beats every interpolation baseline on RMSE: {beats('rmse')}",
        f"- beats every interpolation baseline on log-spectral distance: {beats('lsd')}",
        f"- spread-skill ratio in [0.8, 1.25]: {calibrated} ({ss:.3g}; see the section "
        '"How calibrated is 2-step DDIM?" of docs/diffusion.md); the same weights sampled with '
        '`sampler="sde", steps=20` and the stored Langevin strength are inside the band: '
        f"{calibration}",
        "",
    ]


def _comparison_note(case: str, res: dict[str, Any]) -> list[str]:
    labels = [k for k in res["rows"] if k.split(",")[0] in COMPARISON_VARIANTS]
    if not labels:
        return []
    steps = sorted({k.split(", ")[1].split(" ")[0] for k in labels})
    steps_flag = f" --steps {steps[0]}" if len(steps) == 1 else ""
    return [
        "Comparison rows (other backbones and objectives): trained by "
        f"`python benchmarks/train_comparisons.py --case {case}{steps_flag}` from the shipped model's "
        f"config (`benchmarks/configs/{case}.toml`) with one change each, on the same data and "
        "for the same number of steps as each other (named in the row). That budget is smaller "
        f"than the shipped model's ({res.get('shipped_steps', '?')} steps), so compare them with "
        "the `flex-vp` row (FLEX at the same budget), not with the shipped row. Flow matching "
        "and IDFF sample with their own "
        "samplers (10 steps); the VP models with 2-step DDIM. All of them train with the shipped "
        'config\'s L1 loss (`loss = "l1"`), flow matching and IDFF included, although their '
        "velocity and score are conditional means, which an L2 loss fits (the default for those "
        "objectives when `loss` is not set); an L2 run of those two is not in this report.",
        "",
    ]


def _carried_note(case: str, res: dict[str, Any], carried: dict[str, dict[str, str]]) -> list[str]:
    """The note under a table on its spectral definition, and on rows kept from an earlier run
    (:func:`carry_saved_rows`)."""
    current = res.get("spectral_definition", EARLIER_SPECTRAL_DEFINITION)
    if not carried:
        return [f"`lsd` and `spectral_ratio_small`: {current}.", ""]
    by_run: dict[tuple[str, str], list[str]] = {}
    for label, where in carried.items():
        by_run.setdefault((where["command"], where["definition"]), []).append(label)
    lines = [f"`lsd` and `spectral_ratio_small`: {current}, except in the rows marked (*).", ""]
    for (command, definition), labels in by_run.items():
        lines += [
            f"(*) Not re-sampled in this run (the comparison models' runs are not under "
            f"`runs/compare/{case}` on this machine; retraining them is not part of a "
            f"re-scoring): {len(labels)} row(s) kept from the earlier `{command}`, their "
            "rmse, rfne, crps, spread_skill and sampling times as measured then, and their "
            f"`lsd` and `spectral_ratio_small` with its definition: {definition}. Those two "
            "columns are not comparable with the other rows'.",
            "",
        ]
    return lines


def write_report(out: Path = RESULTS) -> Path:
    """``out/skill.md`` from every case's results saved in ``out`` (``skill_<case>.json``); a
    case not run into ``out`` is named as missing."""
    cols = list(SKILL_COLUMNS)
    lines = [
        "# Skill of the shipped models on their validation splits",
        "",
        "What: each validation field is coarsened with the training operator (area mean), "
        "downscaled back, and compared with the original. Lower is better except "
        "`spread_skill` and `spectral_ratio_small` (1 is ideal). The data are in "
        "`../shared/data` (see its README); rerun a case with the command under its heading.",
        "",
    ]
    if (out / "calibration.md").is_file():
        calibration = "[calibration.md](calibration.md)"
    else:
        calibration = "`benchmarks/results/calibration.md` (`benchmarks/calibration.py`)"
    missing = [case for case in CASES if not _case_json(case, out).is_file()]
    if missing:
        lines += [
            f"Not in this report (no `skill_<case>.json` in its folder): {', '.join(missing)}; "
            "add one with `--case NAME` and the same `--out`.",
            "",
        ]
    for case in CASES:
        if case in missing:
            continue
        res = json.loads(_case_json(case, out).read_text())
        cfg = _config(case)
        lines += [
            f"## {case}",
            "",
            f"Produced by `{res['command']}` on {res['machine']}. Ensembles: "
            f"{res['members']} members, seed {SEED}.",
            "",
            f"Validation split: `{cfg.data.split_dim}` {list(cfg.data.validation)} of "
            f"{', '.join(Path(p).name for p in cfg.data.paths)}; "
            f"{fields_of_split(case, res['fields'])}, each of {res['grid']} fine cells; x{cfg.data.factor}. Units of rmse and crps: "
            f"{res['units'] or '1'}. Wall time {res['total_seconds']:.0f} s.",
            "",
            "| prediction | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        carried = res.get("carried_rows", {})
        for name, row in res["rows"].items():
            mark = " (*)" if name in carried else ""
            lines.append(f"| {name}{mark} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
        lines += ["", *_carried_note(case, res, carried)]
        lines += [
            "Sampling wall time on this machine (all fields, all members): "
            + "; ".join(
                f"{k} {v:.0f} s{' (*)' if k in carried else ''}" for k, v in res["seconds"].items()
            )
            + ".",
            "",
        ]
        lines += _verdict(res["rows"], calibration)
        for condition, rows in res.get("by_condition", {}).items():
            lines += [
                f"Shipped model and interpolation at {condition} alone:",
                "",
                "| prediction | " + " | ".join(cols) + " |",
                "|---|" + "---|" * len(cols),
            ]
            for name, row in rows.items():
                lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
            lines += [""]
        lines += _comparison_note(case, res)
        card_fields = CASE_FIELDS[case]
        if card_fields == REPORT_FIELDS[case]:
            where = "the same fields as this table"
        elif card_fields is None:
            where = "the full split"
        else:
            where = f"{card_fields} fields per file"
        lines += [
            f"The model card of `{case}` holds the shipped model's and the interpolation rows on "
            f"{where} (`flexdownscale info {case}`).",
            "",
        ]
        lines += [f"![{name}]({name})" for name in res["figures"]]
        lines += [""]
    lines += ["## Columns", ""]
    lines += [f"- `{k}`: {text}" for k, text in SKILL_COLUMNS.items()]
    lines += [""]
    path = out / "skill.md"
    path.write_text("\n".join(lines))
    return path


def non_reference_options(args: argparse.Namespace, cases: tuple[str, ...]) -> list[str]:
    """The options of a run on ``cases`` that differ from the reference reports' settings
    (empty: the run reproduces them)."""
    differ = []
    if any(args.fields not in (None, REPORT_FIELDS[case]) for case in cases):
        differ.append(f"--fields {args.fields}")
    if args.members != MEMBERS:
        differ.append(f"--members {args.members}")
    if args.no_variants and any(case in CASE_VARIANTS for case in cases):
        differ.append("--no-variants")
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Settings other than the reference's (--fields, --members, --no-variants) need "
        "--out DIR: the default folder holds the reference reports.",
    )
    parser.add_argument("--case", action="append", choices=CASES, default=None)
    parser.add_argument(
        "--fields",
        type=positive_int,
        default=None,
        help="fields per case (default: REPORT_FIELDS; the cards: CASE_FIELDS)",
    )
    parser.add_argument("--members", type=positive_int, default=MEMBERS)
    parser.add_argument("--no-variants", action="store_true", help="skip the sampler variants")
    add_out_option(parser, "the report, its JSON and figures")
    parser.add_argument(
        "--write-cards",
        action="store_true",
        help="also rewrite the shipped models' card tables (only with the default --out)",
    )
    parser.add_argument(
        "--check-cards", action="store_true", help="only recompute the cards (writes nothing)"
    )
    args = parser.parse_args(argv)
    cases = tuple(args.case or CASES)
    command = "python benchmarks/skill.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.check_cards:
        ok = True
        for case in cases:
            ok &= check_card(case, card_for(case, args.fields or CASE_FIELDS[case], args.members))
        return 0 if ok else 1
    out = args.out
    default_out = out.resolve() == RESULTS.resolve()
    if args.write_cards and not default_out:
        parser.error(
            "--write-cards rewrites the shipped models' cards from the reference run; "
            "leave out --out (or --write-cards)"
        )
    differ = non_reference_options(args, cases)
    if default_out and differ:
        parser.error(
            f"settings other than the reference reports' ({', '.join(differ)}) would overwrite "
            "them in benchmarks/results; pass --out DIR to write this run elsewhere"
        )
    make_out_folder(parser, out)
    results = {}
    for case in cases:
        results[case] = run_case(
            case,
            fields=args.fields or REPORT_FIELDS[case],
            card_fields=CASE_FIELDS[case],
            members=args.members,
            variants=not args.no_variants and case in CASE_VARIANTS,
            out=out,
        )
        print(f"{case}: {results[case]['total_seconds']:.0f} s")
        for name, row in results[case]["rows"].items():
            print(f"  {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items()))
        kept = carry_saved_rows(case, results[case], out)
        if kept:
            print(f"  kept from the saved report (not re-sampled): {', '.join(kept)}")
        save_case(case, results[case], command.strip(), out)
        if args.write_cards:
            write_card(case, results[case]["card"])
    print(f"wrote {write_report(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
