"""Scores of a prediction file against a truth file: the work of ``flexdownscale evaluate``.

:func:`evaluate` opens both files (netCDF or zarr), matches the truth to the prediction's grid
points and times (a forecast's leads at their valid times), reads both in time chunks (each
chunk once per pass, every score of a chunk computed before more are read) and writes the
report into a folder: ``metrics.md`` (the table, also returned), ``metrics.json`` (the same
scores as strict JSON), ``metrics_by_lead.json`` for a forecast, and the spectra and rank
histograms as PNG plots, each per variable and level (a dim both files share besides the
grid, time and the members, such as pressure levels). :mod:`flexdownscale.cli` parses the
command's options and calls it; its messages name those options (``--rename``, ``--dims``,
``--out``). The scores themselves come from :mod:`flexdownscale.metrics`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._inputs import count_noun, find_time_dim, groups_hint, is_zarr, open_input
from ._json import finite_or_null, non_finite_word
from ._output import (
    folder_lock,
    png_text,
    write_figure,
    write_text_atomically,
    written_here,
    written_through,
)
from .errors import DataError

__all__ = ["evaluate"]

#: How much of the prediction ``evaluate`` reads and scores at a time when no ``--time-chunk``
#: is given: as many time steps (fields, with all their members and the whole grid, of every
#: variable) as fit in this many bytes, at least one. The scores' float64 intermediates (the
#: spectra above all) take about 10 times a chunk per thread while it is scored.
CHUNK_BYTES = 16 * 2**20

#: The rain rate (mm/h) of ``evaluate``'s default wet/dry threshold of precipitation: in a
#: rate's units, or over the truth's time step for amounts (0.1 mm/h over 10 minutes is
#: 0.01667 kg m-2); the usual rain / no-rain threshold of radar rainfall.
WET_RATE_MM_PER_HOUR = 0.1

#: The sides, in grid cells, of the square windows of ``evaluate``'s FSS of precipitation.
FSS_WINDOWS = (5, 25)

#: The quantile of precipitation that ``evaluate`` reports for truth and prediction.
HIGH_QUANTILE = 0.99


def evaluate(
    prediction: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    dims: Mapping[str, str] | None = None,
    rename: Mapping[str, str] | None = None,
    time_chunk: int | None = None,
    threshold: str | None = None,
    fss_windows: Sequence[int] | None = None,
    baseline: str | os.PathLike[str] | None = None,
) -> str:
    """Score the prediction file ``prediction`` against the truth file ``truth`` and write the
    report into the folder ``out``.

    With ``baseline`` (another prediction of the same truth: an interpolation of the coarse
    input, another model), that file is scored the same way into ``out/baseline/``, and
    ``metrics.md`` gets a table of the prediction's RMSE, CRPS and LSD beside the baseline's,
    with the skill ``1 - score / baseline score`` of RMSE and CRPS (1: perfect, 0: no better
    than the baseline, below 0: worse); ``metrics.json``'s rows hold the same under
    ``"baseline"``.

    A variable along a dim that both files share besides the grid, time (a forecast's leads)
    and the ensemble dim (pressure levels such as ``level`` or ``plev``, ``height``, a user's
    ``experiment``) is scored per value of it: a row each in ``metrics.md`` (the dim as a
    column, its value with its coordinate's units: ``500 hPa``) and ``metrics.json`` (the
    dim's name as a key), in the per-lead table, and plots of its own
    (``spectra_u_level500.png``, ``rank_histogram_u_level500.png``); no row pools the levels,
    whose magnitudes and spectra differ. The truth is taken at the prediction's values of such
    a dim. A variable without one gets one row and ``spectra_<var>.png``, as before.

    The spectra (the LSD and the spectrum plots) are zonal on a global latitude/longitude grid
    (:func:`~flexdownscale.metrics.zonal_spectrum` along each latitude circle, averaged over
    the latitudes), isotropic elsewhere (:func:`~flexdownscale.metrics.power_spectrum`: FFT on
    a doubly periodic domain, the DCT on other grids, by
    :func:`~flexdownscale.metrics.spectra.default_method`, the rule of
    :func:`~flexdownscale.metrics.downscaling_skill` too). The LSD averages over the complete
    annuli only (wavenumbers up to the spectra's ``complete_wavenumber``: the Nyquist
    wavenumber of the FFT, the highest complete one of the DCT), the bins the spectrum plots
    show.

    Parameters
    ----------
    prediction : str or path
        The prediction (every path here may start with ``~``, the home folder): a netCDF file or a zarr store (a name ending in ``.zarr``), with or
        without an ensemble dim; a forecast (``lead`` dim with ``valid_time``) is scored per
        lead as well.
    truth : str or path
        The truth on the prediction's grid points (or a grid holding them), at every
        predicted time.
    out : str or path
        The report's folder, made if missing; a folder holding files of other origin under the
        report's names is refused.
    dims : mapping of str to str, optional
        ``AXIS=DIM`` names of dims that are not recognised (``x``, ``y``, ``time``), applied to
        each file that has that dim; ``member`` names the prediction's ensemble dim (default
        ``"member"``). Default None: found from CF attributes and common names.
    rename : mapping of str to str, optional
        Truth variable name to prediction variable name. Default None: the names in common.
    time_chunk : int, optional
        Time steps read and scored at a time, every member and the whole grid in each. Default
        None: as many as fit in :data:`CHUNK_BYTES` of the prediction.
    threshold : str, optional
        The wet/dry threshold of precipitation with its units (``"0.1 kg m-2"``, ``"0.1 mm"``,
        ``"0.5 mm/h"``), converted into each precipitation variable's units (a depth of water
        and a mass per area by the liquid-water equivalence, 1 mm = 1 kg m-2). Default None:
        a rain rate of :data:`WET_RATE_MM_PER_HOUR` mm/h, in a rate's units, or for amounts
        that rate over the truth's time step (0.1 mm/h over 10 minutes: 0.01667 kg m-2); see
        the notes.
    fss_windows : sequence of int, optional
        Sides of the square windows (in grid cells) of the FSS of precipitation. Default None:
        :data:`FSS_WINDOWS`.
    baseline : str or path, optional
        A baseline prediction of the same truth (netCDF or zarr, with or without an ensemble
        dim), scored with the same options; a baseline with one field per point is compared
        on CRPS through its MAE (the CRPS of a single value). Make an interpolation baseline
        from the coarse input with :func:`flexdownscale.data.up` (``up(coarse, 4,
        method="bilinear").to_netcdf("bilinear.nc")``). Default None: no comparison.

    Returns
    -------
    str
        The text of ``metrics.md``: the scores table, per lead for a forecast, and what made
        the prediction when its file records it.

    Raises
    ------
    DataError, GridError, MissingVariableError, UnitsError
        Files that cannot be read or do not match (variables, grid, times, levels, units), a
        ``threshold`` in units that a precipitation variable's cannot be converted into; the
        message says what was found and how to fix it.
    ConfigError
        A ``time_chunk`` or FSS window that is not a positive whole number, a ``threshold``
        that is not a number with its units.
    DataError
        Also a report folder that cannot be made or a report file that cannot be written (a
        read-only folder, a full disk), naming it and the cause. Each file is written whole
        or not at all: an earlier report's file stays as it was.

    Warns
    -----
    FlexDownscaleWarning
        A variable whose CF ``standard_name`` differs between the files (a wrong ``rename``
        scores one quantity against another; nothing is said where either file has none, or
        ``"unknown"``); a variable with more than 50 levels (a row and plots each: a time dim
        not recognised as one?); a predicted variable the truth lacks (not scored).

    Notes
    -----
    Every row gives the truth's mean beside the bias (weighted as the bias), so a bias is
    read against the size of the field. Precipitation-like variables, whose cells are mostly
    dry and where RMSE, bias and CRPS say little, get more columns: the wet fraction of truth
    and prediction (the share of cells at or above the threshold; the prediction's over all
    its members), the FSS at each window (:func:`~flexdownscale.metrics.fss`, the members as
    samples) and the 99th percentile of truth and prediction (over all members, times and
    cells, weighted as the means; the value of the file's float32 data itself, found by two
    histograms of its bits, one per pass over the files, so the files are never held whole).
    A variable is precipitation-like when its CF ``standard_name`` (in either file) names
    precipitation, rain or snow (``precipitation_amount``, ``rainfall_flux``,
    ``snowfall_amount``), or when every truth value is ``>= 0`` and the model that made the
    prediction normalized the variable with ``log1p`` (its ``flexdownscale_transform``
    attribute, or the folder its ``flexdownscale_model`` attribute names, when that folder
    can be read). The default threshold is a rain rate of 0.1 mm/h
    (the usual rain / no-rain threshold of radar rainfall): for rates (``kg m-2 s-1``,
    ``mm/h``) that rate in their units, for amounts (``kg m-2``, ``mm``, ``m``) that rate
    over the truth's time step (the most common step of its times: 0.01667 kg m-2 for
    10-minute accumulations, 0.1 for hourly ones, 2.4 for daily ones), 0.1 mm when the truth
    has a single time. The report says the threshold of each variable.

    Spectra need gap-free fields: the LSD and the spectra plot are over the time steps (a
    forecast's fields) where neither file has a missing value, and the report says how many
    were left out; a variable with none complete gets none.
    """
    if time_chunk is not None and (
        isinstance(time_chunk, bool) or not isinstance(time_chunk, int) or time_chunk < 1
    ):
        from .errors import ConfigError

        raise ConfigError(
            f"time_chunk = {time_chunk!r} must be a positive whole number of time steps, or None "
            "for chunks of a set size"
        )
    windows = _fss_windows(fss_windows)
    wanted = _parse_threshold(threshold) if threshold is not None else None
    # "~/runs/pred.nc": the home folder's, as a shell expands it (no shell sees a Python string)
    prediction, truth, out = (os.path.expanduser(os.fspath(p)) for p in (prediction, truth, out))
    if baseline is not None:
        baseline = os.path.expanduser(os.fspath(baseline))
    # the report folder's lock, taken by _write_report, is held until the report is whole
    # the reports are written into hidden folders and moved into place once all are complete:
    # an interrupted or failed run leaves the folders as they were
    with contextlib.ExitStack() as locks:
        staged: list[_StagedReport] = []

        def score(path: str, folder: str) -> tuple[str, list[dict[str, Any]], list[str]]:
            options = (dict(dims or {}), dict(rename or {}), time_chunk, wanted, windows)
            # fresh dicts
            return _write_report(path, truth, folder, *options, locks=locks, staged=staged)

        report, rows, level_keys = score(prediction, out)
        if baseline is None:
            staged[0].commit()
            # an earlier run's baseline report would sit beside this one as if it were its own
            _remove_earlier_report(Path(out) / BASELINE_FOLDER)
            return report
        _, baseline_rows, _ = score(baseline, os.path.join(out, BASELINE_FOLDER))
        report = _add_baseline(staged[0], report, rows, baseline_rows, level_keys, baseline)
        for report_folder in reversed(staged):  # the baseline's, then the report's
            report_folder.commit()
        return report


#: The sub-folder of the report that holds the baseline's own report
BASELINE_FOLDER = "baseline"

#: The scores compared with the baseline: JSON key, table heading, whether a skill is given
_BASELINE_SCORES = (
    ("RMSE (ens. mean)", "RMSE", True),
    ("CRPS", "CRPS", True),
    ("LSD (dB)", "LSD (dB)", False),
)


def _add_baseline(
    out: _StagedReport,
    report: str,
    rows: list[dict[str, Any]],
    baseline_rows: list[dict[str, Any]],
    level_keys: list[str],
    baseline: str,
) -> str:
    """Append the comparison with the baseline to ``out/metrics.md`` (whose text is
    ``report``; ``out`` the report, written before it is moved into place) and add it to
    the rows of ``out/metrics.json`` (``rows``, strict JSON, as written); ``baseline_rows``
    are the baseline's strict rows. A row is matched by its variable and level values.
    Returns the new text of ``metrics.md``."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["variable"], *(row.get(k) for k in level_keys))

    found = {key(row): row for row in baseline_rows}
    through_mae = False
    table = []
    for row in rows:
        other = found.get(key(row))
        compared: dict[str, Any] = {"file": baseline}
        cells = [row["variable"], *(_table_cell(row[k]) if k in row else "" for k in level_keys)]
        for name, heading, skill in _BASELINE_SCORES:
            mine = row.get(name)
            theirs = None if other is None else other.get(name)
            if name == "CRPS" and other is not None and "CRPS" not in other:
                theirs = other.get("MAE (ens. mean)")  # one field per point: its CRPS
                compared["CRPS is its MAE"] = True
                through_mae = through_mae or theirs is not None
            compared[name] = theirs
            cells += [_table_cell(mine), _table_cell(theirs)]
            if skill:
                value = None
                if mine is not None and theirs is not None and theirs > 0:
                    value = 1.0 - mine / theirs
                    value = value if math.isfinite(value) else None
                compared[f"{heading} skill"] = value
                cells.append(_table_cell(value))
        row["baseline"] = compared if other is not None else {"file": baseline, "missing": True}
        table.append("| " + " | ".join(cells) + " |")
    columns = ["variable", *level_keys]
    for _, heading, skill in _BASELINE_SCORES:
        columns += [heading, f"baseline {heading}"] + ([f"{heading} skill"] if skill else [])
    missing = [str(row["variable"]) for row in rows if row["baseline"].get("missing")]
    words = (
        f"Against the baseline {baseline} (scored against the same truth with the same "
        f"options; its report is in {BASELINE_FOLDER}/): skill = 1 - score / baseline's score "
        "(1: perfect, 0: no better than the baseline, below 0: worse)."
        + (
            " The baseline has one field per point: its CRPS is its MAE (the CRPS of a single "
            "value)."
            if through_mae
            else ""
        )
        + (
            " The baseline has no row for: "
            + ", ".join(f"`{v}`" for v in dict.fromkeys(missing))
            + "."
            if missing
            else ""
        )
    )
    lines = [
        "",
        words,
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *table,
    ]
    report = report + "\n".join(lines) + "\n"
    out.write_text("metrics.md", report)
    out.write_text("metrics.json", json.dumps(rows, indent=2, allow_nan=False))
    return report


def _write_report(
    pred_path: str,
    truth_path: str,
    out_given: str,
    dims: dict[str, str],
    renames: dict[str, str],
    time_chunk: int | None,
    wanted: tuple[float, str] | None = None,
    windows: tuple[int, ...] = (),
    *,
    locks: contextlib.ExitStack,
    staged: list[_StagedReport],
) -> tuple[str, list[dict[str, Any]], list[str]]:
    """:func:`evaluate`'s work, its arguments checked: the paths as given (they are named in
    the report and its messages), ``dims`` with the ensemble dim's ``member`` entry if any,
    ``renames`` truth name to prediction name, ``wanted`` the ``--threshold`` (value and units)
    if given and ``windows`` the FSS windows. The lock of the report folder is entered into
    ``locks``, held until the caller closes it. The report is written into a hidden folder in
    the report folder (:class:`_StagedReport`), appended to ``staged`` for the caller to move
    into place once every report is complete; the clean-up that removes it unmoved,
    and the report folder when this run made it, is entered into ``locks``. Returns the text
    of ``metrics.md``, the rows of ``metrics.json`` and the names of the level dims that the
    rows hold."""
    import numpy as np

    from . import metrics
    from .data.grid import _circles_the_globe, find_axes, grid_spec, normalize_grid
    from .errors import GridError, MissingVariableError
    from .plot import plot_rank_histogram, plot_spectra, plot_spread_skill_spectrum

    member_dim = dims.pop("member", "member")  # the ensemble dim is no grid axis
    pred = open_input(pred_path)
    truth = open_input(truth_path)
    # what made the prediction (model, sampler, steps, ...): the spread/skill of one model's
    # ensemble differs with them, so the report says them
    provenance = _prediction_provenance(pred.attrs)
    absent = [name for name in renames if name not in truth.data_vars]
    if absent:
        raise MissingVariableError(
            f"--rename names {absent}, which the truth does not hold (its variables: "
            f"{list(map(str, truth.data_vars))}); give TRUTH=PREDICTION with the truth's name "
            f"first, {_rename_example(absent[0], renames[absent[0]], truth, pred)}"
        )
    taken = [new for old, new in renames.items() if new in truth.variables and new != old]
    if taken:
        raise MissingVariableError(
            f"--rename would give the truth a second {taken[0]!r} (it holds one already); "
            f"drop the rename to score its own {taken[0]!r}, or remove that variable first"
        )
    truth = truth.rename(renames)
    # a forecast (the Forecaster's output): its leads are matched to the truth at valid_time,
    # the time dim of its leads for the checks below, and scored per lead as well
    lead_dim = _forecast_leads(pred, dims)
    # read lazily in chunks along time (the members and the grid whole): memory holds a few
    # chunks, not the file; every score is computed in one pass over the files (below)
    pred, time_dim, steps = _stream_prediction(pred, dims, lead_dim, time_chunk)
    leads, starts = None, 1
    if lead_dim is not None:
        pred, leads, starts = _forecast_series(pred)
        pred = pred.rename(valid_time=lead_dim) if lead_dim != "valid_time" else pred
        dims["time"] = lead_dim
    truth = normalize_grid(truth, dims=_dims_in(truth, dims))
    names = _fields_in_common(pred, truth, _dims_in(pred, dims))
    if not names:
        pred_names, truth_names = list(map(str, pred.data_vars)), list(map(str, truth.data_vars))
        example = f"{truth_names[0]}={pred_names[0]}" if pred_names and truth_names else "tas=t2m"
        raise MissingVariableError(
            f"prediction variables {pred_names} and truth variables {truth_names} have none "
            f"in common; if the truth names a variable otherwise, say which: --rename {example} "
            f"(truth name = prediction name){groups_hint(pred_path, truth_path)}"
        )
    _warn_other_quantity(pred, truth, names, renames)
    _check_same_units(pred, truth, names, truth_path, renames)
    for v in names:  # the truth is one realisation
        if member_dim in truth[v].dims and member_dim not in pred[v].dims:
            raise DataError(
                f"the truth's {v!r} has the ensemble dim {member_dim!r} "
                f"({count_noun(truth.sizes[member_dim], 'value')}) and the prediction's has none: "
                "were the files given the other way round? The prediction comes first: "
                "flexdownscale evaluate PREDICTION TRUTH --out DIR"
            )
        if member_dim in truth[v].dims:
            raise DataError(
                f"the truth's {v!r} has the ensemble dim {member_dim!r} "
                f"({count_noun(truth.sizes[member_dim], 'value')}), but the truth is one "
                f"realisation: give a truth file without it (one {member_dim} of it, if it is "
                "an ensemble)"
            )
    pdims, tdims = _dims_in(pred, dims), _dims_in(truth, dims)
    axes = find_axes(pred[names[0]], dims=pdims)
    # fields of the prediction the truth has no variable for: not scored, and said so
    unscored = [
        str(v)
        for v, field in pred.data_vars.items()
        if v not in truth.data_vars and {axes.y, axes.x} <= set(field.dims)
    ]
    if unscored:
        from ._stack import user_stacklevel
        from .errors import FlexDownscaleWarning

        warnings.warn(
            f"the truth has no {', '.join(map(repr, unscored))}: "
            f"{'it is' if len(unscored) == 1 else 'they are'} not scored (only "
            f"{', '.join(map(repr, names))}); give truth with those variables to score them",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )
    periods = {axes.x: 360.0} if grid_spec(pred[names[0]], dims=pdims).kind == "latlon" else {}
    tspec = grid_spec(truth[names[0]], dims=tdims)
    if tspec.kind != "latlon":  # a doubly periodic box, say: its length along each dim
        for dim, n, step, periodic in (
            (tspec.x, tspec.nx, tspec.dx, tspec.periodic_x),
            (tspec.y, tspec.ny, tspec.dy, tspec.periodic_y),
        ):
            if periodic:
                periods[dim] = n * step
    truth = _truth_on_prediction_grid(pred, truth, (axes.y, axes.x), periods=periods)
    # precipitation-like variables (a CF standard_name of precipitation, or a variable the
    # model normalized with log1p, if the truth is >= 0) get their wet fractions, FSS and high
    # quantiles; the default threshold of amounts takes the truth file's time step
    log1p = _log1p_in_model(pred, names)
    rainy = {
        v: "named" if _names_precipitation(pred[v]) or _names_precipitation(truth[v]) else "log1p"
        for v in names
        if v in log1p or _names_precipitation(pred[v]) or _names_precipitation(truth[v])
    }
    step_hours = (
        _time_step_hours(truth, find_axes(truth[names[0]], dims=tdims).time) if rainy else None
    )
    truth = _truth_in_time_with(pred, truth, names, dims, member_dim)
    for v in names:  # a dim only the truth has would be averaged over: pick the prediction's
        for d in [d for d in truth[v].dims if d not in pred[v].dims]:
            label = pred[v].coords.get(d)
            if label is not None and label.ndim == 0 and d in truth.coords:
                try:  # the prediction was made for one value of it (trajectory = 3, say)
                    truth = truth.sel({d: label.values})
                    continue
                except KeyError:
                    pass
            raise DataError(
                f"the truth's {v!r} has a dim {str(d)!r} ({truth.sizes[d]} values) that the "
                f"prediction lacks: every score would pool the prediction against all of them. "
                f"Give truth for the prediction's {str(d)!r} only (cut it out of the truth file), "
                "or a prediction along it"
            )
    for v in names:  # a dim only the prediction has would be averaged as if it were space
        extra = [str(d) for d in pred[v].dims if d not in truth[v].dims and d != member_dim]
        if extra:
            raise DataError(
                f"the prediction's {v!r} has dims {extra} that the truth lacks; if "
                f"{extra[0]!r} is the ensemble dim, pass --dims member={extra[0]}, else select "
                "one value of it (or give truth along it)"
            )
    # dims both files share besides the grid, time and the members (pressure levels, heights,
    # a user's experiments): scored per value, as scores pooled over levels mix magnitudes
    skip = {axes.y, axes.x, axes.time, time_dim, member_dim}
    level_dims = {v: [str(d) for d in pred[v].dims if d not in skip] for v in names}
    truth = _truth_at_prediction_levels(pred, truth, level_dims)
    parts = {v: _level_parts(pred[v], v, level_dims[v]) for v in names}
    _warn_many_levels(parts, level_dims)
    # both files read in time chunks, each chunk once per pass (one for the checks, one for
    # the scores), every score of a chunk computed before more chunks are read
    pred, truth, reads = _streamed(pred, truth, names, time_dim, steps)
    # the weights of the means (cell areas on latitude grids), for the high quantiles too
    spatial = [axes.y, axes.x]
    spec = grid_spec(truth[names[0]], dims=_dims_in(truth, dims))
    weights = (
        metrics.area_weights(truth[names[0]], dims=spatial)
        if spec.kind in ("latlon", "rotated")
        else None
    )

    def quantile_fields(v: str, part: _Level) -> tuple[Any, Any]:
        """The values whose high quantile the report gives: the truth's, and the prediction's
        (every member) where the truth has values."""
        p, t = pred[v].isel(part.at), truth[v].isel(part.at)
        return t, p.where(t.notnull())

    finite, empty, missing_by_name, lowest, coarse = _compute_together(
        reads,
        [np.isfinite(pred[v]).any() for v in names],
        [truth[v].isnull().all() for v in names],
        [  # per level and time step: spectra are taken over the time steps without gaps
            {
                name: field.isnull().sum(
                    [d for d in field.dims if d not in level_dims[v] and d != time_dim]
                )
                for name, field in (("prediction", pred[v]), ("truth", truth[v]))
            }
            for v in names
        ],
        {v: truth[v].min() for v, why in rainy.items() if why == "log1p"},
        {  # the high quantiles' first histograms (upper bits), per level
            (v, k): tuple(_lazy_histogram(f, weights) for f in quantile_fields(v, part))
            for v in rainy
            for k, part in enumerate(parts[v])
        },
    )
    for v, found in zip(names, finite, strict=True):
        if not bool(found):
            raise DataError(
                f"the prediction's {v!r} has no finite value; check the file (a failed run, or "
                "a fill value that was not decoded?)"
            )
    if any(bool(none) for none in empty):
        raise GridError(
            "the truth has no values on the prediction grid; give truth on the fine grid "
            "the prediction was made on"
        )
    out = Path(out_given)
    # one evaluate at a time per folder: the lock is taken before the folder's files are
    # looked at (a running evaluate's figures are not "files in the way"), or once the
    # folder is made when it does not exist yet
    if out.is_dir():
        locks.enter_context(folder_lock(out, lambda: _report_folder_in_use(out_given)))
    _check_report_folder(out, [part.stem for v in names for part in parts[v]], out_given)
    stale = _earlier_figures(out)  # an earlier report's: those not drawn again are removed
    try:
        made = not out.is_dir()
        out.mkdir(parents=True, exist_ok=True)
        if made:
            locks.enter_context(folder_lock(out, lambda: _report_folder_in_use(out_given)))
        target = _StagedReport.make(out, stale, made)
    except OSError as err:  # a read-only folder: said of --out, as a file written in it is
        raise _unwritable_folder(out_given, err) from err
    locks.callback(target.discard)  # before the lock is released (the stack runs backwards)
    staged.append(target)
    has_members = member_dim in pred.dims and pred.sizes[member_dim] > 1
    # latitude grids: means weighted by cell area (WeatherBench practice, the weights above);
    # projected and physics grids have equal cells. Doubly periodic domains: plain FFT
    # spectra; a crop of one (the truth's periodic attribute is dropped for an axis covered in
    # part): the DCT. The rule of every spectrum (metrics.spectra.default_method), applied to
    # the truth on the prediction grid, and passed to the prediction's spectra too.
    from .metrics.spectra import default_method

    method = default_method(truth[names[0]], spatial)
    # precipitation: a variable named so, or normalized with log1p and >= 0 in the truth; its
    # threshold (or why it has none), and the bins of its high quantiles for the second pass
    events: dict[str, _Events] = {}
    no_threshold: list[str] = []
    for v in rainy:
        if rainy[v] == "log1p" and not float(lowest[v]) >= 0:
            continue
        found = _events_for(
            v,
            pred[v].attrs.get("units"),
            wanted,
            step_hours,
            windows,
            (str(axes.y), str(axes.x)),
        )
        if isinstance(found, str):
            no_threshold.append(found)
        else:
            events[v] = found
    if wanted is not None and not events and not no_threshold:
        from ._stack import user_stacklevel
        from .errors import FlexDownscaleWarning

        warnings.warn(
            f"--threshold '{wanted[0]:g} {wanted[1]}' is not used: no scored variable is "
            f"precipitation-like ({', '.join(map(repr, names))}: none has a CF standard_name "
            "naming precipitation, rain or snow, nor was normalized with log1p by the model "
            "that made the prediction); give the precipitation variable such a standard_name "
            "(e.g. ncatted -a standard_name,VARIABLE,o,c,precipitation_amount FILE)",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )
    high_bins = {
        key: tuple(_quantile_bin(h, HIGH_QUANTILE) for h in pair)
        for key, pair in coarse.items()
        if key[0] in events
    }
    fine = {  # the second histograms: the lower bits of the values in the quantile's bin
        (v, k): tuple(
            None if found is None else _lazy_histogram(f, weights, high=found[0])
            for f, found in zip(quantile_fields(v, parts[v][k]), high_bins[v, k], strict=True)
        )
        for v, k in high_bins
    }
    # a global grid (its longitude the whole circle): zonal spectra, along each latitude circle
    # of its own length; an isotropic spectrum would take one spacing (the mean latitude's,
    # the equator's) for every row, its wavenumbers nominal elsewhere
    zonal = _circles_the_globe(spec.kind, spec.nx, spec.dx)

    def spectrum(field: Any) -> Any:
        if zonal:
            return metrics.zonal_spectrum(field, lat_dim=axes.y, lon_dim=axes.x)
        return metrics.power_spectrum(field, dims=spatial, method=method)

    rows = []
    gaps: list[str] = []
    # per variable and level ((variable, index of the level) keys; one level, at index 0, for
    # a variable without level dims): every field's spectrum (prediction, truth), the spectra
    # averaged over members and times, and the rank histogram
    spectra: dict[tuple[str, int], Any] = {}
    curves: dict[tuple[str, int], Any] = {}
    histograms: dict[tuple[str, int], Any] = {}
    # the spread-skill ratio per wavenumber of an ensemble (isotropic spectra only)
    by_scale: dict[tuple[str, int], Any] = {}
    # which time steps of each level are free of gaps in both files (None: all of them)
    complete: dict[tuple[str, int], Any] = {}
    frames = "fields" if lead_dim is not None else "time steps"
    for v, counts in zip(names, missing_by_name, strict=True):
        for k, part in enumerate(parts[v]):
            p, t = pred[v].isel(part.at), truth[v].isel(part.at)
            # spectra need gap-free fields (an FFT / DCT over the grid): a masked field (land,
            # missing cells) is scored on its valid points, its spectra taken over the time
            # steps without gaps (none without such a step)
            per_step = {
                name: np.atleast_1d(np.asarray(n.isel(part.at))) for name, n in counts.items()
            }
            whole = (per_step["prediction"] == 0) & (per_step["truth"] == 0)
            missing = {name: int(n.sum()) for name, n in per_step.items()}
            spectra[v, k] = None
            complete[v, k] = None if whole.all() else whole
            if not whole.all():
                where = (
                    (
                        f", in each of its {whole.size} {frames}"
                        if not whole.any()
                        else f", in {int((~whole).sum())} of its {whole.size} {frames}"
                    )
                    if time_dim is not None and time_dim in p.dims and whole.size > 1
                    else ""
                )
                said = ", ".join(f"{n} missing values in the {w}" for w, n in missing.items() if n)
                used = int(whole.sum())
                gaps.append(
                    f"`{v}`{part.at_words} ({said}{where}): "
                    + (
                        f"LSD and spectrum plot over the {used} {frames} without gaps"
                        if used > 1
                        else f"LSD and spectrum plot over the one {frames[:-1]} without gaps"
                        if used
                        else "no LSD or spectrum plot"
                    )
                )
            if whole.any():  # member spectra are averaged, not the mean's
                spectra[v, k] = tuple(spectrum(f) for f in (p, t))
                kept = (
                    spectra[v, k]
                    if whole.all()
                    else tuple(s.isel({time_dim: np.flatnonzero(whole)}) for s in spectra[v, k])
                )
                curves[v, k] = tuple(metrics.sample_mean_spectrum(s) for s in kept)
                if has_members:  # over the same gap-free steps as the spectra
                    fields = (p, t)
                    if not whole.all():
                        steps = {time_dim: np.flatnonzero(whole)}
                        fields = (p.isel(steps), t.isel(steps))
                    by_scale[v, k] = metrics.spread_skill_spectrum(
                        *fields,
                        member_dim=member_dim,
                        **(
                            {"kind": "zonal", "lat_dim": axes.y, "lon_dim": axes.x}
                            if zonal
                            else {"dims": spatial, "method": method}
                        ),
                    )
            row = {
                "variable": v,
                **part.labels,
                "units": str(p.attrs.get("units", "")),
                **_pooled_scores(
                    p, t, member_dim, weights, has_members, curves.get((v, k)), events.get(v)
                ),
            }
            if not whole.all():
                row["LSD time steps"] = {"used": int(whole.sum()), "left_out": int((~whole).sum())}
            if v in events:
                row["threshold"] = events[v].threshold
                row[_HIGH_TRUTH], row[_HIGH_PREDICTION] = None, None
            rows.append(row)
            if has_members:
                histograms[v, k] = metrics.rank_histogram(
                    p, t, member_dim=member_dim, weights=weights
                )
    by_lead = _scores_by_lead(
        pred,
        truth,
        parts,
        lead_dim,
        leads,
        member_dim,
        weights,
        has_members,
        spectra,
        complete,
        events,
    )
    # every score, spectrum and rank histogram of every variable and level (pooled and per
    # lead) together: one more pass over the files
    rows, by_lead, curves, histograms, fine, by_scale = _compute_together(
        reads, rows, by_lead, curves, histograms, fine, by_scale
    )
    rows, by_lead = _floats(rows), _floats(by_lead)
    at_row = {  # the pooled rows' high quantiles, from the two histograms of each
        key: row for key, row in zip(((v, k) for v in names for k in range(len(parts[v]))), rows)
    }
    for key, pair in fine.items():
        for column, found, counts in zip(
            (_HIGH_TRUTH, _HIGH_PREDICTION), high_bins[key], pair, strict=True
        ):
            if found is not None and counts is not None:
                at_row[key][column] = _quantile_value(*found, counts)
    # the plots are Figure objects of their own (no pyplot): the user's figures and backend
    # stay as they were (it set the Agg backend and closed every pyplot figure)
    scale_lines: list[str] = []  # a line of metrics.md per spread-skill spectrum
    for v in names:  # a plot per variable and level: spectra_u.png, spectra_u_level500.png
        for k, part in enumerate(parts[v]):
            if (v, k) in curves:
                pred_curve, truth_curve = curves[v, k]
                fig = plot_spectra(
                    {"truth": truth_curve, "prediction": pred_curve},
                    reference="truth",
                    title=f"{v}{part.at_words}: {'zonal ' if zonal else ''}power spectra",
                )
                target.figure(fig, f"spectra_{part.stem}.png")
            if has_members:
                if not np.isfinite(np.asarray(histograms[v, k].values, dtype=float)).any():
                    # nothing to rank: the plot's own error, which says why from the fields
                    plot_rank_histogram(
                        pred[v].isel(part.at),
                        truth[v].isel(part.at),
                        member_dim=member_dim,
                        weights=weights,
                    )
                fig = plot_rank_histogram(
                    histograms[v, k], title=f"{v}{part.at_words}: rank histogram"
                )
                target.figure(fig, f"rank_histogram_{part.stem}.png")
            if (v, k) in by_scale:
                line = _scale_words(by_scale[v, k], f"`{v}`{part.at_words}", part.stem)
                scale_lines.append(line)
                if not line.endswith(_NO_SCALE_PLOT):
                    fig = plot_spread_skill_spectrum(
                        by_scale[v, k],
                        title=(
                            f"{v}{part.at_words}: spread-skill ratio per "
                            f"{'zonal ' if zonal else ''}wavenumber"
                        ),
                    )
                    target.figure(fig, f"spread_skill_spectrum_{part.stem}.png")
    # a level dim's column after the variable's, its cells with the coordinate's units
    level_words: dict[str, dict[Any, str]] = {}
    for v in names:
        for part in parts[v]:
            for key, value in part.labels.items():
                level_words.setdefault(key, {})[value] = part.words[key]

    def table_columns(table: list[dict[str, Any]]) -> list[str]:
        """Every row's columns (a precipitation variable's own ones after the others), in
        the order of their first row; entries that only metrics.json holds left out."""
        found = dict.fromkeys(c for row in table for c in row if c not in _JSON_ONLY)
        rest = [c for c in found if c != "variable" and c not in level_words]
        return ["variable", *level_words, *rest]

    def table_row(row: dict[str, Any], columns: list[str]) -> str:
        cells = [
            ""  # a column of other variables (a precipitation variable's wet fraction)
            if c not in row
            else level_words[c].get(row[c], _table_cell(row[c]))
            if c in level_words
            else _table_cell(row[c])
            for c in columns
        ]
        return "| " + " | ".join(cells) + " |"

    columns = table_columns(rows)
    weighting = (
        "weighted by cell area (cos latitude)" if weights is not None else "over all grid points"
    )
    kind = "zonal" if zonal else method.upper()
    # the isotropic spectra's LSD leaves out the partly filled corner bins (zonal spectra are
    # complete in every bin): said under the tables
    bins = (
        ""
        if zonal
        else "The LSD averages over the complete annuli, the bins plotted: wavenumbers up to "
        + (
            "the smaller of the two axes' Nyquist wavenumbers"
            if method == "fft"
            else "the smaller of the two axes' highest DCT modes"
        )
        + " (the partly filled corner bins beyond are left out)."
    )
    if has_members:
        scores = (
            f"CRPS fair, spread/skill Fortin-corrected over the {pred.sizes[member_dim]} "
            f"members; LSD: log-spectral distance of the member-averaged {kind} power spectra."
        )
    else:  # one field per point: the ensemble scores are not computed, say so
        scores = (
            f"one prediction per point (no {member_dim!r} dim of two or more members): no CRPS, "
            f"spread/skill or rank histogram; LSD: log-spectral distance of the {kind} power "
            "spectra."
        )
    lines = [
        f"{_REPORT_TITLE}{pred_path} against {truth_path}",
        "",
        f"Means {weighting}; {scores}",
        "",
        *([_ZONAL_SPECTRA, ""] if zonal else []),
        *([_level_words(parts), ""] if level_words else []),
        *([_precipitation_words(events, weights is not None, has_members), ""] if events else []),
        _provenance_words(provenance, int(pred.sizes.get(member_dim, 1))),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += [table_row(row, columns) for row in rows]
    if not has_members:  # no ensemble: the prediction's own RMSE and MAE (same JSON keys)
        lines[lines.index("| " + " | ".join(columns) + " |")] = _heading(columns)
    if by_lead:
        n_leads = len(dict.fromkeys(leads or []))
        lead_columns = table_columns(by_lead)
        said = (
            f"the forecasts' {n_leads} leads, each over the {starts} starts: every field against "
            "the truth at its own valid_time; the table above pools them all"
            if starts > 1
            else f"the forecast's {n_leads} leads, each against the truth at its valid_time; the "
            "table above pools them"
        )
        lines += [
            "",
            f"By lead ({said}):",
            "",
            "| " + " | ".join(lead_columns) + " |" if has_members else _heading(lead_columns),
            "|" + "---|" * len(lead_columns),
        ]
        lines += [table_row(row, lead_columns) for row in by_lead]
    if bins:  # which bins the LSD of the tables above averages over
        lines += ["", bins]
    if scale_lines:  # where the ensemble is too confident or too noisy, scale by scale
        heading = _ZONAL_SCALE_HEADING if zonal else _SCALE_HEADING
        lines += ["", heading, "", *(f"- {line}" for line in scale_lines)]
    # what inf, nan and n/a in the tables mean
    spelled = _non_finite_words([*rows, *by_lead], windows)
    if spelled:
        lines += ["", spelled]
    if no_threshold:
        lines += [
            "",
            "No wet fraction, FSS or q99 for " + "; for ".join(no_threshold) + ".",
        ]
    if unscored:
        lines += [
            "",
            "Not scored (the truth has no such variable): "
            + ", ".join(f"`{v}`" for v in unscored)
            + ".",
        ]
    if gaps:
        lines += [
            "",
            "Scores over the valid points only. Spectra need gap-free fields: "
            + "; ".join(gaps)
            + " (fill or crop the gaps to get them all).",
        ]
    report = "\n".join(lines) + "\n"
    target.write_text("metrics.md", report)
    # strict JSON: a score that is NaN or infinite is null, and "non_finite" says which it was
    strict = [_strict_row(row) for row in rows]
    if provenance:  # each row says what made the prediction (absent: the file does not say)
        strict = [{**row, "prediction": provenance} for row in strict]
    target.write_text("metrics.json", json.dumps(strict, indent=2, allow_nan=False))
    if by_lead:
        target.write_text(
            "metrics_by_lead.json",
            json.dumps([_strict_row(row) for row in by_lead], indent=2, allow_nan=False),
        )
    return report, strict, list(level_words)


#: The name starts of the report's figures (``spectra_t2m.png``, ...).
_FIGURE_KINDS = ("spectra_", "rank_histogram_", "spread_skill_spectrum_")


def _starts_a_report(line: str) -> bool:
    """Whether ``line``, the first of a ``metrics.md``, is the title of a report of
    ``evaluate``."""
    return line.startswith(_REPORT_TITLE)


def _is_report_folder(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier report of ``evaluate`` (its ``metrics.md`` starts
    with the report's title)."""
    return written_here(folder, "metrics.md", _starts_a_report)


#: The text chunk that marks a figure of the report as the command's own (``savefig``'s PNG
#: metadata): a folder left with some figures and no ``metrics.md`` (a run killed while
#: moving its report into place) is then known as an unfinished report, not the user's files.
_FIGURE_MARK = {"flexdownscale": "evaluate report figure"}


def _is_report_figure(path: Path) -> bool:
    """Whether ``path`` is a figure that ``evaluate`` wrote (it carries :data:`_FIGURE_MARK`)."""
    ((key, value),) = _FIGURE_MARK.items()
    return path.name.startswith(_FIGURE_KINDS) and png_text(path).get(key) == value


def _earlier_figures(folder: Path) -> set[str]:
    """The figures of an earlier report in ``folder``: every figure of the report's names in
    a report's folder, else those that carry the command's mark (an unfinished report's); a
    re-run removes those it does not draw again, so no figure of a variable, level or score
    that the new report lacks is left beside it."""
    if not folder.is_dir():
        return set()
    figures = [p for p in folder.glob("*.png") if p.name.startswith(_FIGURE_KINDS) and p.is_file()]
    if _is_report_folder(folder):
        return {p.name for p in figures}
    return {p.name for p in figures if _is_report_figure(p)}


class _StagedReport:
    """A report written into a hidden folder inside its report folder and moved into it once
    complete (:meth:`commit`), so that an interrupted or failed ``evaluate`` leaves the report
    folder as it was (:meth:`discard`): an earlier report whole, no figures without their
    ``metrics.md``, no folder it made.

    Parameters
    ----------
    folder : Path
        The report folder (``--out``, or its ``baseline`` folder).
    stage : Path
        The hidden folder the new report is written into.
    stale : set of str
        The earlier report's figures; those the new report does not draw are removed.
    made : bool
        Whether this run made ``folder`` (removed again when it is left empty).
    """

    #: The start and end of a staging folder's name (``.evaluate-k3j_x.partial``).
    PREFIX, SUFFIX = ".evaluate-", ".partial"

    def __init__(self, folder: Path, stage: Path, stale: set[str], made: bool) -> None:
        self.folder, self.stage, self.stale, self.made = folder, stage, stale, made
        self.committed = False

    @classmethod
    def make(cls, folder: Path, stale: set[str], made: bool) -> _StagedReport:
        """A new staging folder in ``folder`` (whose lock the caller holds), after removing
        those that runs killed before their clean-up left there."""
        import shutil
        import tempfile

        for left in folder.glob(f"{cls.PREFIX}*{cls.SUFFIX}"):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=cls.PREFIX, suffix=cls.SUFFIX, dir=folder))
        return cls(folder, stage, stale, made)

    def write_text(self, name: str, text: str) -> None:
        """Write the report file ``name`` (whole or not at all; an error names its place in
        the report folder, not the hidden one)."""
        write_text_atomically(self.stage / name, text, shown=self.folder / name)

    def figure(self, fig: Any, name: str) -> None:
        """Save the figure ``fig`` as the report file ``name``, marked as the command's own
        (:data:`_FIGURE_MARK`)."""
        write_figure(fig, self.stage / name, 100, _FIGURE_MARK, shown=self.folder / name)

    def commit(self) -> None:
        """Move the new report's files into the report folder, ``metrics.md`` last (until then
        the folder holds the earlier report, if any), and remove the earlier report's files
        that the new one lacks. A report file that is a symbolic link is written through."""
        from ._output import unwritable_file

        new = sorted(p.name for p in self.stage.iterdir())
        # what the earlier report had and this one lacks: an earlier forecast's per-lead
        # table, the figures of variables, levels or scores not drawn again
        gone = (self.stale | {"metrics_by_lead.json"}) - set(new)
        for name in sorted(new, key=lambda n: n == "metrics.md"):
            if name == "metrics.md":
                for old in gone:
                    (self.folder / old).unlink(missing_ok=True)
            try:
                os.replace(self.stage / name, written_through(self.folder / name))
            except OSError as err:  # a link to another disk: said of the report's file
                raise unwritable_file(self.folder / name, err) from err
        self.committed = True
        self.discard()

    def discard(self) -> None:
        """Remove the staging folder, and the report folder when this run made it and it is
        still empty (a run that did not get to :meth:`commit`)."""
        import shutil

        shutil.rmtree(self.stage, ignore_errors=True)
        if self.made and not self.committed:
            with contextlib.suppress(OSError):  # not empty: something else was put there
                self.folder.rmdir()


def _remove_earlier_report(folder: Path) -> None:
    """Remove an earlier report of ``evaluate`` from ``folder`` (its ``metrics*`` files and
    figures; the folder too when nothing else is in it). Other files are never touched, nor
    a folder that holds no report of ``evaluate``."""
    if not _is_report_folder(folder):
        return
    for name in (*_earlier_figures(folder), "metrics_by_lead.json", "metrics.json"):
        (folder / name).unlink(missing_ok=True)
    (folder / "metrics.md").unlink()  # last: until then the folder still says it is a report
    if not any(folder.iterdir()):
        folder.rmdir()


def _unwritable_folder(given: str, err: OSError) -> DataError:
    """The ``DataError`` for a report folder ``--out`` that cannot be made or written in (a
    read-only folder, a full disk, a file in the way): the folder and the cause, as the command
    line says a file-system error, and what to do where the cause says it
    (:func:`flexdownscale._output.unwritable_folder`)."""
    from ._output import unwritable_folder

    return unwritable_folder(f"use {given!r}", err, Path(given).parent)


def _report_folder_in_use(given: str) -> Any:
    """The ``DataError`` for a report folder ``--out`` that another ``evaluate`` (in this
    process or another) is writing its report into at this moment."""
    return DataError(
        f"{given!r} is in use: another evaluate is writing its report there now (it holds the "
        "folder's lock), and two reports written into one folder at once would mix their "
        "files; wait for that run to end, or give --out another folder"
    )


#: The heading of metrics.md's lines on the spread-skill ratio per wavenumber.
_SCALE_HEADING = (
    "Spread-skill ratio per wavenumber (`spread_skill_spectrum`, Fortin-corrected, over the "
    "complete annuli; 1: the right spread at that scale, below 1: too little, above: too much):"
)
#: The same heading for a global grid's zonal spectra.
_ZONAL_SCALE_HEADING = (
    "Spread-skill ratio per zonal wavenumber (`spread_skill_spectrum(..., kind='zonal')`, "
    "Fortin-corrected, along each latitude circle, the latitudes weighted by area; 1: the "
    "right spread at that scale, below 1: too little, above: too much):"
)
#: How a line of :func:`_scale_words` ends when there is nothing to plot.
_NO_SCALE_PLOT = "no plot."


def _scale_text(ratio: Any, k: float) -> str:
    """A wavenumber ``k`` of ``ratio`` in words: a wavelength in km for grids in metres or
    kilometres, cycles per domain length for dimensionless coordinates; a zonal wavenumber
    with its wavelength on the equator."""
    if "zonal_wavenumber" in ratio.dims:
        from .metrics._utils import EARTH_RADIUS

        equator = 2e-3 * math.pi * float(ratio.attrs.get("earth_radius", EARTH_RADIUS)) / k
        return f"zonal wavenumber {k:.0f}, {equator:,.0f} km on the equator"
    units = str(ratio["wavenumber"].attrs.get("units", ""))
    if units in ("m-1", "km-1"):
        return f"wavelength {(1e-3 if units == 'm-1' else 1.0) / k:.3g} km"
    dk = ratio.attrs.get("dk")
    if units in ("", "1") and dk:
        per_length = k / float(dk) / (1.0 if ratio.attrs.get("spectrum_method") == "FFT" else 2.0)
        return f"{per_length:.3g} cycles per domain length"
    return f"wavenumber {k:.3g} {units}".rstrip()


def _scale_words(ratio: Any, label: str, stem: str) -> str:
    """A line of ``metrics.md`` on the spread-skill ratio per wavenumber ``ratio`` (from
    :func:`~flexdownscale.metrics.spread_skill_spectrum`): its lowest and highest values over
    the complete annuli and where they are, and its plot's file; ending in
    :data:`_NO_SCALE_PLOT` when it has no finite positive value (members that do not differ,
    no gap-free field)."""
    import numpy as np

    from .metrics.spectra import _spectral_dim, complete_bins

    sdim = _spectral_dim(ratio, None)
    keep = complete_bins(ratio, sdim)
    if keep is not None:
        ratio = ratio.isel({sdim: keep})
    values = np.asarray(ratio.values, dtype=float)
    k = np.asarray(ratio[sdim].values, dtype=float)
    drawn = np.isfinite(values) & (values > 0)
    if not drawn.any():
        why = (
            "the members do not differ"
            if np.all(values[np.isfinite(values)] == 0)
            else ("no finite value")
        )
        return f"{label}: none ({why}); {_NO_SCALE_PLOT}"
    lo, hi = (
        int(np.nanargmin(np.where(drawn, values, np.nan))),
        int(np.nanargmax(np.where(drawn, values, np.nan))),
    )
    below = int((values[drawn] < 1.0).sum())
    n = int(drawn.sum())
    verdict = (
        "too little spread at every scale"
        if below == n
        else "too much spread at every scale"
        if below == 0
        else f"below 1 at {below} of {n} wavenumbers"
    )
    return (
        f"{label}: from {values[lo]:.2f} ({_scale_text(ratio, k[lo])}) to {values[hi]:.2f} "
        f"({_scale_text(ratio, k[hi])}), {verdict}; spread_skill_spectrum_{stem}.png."
    )


def _stream(ds: Any, chunks: dict[str, int]) -> Any:
    """``ds`` with its data variables dask-backed (read lazily, chunk by chunk), in chunks of
    ``chunks`` (dim: length) and whole along every other dim. Coordinates are left as they
    are."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        out[name] = var.variable.chunk({d: chunks.get(str(d), -1) for d in var.dims})
    return out


def _steps_per_chunk(ds: Any, along: Sequence[str], given: int | None) -> int:
    """The time steps per chunk: ``given`` (``--time-chunk``), else as many fields (one index
    along each of the dims ``along``, with all the other dims) of the data variables of ``ds``
    that have those dims as fit in :data:`CHUNK_BYTES`, at least one."""
    if given is not None:
        return given
    field = 0
    for var in ds.data_vars.values():
        if all(d in var.dims for d in along):
            count = 1
            for d in along:
                count *= var.sizes[d]
            field += var.dtype.itemsize * var.size // max(count, 1)
    return max(1, CHUNK_BYTES // max(field, 1))


def _stream_prediction(
    pred: Any, dims: dict[str, str], lead_dim: str | None, given: int | None
) -> tuple[Any, str | None, int]:
    """The prediction ready to be read in time chunks, the name its time dim will have
    (``lead_dim`` for a forecast, whose leads become a series along it; ``None`` without a
    time dim) and the time steps per chunk (``given``, or :func:`_steps_per_chunk`'s).

    Forecasts from several starts are made one series of (start, lead) fields, which reads a
    netCDF file whole: they are chunked here (:func:`_stream`) along their starts, every lead
    in each chunk, and a chunk holds whole starts. By default a zarr store's chunks are read
    whole (a chunk is a whole number of them, when they are not larger). A prediction without
    a time dim is one chunk; with ``--time-chunk`` (``given``) that is :func:`find_time_dim`'s
    DataError.
    """
    if lead_dim is not None:
        start = _forecast_starts(pred)
        if start is None or pred.sizes[start] == 1:
            return pred, lead_dim, _steps_per_chunk(pred, ["lead"], given)
        leads = pred.sizes["lead"]
        starts = max(1, _steps_per_chunk(pred, ["lead", start], given) // leads)
        return _stream(pred, {start: starts}), lead_dim, starts * leads
    try:
        time = find_time_dim(pred, _dims_in(pred, dims) or {})
    except DataError:
        if given is not None:
            raise
        return pred, None, 1
    steps = _steps_per_chunk(pred, [time], given)
    stored = [
        var.chunksizes[time][0]
        for var in pred.data_vars.values()
        if var.chunks is not None and time in var.dims
    ]
    if given is None and stored and max(stored) <= steps:
        steps -= steps % max(stored)
    return pred, time, steps


def _read_chunk(fields: dict[str, Any], dim: str | None, start: int, stop: int) -> dict[str, Any]:
    """The values of ``fields`` (lazy DataArrays) from ``start`` to ``stop`` along ``dim``, as
    numpy arrays: one time chunk of every scored variable of both files, read in one task."""
    import dask
    import numpy as np

    out = {}
    for name, field in fields.items():
        part = field.isel({dim: slice(start, stop)}) if dim in field.dims else field
        data = part.data  # a lazily indexed file reads the chunk here; a zarr store is dask
        if dask.is_dask_collection(data):
            (data,) = dask.compute(data, scheduler="synchronous")
        out[name] = np.asarray(data)
    return out


def _streamed(
    pred: Any, truth: Any, names: list[str], dim: str | None, steps: int
) -> tuple[Any, Any, dict[str, int]]:
    """``pred`` and ``truth`` with the variables ``names`` dask-backed in chunks of ``steps``
    along ``dim`` (the whole field without it), whole along every other dim (the ensemble
    scores sort along the members and the spectra transform the grid), and the read task of
    each time chunk with its position (for :func:`_chunk_by_chunk`).

    Each time chunk of every variable of both files is read by one task (:func:`_read_chunk`),
    so that its scores can all be computed as soon as it is read, and it freed: a dask array
    per file let dask's scheduler read the whole prediction before it had the truth's chunks
    to score it with. The truth is read only where the prediction is (its grid points, times
    and the prediction's label of a dim only it has).
    """
    import uuid

    import dask
    import dask.array as da

    fields = {f"{side}:{v}": obj[v] for v in names for side, obj in (("p", pred), ("t", truth))}
    size = pred.sizes.get(dim, 1) if dim is not None else 1
    bounds = [(a, min(a + steps, size)) for a in range(0, size, steps)] or [(0, size)]
    token = uuid.uuid4().hex
    reader = dask.delayed(
        functools.partial(_read_chunk, fields), name=f"read-{token}", pure=True, traverse=False
    )
    chunks = [
        reader(dim, a, b, dask_key_name=f"flexdownscale-evaluate-read-{token}-{i}")
        for i, (a, b) in enumerate(bounds)
    ]
    order = {f"flexdownscale-evaluate-read-{token}-{i}": i for i in range(len(bounds))}

    def streamed(key: str) -> Any:
        field = fields[key]
        if dim is None or dim not in field.dims:  # one field: read once, with the first chunk
            data = da.from_delayed(chunks[0][key], shape=field.shape, dtype=field.dtype)
            return field.copy(deep=False, data=data)
        axis = field.dims.index(dim)
        parts = []
        for chunk, (a, b) in zip(chunks, bounds, strict=True):
            shape = list(field.shape)
            shape[axis] = b - a
            parts.append(da.from_delayed(chunk[key], shape=tuple(shape), dtype=field.dtype))
        return field.copy(deep=False, data=da.concatenate(parts, axis=axis))

    pred, truth = pred.copy(), truth.copy()
    for v in names:
        pred[v], truth[v] = streamed(f"p:{v}"), streamed(f"t:{v}")
    return pred, truth, order


def _chunk_by_chunk(reads: dict[str, int]) -> Any:
    """A dask scheduler callback that runs the ready tasks of the earliest time chunk first.

    ``reads`` gives the read task of each time chunk (:func:`_streamed`) with its position. A
    task takes the latest chunk it needs (a task of one chunk, that chunk; a sum over chunks,
    the last of them), and a task that needs none (the zeros xarray's NaN-skipping sums start
    from, say) the earliest chunk that needs it. The local scheduler runs the most recently
    readied task first but started from dask's static order, which for many scores of the same
    chunks could read every chunk before scoring one (the whole file in memory); in chunk
    order a chunk's scores are done before more than the next chunk is read. With another
    scheduler, or a dask whose scheduler state differs, it does nothing.
    """
    import bisect

    from dask.callbacks import Callback

    rank: dict[Hashable, int] = {}
    placed: set[Hashable] = set()

    def priority(key: Hashable) -> int:  # the ready list runs from its end: latest chunk first
        return -rank.get(key, -1)

    def start_state(dsk: Any, state: dict[str, Any]) -> None:
        ready, needs, needed_by = (state.get(k) for k in ("ready", "dependencies", "dependents"))
        if rank or not isinstance(ready, list) or needs is None or needed_by is None:
            return
        left = {key: len(needs[key]) for key in needs}
        todo = [key for key, n in left.items() if not n]
        walk = []
        while todo:  # a topological order
            key = todo.pop()
            walk.append(key)
            for later in needed_by.get(key, ()):
                left[later] -= 1
                if not left[later]:
                    todo.append(later)
        for key in walk:
            if key in reads:
                rank[key] = reads[key]
            else:
                ranks = [rank[d] for d in needs[key] if d in rank]
                if ranks:
                    rank[key] = max(ranks)
        for key in reversed(walk):
            if key not in rank:
                ranks = [rank[d] for d in needed_by.get(key, ()) if d in rank]
                rank[key] = min(ranks) if ranks else -1
        ready.sort(key=priority)
        placed.update(ready)

    def posttask(key: Hashable, result: Any, dsk: Any, state: dict[str, Any], worker: Any) -> None:
        ready = state.get("ready")
        if not rank or not isinstance(ready, list):
            return
        new = []
        while ready and ready[-1] not in placed:  # the tasks this one readied, at the end
            new.append(ready.pop())
        for task in reversed(new):
            placed.add(task)
            bisect.insort(ready, task, key=priority)

    return Callback(start_state=start_state, posttask=posttask)


def _runs(values: Any, missing: Any, limit: int = 3) -> str:
    """``"a .. b, c"``: the runs of consecutive ``values`` where ``missing`` is true."""
    runs: list[str] = []
    start = None
    for i, miss in enumerate([*missing, False]):
        if miss and start is None:
            start = i
        elif not miss and start is not None:
            lo, hi = values[start], values[i - 1]
            runs.append(f"{lo:g}" if i - 1 == start else f"{lo:g} .. {hi:g}")
            start = None
    shown = ", ".join(runs[:limit])
    return shown + (f" and {len(runs) - limit} more runs" if len(runs) > limit else "")


def _truth_on_prediction_grid(
    pred: Any, truth: Any, dims: tuple[str, str], *, periods: dict[str, float] | None = None
) -> Any:
    """The truth at the prediction's grid points (nearest within 1e-3 cells), else GridError.

    ``periods`` gives the dims compared modulo their period: 360 degrees for longitude (either
    convention on each side), the box length for a periodic domain (a prediction cut across
    the seam keeps coordinates beyond the box, e.g. x from -0.5 on [0, 2 pi)). A periodic axis
    (``periodic = "true"``) that the prediction covers only in part (a ``--bbox`` crop) loses
    that attribute: a crop does not wrap around. An axis covered whole (perhaps rotated
    across its seam) keeps it.
    """
    import numpy as np
    import pandas as pd

    from .errors import GridError

    periods = periods or {}

    positions = {}
    for dim in dims:
        if dim not in truth.indexes:
            raise GridError(
                f"the truth has no {dim!r} coordinate (its dims: {tuple(map(str, truth.dims))}); "
                "give truth on the fine grid the prediction was made on"
            )
        want = np.asarray(pred[dim].values, dtype=float)
        have = np.asarray(truth[dim].values, dtype=float)
        step = float(np.abs(np.diff(want)).mean()) if want.size > 1 else 1.0
        tol = 1e-3 * step
        if dim in periods:  # the truth's coordinates in the prediction's range
            low = want.min() - tol
            have = (have - low) % periods[dim] + low
        order = np.argsort(have, kind="stable")
        index = pd.Index(have[order])
        if not index.is_unique:
            raise GridError(f"the truth's {dim!r} coordinate has repeated values")
        found = index.get_indexer(want, method="nearest", tolerance=tol)
        found = np.where(found < 0, -1, order[np.maximum(found, 0)])
        missing = found < 0
        if missing.any():
            raise GridError(
                f"the truth does not cover the prediction grid: {int(missing.sum())} of the "
                f"{want.size} prediction {dim} values have no truth point within {tol:.3g} "
                f"({_runs(want, missing)}; prediction {dim} {want.min():g} .. {want.max():g}, "
                f"truth {have.min():g} .. {have.max():g}); give truth covering the whole "
                "prediction grid, on the fine grid the prediction was made on"
            )
        positions[dim] = found
    # a crop of a periodic axis does not wrap: its spectra are those of a limited area (DCT)
    whole = {dim: np.unique(positions[dim]).size == truth.sizes[dim] for dim in dims}
    truth = truth.isel(positions)

    def attrs(dim: str) -> dict[str, Any]:
        kept = dict(truth[dim].attrs)
        if not whole[dim]:
            kept.pop("periodic", None)
        return kept

    return truth.assign_coords({d: (d, pred[d].values, attrs(d)) for d in dims})


def _truth_at_prediction_times(pred: Any, truth: Any, dim: str, limit: int = 3) -> Any:
    """The truth at the prediction's times, else DataError naming the missing ones (each time
    once: forecasts from several starts repeat the valid times where they overlap). A time dim
    without values in either file is matched by position (the same number of fields)."""
    from .metrics._utils import _calendar

    if dim not in pred.indexes or dim not in truth.indexes:  # a dim without time values
        if pred.sizes[dim] != truth.sizes[dim]:
            which = [
                n for n, ds in (("prediction", pred), ("truth", truth)) if dim not in ds.indexes
            ]
            raise DataError(
                f"the {' and the '.join(which)} {'have' if len(which) > 1 else 'has'} no {dim} "
                f"values, so the fields are matched by position, but the prediction has "
                f"{pred.sizes[dim]} and the truth {truth.sizes[dim]}; give both files their "
                f"{dim} values (ds.assign_coords({dim}=...)) or cut the truth to the predicted "
                "fields"
            )
        return truth
    wanted = pred.indexes[dim]
    ours, theirs = _calendar(wanted), _calendar(truth.indexes[dim])
    if ours is not None and theirs is not None and ours != theirs:
        raise DataError(
            f"the prediction's {dim} is in the {ours} and the truth's in the {theirs}: the "
            "same dates in two calendars never match; convert one file to the other's "
            f"calendar first (with xarray, for example: ds.convert_calendar("
            f"{ours.split()[0]!r}"
            + (", use_cftime=False)" if "datetime64" in ours else ")")
            + " on the truth)"
        )
    distinct = wanted.unique()
    missing = distinct[~distinct.isin(truth.indexes[dim])]
    if len(missing):
        shown = ", ".join(str(t) for t in missing[:limit])
        more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
        raise DataError(
            f"the truth lacks {len(missing)} of the prediction's {len(distinct)} {dim} values "
            f"({shown}{more}); give truth for every predicted time"
        )
    return truth.sel({dim: wanted})


def _dims_in(ds: Any, dims: dict[str, str]) -> dict[str, str] | None:
    """The entries of a ``--dims`` override that name dims of ``ds`` (the prediction and the
    truth may name their time dims differently)."""
    return {axis: dim for axis, dim in dims.items() if dim in ds.dims} or None


def _forecast_starts(pred: Any) -> str | None:
    """The dim of a forecast's start times: the dim other than ``lead`` of a 2-D
    ``valid_time`` (forecasts from several starts concatenated along
    ``forecast_reference_time``), or a ``forecast_reference_time`` dim beside a ``valid_time``
    along ``lead`` only. ``None`` for one forecast, whose start is a scalar."""
    stamp = pred.coords.get("valid_time")
    if stamp is not None and stamp.ndim == 2 and "lead" in stamp.dims:
        return str(next(d for d in stamp.dims if d != "lead"))
    return "forecast_reference_time" if "forecast_reference_time" in pred.dims else None


def _forecast_leads(pred: Any, dims: dict[str, str]) -> str | None:
    """The name the time dim of a forecast's leads takes (``valid_time``, or a ``--dims time=``
    name), when ``pred`` is a forecast: a ``lead`` dim with a ``valid_time`` coordinate along it
    (and along the starts, for forecasts from several, see :func:`_forecast_starts`) and no
    other time dim. ``None`` for other predictions."""
    from .data.grid import find_axes

    stamp = pred.coords.get("valid_time")
    start = _forecast_starts(pred)
    if "lead" not in pred.dims or stamp is None:
        return None
    if stamp.dims != ("lead",) and set(stamp.dims) != {"lead", start}:
        return None
    name = dims.get("time", "valid_time")
    if name == start:  # the start times are no time dim of the fields: they are matched by
        name = "valid_time"  # valid_time like the leads
    if name not in ("lead", "valid_time"):
        for v in pred.data_vars:  # a time dim of its own: not a forecast's leads
            if find_axes(pred[v], dims=_dims_in(pred, dims)).time not in (None, start):
                return None
    return name


def _forecast_series(pred: Any) -> tuple[Any, list[int], int]:
    """A forecast as a series of fields along ``valid_time`` (the ``lead`` dim's place), the
    lead of each field and the number of start times.

    One forecast (no start dim, or a start dim of one value) gives its leads in order; several
    starts give every (start, lead) pair, start by start, so a valid time repeats where the
    forecasts overlap. DataError for several starts with one ``valid_time`` for all (xarray's
    ``concat`` keeps the first forecast's valid times unless told to concatenate them).
    """
    import numpy as np

    start = _forecast_starts(pred)
    if start is not None and pred.sizes[start] == 1:  # one start, kept as a dim
        pred, start = pred.isel({start: 0}), None
    leads = [int(k) for k in np.asarray(pred["lead"].values)]
    if start is None:
        return pred.swap_dims({"lead": "valid_time"}).drop_vars("lead"), leads, 1
    if start not in pred["valid_time"].dims:
        raise DataError(
            f"the forecast has {pred.sizes[start]} {start!r} values but one valid_time along "
            "lead for all of them (xarray's concat kept the first forecast's): concatenate the "
            f"forecasts with their valid times, xr.concat(forecasts, dim={start!r}, "
            "coords=['valid_time'])"
        )
    stamp = pred["valid_time"].transpose(start, "lead")
    gaps = np.asarray(stamp.isnull().values)
    if gaps.any():  # concat pads a forecast with fewer leads with NaN fields and NaT times
        counts = (~gaps).sum(axis=1)
        shortest = int(counts.min())
        raise DataError(
            f"the forecasts from the {pred.sizes[start]} {start!r} values have different numbers "
            f"of leads ({shortest} to {int(counts.max())}): concatenating them filled the "
            "missing leads with NaN fields and no valid_time. Give every forecast the same "
            f"leads, e.g. xr.concat([f.isel(lead=slice(0, {shortest})) for f in forecasts], "
            f"dim={start!r}, coords=['valid_time'])"
        )
    series = pred.stack({"_start_lead": (start, "lead")}, create_index=False)
    series = series.swap_dims({"_start_lead": "valid_time"}).drop_vars(["lead", start])
    return series, leads * pred.sizes[start], pred.sizes[start]


def _truth_in_time_with(
    pred: Any,
    truth: Any,
    names: list[str],
    dims: dict[str, str] | None = None,
    member_dim: str = "member",
) -> Any:
    """The truth at the prediction's time(s), however each side stores time, else DataError.

    A time dim (under any name) on both sides: matched by value. A single field on one side:
    matched by its scalar time coordinate, or, without one, only against a truth of one time.
    The truth is never broadcast across the prediction's times. ``dims`` is the ``--dims``
    override (applied to each file where it names one of its dims); ``member_dim`` the
    prediction's ensemble dim.
    """
    import numpy as np

    from .data.grid import find_axes

    dims = dims or {}
    paxes = find_axes(pred[names[0]], dims=_dims_in(pred, dims))
    ptime = paxes.time
    ttime = find_axes(truth[names[0]], dims=_dims_in(truth, dims)).time
    unknown = [
        str(d) for d in pred[names[0]].dims if d not in (paxes.y, paxes.x, ptime, member_dim)
    ]
    if ptime is None and ttime is not None and unknown:
        raise DataError(
            f"the prediction has dims {unknown} that are neither its grid nor {member_dim!r}; "
            f"if {unknown[0]!r} is its time dim, pass --dims time={unknown[0]}"
        )
    if ptime is not None and ttime is not None:
        if ttime != ptime:
            truth = truth.rename({ttime: ptime})
        return _truth_at_prediction_times(pred, truth, ptime)
    if ptime is not None:  # the truth is a single field
        stamp = truth.coords.get(ptime)
        if pred.sizes[ptime] == 1 and (stamp is None or stamp.ndim == 0):
            if stamp is not None and stamp.values != pred[ptime].values[0]:
                raise DataError(
                    f"the truth is for {ptime} = {stamp.values} but the prediction for "
                    f"{pred[ptime].values[0]}; give the truth for the predicted time"
                )
            return truth.drop_vars(ptime, errors="ignore").expand_dims({ptime: pred[ptime]})
        raise DataError(
            f"the prediction has {pred.sizes[ptime]} {ptime!r} values but the truth has no time "
            "dim; give truth for every predicted time"
        )
    if ttime is not None:  # the prediction is a single field
        stamp = next(
            (pred.coords[c] for c in (ttime, "time", "valid_time") if c in pred.coords), None
        )
        if stamp is not None and stamp.ndim == 0:
            hit = np.flatnonzero(truth[ttime].values == stamp.values)
            if hit.size == 0:
                raise DataError(
                    f"the prediction is for {stamp.name} = {stamp.values}, which the truth's "
                    f"{ttime!r} does not have; give truth for the predicted time"
                )
            return truth.isel({ttime: int(hit[0])}, drop=True)
        if truth.sizes[ttime] == 1:
            return truth.isel({ttime: 0}, drop=True)
        raise DataError(
            f"the prediction is a single field with no time coordinate but the truth has "
            f"{truth.sizes[ttime]} {ttime!r} values; select the matching truth time first"
        )
    for name in ("time", "valid_time"):  # two single fields: their time stamps must agree
        a, b = pred.coords.get(name), truth.coords.get(name)
        if a is not None and b is not None and a.ndim == b.ndim == 0 and a.values != b.values:
            raise DataError(
                f"the truth is for {name} = {b.values} but the prediction for {a.values}; give "
                "the truth for the predicted time"
            )
    return truth


def _check_same_units(
    pred: Any,
    truth: Any,
    names: list[str],
    truth_path: str = "TRUTH",
    renames: dict[str, str] | None = None,
) -> None:
    """UnitsError when a variable's units differ between prediction and truth (compared as
    units: ``m s**-1`` and ``m/s`` are the same). For a water depth against a mass per area
    (``mm`` and ``kg m-2``) the message gives the commands that convert the truth file
    ``truth_path`` (whose variables ``renames`` renamed, truth name to prediction name) into
    the prediction's units, for liquid water."""
    from .errors import UnitsError
    from .units import compare_units

    for v in names:
        a, b = pred[v].attrs.get("units"), truth[v].attrs.get("units")
        if a is None and b is None:
            continue
        if a is None or b is None:  # one file says, the other cannot be checked against it
            has, lacks = ("prediction", "truth") if b is None else ("truth", "prediction")
            raise UnitsError(
                f"variable {v!r} is in {a if b is None else b!r} in the {has} but has no "
                f"'units' attribute in the {lacks}; set it in the {lacks} file (after "
                "converting the values if they are in other units)"
            )
        units = compare_units(str(a), str(b))
        if units.outcome == "same":
            continue
        if units.outcome == "convertible":
            raise UnitsError(
                f"variable {v!r} is in {a!r} in the prediction but in {b!r} in the truth "
                f"({units.rule}); convert one of them (values and attrs['units']) so both are "
                "in the same units"
            )
        if units.outcome == "not_a_unit":  # an attribute that names no unit: wrong metadata
            sides = [
                ("prediction", str(a), units.found_kind),
                ("truth", str(b), units.expected_kind),
            ]
            unknown = [(side, u) for side, u, kind in sides if kind is None]
            said = [
                f"the {side}'s 'units' attribute "
                + ("is empty" if not u.strip() else f"is {u!r}, not a unit flexdownscale reads")
                for side, u in unknown
            ]
            if len(unknown) == 1:
                side, _ = unknown[0]
                other = str(b if side == "prediction" else a)
                fix = (
                    f" (the other file says {other!r}); set it to what the values are in, e.g. "
                    f"ncatted -a units,{v},o,c,'{other}' FILE"
                )
            else:  # neither names a unit: no example to take from the other file
                fix = (
                    "; set each to what the values are in, in a CF spelling ('K', 'degC', "
                    f"'hPa', 'm s-1', '1'), e.g. ncatted -a units,{v},o,c,'K' FILE"
                )
            raise UnitsError(f"variable {v!r}: {' and '.join(said)}{fix}")
        own = {new: old for old, new in (renames or {}).items()}.get(v, v)  # the truth file's
        water = compare_units(str(b), str(a)).water_hint(
            own,
            form="words" if is_zarr(truth_path) else "command",
            target=f"{own!r} in the truth",
            file=truth_path,
        )
        if water is not None:  # the prediction is in the model's units: the truth is converted
            raise UnitsError(
                f"variable {v!r} is {units.found_kind} in the prediction ({a!r}) but "
                f"{units.expected_kind} in the truth ({b!r}): not the same kind of quantity, but "
                f"{water}. Otherwise check that both files hold the same variable (if the truth "
                "names it otherwise: --rename TRUTH=PREDICTION)"
            )
        raise UnitsError(
            f"variable {v!r} is {units.found_kind} in the prediction ({a!r}) but "
            f"{units.expected_kind} in the truth ({b!r}): not the same kind of quantity, so no "
            "conversion makes them comparable; check that both files hold the same variable "
            "(if the truth names it otherwise: --rename TRUTH=PREDICTION) and that each 'units' "
            "attribute says what its values are in"
        )


_REPORT_TITLE = "# Evaluation of "

#: The report's line on the spectra of a global grid (a regional or Cartesian grid's are said
#: in the line on the scores: DCT, or FFT on a doubly periodic domain).
_ZONAL_SPECTRA = (
    "Spectra: zonal, as the grid is global (its longitude spans the whole circle): the "
    "periodogram along each latitude circle (flexdownscale.metrics.zonal_spectrum; wavenumbers "
    "in cycles per circle), averaged over the latitudes (which weights each by the length of "
    "its circle, cos latitude) and the fields' other dims (members, times). Regional and "
    "Cartesian grids get the isotropic 2-D spectrum."
)


def _check_report_folder(out: Path, stems: list[str], given: str) -> None:
    """Refuse a report folder where ``evaluate`` would overwrite files that are not its own.

    The report has fixed names (``metrics.md``, ``metrics.json``, ``metrics_by_lead.json``,
    ``spectra_<stem>.png``, ``rank_histogram_<stem>.png``, ``spread_skill_spectrum_<stem>.png``
    for each of ``stems``: the variables'
    names, with their levels for a variable scored per level, see :class:`_Level`); an earlier
    evaluation's folder (its ``metrics.md`` starts with the report's title) is written over,
    and other files are never touched. A folder of the user's with a file of one of those
    names is refused before anything is computed: nothing of theirs is lost.
    """
    from ._output import files_in_the_way

    if out.exists() and not out.is_dir():
        raise DataError(f"--out {given!r} is a file, not a folder; give a folder for the report")
    fixed = ["metrics.md", "metrics.json", "metrics_by_lead.json"]
    fixed += [f"{kind}{stem}.png" for stem in stems for kind in _FIGURE_KINDS]
    found = files_in_the_way(out, fixed, "metrics.md", _starts_a_report)
    # figures of an unfinished report (no metrics.md yet) are the command's own to replace
    found = [name for name in found if not _is_report_figure(out / name)]
    if found:
        why = (
            "its metrics.md is not a report of flexdownscale evaluate"
            if (out / "metrics.md").exists()
            else "it holds no metrics.md of one, and those files were not written by "
            "flexdownscale evaluate"
        )
        raise DataError(
            f"--out {given!r} holds {', '.join(found)}, which the report would overwrite, and "
            f"it is not an earlier evaluation's folder ({why}); give a new or empty folder, or "
            "move those files away"
        )


def _fields_in_common(pred: Any, truth: Any, dims: dict[str, str] | None) -> list[str]:
    """The prediction's variables on its (y, x) grid that the truth holds too, in the
    prediction's order: the fields to score. A grid-mapping variable (``crs``,
    ``rotated_pole``) or ``time_bnds`` written as a data variable, as CDO and CORDEX files
    have them, is no field (it crashed the scores, or made the grid unfindable when it came
    first). Without a findable grid every shared variable is returned, for the grid's own
    error to speak."""
    from .data.grid import find_axes
    from .errors import GridError

    shared = [v for v in map(str, pred.data_vars) if v in truth.data_vars]
    try:
        axes = find_axes(pred, dims=dims)
    except GridError:
        return shared
    return [v for v in shared if {axes.y, axes.x} <= set(pred[v].dims)]


#: Keys of a metrics row that a level dim cannot take for its column, which is then
#: ``"NAME (dim)"``.
_ROW_KEYS = frozenset(
    {
        "variable",
        "units",
        "lead",
        "valid_time",
        "starts",
        "non_finite",
        "prediction",
        "RMSE (ens. mean)",
        "MAE (ens. mean)",
        "truth mean",
        "bias",
        "CRPS",
        "spread/skill",
        "LSD (dB)",
        "LSD time steps",
        "threshold",
        "wet fraction (truth)",
        "wet fraction (prediction)",
        "q99 (truth)",
        "q99 (prediction)",
    }
)

#: More levels than this (values of a variable's level dims together) is warned about: a
#: row and plots each, where a time dim not recognised as one (to pool over) was likely meant.
_MANY_LEVELS = 50


@dataclass(frozen=True)
class _Level:
    """One level of a scored variable: one value of each of its level dims (the dims both
    files share besides the grid, time and the members: pressure levels, heights, a user's
    experiments), or the whole variable when it has none.

    Attributes
    ----------
    at : dict of str to int
        Positions along the level dims (for ``isel``); empty without level dims.
    labels : dict of str to value
        The level's entries of a metrics row: its column (the dim's name, or ``"NAME (dim)"``
        for a name that a row has for other entries, see :data:`_ROW_KEYS`) to the
        coordinate's value as a JSON value (a date as text), or its position without a
        coordinate.
    words : dict of str to str
        The same columns' cells in ``metrics.md``: the value with its coordinate's units
        (``500 hPa``).
    stem : str
        The name of the level's plots after ``spectra_`` and ``rank_histogram_``: the
        variable's name, then for each dim ``_``, its name and value (``u_level500``; ``-``
        before a value that is no number: ``u_experiment-ctrl``), other characters than
        letters, digits and ``.+-`` as ``_`` (positions where two values would give the same
        name).
    at_words : str
        The level in a plot's title or a message (`` at level 500 hPa``), or ``""``.
    """

    at: dict[str, int]
    labels: dict[str, Any]
    words: dict[str, str]
    stem: str
    at_words: str


def _level_text(value: Any) -> str:
    """A level's value in words: a float in ``g`` format (``500``, ``0.5``), others as
    ``str``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _level_parts(field: Any, variable: str, dims: list[str]) -> list[_Level]:
    """The levels of ``field`` (the prediction's ``variable``) along its level dims ``dims``:
    one :class:`_Level` per combination of their values, in the file's order (the last dim
    fastest); one for the whole field without level dims."""
    import itertools

    import numpy as np

    if not dims:
        return [_Level(at={}, labels={}, words={}, stem=variable, at_words="")]
    values, words, files = {}, {}, {}
    for d in dims:
        coord = field.coords.get(d)
        if coord is None:  # no coordinate: the positions
            values[d] = list(range(field.sizes[d]))
            units = ""
        else:
            values[d] = [
                str(x) if isinstance(x, np.datetime64 | np.timedelta64) else _attr_value(x)
                for x in coord.values
            ]
            units = str(coord.attrs.get("units", "")).strip()
        words[d] = [_level_text(x) + (f" {units}" if units else "") for x in values[d]]
        files[d] = [  # level500, experiment-ctrl
            re.sub(
                r"[^A-Za-z0-9.+-]+",
                "_",
                f"{d}{'' if isinstance(x, int | float) else '-'}{_level_text(x)}",
            )
            for x in values[d]
        ]
        if len(set(files[d])) < len(files[d]):  # values alike in a file name: positions
            files[d] = [re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{d}{i}") for i in range(len(files[d]))]
    keys = {d: f"{d} (dim)" if d in _ROW_KEYS else d for d in dims}
    parts = []
    for at in itertools.product(*(range(field.sizes[d]) for d in dims)):
        pos = dict(zip(dims, at, strict=True))
        parts.append(
            _Level(
                at=pos,
                labels={keys[d]: values[d][i] for d, i in pos.items()},
                words={keys[d]: words[d][i] for d, i in pos.items()},
                stem="_".join([variable, *(files[d][i] for d, i in pos.items())]),
                at_words=" at " + ", ".join(f"{d} {words[d][i]}" for d, i in pos.items()),
            )
        )
    return parts


def _level_words(parts: dict[str, list[_Level]]) -> str:
    """The report's line on the rows per level (``parts``: each variable's levels)."""
    dims = list(dict.fromkeys(d for levels in parts.values() for part in levels for d in part.at))
    example = next(part.stem for levels in parts.values() for part in levels if part.at)
    named = " and ".join(f"`{d}`" for d in dims)
    return (
        f"Rows per level: a variable along {named} gets a row for each value"
        + (" pair" if len(dims) == 2 else " combination" if len(dims) > 2 else "")
        + f" (and plots of its own, e.g. spectra_{example}.png); no row pools them, as levels "
        "differ in magnitude and spectrum (a pooled score would mostly be the largest's)."
    )


def _truth_at_prediction_levels(pred: Any, truth: Any, level_dims: dict[str, list[str]]) -> Any:
    """The truth at the prediction's values of the level dims (``level_dims``: each scored
    variable's), matched by value where both files have a coordinate (numbers to a relative
    1e-6) and taking the prediction's coordinate, else by position; DataError for values the
    truth lacks, or another number of values and no coordinate to match them by."""
    import numpy as np
    import pandas as pd

    for d in dict.fromkeys(d for dims in level_dims.values() for d in dims):
        if d not in pred.indexes or d not in truth.indexes:
            if pred.sizes[d] != truth.sizes[d]:
                lacks = [
                    side
                    for side, ds in (("prediction", pred), ("truth", truth))
                    if d not in ds.indexes
                ]
                who = "neither file has a" if len(lacks) == 2 else f"the {lacks[0]} has no"
                raise DataError(
                    f"the prediction has {count_noun(pred.sizes[d], f'{d!r} value')} and the "
                    f"truth {truth.sizes[d]}, and {who} {d!r} coordinate to match them by; "
                    f"give both files the {d!r} coordinate, or truth for the prediction's "
                    f"{d!r} values only"
                )
            continue
        want, have = pred.indexes[d], truth.indexes[d]
        if not have.is_unique:
            raise DataError(f"the truth's {d!r} coordinate has repeated values")
        if want.dtype.kind in "iuf" and have.dtype.kind in "iuf":  # float32 against float64
            wanted = np.asarray(want, dtype=float)
            had = np.asarray(have, dtype=float)
            order = np.argsort(had, kind="stable")
            found = pd.Index(had[order]).get_indexer(
                wanted, method="nearest", tolerance=1e-6 * np.abs(wanted)
            )
            found = np.where(found < 0, -1, order[np.maximum(found, 0)])
        else:
            found = np.asarray(have.get_indexer(want))
        missing = found < 0
        if missing.any():
            shown = ", ".join(_level_text(x) for x in list(want[missing])[:5])
            more = f" and {int(missing.sum()) - 5} more" if missing.sum() > 5 else ""
            raise DataError(
                f"the truth lacks {int(missing.sum())} of the prediction's {len(want)} {d!r} "
                f"values ({shown}{more}; the truth has "
                f"{', '.join(_level_text(x) for x in list(have)[:8])}"
                f"{' ...' if len(have) > 8 else ''}); give truth for every predicted {d!r}"
            )
        truth = truth.isel({d: found}).assign_coords({d: (d, pred[d].values, dict(truth[d].attrs))})
    return truth


def _warn_many_levels(parts: dict[str, list[_Level]], level_dims: dict[str, list[str]]) -> None:
    """FlexDownscaleWarning for a variable with more than :data:`_MANY_LEVELS` levels (a row
    and plots each): a time dim that was not recognised as one is the likely cause."""
    many = {v: len(levels) for v, levels in parts.items() if len(levels) > _MANY_LEVELS}
    if not many:
        return
    from ._stack import user_stacklevel
    from .errors import FlexDownscaleWarning

    v, count = next(iter(many.items()))
    dims = level_dims[v]
    warnings.warn(
        f"{v!r} is scored per value of {', '.join(map(repr, dims))}: {count} rows and plots of "
        f"each; if {dims[-1]!r} is a time dim to pool over, name it: --dims time={dims[-1]} "
        "(or select fewer values of it)",
        FlexDownscaleWarning,
        stacklevel=user_stacklevel(),
    )


def _standard_name(field: Any) -> str | None:
    """A field's CF ``standard_name``, or ``None`` when it has none (or ``"unknown"``, as
    ERA5's GRIB-converted files say)."""
    name = str(field.attrs.get("standard_name", "")).strip()
    return None if name.lower() in ("", "unknown") else name


def _warn_other_quantity(pred: Any, truth: Any, names: list[str], renames: dict[str, str]) -> None:
    """FlexDownscaleWarning for each scored variable whose CF ``standard_name`` differs between
    prediction and truth (a wrong ``--rename`` scores one quantity against another: winds of
    the same units, say); none where either file gives none. ``renames``: truth name to
    prediction name."""
    from ._stack import user_stacklevel
    from .errors import FlexDownscaleWarning

    own = {new: old for old, new in renames.items()}
    for v in names:
        a, b = _standard_name(pred[v]), _standard_name(truth[v])
        if a is None or b is None or a.lower() == b.lower():
            continue
        theirs = own.get(v, v)
        fix = (
            f"check --rename {theirs}={v}: give the truth's variable that holds {a} "
            "(--rename TRUTH=PREDICTION)"
            if theirs != v
            else f"if the truth holds {a} under another name, score that one: --rename TRUTH={v}"
        )
        warnings.warn(
            f"the prediction's {v!r} is {a!r} (its standard_name) but the truth's {theirs!r} "
            f"is {b!r}: the scores compare two quantities. {fix[0].upper()}{fix[1:]}; or "
            "correct the standard_name attribute of the file that is wrong",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )


def _scores_by_lead(
    pred: Any,
    truth: Any,
    parts: dict[str, list[_Level]],
    lead_dim: str | None,
    leads: list[int] | None,
    member_dim: str,
    weights: Any,
    has_members: bool,
    spectra: dict[tuple[str, int], Any],
    complete: dict[tuple[str, int], Any] | None = None,
    events: dict[str, _Events] | None = None,
) -> list[dict[str, Any]]:
    """Rows of the per-lead table of a forecast (``lead_dim`` the time dim of its fields,
    ``leads`` the lead of each field; none for other predictions): per variable, level (the
    variables and their levels: ``parts``, see :func:`_level_parts`) and lead, the columns of
    the pooled table, each over that lead's field: RMSE, MAE, the truth's mean and bias of the
    ensemble mean, for an ensemble the fair CRPS and the spread/skill ratio, the LSD of the
    member-averaged spectra (``spectra``: per variable and index of its level, the spectra of
    every field of the prediction and the truth at that level, or ``None`` for a level without
    a field free of gaps; ``complete``: per level, which fields are free of gaps, ``None``
    when all are: a lead whose fields all have gaps gets no LSD, as in the pooled table), and
    for a precipitation variable (``events``) its wet fractions and FSS. Forecasts from
    several starts (a lead repeated) get a row per lead over that lead's fields from all
    starts, with their count (``starts``) in place of the one valid time. The scores are lazy,
    as :func:`_pooled_scores`'s: the caller computes them."""
    from . import metrics

    if lead_dim is None or leads is None:
        return []
    complete = complete or {}
    events = events or {}
    fields = {k: [i for i, lead in enumerate(leads) if lead == k] for k in dict.fromkeys(leads)}
    rows = []
    for v, levels in parts.items():
        for n, part in enumerate(levels):
            p, t = pred[v].isel(part.at), truth[v].isel(part.at)
            first = {"variable": v, **part.labels}
            whole = complete.get((v, n))
            if len(fields) < len(leads):
                for k, at in fields.items():
                    used = at if whole is None else [i for i in at if whole[i]]
                    curves = (  # no LSD for a level with gaps in every field, as pooled
                        None
                        if spectra[v, n] is None or not used
                        else tuple(
                            metrics.sample_mean_spectrum(s.isel({lead_dim: used}))
                            for s in spectra[v, n]
                        )
                    )
                    scores = _pooled_scores(
                        p.isel({lead_dim: at}),
                        t.isel({lead_dim: at}),
                        member_dim,
                        weights,
                        has_members,
                        curves,
                        events.get(v),
                    )
                    rows.append({**first, "lead": k, "starts": len(at), **scores})
                continue
            # summed in float64, half precision returned as float32 (the metrics' rule)
            mean = metrics.ensemble_mean(p, member_dim=member_dim) if member_dim in p.dims else p
            scores = {
                "RMSE (ens. mean)": metrics.rmse(mean, t, weights=weights, preserve_dims=lead_dim),
                "MAE (ens. mean)": metrics.mae(mean, t, weights=weights, preserve_dims=lead_dim),
                "truth mean": _truth_mean(t, mean, weights, keep=lead_dim),
                "bias": metrics.bias(mean, t, weights=weights, preserve_dims=lead_dim),
            }
            if has_members:
                scores["CRPS"] = metrics.crps_ensemble(
                    p, t, member_dim=member_dim, weights=weights, preserve_dims=lead_dim
                )
                scores["spread/skill"] = metrics.spread_skill_ratio(
                    p, t, member_dim=member_dim, weights=weights, preserve_dims=lead_dim
                )
            lsd = (  # as in the pooled table, on each lead's fields
                metrics.log_spectral_distance(
                    *(metrics.sample_mean_spectrum(s, keep=[lead_dim]) for s in spectra[v, n])
                )
                if spectra[v, n] is not None
                else None
            )
            wet = (
                _event_scores(p, t, mean, events[v], weights, keep=lead_dim) if v in events else {}
            )
            for k in range(pred.sizes[lead_dim]):
                row: dict[str, Any] = {**first, "lead": leads[k]}
                row["valid_time"] = str(pred[lead_dim].values[k])
                row.update({name: score.isel({lead_dim: k}) for name, score in scores.items()})
                gap = whole is not None and not whole[k]
                row["LSD (dB)"] = lsd.isel({lead_dim: k}) if lsd is not None and not gap else None
                row.update(
                    {
                        name: None if score is None else score.isel({lead_dim: k})
                        for name, score in wet.items()
                    }
                )
                rows.append(row)
    return rows


def _pooled_scores(
    p: Any,
    t: Any,
    member_dim: str,
    weights: Any,
    has_members: bool,
    curves: tuple[Any, Any] | None,
    events: _Events | None = None,
) -> dict[str, Any]:
    """The pooled table's scores of prediction fields ``p`` against truth ``t`` over all their
    points: RMSE, MAE, the truth's mean and bias of the ensemble mean, the fair CRPS and
    spread/skill ratio for an ensemble, and the LSD of ``curves``, the spectra of the
    prediction and the truth each averaged over its other dims (members, times;
    :func:`~flexdownscale.metrics.sample_mean_spectrum`); ``None`` without ``curves`` (fields
    with gaps). A precipitation variable (``events``) gets its wet fractions and FSS
    (:func:`_event_scores`) too. Each score is lazy, a 0-d DataArray (dask-backed for chunked
    fields): the caller computes them all together (:func:`_compute_together`)."""
    from . import metrics

    # summed in float64, half precision returned as float32 (the metrics' rule)
    mean = metrics.ensemble_mean(p, member_dim=member_dim) if member_dim in p.dims else p
    scores: dict[str, Any] = {
        "RMSE (ens. mean)": metrics.rmse(mean, t, weights=weights),
        "MAE (ens. mean)": metrics.mae(mean, t, weights=weights),
        "truth mean": _truth_mean(t, mean, weights),
        "bias": metrics.bias(mean, t, weights=weights),
    }
    if has_members:
        scores["CRPS"] = metrics.crps_ensemble(p, t, member_dim=member_dim, weights=weights)
        scores["spread/skill"] = metrics.spread_skill_ratio(
            p, t, member_dim=member_dim, weights=weights
        )
    scores["LSD (dB)"] = metrics.log_spectral_distance(*curves) if curves is not None else None
    if events is not None:
        scores.update(_event_scores(p, t, mean, events, weights))
    return scores


#: A warning's count of points (the fair CRPS's "... (N point(s))").
_POINTS = re.compile(r"\((\d+) point\(s\)\)")

#: What evaluate says instead of the one-valid-member CRPS warning's fix (``fair=False``)
_ONE_MEMBER_IN_REPORT = (
    "; the report's CRPS leaves those points out (the prediction's other members are missing "
    "there: NaN in its file)."
)


def _rename_example(old: str, new: str, truth: Any, pred: Any) -> str:
    """The ``--rename`` a user who gave ``old=new`` (``old`` not in the truth) meant: the pair
    the other way round when the truth holds ``new`` and the prediction ``old``, else a pair of
    the files' own names (it said ``e.g. --rename tas=t2m`` whatever was given, the very pair
    refused when the user had typed it)."""
    if new in truth.data_vars and old in pred.data_vars:
        return f"here --rename {new}={old} (the names the other way round)"
    truth_names = [str(v) for v in truth.data_vars if v not in pred.data_vars]
    pred_names = [str(v) for v in pred.data_vars if v not in truth.data_vars]
    if truth_names and pred_names:
        return f"e.g. --rename {truth_names[0]}={pred_names[0]}"
    return "e.g. --rename tas=t2m for a truth's tas scored against a prediction's t2m"


#: Held while :func:`_compute_together` replaces the process-wide ``warnings.showwarning``.
_WARNINGS_HOOK = threading.Lock()

#: numpy's floating-point RuntimeWarnings (those ``np.errstate`` turns off)
_FLOATING_POINT = r"(divide by zero|invalid value|overflow|underflow) encountered in "


def _compute_together(reads: dict[str, int], *lazy: Any) -> tuple[Any, ...]:
    """``lazy`` (lists, tuples and dicts of xarray objects and plain values) with every
    dask-backed object computed, all in one ``dask.compute``: each chunk of the files (read by
    the tasks ``reads``, see :func:`_streamed`) is read once for all of them, and freed once
    they have used it (:func:`_chunk_by_chunk`).

    Floating-point errors are ignored, as where the scores were built: xarray's arithmetic
    ignores them (a spread/skill of 1 / 0 is ``inf``, said in the report) and the metrics
    ignore those they expect (the log of a zero power), but a dask-backed score meets them
    later, in the compute, where numpy would warn of each. A warning that counts points (the
    fair CRPS's "only one ensemble member is valid (N point(s))") comes from every chunk with
    that chunk's count: it is given once, with the count of all chunks, after the compute.
    Calls from several threads (evaluates at once) compute one after the other, as the
    warning hook is the process's; each compute uses every core already.
    """
    import dask
    import numpy as np

    from .errors import UndefinedMetricWarning

    counted: list[tuple[str, type[Warning]]] = []
    # the warnings module's filters and showwarning are the process's: one evaluate at a time
    # swaps them (two threads' catch_warnings, interleaved, would leave one's hook in place)
    with _WARNINGS_HOOK, warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, category: Any, *where: Any) -> None:
            if _POINTS.search(str(message)) and issubclass(category, UndefinedMetricWarning):
                counted.append((str(message), category))
            else:
                shown(message, category, *where)

        warnings.showwarning = show
        warnings.filterwarnings("always", message=r".*\(\d+ point\(s\)\)")  # every chunk's
        # np.errstate holds in this thread's context only: the tasks run in a pool's threads,
        # which dask before 2026.1, or a pool of the user's (dask.config.set(pool=...)), starts
        # without it; the process-wide filter reaches them
        warnings.filterwarnings("ignore", _FLOATING_POINT, RuntimeWarning)
        with _chunk_by_chunk(reads), np.errstate(all="ignore"):
            done = tuple(dask.compute(*lazy))
    totals: dict[tuple[str, str, type[Warning]], int] = {}
    for text, category in counted:  # one per text, its chunks' counts summed, in their order
        found = _POINTS.search(text)
        if found is not None:
            key = (text[: found.start()], text[found.end() :], category)
            totals[key] = totals.get(key, 0) + int(found[1])
    from ._stack import user_stacklevel
    from .metrics.probabilistic import ONE_MEMBER_FIX

    for (head, tail, _), total in totals.items():  # UndefinedMetricWarning only (counted)
        # the metric's own fix (fair=False) is no option of evaluate: what the report does
        tail = tail.replace(ONE_MEMBER_FIX, _ONE_MEMBER_IN_REPORT)
        warnings.warn(
            f"{head}({total} point(s)){tail}", UndefinedMetricWarning, stacklevel=user_stacklevel()
        )
    return done


