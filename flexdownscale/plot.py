"""Matplotlib figures for verification: spectra, rank histograms, spread-skill, field panels.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state, so it is
safe on headless machines and in threads) and returns it: save it with ``fig.savefig(path)``;
in Jupyter it displays as the cell's result. Inputs are xarray objects; data are loaded
(computed) for plotting.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from flexdownscale._keywords import keyword_hints
from flexdownscale._stack import user_stacklevel
from flexdownscale.errors import (
    ConfigError,
    DataError,
    EnsembleError,
    FlexDownscaleWarning,
    ShapeError,
    not_xarray_message,
)
from flexdownscale.metrics import power_spectrum, rank_histogram
from flexdownscale.metrics._utils import (
    align_exact,
    check_member_dim,
    check_same_units,
    find_yx_dims,
)
from flexdownscale.metrics.probabilistic import point_spread_and_error
from flexdownscale.metrics.spectra import on_reference_bins

__all__ = ["plot_panels", "plot_rank_histogram", "plot_spectra", "plot_spread_skill"]

_SPECTRAL_DIMS = ("wavenumber", "zonal_wavenumber")


def _as_dataarray(
    obj: xr.DataArray | xr.Dataset, variable: Hashable | None, name: str
) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        return obj
    if not isinstance(obj, xr.Dataset):
        raise TypeError(not_xarray_message(obj, name))
    if variable is not None:
        return obj[variable]
    if len(obj.data_vars) == 1:
        return obj[next(iter(obj.data_vars))]
    raise ConfigError(
        f"{name} is a Dataset with variables {sorted(map(str, obj.data_vars))}; pass "
        "variable=<name> to choose one."
    )


def _spectral_dim(da: xr.DataArray) -> Hashable | None:
    for d in _SPECTRAL_DIMS:
        if d in da.dims:
            return d
    return None


@keyword_hints
def plot_spectra(
    spectra: Mapping[str, xr.DataArray | xr.Dataset],
    *,
    reference: str | None = None,
    variable: Hashable | None = None,
    dims: Sequence[Hashable] | None = None,
    spectrum_kwargs: Mapping[str, Any] | None = None,
    truncate: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 6.0),
) -> Figure:
    """Spectra of several fields on one log-log axis, and their ratio to a reference below.

    Parameters
    ----------
    spectra : mapping of label -> DataArray
        Each value is either a spectrum (has a ``wavenumber`` or ``zonal_wavenumber`` dim, as
        from :func:`~flexdownscale.metrics.power_spectrum`) or a field, whose spectrum is
        computed with ``power_spectrum(field, dims=dims, **spectrum_kwargs)``. All other dims
        (time, member, latitude for zonal spectra, ...) are averaged.
    reference : str, optional
        Label of the reference (e.g. ``"truth"``): adds a lower panel with
        ``spectrum / reference`` per other entry and a line at 1.
    variable : str, optional
        Variable to use from Dataset values.
    dims, spectrum_kwargs : optional
        Passed to ``power_spectrum`` for entries that are fields.
    truncate : bool, default True
        Drop bins beyond the Nyquist wavenumber (the partly filled corners of the 2-D
        spectrum).
    title : str, optional
        Title of the top axis; default None: none.
    figsize : (float, float), default (6.0, 6.0)
        Figure size in inches.

    Returns
    -------
    Figure
        One axis (two with ``reference``); one line per entry on the top axis. A secondary
        axis on top gives the wavelength in km (wavenumbers in ``m-1`` or ``km-1``) or, for
        dimensionless coordinates (cycles per coordinate unit), the cycles per domain length,
        e.g. 4 for a forcing at wavenumber 4 of a periodic box.

    Warns
    -----
    FlexDownscaleWarning
        Naming each entry whose spectrum has no finite value (its line would be missing from the
        figure without a word): typically a field with NaNs (e.g. masked land or ocean), whose
        spectrum is NaN (one NaN in one sample, a time or member, makes the averaged curve
        NaN); fill the NaNs or select a region or the samples without them. The other entries are
        drawn; a ratio to a reference with no finite value cannot be.

    Raises
    ------
    DataError
        When no entry has a finite value: there would be nothing to draw.
    UnitsError
        When an entry's spectrum is in other units than the reference's (the first entry's
        without ``reference``), as :func:`~flexdownscale.metrics.spectral_ratio`: a field in
        ``km h-1`` against one in ``m s-1`` would be drawn 12.96 times off. ``K`` and ``degC``
        agree (their spectra are those of the same differences).
    """
    if not spectra:
        raise ConfigError("spectra is empty; pass e.g. {'truth': da, 'model': da2}.")
    if reference is not None and reference not in spectra:
        raise ConfigError(f"reference {reference!r} is not one of {list(spectra)!r}.")
    kwargs = dict(spectrum_kwargs or {})
    entries = {
        label: _as_dataarray(obj, variable, f"spectra[{label!r}]") for label, obj in spectra.items()
    }
    # as spectral_ratio: an entry in other units (a field in km h-1 against m s-1) would be
    # drawn 12.96 times off its reference, and the ratio panel blame the model. Fields are
    # compared in their own units, before any spectrum is computed; a field against a given
    # spectrum, by the units of their spectra (below)
    base = reference if reference is not None else next(iter(entries))
    is_field = {label: _spectral_dim(da) is None for label, da in entries.items()}
    for label, da in entries.items():
        if is_field[label] == is_field[base]:  # K and degC fields: the same spectra
            check_same_units(
                entries[base],
                da,
                names=(f"spectra[{base!r}]", f"spectra[{label!r}]"),
                ignore_offset=True,
            )
    curves: dict[str, xr.DataArray] = {}
    for label, da in entries.items():
        sdim = _spectral_dim(da)
        if sdim is None:
            da = power_spectrum(da, dims=dims, **kwargs)
            sdim = "wavenumber"
        entries[label] = da
        nyq = da.attrs.get("nyquist_wavenumber")
        extra = [d for d in da.dims if d != sdim]
        # a sample with a NaN has a NaN spectrum, and so has the mean (skipping it would draw
        # the mean of the other samples without a word)
        spec = da.mean(extra, skipna=False) if extra else da
        if sdim == "wavenumber" and truncate and nyq is not None:
            spec = spec.where(spec[sdim] <= float(nyq) * (1 + 1e-9), drop=True)
        curves[label] = spec.load()
    for label, da in entries.items():
        if is_field[label] != is_field[base]:
            check_same_units(entries[base], da, names=(f"spectra[{base!r}]", f"spectra[{label!r}]"))
    _check_curves(curves, reference)

    fig = Figure(figsize=figsize, layout="constrained")
    if reference is None:
        ax = fig.add_subplot(1, 1, 1)
        ax_ratio = None
    else:
        ax, ax_ratio = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1.0))
    for label, spec in curves.items():
        sdim = _spectral_dim(spec)
        k = np.asarray(spec[sdim].values, dtype=float)
        style = {"color": "k", "lw": 2.0} if label == reference else {}
        ax.loglog(k, np.asarray(spec.values, dtype=float), label=label, **style)
    first = next(iter(curves.values()))
    sdim = _spectral_dim(first)
    kunits = str(first[sdim].attrs.get("units", ""))
    xlabel = "zonal wavenumber" if sdim == "zonal_wavenumber" else "wavenumber"
    if sdim != "zonal_wavenumber":
        # dimensionless coordinates (a turbulence box): cycles per coordinate unit
        xlabel += f" [{kunits}]" if kunits not in ("", "1") else " [cycles per coordinate unit]"
    power_units = str(first.attrs.get("units", ""))
    ax.set_ylabel("power spectral density" + (f" [{power_units}]" if power_units else ""))
    ax.legend(frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title)
    if ax_ratio is not None:
        ref = curves[reference]
        for label, spec in curves.items():
            if label == reference:
                continue
            # the same bins up to round-off (float32 and float64 copies of one grid), then the
            # common bins (a coarse field's spectrum stops at its own Nyquist wavenumber)
            a, b = xr.align(on_reference_bins(spec, ref, sdim), ref, join="inner")
            if a.sizes[sdim] == 0:
                warnings.warn(
                    f"the spectrum of {label!r} shares no wavenumber with the reference "
                    f"{reference!r} (other grid or domain size?): no ratio is drawn for it",
                    FlexDownscaleWarning,
                    stacklevel=user_stacklevel(),
                )
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.asarray(a.values, dtype=float) / np.asarray(b.values, dtype=float)
            ax_ratio.loglog(np.asarray(a[sdim].values, dtype=float), ratio, label=label)
        ax_ratio.axhline(1.0, color="k", lw=1.0, ls="--")
        ax_ratio.set_ylabel(f"ratio to {reference}")
        ax_ratio.set_xlabel(xlabel)
        ax_ratio.grid(True, which="major", alpha=0.3)
    else:
        ax.set_xlabel(xlabel)
    if sdim == "wavenumber" and kunits in ("m-1", "km-1"):
        scale = 1e-3 if kunits == "m-1" else 1.0

        def to_wavelength(k: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                return scale / np.asarray(k, dtype=float)

        sec = ax.secondary_xaxis("top", functions=(to_wavelength, to_wavelength))
        sec.set_xlabel("wavelength [km]")
    elif sdim == "wavenumber" and kunits in ("", "1") and first.attrs.get("dk"):
        # dimensionless coordinates: the mode number, cycles per domain length (of the shorter
        # side; dk is 1/L for the FFT, 1/(2L) for the DCT), e.g. 4 for a forcing at k = 4
        length = 1.0 / float(first.attrs["dk"])
        if first.attrs.get("spectrum_method", "FFT") != "FFT":
            length /= 2.0
        sec = ax.secondary_xaxis(
            "top", functions=(lambda k: np.asarray(k) * length, lambda n: np.asarray(n) / length)
        )
        sec.set_xlabel("cycles per domain length")
    return fig


def _check_curves(curves: Mapping[str, xr.DataArray], reference: str | None) -> None:
    """Warn about each curve with no finite value; DataError when no curve has one."""
    hint = (
        "a field with NaNs (e.g. masked land or ocean) has a NaN spectrum: fill the NaNs or "
        "select a region without them"
    )
    empty = [
        label
        for label, spec in curves.items()
        if not np.isfinite(np.asarray(spec.values, dtype=float)).any()
    ]
    if len(empty) == len(curves):
        raise DataError(
            f"no spectrum to plot: {', '.join(map(repr, empty))} "
            f"{'has' if len(empty) == 1 else 'have'} no finite value; {hint}"
        )
    for label in empty:
        ratios = " (nor the ratios to it)" if label == reference else ""
        warnings.warn(
            f"spectra[{label!r}] has no finite value and is not drawn{ratios}; {hint}",
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )


@keyword_hints
def plot_rank_histogram(
    fcst: xr.DataArray | xr.Dataset,
    obs: xr.DataArray | xr.Dataset | None = None,
    *,
    member_dim: Hashable = "member",
    variable: Hashable | None = None,
    weights: xr.DataArray | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (5.0, 3.5),
) -> Figure:
    """Bar chart of the rank histogram with the flat (calibrated) level ``1 / (M + 1)``.

    Pass an ensemble and observations (the histogram is computed over all points with
    :func:`~flexdownscale.metrics.rank_histogram`), or a precomputed histogram (a DataArray
    with a ``rank`` dim) and ``obs=None``. A U shape means under-dispersion, a dome
    over-dispersion, a slope a bias.

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with ``member_dim``, or (with ``obs=None``) a precomputed histogram with a
        ``rank`` dim; other dims of a histogram are averaged.
    obs : DataArray or Dataset, optional
        Observations in the ensemble's units; default None: ``fcst`` is a histogram.
    member_dim : str, default "member"
        Name of the member dim.
    variable : str, optional
        Variable to use from Datasets.
    weights : DataArray, optional
        Weights of the points (e.g. :func:`~flexdownscale.metrics.area_weights`), as in
        :func:`~flexdownscale.metrics.rank_histogram`; unused with ``obs=None``.
    title : str, optional
        Axis title; default None: "rank histogram (M members)".
    figsize : (float, float), default (5.0, 3.5)
        Figure size in inches.

    Returns
    -------
    Figure
        One axis with M + 1 bars and one reference line.

    Raises
    ------
    DataError
        When the histogram has no finite value: no point has a finite observation and finite
        members (e.g. all-NaN observations), so there is nothing to rank. Points with NaNs are
        otherwise left out of the histogram.
    """
    if obs is None:
        hist = _as_dataarray(fcst, variable, "fcst")
        if "rank" not in hist.dims:
            raise ConfigError(
                "without obs, the first argument must be a rank histogram (a 'rank' dim); "
                "pass the ensemble and the observations instead."
            )
    else:
        hist = rank_histogram(
            _as_dataarray(fcst, variable, "fcst"),
            _as_dataarray(obs, variable, "obs"),
            member_dim=member_dim,
            weights=weights,
        )
    extra = [d for d in hist.dims if d != "rank"]
    if extra:
        hist = hist.mean(extra)
    hist = hist.load()
    if not np.isfinite(np.asarray(hist.values, dtype=float)).any():
        if obs is None:
            raise DataError("the rank histogram has no finite value: there is nothing to plot")
        raise DataError(
            "nothing to rank: no point has a finite observation and finite members (are the "
            "observations or the members all NaN?); give data with finite values at the same "
            "points"
        )
    ranks = np.asarray(hist["rank"].values)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(ranks, np.asarray(hist.values, dtype=float), width=0.9, color="tab:blue")
    ax.axhline(1.0 / ranks.size, color="k", ls="--", lw=1.0)
    ax.set_xlabel("rank of the observation among the members")
    ax.set_ylabel("relative frequency")
    ax.set_title(title or f"rank histogram ({ranks.size - 1} members)")
    return fig


@keyword_hints
def plot_spread_skill(
    fcst: xr.DataArray | xr.Dataset,
    obs: xr.DataArray | xr.Dataset,
    *,
    member_dim: Hashable = "member",
    variable: Hashable | None = None,
    n_bins: int = 10,
    title: str | None = None,
    figsize: tuple[float, float] = (4.5, 4.5),
) -> Figure:
    """Binned spread-error diagram: RMSE of the ensemble mean against the ensemble spread.

    Points are sorted into ``n_bins`` equally populated bins of ensemble variance. Per bin,
    x is the Fortin-corrected spread ``sqrt(<s^2 (M + 1) / M>)`` (``M`` the valid members at
    each point, as :func:`~flexdownscale.metrics.spread_skill_ratio`) and y the RMSE of the
    ensemble mean ``sqrt(<(mean - obs)^2>)``, so a reliable ensemble lies on the diagonal
    (drawn). The title gives the overall (Fortin-corrected) spread-skill ratio.

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with ``member_dim`` (at least 2 members), in the units of ``obs``.
    obs : DataArray or Dataset
        Observations (truth) on the ensemble's grid.
    member_dim : str, default "member"
        Name of the member dim.
    variable : str, optional
        Variable to use from Datasets.
    n_bins : int, default 10
        Number of equally populated bins of ensemble variance (at most one per point).
    title : str, optional
        Axis title; default None: "spread-skill ratio R (M = m)".
    figsize : (float, float), default (4.5, 4.5)
        Figure size in inches.

    Returns
    -------
    Figure
        One axis with two lines (the binned curve and the diagonal).

    Raises
    ------
    UnitsError
        When ``fcst`` and ``obs`` carry ``units`` that differ as units (``K`` and ``degC``),
        as for :func:`~flexdownscale.metrics.spread_skill_ratio`.
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}.")
    fcst = _as_dataarray(fcst, variable, "fcst")
    obs = _as_dataarray(obs, variable, "obs")
    check_same_units(fcst, obs)  # as spread_skill_ratio: K against degC is an error
    m = check_member_dim(fcst, obs, member_dim)
    # the metrics' alignment: round-off coordinates are the same points, others an error
    fcst, obs = align_exact(fcst, obs, names=("fcst", "obs"))
    if m < 2:
        raise EnsembleError(f"a spread needs at least 2 members, got {m}.")
    # per point, over its valid members (as spread_skill_ratio): the Fortin factor uses the
    # count of valid members there, not the nominal M
    var, err2, count = point_spread_and_error(fcst, obs, member_dim)
    var = var * (count + 1.0) / count
    v = np.asarray(var.values, dtype=float).ravel()
    e = np.asarray(err2.values, dtype=float).ravel()
    ok = np.isfinite(v) & np.isfinite(e)
    v, e = v[ok], e[ok]
    if v.size == 0:
        which = "obs" if not np.isfinite(np.asarray(obs.values, dtype=float)).any() else "fcst"
        raise DataError(
            f"nothing to plot: no point has both a finite spread and a finite error ({which} "
            "has no finite value where the other has). Check the inputs (a masked field, or an "
            "ensemble on another grid), or select the valid points first."
        )
    order = np.argsort(v, kind="stable")
    groups = np.array_split(order, min(n_bins, v.size))
    xs = np.array([np.sqrt(v[g].mean()) for g in groups])
    ys = np.array([np.sqrt(e[g].mean()) for g in groups])
    ratio = np.sqrt(v.mean() / e.mean())
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, ys, "o-", color="tab:red", label="binned")
    top = float(max(xs.max(), ys.max())) * 1.05
    ax.plot([0.0, top], [0.0, top], "k--", lw=1.0, label="1:1")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, top)
    ax.set_aspect("equal")
    units = obs.attrs.get("units")
    suffix = f" [{units}]" if units else ""
    ax.set_xlabel(f"spread sqrt((M+1)/M) x std{suffix}")
    ax.set_ylabel(f"RMSE of ensemble mean{suffix}")
    ax.legend(frameon=False, loc="upper left")
    ax.set_title(title or f"spread-skill ratio {ratio:.2f} (M = {m})")
    return fig


