"""``flexdownscale demo``: downscale the shipped real-data sample offline and show the evidence.

The demo needs nothing but the installed package: it reads the small sample under
``flexdownscale/_data/samples`` (four ERA5 hours and two Kolmogorov-flow snapshots from the
validation splits of the shipped models), coarsens each field with the operator its model was
trained on, downscales the coarse field with an ensemble from the shipped model (picked by
``ds.flex.downscale`` from the variables and the factor), scores the ensemble and the
interpolation baselines against the truth, and writes into one output folder:

- ``<case>.nc``: truth, coarse input, ensemble members and bilinear/bicubic baselines;
- ``<case>_panels.png``: coarse / truth / members / mean / spread / error;
- ``<case>_spectra.png``: power spectra of truth, ensemble and baselines, with their ratios
  (the FFT on a doubly periodic domain, the DCT on a limited area);
- ``report.md``: the skill table of every case and what each number means.

A case with physical conditions (Kolmogorov flow at two Reynolds numbers) gets one panel and
one spectrum figure per condition, ``<case>_panels_<i>.png`` and ``<case>_spectra_<i>.png``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._inputs import netcdf_lock, open_netcdf
from ._links import REPOSITORY as _REPOSITORY
from ._output import (
    files_in_the_way,
    progress_bar,
    unwritable_folder,
    write_atomically,
    write_figure,
    write_text_atomically,
)
from .data.degrade import degrade, up
from .data.grid import grid_spec, normalize_grid
from .errors import ConfigError
from .provenance import concat_outputs

__all__ = ["SAMPLES", "DemoCase", "DemoResult", "open_sample", "run_demo"]

DEFAULT_OUTPUT = "flexdownscale-demo"
BASELINES = ("bilinear", "bicubic")


@dataclass(frozen=True)
class DemoCase:
    """One demo case: a sample field, how to coarsen it and which shipped model to use.

    Attributes
    ----------
    name : str
        Name of the case (``"era5_t2m_x4"``); the files it writes start with it.
    title : str
        One-line description: the heading of its section of ``report.md`` and the title of its
        panel figures.
    sample : str
        The sample it reads, a key of :data:`SAMPLES`.
    variable : str
        The sample's variable that is coarsened and downscaled.
    factor : int
        Coarsening (and downscaling) factor.
    model : str
        The shipped model the case is expected to use (named in the report and the spectrum
        figure; the model that runs is the one ``ds.flex.downscale`` picks for the variable and
        the factor).
    condition_dim : str, optional
        Dimension along which the sample holds one field per physical condition (e.g.
        ``"reynolds_number"``): each field is downscaled with its coordinate value as the
        condition. Default None: an unconditioned model.
    crop : tuple of (int, int), optional
        ``(ny, nx)``: keep the first ``ny`` by ``nx`` fine cells of the normalized grid, a
        multiple of 16 (the fine grid the model produces). Default None: the whole field.
    """

    name: str
    title: str
    sample: str  # a key of SAMPLES
    variable: str
    factor: int
    model: str
    condition_dim: str | None = None
    crop: tuple[int, int] | None = None


CASES = (
    DemoCase(
        name="era5_t2m_x4",
        title="ERA5 2 m temperature, British Isles, 1 deg -> 0.25 deg (x4)",
        sample="era5_t2m_uk",
        variable="t2m",
        factor=4,
        model="era5-t2m-x4",
        crop=(32, 48),
    ),
    DemoCase(
        name="kolmogorov_x8",
        title="2-D Kolmogorov-flow vorticity at Re = 1000 and 4000, 32^2 -> 256^2 (x8)",
        sample="kolmogorov",
        variable="vorticity",
        factor=8,
        model="kolmogorov-x8",
        condition_dim="reynolds_number",
    ),
)


@dataclass
class DemoResult:
    """What the demo wrote and measured.

    Attributes
    ----------
    output : pathlib.Path
        The output folder.
    skill : dict
        ``{case name: {prediction: {column: value}}}``: for each case the rows of its skill
        table (the FLEX ensemble, a single member and each interpolation baseline), each with
        the entries of :data:`~flexdownscale.metrics.SKILL_COLUMNS`. Default: empty.
    files : list of pathlib.Path
        Every file written (figures, netCDF files, ``report.md`` last). Default: empty.
    seconds : float
        Wall time of the whole demo in seconds. Default 0.0.
    """

    output: Path
    skill: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


SAMPLES = {
    "era5_t2m_uk": "era5_t2m_uk_sample.nc",
    "kolmogorov": "kolmogorov_sample.nc",
}
"""The real-data samples that ship with the package: name -> file under ``_data/samples``."""


def open_sample(name: str) -> xr.Dataset:
    """One of the real-data samples that ship with the package, loaded into memory.

    Works offline; the tutorials and the demo use them. Both come from the validation splits
    of the shipped models, so the models never saw them in training.

    Parameters
    ----------
    name
        ``"era5_t2m_uk"``: ERA5 2 m temperature ``t2m`` (K) over the British Isles at 0.25
        degree, four 6-hourly fields of 20 March 2019 (00 to 18 UTC), dims (time: 4,
        latitude: 33, longitude: 49), latitude descending as in the ERA5 files. ``"kolmogorov"``: 2-D Kolmogorov-flow
        ``vorticity`` on the doubly periodic [0, 2 pi)^2 at 256 x 256, one snapshot at each
        Reynolds number, dims (reynolds_number: 2, x: 256, y: 256).

    Returns
    -------
    xarray.Dataset
        The file's variables, coordinates and attributes (a copy: changing it changes no file).

    Raises
    ------
    ConfigError
        ``name`` is not one of :data:`SAMPLES`.

    Examples
    --------
    >>> ds = open_sample("era5_t2m_uk")
    >>> dict(ds.sizes)
    {'time': 4, 'latitude': 33, 'longitude': 49}
    """
    if name not in SAMPLES:
        raise ConfigError(f"no sample named {name!r}; the samples are {sorted(SAMPLES)}")
    path = Path(str(resources.files("flexdownscale") / "_data" / "samples" / SAMPLES[name]))
    # netCDF / HDF5 are not thread-safe: one lock around the open, the load and the close
    with netcdf_lock(), open_netcdf(path) as ds:
        return ds.load()


def load_case(case: DemoCase) -> xr.Dataset:
    """The sample of ``case`` at full resolution, on a normalized grid, cropped to a multiple
    of 16 fine cells (the fine grid the model produces)."""
    fine = normalize_grid(open_sample(case.sample)[[case.variable]])
    spec = grid_spec(fine)
    if case.crop is not None:
        fine = fine.isel({spec.y: slice(0, case.crop[0]), spec.x: slice(0, case.crop[1])})
    return fine


def _downscale_case(
    case: DemoCase, fine: xr.Dataset, *, members: int, seed: int
) -> tuple[xr.Dataset, xr.Dataset, dict[str, xr.Dataset]]:
    """(coarse input, ensemble, baselines) on the fine grid of ``fine``."""
    coarse = degrade(fine, case.factor)
    coarse[case.variable].attrs = dict(fine[case.variable].attrs)
    # no model named: the accessor picks the shipped model for this variable and factor
    if case.condition_dim is None:
        ens = coarse.flex.downscale(factor=case.factor, members=members, seed=seed)
    else:
        parts = []
        for value in coarse[case.condition_dim].values:
            one = coarse.sel({case.condition_dim: value}).drop_vars(case.condition_dim)
            out = one.flex.downscale(
                factor=case.factor, members=members, seed=seed, condition=float(value)
            )
            parts.append(out.expand_dims({case.condition_dim: [value]}))
        ens = concat_outputs(parts, case.condition_dim)
    spec = grid_spec(fine)
    baselines = {m: up(coarse, case.factor, method=m) for m in BASELINES}
    # the refined grid equals the truth's up to rounding: use the truth's coordinates
    exact = {d: fine[d] for d in (spec.y, spec.x)}
    ens = ens.assign_coords(exact)
    baselines = {k: v.assign_coords(exact) for k, v in baselines.items()}
    return coarse, ens, baselines


def _score(
    case: DemoCase, fine: xr.Dataset, ens: xr.Dataset, baselines: dict[str, xr.Dataset]
) -> dict[str, dict[str, float]]:
    from .metrics import downscaling_skill

    v = case.variable
    truth = fine[v]
    rows = {
        f"FLEX ensemble ({ens.sizes['member']} members)": downscaling_skill(ens[v], truth),
        "FLEX single member": downscaling_skill(ens[v].isel(member=0, drop=True), truth),
    }
    for name, base in baselines.items():
        rows[f"{name} interpolation"] = downscaling_skill(base[v].transpose(*truth.dims), truth)
    return rows


def _plots(
    case: DemoCase,
    fine: xr.Dataset,
    coarse: xr.Dataset,
    ens: xr.Dataset,
    baselines: dict[str, xr.Dataset],
    out: Path,
) -> list[Path]:
    """The panel and spectrum figures of ``case``: one of each per physical condition (each
    Reynolds number on its own: pooled, one's small scales would hide the other's), one of
    each for an unconditioned case (its first time step for the panels, every time step
    averaged for the spectra)."""
    from .plot import plot_panels, plot_spectra

    v = case.variable
    written = []
    panel_dim = case.condition_dim or grid_spec(fine).time or "time"
    n_panels = fine.sizes.get(panel_dim, 1)
    for i in range(n_panels):
        label = "" if n_panels == 1 or case.condition_dim is None else f"_{i}"
        sel = {panel_dim: i} if panel_dim in fine.dims else {}
        what = ""
        if panel_dim in fine.coords and sel:
            value = fine[panel_dim].values[i]
            if np.issubdtype(np.asarray(value).dtype, np.datetime64):
                value = np.datetime_as_string(value, unit="m")
            what = (
                f"{panel_dim} = {value:g}" if isinstance(value, float) else f"{panel_dim} = {value}"
            )
        fig = plot_panels(
            coarse[v].isel(sel),
            fine[v].isel(sel),
            ens[v].isel(sel),
            n_members=3,
            cmap="RdBu_r" if v == "vorticity" else "viridis",
            title=f"{case.title}\n{what}",
        )
        path = out / f"{case.name}_panels{label}.png"
        write_figure(fig, path, dpi=90)
        written.append(path)
        # a condition's fields apart; the time steps of an unconditioned case together
        one = {case.condition_dim: i} if case.condition_dim is not None else {}
        spectra = {"truth": fine[v].isel(one), "FLEX members": ens[v].isel(one)}
        spectra.update({name: base[v].isel(one) for name, base in baselines.items()})
        # a doubly periodic box (coordinates with periodic = "true") gets the FFT, as
        # `flexdownscale evaluate` and docs/metrics.md have it; a limited area the DCT
        fig = plot_spectra(
            spectra,
            reference="truth",
            title=f"{case.model}: power spectra ({v})" + (f"\n{what}" if one else ""),
        )
        path = out / f"{case.name}_spectra{label}.png"
        write_figure(fig, path, dpi=90)
        written.append(path)
        if case.condition_dim is None:
            break  # one panel figure per case is enough for time series
    return written


def _write_netcdf(
    case: DemoCase,
    fine: xr.Dataset,
    coarse: xr.Dataset,
    ens: xr.Dataset,
    baselines: dict[str, xr.Dataset],
    out: Path,
) -> Path:
    v = case.variable
    spec = grid_spec(fine)
    ds = xr.Dataset(
        {
            f"{v}_truth": fine[v],
            f"{v}_flex": ens[v],
            **{f"{v}_{name}": base[v] for name, base in baselines.items()},
        }
    )
    renamed = {spec.y: f"{spec.y}_coarse", spec.x: f"{spec.x}_coarse"}
    ds[f"{v}_coarse"] = coarse[v].rename(renamed)
    for dim, name in renamed.items():  # the coarse cells' bounds, under the coarse names
        attrs = dict(ds[name].attrs)
        bounds = attrs.pop("bounds", None)
        if bounds in coarse.variables:
            attrs["bounds"] = f"{name}_bnds"
            ds = ds.assign_coords({attrs["bounds"]: coarse[bounds].rename({dim: name}).variable})
        ds[name].attrs = attrs
    if case.condition_dim is not None:
        condition = ds[case.condition_dim]
        note = {"comment": "the physical condition each field was downscaled with"}
        ds = ds.assign_coords({case.condition_dim: condition.copy().assign_attrs(note)})
    # one layout for every variable: leading dims, then y, x (the data's own order may be x, y)
    last = (spec.y, spec.x, *renamed.values())
    for name in list(ds.data_vars):
        ds[name] = ds[name].transpose(..., *last, missing_dims="ignore")
    ds = ds.copy()  # new variables: the case's datasets keep their attributes
    for var in ds.variables.values():
        # the sample's list of auxiliary coordinates names variables this file does not hold,
        # and "unknown" is not a CF standard name (xarray writes the coordinates it has)
        var.encoding = {k: v for k, v in var.encoding.items() if k != "coordinates"}
        var.attrs = {
            k: v
            for k, v in var.attrs.items()
            if k != "coordinates" and not (k == "standard_name" and v == "unknown")
        }
    ds.attrs = dict(ens.attrs)
    ds.attrs["comment"] = f"flexdownscale demo, case {case.name}: {case.title}"
    path = out / f"{case.name}.nc"
    from .data.grid import coordinate_encoding  # CF: no missing-value marker on coordinates

    encoding = coordinate_encoding(ds)
    write_atomically(path, lambda tmp: ds.to_netcdf(tmp, encoding=encoding))
    return path


def _figure_names(case: DemoCase) -> str:
    """The report's words for the figures of ``case``."""
    if case.condition_dim is None:
        return f"`{case.name}_panels.png`, `{case.name}_spectra.png`"
    return (
        f"`{case.name}_panels_<i>.png` and `{case.name}_spectra_<i>.png`, one each per "
        f"{case.condition_dim} (`_0`, `_1`, ... in the order of its values in `{case.name}.nc`; "
        "each figure's title names its value), while the table pools them"
    )