def _floats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics rows with each computed score (a 0-d DataArray) as a Python float."""
    import xarray as xr

    return [
        {k: float(value) if isinstance(value, xr.DataArray) else value for k, value in row.items()}
        for row in rows
    ]


def _heading(columns: list[str]) -> str:
    """A metrics table's heading row for a prediction without an ensemble: ``RMSE`` and ``MAE``
    of the prediction itself, not of an "ens. mean" (``metrics.json`` keeps its keys)."""
    return "| " + " | ".join(c.removesuffix(" (ens. mean)") for c in columns) + " |"


def _strict_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row for strict JSON: each NaN or infinite score ``null`` (as a score left out
    is), and a ``"non_finite"`` entry, when there is one, saying which it was
    (``{"LSD (dB)": "inf"}``), so a reader can tell a prediction with power where the truth has
    none (``inf``) and an undefined score (``nan``, 0 / 0) from one not computed."""
    strict = {k: finite_or_null(value) for k, value in row.items()}
    spelled = {k: word for k, value in row.items() if (word := non_finite_word(value)) is not None}
    if spelled:
        strict["non_finite"] = spelled
    return strict


def _non_finite_words(rows: list[dict[str, Any]], windows: Sequence[int] = ()) -> str:
    """The metrics report's note on the cells it spells ``inf``, ``nan`` and ``n/a`` (each
    only when a table has one), and on what ``metrics.json`` holds for them (``null``, with a
    ``non_finite`` entry for inf and nan only), or ``""``. ``windows``: the FSS windows."""
    cells = [(column, value) for row in rows for column, value in row.items()]
    words = {non_finite_word(value) for _, value in cells}
    empty = {column for column, value in cells if value is None}
    why = []
    if "LSD (dB)" in empty:
        why.append("a field with gaps in every time step gets no LSD: see below")
    if any(_fss_column(w) in empty for w in windows):
        why.append("an FSS window larger than the grid")
    if {_WET_TRUTH, _WET_PREDICTION, _HIGH_TRUTH, _HIGH_PREDICTION} & empty:
        why.append("no value to count")
    said = {
        "inf": "`inf`: infinite (an LSD or ratio against a truth with no power where the "
        "prediction has some: maximally wrong, not missing)",
        "-inf": "`-inf`: minus infinity (as `inf`, the other way round)",
        "nan": "`nan`: undefined (0 / 0: a spread/skill of an ensemble whose members and "
        "truth agree everywhere, spectra with no power on either side, an FSS where neither "
        "field reaches the threshold)",
        "n/a": "`n/a`: not computed" + (f" ({'; '.join(why)})" if why else ""),
    }
    found = words | ({"n/a"} if empty else set())
    notes = [text for word, text in said.items() if word in found]
    if not notes:
        return ""
    spelled = sorted(w for w in words if w is not None)
    if not spelled:  # only n/a: null, and no non_finite entry
        held = "metrics.json holds null for each."
    else:
        named = " and ".join(
            [", ".join(spelled[:-1]), spelled[-1]] if len(spelled) > 2 else spelled
        )
        held = f"metrics.json holds null for each, with a non_finite entry naming {named}" + (
            " (none for n/a)." if empty else "."
        )
    return "Cells: " + "; ".join(notes) + ". " + held