def _select_time(da: xr.DataArray, time_dim: Hashable, time: Any, name: str) -> xr.DataArray:
    """``da`` at ``time`` (a position or a label) along ``time_dim``; ``da`` itself without that
    dim. A position or label that ``da`` lacks is a :class:`ConfigError` naming what it has."""
    if time_dim not in da.dims:
        return da
    n = da.sizes[time_dim]
    if isinstance(time, int | np.integer) and not isinstance(time, bool):
        if not -n <= int(time) < n:
            raise ConfigError(
                f"time = {int(time)} is no position along the {name}'s {str(time_dim)!r} "
                f"({n} steps: 0 to {n - 1}, or -1 for the last); pass a position in that range "
                "or a time label"
            )
        return da.isel({time_dim: int(time)})
    try:
        return da.sel({time_dim: time})
    except (KeyError, TypeError, ValueError) as err:
        if time_dim in da.coords and n:
            labels = da[time_dim].values
            have = f"{n} values from {labels[0]} to {labels[-1]}"
        else:
            have = f"{n} steps without labels"
        raise ConfigError(
            f"time = {time!r} is not a label of the {name}'s {str(time_dim)!r} ({have}); pass "
            "one of its labels or a position (an int)"
        ) from err


def _xy(
    da: xr.DataArray, dims: Sequence[Hashable] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if da.ndim != 2:
        raise ShapeError(
            f"a panel needs a 2-D field after selecting the time, got dims {tuple(da.dims)!r}; "
            "select the other dims first (e.g. .isel(level=0))."
        )
    ydim, xdim = find_yx_dims(da, dims)
    da = da.transpose(ydim, xdim)
    x = da[xdim].values if xdim in da.coords else np.arange(da.sizes[xdim])
    y = da[ydim].values if ydim in da.coords else np.arange(da.sizes[ydim])
    return np.asarray(x), np.asarray(y), np.asarray(da.values, dtype=float)


@keyword_hints
def plot_panels(
    coarse: xr.DataArray | xr.Dataset | None,
    truth: xr.DataArray | xr.Dataset,
    ensemble: xr.DataArray | xr.Dataset,
    *,
    member_dim: Hashable = "member",
    n_members: int = 3,
    time: Any = 0,
    time_dim: Hashable = "time",
    variable: Hashable | None = None,
    dims: Sequence[Hashable] | None = None,
    cmap: str = "viridis",
    title: str | None = None,
    panel_size: float = 2.6,
) -> Figure:
    """Panel grid for one time step: coarse, truth, members, mean, spread and error.

    Row 1: the coarse input (on its own grid), the truth and the first ``n_members`` members,
    on one shared colour scale (the truth's 1st-99th percentiles, widened to the members').
    Row 2: the ensemble mean (same scale), the ensemble spread (std, ``ddof=1``) and the error
    of the mean (mean - truth, symmetric diverging scale).

    Parameters
    ----------
    coarse : DataArray or Dataset or None
        Low-resolution input; ``None`` leaves its panel out.
    truth : DataArray or Dataset
        High-resolution truth.
    ensemble : DataArray or Dataset
        Samples with ``member_dim`` on the truth's grid.
    member_dim : str, default "member"
        Name of the ensemble's member dim.
    n_members : int, default 3
        Members drawn in row 1 (the first ones; fewer when the ensemble has fewer; 0 for
        none). The mean and spread panels use every member.
    time : int or label, default 0
        Position (int) or label of the time step along ``time_dim`` (dims without it are
        used as they are).
    time_dim : str, default "time"
        Name of the time dim of the inputs.
    variable : str, optional
        Variable to use from Datasets.
    dims : (y_dim, x_dim), optional
        The grid's dims, for names that CF attributes and the usual names do not tell
        (default: found as the metrics find them).
    cmap : str, default "viridis"
        Matplotlib colour map of the field panels (coarse, truth, members, mean); the spread
        uses ``"magma"`` and the error ``"RdBu_r"``.
    title : str, optional
        Figure title; default None: the truth's name and the time label when the truth has a
        ``time_dim`` coordinate, else no title.
    panel_size : float, default 2.6
        Width and height of one panel in inches (figure ``panel_size * ncols + 1`` by
        ``panel_size * 2``).

    Returns
    -------
    Figure
        One axis per panel (each with one mesh) plus three colour bars.

    Raises
    ------
    UnitsError
        When the ensemble (or the coarse input) and the truth carry ``units`` that differ as
        units (``K`` and ``degC``): the error panel would show the offset.
    ConfigError
        When ``time`` is not a position or label along ``time_dim``.
    """
    if n_members < 0:
        raise ConfigError(f"n_members must be >= 0, got {n_members}.")
    truth_da = _select_time(_as_dataarray(truth, variable, "truth"), time_dim, time, "truth")
    ens = _select_time(_as_dataarray(ensemble, variable, "ensemble"), time_dim, time, "ensemble")
    check_same_units(ens, truth_da, names=("ensemble", "truth"))
    m = check_member_dim(ens, truth_da, member_dim)
    ens, truth_da = align_exact(ens, truth_da, names=("ensemble", "truth"))
    n_show = min(n_members, m)
    ens = ens.load()
    mean = ens.mean(member_dim)
    spread = ens.std(member_dim, ddof=1) if m > 1 else xr.full_like(mean, np.nan)
    error = mean - truth_da
    top: list[tuple[str, xr.DataArray]] = []
    if coarse is not None:
        coarse_da = _as_dataarray(coarse, variable, "coarse")
        check_same_units(coarse_da, truth_da, names=("coarse", "truth"))
        top.append(("coarse", _select_time(coarse_da, time_dim, time, "coarse")))
    top.append(("truth", truth_da))
    top += [(f"member {i + 1}", ens.isel({member_dim: i})) for i in range(n_show)]
    ncols = max(len(top), 3)
    fig = Figure(figsize=(panel_size * ncols + 1.0, panel_size * 2), layout="constrained")
    axes = fig.subplots(2, ncols, squeeze=False)
    tv = np.asarray(truth_da.values, dtype=float)
    lo, hi = np.nanpercentile(tv, [1, 99])
    ev = np.asarray(ens.isel({member_dim: slice(0, max(n_show, 1))}).values, dtype=float)
    if np.isfinite(ev).any():
        lo, hi = min(lo, np.nanpercentile(ev, 1)), max(hi, np.nanpercentile(ev, 99))
    units = truth_da.attrs.get("units", "")
    state_axes = []
    mesh = None
    for ax, (label, da) in zip(axes[0], top):
        x, y, v = _xy(da, dims)
        mesh = ax.pcolormesh(x, y, v, cmap=cmap, vmin=lo, vmax=hi, shading="auto")
        ax.set_title(label)
        state_axes.append(ax)
    x, y, v = _xy(mean, dims)
    mesh = axes[1, 0].pcolormesh(x, y, v, cmap=cmap, vmin=lo, vmax=hi, shading="auto")
    axes[1, 0].set_title("ensemble mean")
    state_axes.append(axes[1, 0])
    fig.colorbar(mesh, ax=state_axes, label=units, shrink=0.8)
    x, y, v = _xy(spread, dims)
    smax = np.nanpercentile(v, 99) if np.isfinite(v).any() else 1.0
    sm = axes[1, 1].pcolormesh(x, y, v, cmap="magma", vmin=0.0, vmax=smax or 1.0, shading="auto")
    axes[1, 1].set_title(f"spread (M = {m})")
    fig.colorbar(sm, ax=axes[1, 1], label=units, shrink=0.8, location="bottom")
    x, y, v = _xy(error, dims)
    emax = np.nanpercentile(np.abs(v), 99) if np.isfinite(v).any() else 1.0
    em = axes[1, 2].pcolormesh(
        x, y, v, cmap="RdBu_r", vmin=-(emax or 1.0), vmax=emax or 1.0, shading="auto"
    )
    axes[1, 2].set_title("mean - truth")
    fig.colorbar(em, ax=axes[1, 2], label=units, shrink=0.8, location="bottom")
    for ax in axes[0, len(top) :]:
        fig.delaxes(ax)
    for ax in axes[1, 3:]:
        fig.delaxes(ax)
    for ax in [*state_axes, axes[1, 1], axes[1, 2]]:
        ax.set_xticks([])
        ax.set_yticks([])
    if title is None and time_dim in truth_da.coords:
        t = np.asarray(truth_da[time_dim].values)
        when = np.datetime_as_string(t, unit="m") if np.issubdtype(t.dtype, np.datetime64) else t
        title = f"{truth_da.name or ''} {time_dim} = {when}"
    if title:
        fig.suptitle(title.strip())
    return fig