def _fmt(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.4g}"


def _report(
    result: DemoResult,
    cases: tuple[DemoCase, ...],
    units: dict[str, str],
    members: int,
    seed: int,
) -> Path:
    from ._version import __version__
    from .metrics import SKILL_COLUMNS

    lines = [
        _REPORT_TITLE,
        "",
        f"flexdownscale {__version__}; {members}-member ensembles with each model's default "
        f"sampler, seed {seed}; wall time {result.seconds:.1f} s.",
        "",
        "Each sample field (from the validation split of its model: never seen in training) is "
        "coarsened with the model's degradation operator (area mean), downscaled back, and "
        "compared with the original. Lower is better for every column except `spread_skill` "
        "(1 is ideal) and `spectral_ratio_small` (1 is ideal).",
        "",
    ]
    for case in cases:
        rows = result.skill[case.name]
        cols = list(SKILL_COLUMNS)
        lines += [
            f"## {case.title}",
            "",
            f"Model `{case.model}`; units of rmse and crps: {units.get(case.name) or '1'}. "
            f"Figures: {_figure_names(case)}; data: `{case.name}.nc`.",
            "",
            "| prediction | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for name, row in rows.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
        lines.append("")
    lines += ["## Columns", ""]
    lines += [f"- `{k}`: {text}" for k, text in SKILL_COLUMNS.items()]
    lines += [
        "",
        "A demo sample is a handful of fields: for the validated numbers see the model cards "
        f"(`flexdownscale info <model>`) and {_REPOSITORY}benchmarks/results/skill.md.",
        "",
    ]
    path = result.output / "report.md"
    write_text_atomically(path, "\n".join(lines))
    return path


#: The first line of the demo's report.md: a folder whose report.md starts with it is a demo's.
_REPORT_TITLE = "# flexdownscale demo"


def _check_output_folder(out: Path, cases: tuple[DemoCase, ...]) -> None:
    """Refuse to write into ``out`` when files the demo would overwrite there are not a demo's.

    The demo writes fixed names (``report.md``, ``<case>.nc``, ``<case>_panels*.png``,
    ``<case>_spectra*.png``); an earlier demo's folder (its ``report.md`` starts with the demo's
    title) is written over, and other files are never touched. A folder of the user's with a
    file of one of those names is refused before anything runs: nothing of theirs is lost.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"output = {str(out)!r} is a file, not a folder; give a folder for the results"
        )
    names = ["report.md"]
    for case in cases:
        names += [f"{case.name}.nc", f"{case.name}_spectra.png"]
        names += sorted(p.name for p in out.glob(f"{case.name}_panels*.png"))
        names += sorted(p.name for p in out.glob(f"{case.name}_spectra_*.png"))
    found = files_in_the_way(out, names, "report.md", lambda line: line == _REPORT_TITLE)
    if found:
        raise ConfigError(
            f"output folder {str(out)!r} holds {', '.join(found)}, which the demo would "
            "overwrite, and it is not an earlier demo's folder (its report.md is not the "
            "demo's); give a new or empty folder, or move those files away"
        )


def run_demo(
    output: str | Path = DEFAULT_OUTPUT,
    *,
    members: int = 8,
    seed: int = 0,
    progress: bool = True,
    cases: str | Sequence[str] | None = None,
    log: Callable[[str], Any] | None = print,
) -> DemoResult:
    """Run the demo and write its files into ``output`` (created if needed).

    Parameters
    ----------
    output
        Output folder (created if needed; a leading ``~`` is the home folder); an earlier
        demo's files in it are overwritten, a file of yours with one of the demo's names is
        refused (:class:`ConfigError`, before anything runs). A file that cannot be written
        (a full disk) raises :class:`~flexdownscale.errors.DataError` naming it, and a folder
        the demo made is removed again.
    members
        Ensemble size (at least 2: the spread is part of the evidence).
    seed
        Seed of the ensembles.
    progress
        Show a progress bar over the steps (where stderr is not a terminal, a log file: a
        start line, a line at each quarter and an end line instead).
    cases
        Names of the cases to run (default: all; ``"era5_t2m_x4"``, ``"kolmogorov_x8"``, or
        their shipped models' names ``"era5-t2m-x4"``, ``"kolmogorov-x8"``); one name alone is
        one case.
    log
        Where to print the summary (``None``: silent).

    Returns
    -------
    DemoResult
        The folder, the skill tables, the files written and the wall time in seconds.
    """
    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise ConfigError(f"members = {members!r}; the demo needs an ensemble of at least 2")
    chosen = CASES
    if cases is not None:
        if isinstance(cases, str):  # one case named alone, not its letters
            cases = (cases,)
        # a case's name (era5_t2m_x4) or, the same with hyphens, its shipped model's (era5-t2m-x4)
        cases = tuple(c.replace("-", "_") if isinstance(c, str) else c for c in cases)
        known = {c.name: c for c in CASES}
        unknown = [c for c in cases if c not in known]
        if unknown:
            raise ConfigError(f"unknown demo case(s) {unknown}; choose from {list(known)}")
        chosen = tuple(known[c] for c in dict.fromkeys(cases))  # each case once
    start = time.perf_counter()
    out = Path(os.path.expanduser(os.fspath(output)))  # "~/demo": no shell expands it here
    _check_output_folder(out, chosen)
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a read-only folder, a full disk
        raise unwritable_folder(f"make the output folder {str(out)!r}", err, out.parent) from err
    try:
        result, units = _run_cases(out, chosen, members=members, seed=seed, progress=progress)
        result.seconds = time.perf_counter() - start
        result.files.append(_report(result, chosen, units, members, seed))
    except BaseException:
        if made:  # half a demo in a folder of its own, which a new run would refuse
            shutil.rmtree(out, ignore_errors=True)
        raise
    if log is not None:
        for case in chosen:
            rows = result.skill[case.name]
            flex = next(iter(rows.values()))
            best = min((r["rmse"], n) for n, r in rows.items() if n.endswith("interpolation"))
            unit = "" if units[case.name] in ("", "1") else f" {units[case.name]}"
            log(
                f"{case.name}: FLEX ensemble-mean RMSE {flex['rmse']:.4g}{unit} vs {best[1]} "
                f"{best[0]:.4g}{unit}; spread-skill {flex['spread_skill']:.3g}; "
                f"log-spectral distance {flex['lsd']:.3g} dB"
            )
        log(f"wrote {len(result.files)} files to {out}/ in {result.seconds:.1f} s (see report.md)")
    return result


def _run_cases(
    out: Path, chosen: tuple[DemoCase, ...], *, members: int, seed: int, progress: bool
) -> tuple[DemoResult, dict[str, str]]:
    """Downscale, score, plot and write each case of ``chosen`` into ``out``: the result (its
    skill tables and the files written) and each case's units."""
    result = DemoResult(output=out)
    units: dict[str, str] = {}
    steps = ["load", "downscale", "score", "plot", "write"]
    bar = None
    if progress:  # a bar on a terminal, a few lines in a log file
        bar = progress_bar(len(chosen) * len(steps), "demo", "step")
    try:
        for case in chosen:
            if bar is not None:
                bar.set_postfix_str(f"{case.name}: load")
            fine = load_case(case)
            units[case.name] = str(fine[case.variable].attrs.get("units", ""))
            for stage in steps[1:]:
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{case.name}: {stage}")
                if stage == "downscale":
                    coarse, ens, baselines = _downscale_case(case, fine, members=members, seed=seed)
                elif stage == "score":
                    result.skill[case.name] = _score(case, fine, ens, baselines)
                elif stage == "plot":
                    result.files += _plots(case, fine, coarse, ens, baselines, out)
                else:
                    result.files.append(_write_netcdf(case, fine, coarse, ens, baselines, out))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return result, units