def _precipitation_words(events: dict[str, _Events], weighted: bool, members: bool) -> str:
    """The report's line on the precipitation columns of the variables ``events``."""
    thresholds = "; ".join(f"`{v}` {e.words}" for v, e in events.items())
    windows = dict.fromkeys(w for e in events.values() for w in e.windows)
    sides = " and ".join(f"{w}x{w}" for w in windows)
    pooled = "every member, " if members else ""
    return (
        f"Precipitation: wet fraction of truth and prediction ({pooled}where the truth has "
        f"values): the share of cells at or above the threshold, {thresholds} (--threshold "
        f"sets another); FSS (fractions skill score, Roberts and Lean 2008) over {sides}-cell "
        "windows wholly inside the grid"
        + (", the members' fields pooled as samples" if members else "")
        + "; q99: the 99th percentile of all values of truth and prediction ("
        + pooled
        + "times and cells"
        + (", weighted by cell area" if weighted else "")
        + ")."
    )


def _table_cell(value: Any) -> str:
    """A metrics-table cell: numbers to 4 significant digits, a left-out score as ``n/a``."""
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


#: The ``flexdownscale_*`` attributes of a prediction the package wrote (see
#: ``pipeline._provenance_attrs``) that say what made it, with their names in the report.
_PROVENANCE = (
    ("flexdownscale_model", "model"),
    ("flexdownscale_version", "version"),
    ("flexdownscale_objective", "objective"),
    ("flexdownscale_sampler", "sampler"),
    ("flexdownscale_sampler_options", "sampler_options"),
    ("flexdownscale_steps", "steps"),
    ("flexdownscale_members", "members"),
    ("flexdownscale_seed", "seed"),
    ("flexdownscale_lead_steps", "lead_steps"),
    ("flexdownscale_conserve", "conserve"),
    ("flexdownscale_bbox", "bbox"),
    ("flexdownscale_batch_size", "batch_size"),
    ("flexdownscale_device", "device"),
    ("flexdownscale_torch_threads", "torch_threads"),
)


