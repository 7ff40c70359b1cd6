"""Matplotlib figures for verification: spectra, rank histograms, spread-skill, field panels.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state, so it is
safe on headless machines and in threads) and returns it: save it with ``fig.savefig(path)``;
in Jupyter it displays as the cell's result (end the cell with ``fig``: an assignment alone
shows nothing). Inputs are xarray objects; data are loaded
(computed) for plotting.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axis import Axis
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

from flexdownscale._keywords import keyword_hints
from flexdownscale._stack import user_stacklevel
from flexdownscale.errors import (
    ConfigError,
    DataError,
    EnsembleError,
    FlexDownscaleWarning,
    GridError,
    NotXarrayError,
    ShapeError,
    not_xarray_message,
)
from flexdownscale.metrics import power_spectrum, rank_histogram, spread_skill_spectrum
from flexdownscale.metrics._utils import (
    align_exact,
    check_member_dim,
    check_same_units,
    coord_kind,
    coord_units_kind,
    find_yx_dims,
)
from flexdownscale.metrics.probabilistic import point_spread_and_error
from flexdownscale.metrics.spectra import complete_bins, default_method, on_reference_bins

__all__ = [
    "plot_panels",
    "plot_rank_histogram",
    "plot_spectra",
    "plot_spread_skill",
    "plot_spread_skill_spectrum",
]

_SPECTRAL_DIMS = ("wavenumber", "zonal_wavenumber")


def _as_dataarray(
    obj: xr.DataArray | xr.Dataset, variable: Hashable | None, name: str
) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        return obj
    if not isinstance(obj, xr.Dataset):
        raise NotXarrayError(not_xarray_message(obj, name))
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


def _shared_method(
    base: xr.DataArray,
    base_is_field: bool,
    dims: Sequence[Hashable] | Hashable | None,
    kwargs: Mapping[str, Any],
) -> str | None:
    """The spectrum method of the field entries when ``spectrum_kwargs`` names none: that of
    the base field by :func:`~flexdownscale.metrics.spectra.default_method` (the FFT on a
    doubly periodic grid or with a window, else the DCT; the rule of ``flexdownscale evaluate``
    and ``downscaling_skill``), the method of a precomputed base spectrum (so that the ratios
    compare the same bins), else None (``power_spectrum``'s default for each)."""
    if not base_is_field:
        if _spectral_dim(base) != "wavenumber":
            return None
        stored = str(base.attrs.get("spectrum_method", ""))
        if stored == "FFT":
            return "fft"
        if stored.startswith("DCT") and kwargs.get("window") is None:
            return "dct"
        return None
    return default_method(base, dims, window=kwargs.get("window"))


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
        Passed to ``power_spectrum`` for entries that are fields. Without a ``method`` in
        ``spectrum_kwargs`` every field entry takes the same one: the reference's (the first
        entry's without ``reference``) by
        :func:`~flexdownscale.metrics.spectra.default_method` (the FFT when its spatial
        coordinates are all periodic, ``periodic = "true"``, e.g. a doubly periodic box, or
        with a ``window``; else the DCT; as ``flexdownscale evaluate`` and
        ``downscaling_skill`` choose), the method of the reference when it is a precomputed
        spectrum.
    truncate : bool, default True
        Drop the partly filled corner bins of the 2-D spectrum: those beyond its
        ``complete_wavenumber`` (the Nyquist wavenumber of the FFT; the bins that
        :func:`~flexdownscale.metrics.log_spectral_distance` averages over), or beyond
        ``nyquist_wavenumber`` for a spectrum without that attribute.
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
        e.g. 4 for a forcing at wavenumber 4 of a periodic box. The y label is the spectrum's
        ``long_name`` (e.g. "kinetic energy spectral density") and units, the x label of a
        zonal spectrum its wavenumber's ("zonal wavenumber (cycles per latitude circle)").
        Log axes spanning a decade or less get plain tick labels (``0.6 0.8 1``).

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

    Examples
    --------
    A noise field on a 1 km grid against its coarsened copy interpolated back: the lower
    panel's ratio is close to 1 at the largest scales and near 0 at the smallest, the
    variance that interpolation cannot bring back:

    >>> import numpy as np, xarray as xr
    >>> from flexdownscale.data import degrade, up
    >>> km = np.arange(32.0)
    >>> truth = xr.DataArray(np.random.default_rng(0).normal(size=(32, 32)), dims=("y", "x"),
    ...                      coords={"y": ("y", km, {"units": "km"}),
    ...                              "x": ("x", km, {"units": "km"})})
    >>> fig = plot_spectra({"truth": truth, "interpolated": up(degrade(truth, 4), 4)},
    ...                    reference="truth")
    >>> top, bottom = fig.axes[:2]
    >>> [line.get_label() for line in top.lines]
    ['truth', 'interpolated']
    >>> ratio = bottom.lines[0].get_ydata()
    >>> bool(ratio[:3].min() > 0.8), bool(ratio[-10:].max() < 0.01)
    (True, True)
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
    if "method" not in kwargs:
        method = _shared_method(entries[base], is_field[base], dims, kwargs)
        if method is not None:
            kwargs["method"] = method
    curves: dict[str, xr.DataArray] = {}
    for label, da in entries.items():
        sdim = _spectral_dim(da)
        if sdim is None:
            da = power_spectrum(da, dims=dims, **kwargs)
            sdim = "wavenumber"
        entries[label] = da
        nyq = da.attrs.get("nyquist_wavenumber")
        complete = complete_bins(da, sdim) if sdim == "wavenumber" else None
        extra = [d for d in da.dims if d != sdim]
        # a sample with a NaN has a NaN spectrum, and so has the mean (skipping it would draw
        # the mean of the other samples without a word)
        spec = da.mean(extra, skipna=False) if extra else da
        if sdim == "wavenumber" and truncate and complete is not None:  # the LSD's bins
            spec = spec.isel({sdim: complete})
        elif sdim == "wavenumber" and truncate and nyq is not None:
            spec = spec.where(spec[sdim] <= float(nyq) * (1 + 1e-9), drop=True)
        curves[label] = spec.load()
    for label, da in entries.items():
        if is_field[label] != is_field[base]:
            check_same_units(entries[base], da, names=(f"spectra[{base!r}]", f"spectra[{label!r}]"))
    for label in _check_curves(curves, reference):  # in the legend, as a masked field's
        curves[label] = curves[label].where(curves[label] > 0)  # no log-axis warnings of zeros

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
    xlabel = _wavenumber_label(first, sdim)
    power_units = str(first.attrs.get("units", ""))
    yname = str(first.attrs.get("long_name") or "power spectral density")
    ax.set_ylabel(yname + (f" [{power_units}]" if power_units else ""))
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
        _tidy_log_axis(ax_ratio.yaxis, *ax_ratio.get_ylim())
    else:
        ax.set_xlabel(xlabel)
    xlim = ax.get_xlim()
    for axis in (ax.xaxis, *([ax_ratio.xaxis] if ax_ratio is not None else [])):
        _tidy_log_axis(axis, *xlim)
    _tidy_log_axis(ax.yaxis, *ax.get_ylim())
    _wavelength_axis(ax, first, sdim, xlim)
    return fig


def _wavelength_axis(
    ax: Any, spec: xr.DataArray, sdim: Hashable, xlim: tuple[float, float]
) -> None:
    """A secondary top axis of ``ax`` (whose x is the wavenumber of ``spec``): the wavelength
    in km for wavenumbers in ``m-1`` / ``km-1``; cycles per domain length for dimensionless
    coordinates; nothing for zonal spectra."""
    kunits = str(spec[sdim].attrs.get("units", ""))
    if sdim == "wavenumber" and kunits in ("m-1", "km-1"):
        scale = 1e-3 if kunits == "m-1" else 1.0

        def to_wavelength(k: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                return scale / np.asarray(k, dtype=float)

        sec = ax.secondary_xaxis("top", functions=(to_wavelength, to_wavelength))
        sec.set_xlabel("wavelength [km]")
        _tidy_log_axis(sec.xaxis, *sorted(to_wavelength(np.asarray(xlim))))
    elif sdim == "wavenumber" and kunits in ("", "1") and spec.attrs.get("dk"):
        # dimensionless coordinates: the mode number, cycles per domain length (of the shorter
        # side; dk is 1/L for the FFT, 1/(2L) for the DCT), e.g. 4 for a forcing at k = 4
        length = 1.0 / float(spec.attrs["dk"])
        if spec.attrs.get("spectrum_method", "FFT") != "FFT":
            length /= 2.0
        sec = ax.secondary_xaxis(
            "top", functions=(lambda k: np.asarray(k) * length, lambda n: np.asarray(n) / length)
        )
        sec.set_xlabel("cycles per domain length")
        _tidy_log_axis(sec.xaxis, xlim[0] * length, xlim[1] * length)


def _wavenumber_label(spec: xr.DataArray, sdim: Hashable) -> str:
    """The x label of a spectrum: ``wavenumber [m-1]`` (``[cycles per coordinate unit]`` for
    dimensionless coordinates) for isotropic spectra; for zonal ones their coordinate's
    ``long_name`` ("zonal wavenumber (cycles per latitude circle)") and units."""
    units = str(spec[sdim].attrs.get("units", ""))
    if sdim == "wavenumber":
        # dimensionless coordinates (a turbulence box): cycles per coordinate unit
        return f"wavenumber [{units if units not in ('', '1') else 'cycles per coordinate unit'}]"
    name = str(spec[sdim].attrs.get("long_name") or "zonal wavenumber")
    return f"{name} [{units}]" if units not in ("", "1") else name


def _tick_formatter(lo: float, hi: float) -> FuncFormatter:
    """Tick labels of a log axis from ``lo`` to ``hi``: plain (``0.5``, ``20``) when the whole
    axis lies within 1e-3 to 1e4, else all as ``2 x 10^-5`` (one style per axis)."""
    plain = lo >= 1e-3 and hi < 1e4

    def label(value: float, _pos: Any = None) -> str:
        if not np.isfinite(value) or value <= 0:
            return ""
        if plain:
            return f"{value:g}"
        exponent = int(np.floor(np.log10(value) + 1e-9))
        mantissa = float(f"{value / 10.0**exponent:.2g}")
        if mantissa == 1.0:
            return f"$10^{{{exponent}}}$"
        return f"${mantissa:g}\\times10^{{{exponent}}}$"

    return FuncFormatter(label)


def _tidy_log_axis(axis: Axis, lo: float, hi: float) -> None:
    """Ticks of a log axis from ``lo`` to ``hi`` whose labels do not overlap.

    Matplotlib labels the minor ticks of a log axis that spans a decade or two (``9x10^-1
    8x10^-1 ...``, crowding into each other); here less than a decade gets a few plain ticks
    (``0.6 0.8 1``), up to three decades 1, 2 and 5 of each decade, and more the decades alone;
    minor ticks stay, unlabelled.
    """
    lo, hi = sorted((float(lo), float(hi)))
    if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 < lo < hi):
        return
    decades = np.log10(hi / lo)
    if decades < 1.0:
        axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        axis.set_major_formatter(_tick_formatter(lo, hi))
    elif decades < 3.0:
        axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(_tick_formatter(lo, hi))
    axis.set_minor_formatter(NullFormatter())


def _check_curves(curves: Mapping[str, xr.DataArray], reference: str | None) -> list[str]:
    """Warn about each curve with nothing to draw on log axes: no finite value, or no positive
    one (the spectrum of a constant field is zero everywhere); DataError when no curve has
    anything to draw. Returns the labels of the curves with no positive value."""
    hint = (
        "a field with NaNs (e.g. masked land or ocean) has a NaN spectrum: fill the NaNs or "
        "select a region without them"
    )
    flat_hint = (
        "its power is zero at every wavenumber (a constant field: all dry, a failed run, the "
        "wrong variable?); log axes cannot show it"
    )
    values = {label: np.asarray(spec.values, dtype=float) for label, spec in curves.items()}
    empty = [label for label, v in values.items() if not np.isfinite(v).any()]
    flat = [
        label
        for label, v in values.items()
        if label not in empty and not (np.isfinite(v) & (v > 0)).any()
    ]
    if len(empty) + len(flat) == len(curves):
        why = [
            f"{', '.join(map(repr, names))} {'has' if len(names) == 1 else 'have'} no {what}"
            for names, what in (
                (empty, f"finite value; {hint}"),
                (flat, f"positive value: {flat_hint}"),
            )
            if names
        ]
        raise DataError(f"no spectrum to plot: {'; and '.join(why)}")
    for label in [*empty, *flat]:
        ratios = " (nor the ratios to it)" if label == reference else ""
        warnings.warn(
            f"spectra[{label!r}] has no "
            + (f"finite value and is not drawn{ratios}; {hint}" if label in empty else "")
            + (f"positive value and is not drawn{ratios}: {flat_hint}" if label in flat else ""),
            FlexDownscaleWarning,
            stacklevel=user_stacklevel(),
        )
    return flat


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

    Examples
    --------
    Four members at 1, 2, 3 and 4 everywhere, and observations that fall below, between and
    above them equally often: flat bars at ``1 / 5``. The same members shrunk to a tenth of
    their spread (an under-dispersive ensemble) miss most observations on either side: a U:

    >>> import xarray as xr
    >>> obs = xr.DataArray([0.5, 1.5, 2.5, 3.5, 4.5] * 2, dims="x")
    >>> fcst = xr.DataArray([1.0, 2, 3, 4], dims="member").broadcast_like(obs)
    >>> fig = plot_rank_histogram(fcst, obs)
    >>> ax = fig.axes[0]
    >>> ax.get_title(), [round(float(bar.get_height()), 3) for bar in ax.patches]
    ('rank histogram (4 members)', [0.2, 0.2, 0.2, 0.2, 0.2])
    >>> fig = plot_rank_histogram(2.5 + 0.1 * (fcst - 2.5), obs)
    >>> [round(float(bar.get_height()), 3) for bar in fig.axes[0].patches]
    [0.4, 0.0, 0.2, 0.0, 0.4]
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
    m = ranks.size - 1
    if m < 2:
        # as plot_spread_skill: with one member the "histogram" only says how often the
        # observation lies above that member (a bias), not whether an ensemble is calibrated
        raise EnsembleError(
            f"a rank histogram needs at least 2 members, got {m} ({ranks.size} rank"
            f"{'' if ranks.size == 1 else 's'}); for a single forecast look at its bias "
            "(mean - obs) instead, or downscale an ensemble (members=...)."
        )
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    heights = np.asarray(hist.values, dtype=float)
    ax.bar(ranks, heights, width=0.9, color="tab:blue")
    ax.axhline(1.0 / ranks.size, color="k", ls="--", lw=1.0, label=f"calibrated (1/{ranks.size})")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.set_xlim(ranks.min() - 0.6, ranks.max() + 0.6)
    ax.set_xlabel("rank of the observation among the members")
    ax.set_ylabel("relative frequency")
    # headroom above the highest bar (and the flat line) for the legend
    ax.set_ylim(0.0, 1.3 * max(float(np.nanmax(heights)), 1.0 / ranks.size))
    ax.legend(frameon=False, loc="upper right", fontsize="small")
    ax.set_title(title or f"rank histogram ({m} members)")
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

    Examples
    --------
    Two members ``a`` either side of 0 (a variance of ``2 a^2``, ``3 a^2`` with Fortin's
    factor ``(M + 1) / M``) and an observation ``sqrt(3) a`` from their mean, for ``a`` from
    1 to 10: a reliable ensemble, every bin on the diagonal; with half the spread, a ratio
    of one half:

    >>> import numpy as np, xarray as xr
    >>> a = xr.DataArray(np.arange(1.0, 11.0), dims="x")
    >>> fcst = a * xr.DataArray([-1.0, 1.0], dims="member")
    >>> obs = np.sqrt(3) * a * xr.DataArray([1.0, -1.0] * 5, dims="x")
    >>> fig = plot_spread_skill(fcst, obs, n_bins=5)
    >>> ax = fig.axes[0]
    >>> ax.get_title()
    'spread-skill ratio 1.00 (M = 2)'
    >>> spread, error = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    >>> len(spread), bool(np.allclose(spread, error))
    (5, True)
    >>> plot_spread_skill(0.5 * fcst, obs, n_bins=5).axes[0].get_title()
    'spread-skill ratio 0.50 (M = 2)'
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


@keyword_hints
def plot_spread_skill_spectrum(
    fcst: xr.DataArray | xr.Dataset,
    obs: xr.DataArray | xr.Dataset | None = None,
    *,
    member_dim: Hashable = "member",
    variable: Hashable | None = None,
    spectrum_kwargs: Mapping[str, Any] | None = None,
    truncate: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    """The spread-skill ratio per wavenumber on log axes, with the reliable level 1.

    Pass an ensemble and the truth (the ratio is
    :func:`~flexdownscale.metrics.spread_skill_spectrum` over every sample, Fortin-corrected),
    or a precomputed ratio (a DataArray with a ``wavenumber`` dim and no other, or a
    ``zonal_wavenumber`` one from ``kind="zonal"``) and ``obs=None``. Below 1 the ensemble is
    too confident at that scale, above 1 too noisy. For a global grid pass
    ``spectrum_kwargs={"kind": "zonal"}`` (zonal wavenumbers on the x axis).

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with ``member_dim``, or (with ``obs=None``) a ratio from
        :func:`~flexdownscale.metrics.spread_skill_spectrum`.
    obs : DataArray or Dataset, optional
        Truth in the ensemble's units; default None: ``fcst`` is a ratio.
    member_dim : str, default "member"
        Name of the member dim.
    variable : str, optional
        Variable to use from Datasets.
    spectrum_kwargs : mapping, optional
        Passed to :func:`~flexdownscale.metrics.spread_skill_spectrum` (``dims``, ``method``,
        ``window``, ``correction``, ...); unused with ``obs=None``.
    truncate : bool, default True
        Draw the complete annuli only (up to ``attrs["complete_wavenumber"]``), the bins the
        log-spectral distance uses.
    title : str, optional
        Axis title; default None: "spread-skill ratio per wavenumber (M members)" (without
        the count for a precomputed ratio).
    figsize : (float, float), default (6.0, 4.0)
        Figure size in inches.

    Returns
    -------
    Figure
        One axis with the ratio and a dashed line at 1 (wavelengths on a top axis for grids
        in metres or kilometres, cycles per domain length for dimensionless ones).

    Raises
    ------
    ConfigError
        A precomputed ratio with dims other than ``wavenumber`` (select or average them first:
        a ratio is not averaged here, variances are; pass the fields instead).
    DataError
        When the ratio has no finite positive value (e.g. NaN in every sample).

    Examples
    --------
    An ensemble with twice the right deviations lies on 2 at every scale:

    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> cells = np.arange(32.0)
    >>> draw = rng.normal(size=(9, 50, 32, 32))
    >>> ens = xr.DataArray(draw[:8], dims=("member", "time", "y", "x"),
    ...                    coords={"y": cells, "x": cells})
    >>> truth = xr.DataArray(draw[8], dims=("time", "y", "x"), coords={"y": cells, "x": cells})
    >>> wide = ens.mean("member") + 2 * (ens - ens.mean("member"))
    >>> fig = plot_spread_skill_spectrum(wide, truth)
    >>> fig.axes[0].get_title()
    'spread-skill ratio per wavenumber (8 members)'
    >>> bool(np.all(abs(fig.axes[0].lines[0].get_ydata() - 2) < 0.3))
    True
    """
    if obs is None:
        ratio = _as_dataarray(fcst, variable, "fcst")
        if ratio.ndim != 1 or ratio.dims[0] not in _SPECTRAL_DIMS:
            raise ConfigError(
                f"fcst with obs=None is a precomputed spread-skill ratio with the dim "
                f"'wavenumber' (or 'zonal_wavenumber') only, but its dims are "
                f"{tuple(ratio.dims)!r}; pass the ensemble and the truth, or select one ratio "
                "(ratio.sel(...)) first"
            )
        count = ""
    else:
        ens = _as_dataarray(fcst, variable, "fcst")
        truth = _as_dataarray(obs, variable, "obs")
        ratio = spread_skill_spectrum(
            ens, truth, member_dim=member_dim, **dict(spectrum_kwargs or {})
        )
        count = f" ({ens.sizes[member_dim]} members)"
    sdim = _spectral_dim(ratio) or "wavenumber"
    if truncate:
        keep = complete_bins(ratio, sdim)
        if keep is not None:
            ratio = ratio.isel({sdim: keep})
    ratio = ratio.load()
    values = np.asarray(ratio.values, dtype=float)
    drawn = np.isfinite(values) & (values > 0)
    if not drawn.any():
        raise DataError(
            "no spread-skill ratio to plot: no wavenumber has a finite positive ratio (a NaN in "
            "every sample's field, or members without spread?); fill the NaNs or select a "
            "region without them"
        )
    k = np.asarray(ratio[sdim].values, dtype=float)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.loglog(k[drawn], values[drawn], marker=".", color="C0")
    ax.axhline(1.0, color="k", lw=1.0, ls="--")
    ax.set_xlabel(_wavenumber_label(ratio, sdim))
    correction = ratio.attrs.get("spread_skill_correction", "fortin")
    ax.set_ylabel(
        "spread / error" + (f" ({correction})" if correction not in ("None", None) else " (raw)")
    )
    ax.set_title(title if title is not None else f"spread-skill ratio per wavenumber{count}")
    ax.grid(True, which="major", alpha=0.3)
    lo, hi = float(values[drawn].min()), float(values[drawn].max())
    ax.set_ylim(min(lo, 0.9) / 1.2, max(hi, 1.1) * 1.2)  # the reliable level always in view
    xlim = ax.get_xlim()
    _tidy_log_axis(ax.xaxis, *xlim)
    _tidy_log_axis(ax.yaxis, *ax.get_ylim())
    _wavelength_axis(ax, ratio, sdim, xlim)
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


# matplotlib's diverging colour maps (its "Diverging" class; also reversed, "_r"): with one of
# them plot_panels centres the field panels' colours on 0 when the data straddle 0. Other maps
# (cmocean's "balance", say) are centred with center=0.
_DIVERGING_CMAPS = frozenset(
    {
        "BrBG",
        "PRGn",
        "PiYG",
        "PuOr",
        "RdBu",
        "RdGy",
        "RdYlBu",
        "RdYlGn",
        "Spectral",
        "berlin",
        "bwr",
        "coolwarm",
        "managua",
        "seismic",
        "vanimo",
    }
)


def _is_diverging(cmap: str | Colormap) -> bool:
    name = cmap if isinstance(cmap, str) else str(getattr(cmap, "name", ""))
    return name.removesuffix("_r") in _DIVERGING_CMAPS


def _check_limit(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = np.nan
    if not np.isfinite(out):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")
    return out


def _colour_limits(
    lo: float,
    hi: float,
    *,
    vmin: float | None,
    vmax: float | None,
    center: float | bool | None,
    cmap: str | Colormap,
) -> tuple[float, float]:
    """The field panels' colour limits from the data's ``(lo, hi)`` and the user's options.

    ``vmin`` / ``vmax`` replace the data's limits; a centre (``center``, or 0 for a diverging
    ``cmap`` when the limits straddle 0) makes them symmetric about it: a given limit is
    mirrored, else the wider side of the data sets both.
    """
    if vmin is not None:
        vmin = _check_limit("vmin", vmin)
    if vmax is not None:
        vmax = _check_limit("vmax", vmax)
    explicit = center is not None and center is not False
    if vmin is not None and vmax is not None:
        if explicit:
            raise ConfigError(
                f"center = {center!r} with both vmin and vmax: give at most one of them (the "
                "other mirrors it about the centre), or drop center to use vmin and vmax as "
                "they are."
            )
        if not vmin < vmax:
            raise ConfigError(f"vmin must be below vmax, got vmin = {vmin:g}, vmax = {vmax:g}.")
        return vmin, vmax
    lo = vmin if vmin is not None else lo
    hi = vmax if vmax is not None else hi
    if center is True:
        c: float | None = 0.0
    elif explicit:
        c = _check_limit("center", center)
    elif center is None and _is_diverging(cmap) and lo < 0.0 < hi:
        c = 0.0
    else:
        return lo, hi
    if vmin is not None or vmax is not None:
        if vmin is not None:
            half, given = c - vmin, f"vmin = {vmin:g}"
        else:
            half, given = hi - c, f"vmax = {hi:g}"
        if half <= 0.0:
            raise ConfigError(
                f"{given} is on the wrong side of the centre {c:g}: vmin must be below the "
                "centre, vmax above it."
            )
    else:
        half = max(hi - c, c - lo)
        if not np.isfinite(half) or half <= 0.0:
            half = max(abs(c), 1.0) * 1e-3  # a constant field at the centre
    return c - half, c + half


def _coord_label(da: xr.DataArray, dim: Hashable) -> str:
    """``long_name [units]`` of the coordinate of ``dim`` (the dim's name without a long_name;
    "(index)" when it has no coordinate)."""
    if dim not in da.coords:
        return f"{dim} (index)"
    attrs = da[dim].attrs
    name = str(attrs.get("long_name") or attrs.get("standard_name") or dim)
    units = str(attrs.get("units", ""))
    return f"{name} [{units}]" if units and units != "1" else name


def _field_label(da: xr.DataArray) -> str:
    """``long_name [units]`` of a field (its name without a long_name)."""
    name = str(da.attrs.get("long_name") or da.name or "")
    units = str(da.attrs.get("units", ""))
    if units and name:
        return f"{name} [{units}]"
    return units or name


def _extent(da: xr.DataArray, dim: Hashable) -> float | None:
    """The length a coordinate covers (cell edges: one step more than first to last)."""
    if dim not in da.coords or da.sizes[dim] < 2:
        return None
    values = np.asarray(da[dim].values, dtype=float)
    span = float(np.nanmax(values) - np.nanmin(values))
    return span * da.sizes[dim] / (da.sizes[dim] - 1)


def _aspect(da: xr.DataArray, ydim: Hashable, xdim: Hashable) -> float | None:
    """Screen height of a y unit over the screen width of an x unit, so that shapes keep their
    proportions; None when the coordinates do not tell (then panels fill their boxes).

    Latitude and longitude in degrees: ``1 / cos(latitude)`` at the middle of the latitudes
    (a degree of longitude is that much shorter than one of latitude there). Lengths (``m``,
    ``km``): equal lengths. Coordinates in the same other units (a dimensionless box), or no
    coordinates at all (grid indices): equal steps.
    """
    has_y, has_x = ydim in da.coords, xdim in da.coords
    if not has_y and not has_x:
        return 1.0
    if not (has_y and has_x):
        return None
    try:
        ky, fy = coord_units_kind(da, ydim)
        kx, fx = coord_units_kind(da, xdim)
    except GridError:
        return None
    if ky == kx == "degrees":
        if coord_kind(da, ydim) != "y":
            return None
        lat = np.asarray(da[ydim].values, dtype=float)
        middle = 0.5 * (np.nanmin(lat) + np.nanmax(lat))
        # a panel reaching a pole would be drawn infinitely tall: at most 5 to 1
        return 1.0 / max(np.cos(np.deg2rad(middle)), 0.2)
    if ky == kx == "length":
        return fy / fx
    if ky == kx == "none":
        uy = str(da[ydim].attrs.get("units", "1")) or "1"
        ux = str(da[xdim].attrs.get("units", "1")) or "1"
        return 1.0 if uy == ux else None
    return None


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
    cmap: str | Colormap = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    center: float | bool | None = None,
    title: str | None = None,
    panel_size: float = 2.6,
) -> Figure:
    """Panel grid for one time step: coarse, truth, members, mean, spread and error.

    The panels, in reading order over two rows: the coarse input (on its own grid), the truth,
    the first ``n_members`` members and the ensemble mean, on one shared colour scale (its
    colour bar on the right, labelled with the truth's ``long_name`` and units); then the
    ensemble spread (std, ``ddof=1``) and the error of the mean (mean - truth, on a symmetric
    diverging scale), each with its own colour bar below. Axes carry the grid's coordinates
    (their ``long_name`` and units, tick labels on the outer panels), and the panels keep the
    grid's proportions: latitude-longitude grids at ``1 / cos(middle latitude)`` (a degree of
    longitude is shorter than one of latitude), grids in lengths or in equal steps of one
    unit (a doubly periodic box) at equal scales.

    The shared colour scale spans the truth's 1st-99th percentiles, widened to the shown
    members'. With one of matplotlib's diverging colour maps (``RdBu``, ``RdYlBu``,
    ``coolwarm``, ``bwr``, ``seismic``, ``PiYG``, ``PRGn``, ``BrBG``, ``PuOr``, ``RdGy``,
    ``RdYlGn``, ``Spectral``, ``berlin``, ``managua``, ``vanimo``, and their ``_r`` reversals)
    and data on both sides of 0 it is centred on 0 (the map's middle colour at 0, limits
    symmetric): a vorticity or wind component reads with its sign. ``center``, ``vmin`` and
    ``vmax`` override this (``center=0`` for a diverging map from another package).

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
        Members drawn (the first ones; fewer when the ensemble has fewer; 0 for none). The
        mean and spread panels use every member.
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
    cmap : str or Colormap, default "viridis"
        Matplotlib colour map of the field panels (coarse, truth, members, mean); the spread
        uses ``"magma"`` and the error ``"RdBu_r"``.
    vmin, vmax : float, optional
        Limits of the field panels' colour scale (default: from the data, as above). With a
        centre, give at most one: the other mirrors it (``vmin=-10`` with ``"RdBu_r"`` on
        data straddling 0: -10 to 10).
    center : float or bool, optional
        Value at the middle of the colour map, the limits symmetric about it. Default None:
        0 for a diverging ``cmap`` when the colour limits straddle 0, else none (a diverging
        map on a temperature in K is not centred on 0 K). A number: that centre, with any
        map (e.g. ``center=0`` for a diverging map matplotlib does not ship, or
        ``center=273.15`` for temperatures about freezing). True: 0. False: never centre.
    title : str, optional
        Figure title; default None: the truth's name and the time label when the truth has a
        ``time_dim`` coordinate, else no title.
    panel_size : float, default 2.6
        Longer side of one panel in inches; the other follows the grid's proportions.

    Returns
    -------
    Figure
        One axis per panel (each with one mesh; with one member the spread panel holds a
        note instead, as a spread needs 2) plus the colour bars (three; two with one member).

    Raises
    ------
    UnitsError
        When the ensemble (or the coarse input) and the truth carry ``units`` that differ as
        units (``K`` and ``degC``): the error panel would show the offset.
    ConfigError
        When ``time`` is not a position or label along ``time_dim``; when ``vmin`` is not
        below ``vmax`` (or below the centre), or ``center`` comes with both of them.
    EnsembleError
        When ``ensemble`` has no ``member_dim`` (or ``truth`` has one).

    Examples
    --------
    A field on a 1 km grid, its 4 km coarse input and three members around it: eight panels
    (coarse, truth, three members, their mean, spread and error) and three colour bars:

    >>> import numpy as np, xarray as xr
    >>> from flexdownscale.data import degrade
    >>> km = np.arange(32.0)
    >>> truth = xr.DataArray(np.sin(2 * np.pi * km / 16) * np.ones((32, 1)), dims=("y", "x"),
    ...                      coords={"y": ("y", km, {"units": "km"}),
    ...                              "x": ("x", km, {"units": "km"})})
    >>> noise = np.random.default_rng(0).normal(scale=0.1, size=(3, 32, 32))
    >>> ensemble = truth + xr.DataArray(noise, dims=("member", "y", "x"))
    >>> fig = plot_panels(degrade(truth, 4), truth, ensemble)
    >>> len(fig.axes)
    11
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()]  # doctest: +NORMALIZE_WHITESPACE
    ['coarse', 'truth', 'member 1', 'member 2', 'member 3', 'ensemble mean',
     'spread (M = 3)', 'mean - truth']
    """
    if n_members < 0:
        raise ConfigError(f"n_members must be >= 0, got {n_members}.")
    truth_da = _select_time(_as_dataarray(truth, variable, "truth"), time_dim, time, "truth")
    ens = _select_time(_as_dataarray(ensemble, variable, "ensemble"), time_dim, time, "ensemble")
    check_same_units(ens, truth_da, names=("ensemble", "truth"))
    m = check_member_dim(ens, truth_da, member_dim, names=("ensemble", "truth"))
    ens, truth_da = align_exact(ens, truth_da, names=("ensemble", "truth"))
    n_show = min(n_members, m)
    ens = ens.load()
    mean = ens.mean(member_dim)
    error = mean - truth_da
    fields: list[tuple[str, xr.DataArray]] = []
    if coarse is not None:
        coarse_da = _as_dataarray(coarse, variable, "coarse")
        check_same_units(coarse_da, truth_da, names=("coarse", "truth"))
        fields.append(("coarse", _select_time(coarse_da, time_dim, time, "coarse")))
    fields.append(("truth", truth_da))
    fields += [(f"member {i + 1}", ens.isel({member_dim: i})) for i in range(n_show)]
    fields.append(("ensemble mean", mean))

    tv = np.asarray(truth_da.values, dtype=float)
    lo, hi = np.nanpercentile(tv, [1, 99])
    ev = np.asarray(ens.isel({member_dim: slice(0, max(n_show, 1))}).values, dtype=float)
    if np.isfinite(ev).any():
        lo, hi = min(lo, np.nanpercentile(ev, 1)), max(hi, np.nanpercentile(ev, 99))
    lo, hi = _colour_limits(float(lo), float(hi), vmin=vmin, vmax=vmax, center=center, cmap=cmap)

    ydim, xdim = find_yx_dims(truth_da, dims)
    aspect = _aspect(truth_da, ydim, xdim)
    ratio = 1.0  # panel height / width
    ey, ex = _extent(truth_da, ydim), _extent(truth_da, xdim)
    if aspect is not None:
        if ey and ex:
            ratio = aspect * ey / ex
        elif ydim not in truth_da.coords and xdim not in truth_da.coords:
            ratio = truth_da.sizes[ydim] / truth_da.sizes[xdim]
    ratio = float(np.clip(ratio, 0.25, 4.0))
    width, height = panel_size * min(1.0, 1.0 / ratio), panel_size * min(1.0, ratio)

    n_panels = len(fields) + 2
    ncols = max(2, -(-n_panels // 2))
    fig = Figure(figsize=(width * ncols + 1.6, 2 * height + 1.9), layout="compressed")
    grid = fig.subplots(2, ncols, squeeze=False)
    cells = [ax for row in grid for ax in row]
    for ax in cells[n_panels:]:
        fig.delaxes(ax)
    cells = cells[:n_panels]
    # the fine panels share their axes (zoom one, zoom all); the coarse one too when it has
    # coordinates (on grid indices it spans other numbers than the truth)
    with_coords = ydim in truth_da.coords and xdim in truth_da.coords
    shared = []
    for i, (label, da) in enumerate([*fields, ("spread", mean), ("error", error)]):
        if label == "coarse":
            cy, cx = find_yx_dims(da, dims)
            if not (with_coords and cy in da.coords and cx in da.coords):
                continue
        if label == "spread" and m < 2:
            continue  # a note, not a map: its ticks are not the others'
        shared.append(cells[i])
    for ax in shared[1:]:
        ax.sharex(shared[0])
        ax.sharey(shared[0])

    state_axes = []
    mesh = None
    for ax, (label, da) in zip(cells, fields, strict=False):
        x, y, v = _xy(da, dims)
        mesh = ax.pcolormesh(x, y, v, cmap=cmap, vmin=lo, vmax=hi, shading="auto")
        ax.set_title(label)
        state_axes.append(ax)
    fig.colorbar(mesh, ax=state_axes, label=_field_label(truth_da), shrink=0.9)
    units = truth_da.attrs.get("units", "")
    ax_spread, ax_error = cells[len(fields)], cells[len(fields) + 1]
    ax_spread.set_title(f"spread (M = {m})")
    if m > 1:
        spread = ens.std(member_dim, ddof=1)
        x, y, v = _xy(spread, dims)
        smax = np.nanpercentile(v, 99) if np.isfinite(v).any() else 1.0
        sm = ax_spread.pcolormesh(x, y, v, cmap="magma", vmin=0.0, vmax=smax or 1.0, shading="auto")
        fig.colorbar(sm, ax=ax_spread, label=units, shrink=0.8, location="bottom")
    else:
        ax_spread.text(
            0.5,
            0.5,
            "no spread:\n1 member\n(a spread needs 2)",
            ha="center",
            va="center",
            transform=ax_spread.transAxes,
            color="0.35",
        )
        ax_spread.set_xticks([])
        ax_spread.set_yticks([])
        ax_spread.set_box_aspect(ratio)
    x, y, v = _xy(error, dims)
    emax = np.nanpercentile(np.abs(v), 99) if np.isfinite(v).any() else 1.0
    em = ax_error.pcolormesh(
        x, y, v, cmap="RdBu_r", vmin=-(emax or 1.0), vmax=emax or 1.0, shading="auto"
    )
    ax_error.set_title("mean - truth")
    fig.colorbar(em, ax=ax_error, label=units, shrink=0.8, location="bottom")

    for i, ax in enumerate(cells):
        if ax is ax_spread and m < 2:
            continue
        col = i % ncols
        if aspect is not None:
            ax.set_aspect(aspect, adjustable="box")
        # tick labels on the outer panels of the shared ones; a panel of its own keeps its own
        below = i + ncols < n_panels and ax in shared and cells[i + ncols] in shared
        left = col > 0 and ax in shared and cells[i - 1] in shared
        ax.tick_params(labelbottom=not below, labelleft=not left, labelsize="small")
        da = fields[i][1] if i < len(fields) else truth_da
        ylab, xlab = find_yx_dims(da, dims)
        if not below:
            ax.set_xlabel(_coord_label(da, xlab), fontsize="small")
        if not left:
            ax.set_ylabel(_coord_label(da, ylab), fontsize="small")
    if title is None and time_dim in truth_da.coords:
        t = np.asarray(truth_da[time_dim].values)
        when = np.datetime_as_string(t, unit="m") if np.issubdtype(t.dtype, np.datetime64) else t
        title = f"{truth_da.name or ''} {time_dim} = {when}"
    if title:
        fig.suptitle(title.strip())
    return fig