def _attr_value(value: Any) -> Any:
    """A netCDF / zarr attribute as a plain JSON value (numpy scalars and one-element arrays
    as Python numbers, other arrays as lists; a non-finite float as ``None``)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str | int | float | bool | list) and value is not None:
        value = str(value)
    return finite_or_null(value)


def _prediction_provenance(attrs: Any) -> dict[str, Any]:
    """What made a prediction, from the ``flexdownscale_*`` attributes the package writes:
    model, version, generative objective, sampler, its options, steps, members, seed, a
    forecast's lead steps and the physical condition used (``condition``: name to value), each
    only when recorded; an empty dict for a file that records none of them (not written by
    flexdownscale)."""
    from .provenance import recorded_seed

    found = {key: _attr_value(attrs[name]) for name, key in _PROVENANCE if name in attrs}
    if "seed" in found:  # a seed above 2**31 - 1 is recorded as text; joined parts' as one text
        found["seed"] = recorded_seed(attrs["flexdownscale_seed"])
    prefix = "flexdownscale_condition_"
    condition = {
        str(name).removeprefix(prefix): _attr_value(value)
        for name, value in attrs.items()
        if str(name).startswith(prefix)
    }
    if found and condition:
        found["condition"] = condition
    return found


def _told(value: Any) -> str:
    """A recorded value in the report's words: a list (one value per part of a file joined by
    :func:`~flexdownscale.provenance.concat_outputs`, e.g. per forecast start) as
    ``1000.0, 4000.0 (one per part, in file order)``."""
    if isinstance(value, list):
        return f"{', '.join(_told(v) for v in value)} (one per part, in file order)"
    return str(value)


def _provenance_words(found: dict[str, Any], members_in_file: int) -> str:
    """The report's line on what made the prediction (:func:`_prediction_provenance`), or that
    the file does not say; ``members_in_file`` is told beside a different recorded count (a file
    cut to some of its members keeps the count it was written with)."""
    if not found:
        return (
            "Prediction: not recorded (the file has no flexdownscale_model, _sampler or _steps "
            "attributes: it was not written by flexdownscale, or they were removed), so this "
            "report cannot say which model, sampler and steps made it."
        )
    parts = []
    if "model" in found:
        version = f" (flexdownscale {found['version']})" if "version" in found else ""
        parts.append(f"model `{found['model']}`{version}")
    if "objective" in found:
        parts.append(f"objective {found['objective']}")
    if "sampler" in found:
        options = f" ({found['sampler_options']})" if found.get("sampler_options") else ""
        parts.append(f"sampler {found['sampler']}{options}")
    if "steps" in found:
        parts.append(f"{found['steps']} step{'' if found['steps'] == 1 else 's'}")
    if "members" in found:
        held = "" if found["members"] == members_in_file else f" ({members_in_file} in the file)"
        plural = "" if found["members"] == 1 else "s"
        parts.append(f"{found['members']} member{plural}{held}")
    if "seed" in found:
        parts.append(f"seed{'s' if isinstance(found['seed'], list) else ''} {_told(found['seed'])}")
    if "lead_steps" in found:
        plural = "" if found["lead_steps"] == 1 else "s"
        parts.append(f"forecast {found['lead_steps']} step{plural} ahead")
    if "condition" in found:
        told = ", ".join(f"{k} = {_told(v)}" for k, v in found["condition"].items())
        parts.append(f"condition {told}")
    if "conserve" in found:  # the coarse-cell constraint changes the scores (bias, above all)
        parts.append(f"coarse-cell constraint {_told(found['conserve'])}")
    if "bbox" in found:
        parts.append(f"bbox {_told(found['bbox'])}")
    if "device" in found:  # with the batch size and threads: the float32 rounding of a run
        how = [f"batch size {_told(found['batch_size'])}"] if "batch_size" in found else []
        if "torch_threads" in found:
            threads = found["torch_threads"]
            how.append(f"{_told(threads)} thread{'' if threads == 1 else 's'}")
        parts.append(f"on {_told(found['device'])}" + (f" ({', '.join(how)})" if how else ""))
    # the objective is recorded since 0.1.0's development (files written before lack it)
    missing = [k for k in ("model", "objective", "sampler", "steps") if k not in found]
    gap = f"; {', '.join(missing)} not recorded" if missing else ""
    return f"Prediction (as its file records): {', '.join(parts)}{gap}."


# ---------------------------------------------------------------------------------------------
# precipitation: which variables, their threshold, the high quantile
# ---------------------------------------------------------------------------------------------
#: A CF ``standard_name`` of precipitation: ``precipitation_amount``, ``rainfall_flux``,
#: ``lwe_precipitation_rate``, ``snowfall_amount`` (not ``precipitable_water``, nor
#: ``drainage``).
_PRECIPITATION_NAME = re.compile(r"(?:^|_)(?:precipitation|rain|snow)", re.IGNORECASE)

#: What the FSS, wet fraction and high quantile columns are called in ``metrics.md`` and
#: ``metrics.json``.
_WET_TRUTH, _WET_PREDICTION = "wet fraction (truth)", "wet fraction (prediction)"
_HIGH_TRUTH, _HIGH_PREDICTION = "q99 (truth)", "q99 (prediction)"

#: Entries of a metrics row that ``metrics.json`` holds and the table of ``metrics.md`` does
#: not (the report's text says them).
_JSON_ONLY = frozenset({"threshold", "LSD time steps"})


def _fss_column(window: int) -> str:
    """The FSS column of a window: ``FSS (5x5 cells)``."""
    return f"FSS ({window}x{window} cells)"


def _fss_windows(given: Sequence[int] | None) -> tuple[int, ...]:
    """The FSS windows: ``given`` (each a positive whole number, repeats dropped) or
    :data:`FSS_WINDOWS`; ConfigError otherwise."""
    if given is None:
        return FSS_WINDOWS
    from .errors import ConfigError

    windows = tuple(given)
    bad = [w for w in windows if isinstance(w, bool) or not isinstance(w, int) or w < 1]
    if bad or not windows:
        raise ConfigError(
            f"FSS windows {list(windows)!r} must be positive whole numbers of grid cells, "
            "e.g. --fss-window 5,25 (or leave the option out for 5 and 25)"
        )
    return tuple(dict.fromkeys(windows))


_THRESHOLD = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*")


def _parse_threshold(text: str) -> tuple[float, str]:
    """``--threshold`` as its value and units (``"0.1 kg m-2"`` is ``(0.1, "kg m-2")``);
    ConfigError for text that is no number, a number without units or units that are none."""
    from .errors import ConfigError
    from .units import parse_units

    example = "e.g. --threshold '0.1 kg m-2' for amounts, or '0.1 mm/h' for rates"
    found = _THRESHOLD.fullmatch(str(text))
    if found is None:
        raise ConfigError(
            f"--threshold {text!r} is not a number with its units; give one, {example}"
        )
    value, units = float(found[1]), found[2]
    if not units:
        raise ConfigError(
            f"--threshold {text!r} has no units; give them, {example}: the threshold is "
            "converted into each precipitation variable's units (m and mm, kg m-2, kg m-2 s-1)"
        )
    if parse_units(units) is None:
        raise ConfigError(
            f"--threshold {text!r}: {units!r} is not a unit flexdownscale reads; write it in a "
            f"CF spelling, {example} ('kg m-2 s-1', 'mm')"
        )
    return value, units


def _names_precipitation(field: Any) -> bool:
    """Whether ``field``'s CF ``standard_name`` names precipitation, rain or snow."""
    name = _standard_name(field)
    return name is not None and _PRECIPITATION_NAME.search(name) is not None


def _log1p_in_model(pred: Any, names: Sequence[str]) -> set[str]:
    """The variables of ``names`` that the model which made the prediction ``pred`` (a
    dataset) normalized with ``log1p``: as each variable's ``flexdownscale_transform``
    attribute says, else (files written before that attribute) as the folder that the
    prediction's ``flexdownscale_model`` attribute names records in its
    ``normalization.json`` (none when that folder cannot be read: moved, or a shipped model's
    name)."""
    from .hub import NORMALIZATION_FILE, TRANSFORM_ATTR, normalization_transforms

    found = {v for v in names if pred[v].attrs.get(TRANSFORM_ATTR) == "log1p"}
    model = pred.attrs.get("flexdownscale_model")
    if not isinstance(model, str) or not model:
        return found
    try:
        record = json.loads((Path(model).expanduser() / NORMALIZATION_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return found
    in_folder = normalization_transforms(record)
    return found | {v for v in names if in_folder.get(v, "").startswith("log1p")}


def _time_step_hours(truth: Any, time_dim: str | None) -> float | None:
    """The most common step between the truth's times in hours; ``None`` for a single time,
    no time coordinate or times that are no dates."""
    import numpy as np

    from .data.grid import _time_steps

    if time_dim is None or time_dim not in truth.coords or truth[time_dim].ndim != 1:
        return None
    try:
        values = np.unique(truth[time_dim].values)
        if values.dtype.kind not in "MO":  # numbers, not dates
            return None
        seconds, _ = _time_steps(values, truth[time_dim].attrs)  # datetime64 or cftime
    except (AttributeError, TypeError, ValueError):
        return None
    seconds = seconds[np.isfinite(seconds) & (seconds > 0)]
    if not seconds.size:
        return None
    found, counts = np.unique(seconds, return_counts=True)
    return float(found[np.argmax(counts)]) / 3600.0


def _step_words(hours: float) -> str:
    """A time step in words: ``10-minute``, ``1-hour``, ``1-day``."""
    minutes = hours * 60.0
    for size, unit in ((1440.0, "day"), (60.0, "hour"), (1.0, "minute")):
        count = minutes / size
        if count >= 1 and abs(count - round(count)) < 1e-6:
            return f"{round(count)}-{unit}"
    return f"{hours:g}-hour"


def _precipitation_kind(units: str) -> str | None:
    """``"amount"`` for a mass per area or a depth (``kg m-2``, ``mm``, ``m``), ``"rate"`` for
    those per time (``kg m-2 s-1``, ``mm/h``), else ``None``."""
    from .units import parse_units

    unit = parse_units(units)
    if unit is None:
        return None
    kinds = {
        parse_units("kg m-2").dimensionality: "amount",
        parse_units("m").dimensionality: "amount",
        parse_units("kg m-2 s-1").dimensionality: "rate",
        parse_units("m s-1").dimensionality: "rate",
    }
    return kinds.get(unit.dimensionality)


def _converted(value: float, found: str, expected: str) -> tuple[float, bool] | None:
    """``value`` in ``found`` units converted into ``expected`` ones, and whether that took the
    liquid-water equivalence (1 mm of water = 1 kg m-2); ``None`` when they do not convert."""
    from .units import linear_conversion, water_equivalent

    conversion = linear_conversion(found, expected)
    if conversion is not None:
        scale, offset = conversion
        return value * scale + offset, False
    water = water_equivalent(found, expected)
    if water is not None:
        return value * water, True
    return None


@dataclass(frozen=True)
class _Events:
    """The precipitation scores of one variable: the threshold in its units, how the report
    words it, the FSS windows and the spatial dims."""

    threshold: float
    words: str
    windows: tuple[int, ...]
    spatial: tuple[str, str]


def _events_for(
    v: str,
    units: str | None,
    wanted: tuple[float, str] | None,
    step_hours: float | None,
    windows: tuple[int, ...],
    spatial: tuple[str, str],
) -> _Events | str:
    """The :class:`_Events` of the precipitation variable ``v`` in ``units``: at the
    ``--threshold`` ``wanted`` converted into them (UnitsError when it cannot be), else the
    default (:data:`WET_RATE_MM_PER_HOUR`, over ``step_hours`` for amounts). Without a
    default (units that are no amount or rate) the report's words on why, a str."""
    from .errors import UnitsError

    if wanted is not None:
        value, given = wanted
        said = f"{value:g} {given}"
        if not units:
            raise UnitsError(
                f"--threshold {said!r} cannot be converted for {v!r}, which has no 'units' "
                "attribute; set it in both files (ncatted -a units,VARIABLE,o,c,'kg m-2' FILE)"
            )
        found = _converted(value, given, units)
        if found is None:
            raise UnitsError(
                f"--threshold {said!r} cannot be converted into the units of {v!r} ({units!r}): "
                f"give the threshold in them, e.g. --threshold '{value:g} {units}'"
            )
        threshold, water = found
        how = "--threshold" + (f" {said!r}, as liquid water" if water else "")
        return _Events(threshold, f"{threshold:.4g} {units} ({how})", windows, spatial)
    kind = _precipitation_kind(units) if units else None
    if kind is None:
        return (
            f"`{v}`: its units ({units!r}) are no precipitation amount or rate, so there is no "
            "default threshold; give one in its units with --threshold"
            if units
            else f"`{v}`: it has no units, so there is no default threshold; set its 'units' "
            "attribute, or give --threshold"
        )
    rate = WET_RATE_MM_PER_HOUR
    if kind == "rate":
        value, given = rate, "mm h-1"
        how = f"a rain rate of {rate:g} mm/h"
    elif step_hours is not None:
        value, given = rate * step_hours, "mm"
        how = f"{rate:g} mm/h over the truth's {_step_words(step_hours)} time step"
    else:
        value, given = rate, "mm"
        how = f"{rate:g} mm: the truth has one time, no time step to take {rate:g} mm/h over"
    found = _converted(value, given, units or "")
    if found is None:  # an amount or rate that no depth converts into (not expected)
        return f"`{v}`: its units ({units!r}) take no default threshold; give --threshold"
    threshold = found[0]
    return _Events(threshold, f"{threshold:.4g} {units} ({how})", windows, spatial)


def _order_keys(values: Any) -> Any:
    """float32 values as uint32 keys in the same order (the bits, negative ones reversed)."""
    import numpy as np

    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    top = np.uint32(0x80000000)
    return np.where(bits & top, ~bits, bits | top).astype(np.uint32)


def _from_order_keys(keys: Any) -> Any:
    """The float32 values of :func:`_order_keys`' keys."""
    import numpy as np

    keys = np.asarray(keys, dtype=np.uint32)
    top = np.uint32(0x80000000)
    bits = np.where(keys & top, keys & np.uint32(0x7FFFFFFF), ~keys).astype(np.uint32)
    return bits.view(np.float32)


#: Bins of each histogram of :func:`_lazy_histogram`: 16 bits of a float32 key each.
_BINS = 1 << 16


def _histogram_block(block: Any, *, weights: Any, high: int | None) -> Any:
    """The (weighted) counts of one block's finite-or-infinite values by the upper 16 bits of
    their keys (:func:`_order_keys`), or with ``high`` by the lower 16 bits of those whose
    upper bits are ``high``; shaped for :func:`_lazy_histogram` (a 1 per axis of the block,
    then the bins)."""
    import numpy as np

    values = np.asarray(block, dtype=np.float32)
    keep = ~np.isnan(values)
    keys = _order_keys(values[keep])
    w = None if weights is None else np.broadcast_to(weights, values.shape)[keep]
    if high is None:
        bins = keys >> np.uint32(16)
    else:
        inside = (keys >> np.uint32(16)) == high
        bins = keys[inside] & np.uint32(0xFFFF)
        w = None if w is None else w[inside]
    counts = np.bincount(bins.astype(np.intp), weights=w, minlength=_BINS).astype(np.float64)
    return counts.reshape((1,) * values.ndim + (_BINS,))


def _lazy_histogram(field: Any, weights: Any, high: int | None = None) -> Any:
    """A lazy histogram of ``field``'s values (NaN left out) over the :data:`_BINS` bins of
    :func:`_histogram_block`, each value counted with its weight (``weights``: a DataArray
    over some of ``field``'s dims that are whole in every block, or ``None``); one task per
    block of the field, so it is computed chunk by chunk with the scores."""
    import dask.array as da
    import numpy as np

    data = field.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=-1)
    w = None
    if weights is not None:
        order = [d for d in field.dims if d in weights.dims]
        shape = [field.sizes[d] if d in weights.dims else 1 for d in field.dims]
        w = np.asarray(weights.transpose(*order).values, dtype=np.float64).reshape(shape)
    counts = data.map_blocks(
        _histogram_block,
        weights=w,
        high=high,
        new_axis=data.ndim,
        chunks=(*(tuple(1 for _ in c) for c in data.chunks), (_BINS,)),
        dtype=np.float64,
        meta=np.array((), dtype=np.float64),
    )
    return counts.sum(axis=tuple(range(data.ndim)))


def _quantile_bin(counts: Any, q: float) -> tuple[int, float, float] | None:
    """The bin of the upper-bits histogram ``counts`` that holds the ``q`` quantile, the
    weight below it and the weight the quantile needs (``q`` times the total); ``None`` for
    an empty histogram."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    total = np.cumsum(counts)
    if not total.size or not total[-1] > 0:
        return None
    target = q * float(total[-1])
    found = _first_reaching(total, counts, target)
    return found, float(total[found] - counts[found]), target


def _first_reaching(total: Any, counts: Any, target: float) -> int:
    """The first bin holding values (``counts`` > 0) where the cumulative ``total`` reaches
    ``target``; the last such bin when none does (round-off of a weighted sum)."""
    import numpy as np

    held = np.flatnonzero(counts)
    at = int(np.searchsorted(held, int(np.searchsorted(total, target, side="left"))))
    return int(held[min(at, held.size - 1)])


def _quantile_value(high: int, below: float, target: float, counts: Any) -> float | None:
    """The ``q`` quantile from :func:`_quantile_bin`'s bin ``high``, weight ``below`` and
    ``target``, and the lower-bits histogram ``counts`` of that bin: the smallest value at
    which the (weighted) share of values at or below it reaches ``q`` (numpy's
    ``"inverted_cdf"``)."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    if not counts.any():
        return None
    found = _first_reaching(below + np.cumsum(counts), counts, target)
    return float(_from_order_keys(np.uint32((high << 16) | found)))


def _truth_mean(t: Any, mean: Any, weights: Any, keep: str | None = None) -> Any:
    """The mean of the truth ``t`` where the prediction's (ensemble) mean ``mean`` is valid, as
    the bias averages it (:func:`flexdownscale.metrics._utils.weighted_mean`, weighted as it
    is), over every dim but ``keep``; summed in float64, without a float64 copy of the truth (a
    float16 file's mean steps by 0.25 K at 280 K; a float32 sum loses the last digits): the
    weighted sum against float64 weights, the unweighted one with numpy's ``dtype``."""
    import numpy as np

    from .metrics._utils import weighted_mean

    valid = t.where(mean.notnull())
    dims = [d for d in valid.dims if d != keep]
    if weights is None:
        return valid.mean(dims, dtype=np.float64)
    return weighted_mean(valid, dims, weights.astype(np.float64, copy=False))


def _event_scores(
    p: Any, t: Any, mean: Any, events: _Events, weights: Any, keep: str | None = None
) -> dict[str, Any]:
    """The precipitation columns of a row but the high quantiles: the wet fractions of truth
    (where the prediction is valid) and prediction (every member, where the truth is valid) at
    the threshold, and the FSS over each window that fits in the grid (``None`` for one that
    does not), the members as samples; over every dim but ``keep``."""
    from . import metrics

    options: dict[str, Any] = {"threshold": events.threshold, "weights": weights}
    if keep is not None:
        options["preserve_dims"] = keep
    scores: dict[str, Any] = {
        _WET_TRUTH: metrics.exceedance_frequency(t.where(mean.notnull()), **options),
        _WET_PREDICTION: metrics.exceedance_frequency(p.where(t.notnull()), **options),
    }
    for window in events.windows:
        fits = all(t.sizes[d] >= window for d in events.spatial)
        scores[_fss_column(window)] = (
            metrics.fss(p, t, window=window, dims=events.spatial, **options) if fits else None
        )
    return scores
