"""One-call skill summaries of a downscaled field against the truth.

:func:`downscaling_skill` is the table behind the model cards, ``flexdownscale demo`` and
``benchmarks/skill.py``: the same numbers everywhere, computed by the metric functions of this
package with the conventions written next to each entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, overload

import numpy as np
import xarray as xr

from .._keywords import keyword_hints
from .._stack import user_stacklevel
from ..errors import MissingVariableError, ShapeError, UndefinedMetricWarning
from ._utils import align_exact, check_same_units, check_xarray, find_yx_dims
from .deterministic import mae, rfne, rmse
from .probabilistic import crps_ensemble, ensemble_mean, spread_skill_ratio
from .spectra import (
    complete_bins,
    default_method,
    log_spectral_distance,
    power_spectrum,
    spectral_ratio,
)

__all__ = ["SKILL_COLUMNS", "downscaling_skill", "mean_spectrum", "sample_mean_spectrum"]

SKILL_COLUMNS: dict[str, str] = {
    "rmse": "RMSE of the ensemble mean (of the field for a deterministic prediction)",
    "rfne": "relative Frobenius-norm error of the ensemble mean, per field, averaged",
    "crps": "CRPS, fair estimator over the members (MAE for a deterministic prediction)",
    "spread_skill": "spread-skill ratio, Fortin correction (NaN for a deterministic prediction)",
    "lsd": (
        "log-spectral distance (dB) of the member-averaged spectrum to the truth's, over the "
        "complete annuli (wavenumbers up to the Nyquist wavenumber of the FFT, the highest "
        "complete one of the DCT); FFT on a doubly periodic grid, else DCT"
    ),
    "spectral_ratio_small": (
        "mean power ratio prediction / truth over the smallest resolved scales (the top quarter "
        "of the complete annuli' wavenumbers)"
    ),
}
"""Entries of :func:`downscaling_skill`, with their meaning (the header of every skill table)."""


@keyword_hints
def mean_spectrum(
    field: xr.DataArray,
    *,
    dims: Sequence[Hashable] | None = None,
    spectrum_kwargs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Isotropic power spectrum of every 2-D field in ``field``, averaged over all other dims.

    Averaging spectra (not the spectrum of an average) keeps the variance of each member. A
    NaN anywhere in one sample makes its spectrum NaN, and so the mean (it is not the mean of
    the other samples: a curve over fewer samples, with no word, was what NaN-skipping gave);
    fill the gaps or select the samples without them first.

    Parameters
    ----------
    field : DataArray
        Field with the two spatial dims (in one dask chunk each) and any sample dims
        (members, times).
    dims : sequence of str, optional
        The spatial dim(s); default None: the (Y, X) dims found from CF attrs or names.
    spectrum_kwargs : mapping, optional
        Further keywords of :func:`~flexdownscale.metrics.power_spectrum` (``spacing``,
        ``method``, ...). Without a ``method``: the FFT on a doubly periodic grid, else the
        DCT (:func:`~flexdownscale.metrics.spectra.default_method`).

    Returns
    -------
    DataArray
        Dim ``wavenumber`` only; units and attrs as :func:`~flexdownscale.metrics.power_spectrum`.

    Examples
    --------
    Two members, one twice the other: the mean of their spectra is ``(1 + 4) / 2 = 2.5``
    times the first one's at every wavenumber (the spectrum of their mean would be 2.25):

    >>> import numpy as np, xarray as xr
    >>> cells = np.arange(16.0)
    >>> field = xr.DataArray(np.random.default_rng(0).normal(size=(16, 16)), dims=("y", "x"),
    ...                      coords={"y": cells, "x": cells})
    >>> members = xr.concat([field, 2 * field], dim="member")
    >>> spec = mean_spectrum(members)
    >>> spec.dims
    ('wavenumber',)
    >>> np.unique((spec / mean_spectrum(field)).round(6).values)
    array([2.5])
    """
    spec = power_spectrum(field, dims=dims, **dict(spectrum_kwargs or {}))
    return sample_mean_spectrum(spec)


@keyword_hints
def sample_mean_spectrum(spectrum: xr.DataArray, *, keep: Sequence[Hashable] = ()) -> xr.DataArray:
    """Power spectra of many fields averaged over every dim but the wavenumber and ``keep``.

    The averaging of :func:`mean_spectrum`, for spectra computed once and averaged in several
    ways (over all samples, and per lead or time step with ``keep``). A NaN in one field's
    spectrum makes its mean NaN (not the mean of the others).

    Parameters
    ----------
    spectrum : DataArray
        Output of :func:`~flexdownscale.metrics.power_spectrum` (dim ``wavenumber`` or
        ``zonal_wavenumber``, and sample dims such as members and times).
    keep : sequence of str, default ()
        Sample dims not averaged over (a forecast's lead dim, say).

    Returns
    -------
    DataArray
        Dims: the wavenumber and ``keep``; units and attrs as ``spectrum``.

    Examples
    --------
    Spectra of two members at three times, the field scaled by 1, 2 and 3 over time: averaged
    over the members only, the power per time step is 1, 4 and 9 times the first one's:

    >>> import numpy as np, xarray as xr
    >>> from flexdownscale.metrics import power_spectrum
    >>> cells = np.arange(16.0)
    >>> field = xr.DataArray(np.random.default_rng(0).normal(size=(16, 16)), dims=("y", "x"),
    ...                      coords={"y": cells, "x": cells})
    >>> scale = xr.DataArray([1.0, 2.0, 3.0], dims="time")
    >>> spec = power_spectrum((field * scale).expand_dims(member=2))
    >>> per_time = sample_mean_spectrum(spec, keep=["time"])
    >>> per_time.dims
    ('time', 'wavenumber')
    >>> (per_time / power_spectrum(field)).mean("wavenumber").round(6).values
    array([1., 4., 9.])
    """
    spectral = "wavenumber" if "wavenumber" in spectrum.dims else "zonal_wavenumber"
    skip = {spectral, *keep}
    return spectrum.mean([d for d in spectrum.dims if d not in skip], skipna=False, keep_attrs=True)


@overload
def downscaling_skill(
    pred: xr.Dataset,
    truth: xr.Dataset,
    *,
    member_dim: Hashable = ...,
    dims: Sequence[Hashable] | None = ...,
    spectrum_kwargs: Mapping[str, Any] | None = ...,
    weights: xr.DataArray | None = ...,
) -> dict[str, dict[str, float]]: ...


@overload
def downscaling_skill(
    pred: xr.DataArray,
    truth: xr.DataArray | xr.Dataset,
    *,
    member_dim: Hashable = ...,
    dims: Sequence[Hashable] | None = ...,
    spectrum_kwargs: Mapping[str, Any] | None = ...,
    weights: xr.DataArray | None = ...,
) -> dict[str, float]: ...


@overload
def downscaling_skill(
    pred: xr.Dataset,
    truth: xr.DataArray,
    *,
    member_dim: Hashable = ...,
    dims: Sequence[Hashable] | None = ...,
    spectrum_kwargs: Mapping[str, Any] | None = ...,
    weights: xr.DataArray | None = ...,
) -> dict[str, float]: ...


@keyword_hints
def downscaling_skill(
    pred: xr.DataArray | xr.Dataset,
    truth: xr.DataArray | xr.Dataset,
    *,
    member_dim: Hashable = "member",
    dims: Sequence[Hashable] | None = None,
    spectrum_kwargs: Mapping[str, Any] | None = None,
    weights: xr.DataArray | None = None,
) -> dict[str, float] | dict[str, dict[str, float]]:
    """Skill of a downscaled prediction (ensemble or deterministic) against the truth.

    By default every mean is over all grid points with equal weight, the convention of the
    model cards and reports; ``flexdownscale evaluate`` weights latitude grids by cell area
    instead, so its numbers differ slightly on large latitude ranges: pass
    ``weights=area_weights(truth)`` for those. The two inputs are aligned as by every metric:
    coordinates equal up to float32 round-off are the same grid, others raise ``ShapeError``.
    Dask inputs are computed here, chunked in ``time`` (or any other dim) as given: the members
    and each field's two spatial dims are joined into one block each where they are split.

    Two Datasets (the package's own output and a truth file) are scored field by field: every
    data variable of ``pred`` on the (y, x) grid (not bounds such as ``latitude_bnds``), against
    the truth's variable of that name. A DataArray against a Dataset takes the Dataset's
    variable named as the DataArray.

    Parameters
    ----------
    pred : DataArray or Dataset
        Prediction on the truth's grid, shape ``(member, ..., y, x)`` for an ensemble or
        ``(..., y, x)`` for a deterministic field, in the truth's units.
    truth : DataArray or Dataset
        The high-resolution truth, shape ``(..., y, x)``.
    member_dim : str, default "member"
        Ensemble dimension of ``pred`` (absent, or of size 1: deterministic).
    dims : sequence of str, optional
        The two spatial dims (default: found from the grid's coordinates).
    spectrum_kwargs : mapping, optional
        Passed to :func:`~flexdownscale.metrics.power_spectrum` (e.g. ``spacing``). Without a
        ``method``, both spectra take the truth's
        :func:`~flexdownscale.metrics.spectra.default_method`: the FFT when the truth's
        spatial coordinates all say ``periodic = "true"`` (a doubly periodic box, as
        ``flexdownscale evaluate`` chooses), else the DCT.
    weights : DataArray, optional
        Weights of the grid points in the means of ``rmse``, ``crps`` and ``spread_skill``
        (e.g. :func:`~flexdownscale.metrics.area_weights`, ``flexdownscale evaluate``'s
        weighting on latitude grids); ``None``: equal weights. ``rfne``, ``lsd`` and
        ``spectral_ratio_small`` are per-field norms and spectra, not weighted.

    Returns
    -------
    dict
        The entries of :data:`SKILL_COLUMNS` as floats (units of the field for ``rmse`` and
        ``crps``; dB for ``lsd``; dimensionless otherwise). For two Datasets, one such dict per
        field, keyed by the variable's name (``skill["t2m"]["rmse"]``). ``lsd`` and
        ``spectral_ratio_small`` use the complete annuli only (wavenumbers up to the
        spectrum's ``complete_wavenumber``, the Nyquist wavenumber of the FFT; the partly
        filled corner bins beyond it are left out, as by
        :func:`~flexdownscale.metrics.log_spectral_distance`).

    Warns
    -----
    ~flexdownscale.errors.UndefinedMetricWarning
        When either field has missing values (a land mask): ``lsd`` and
        ``spectral_ratio_small`` are NaN (spectra need gap-free fields), the other entries are
        over the valid points.

    Raises
    ------
    ShapeError
        When ``pred`` (without its member dim) and ``truth`` have different dims.
    MissingVariableError
        When a field of a ``pred`` Dataset (or a DataArray's name) is not in the truth
        Dataset.
    UnitsError
        When their ``units`` attributes name different units (``K`` and ``degC``).
    GridError
        When the grid's two spatial dims cannot be found (name them with ``dims``).
    DataError
        When a Dataset has no data variables (nothing to score), or an input holds arrays
        that are neither numpy nor dask (pint quantities are read as their magnitudes, with
        their units as the ``units`` attribute).

    Examples
    --------
    The skill of bilinear interpolation (the baseline a model should beat) on a coarsened copy
    of the ERA5 sample that ships with the package:

    >>> import flexdownscale as fd
    >>> truth = fd.demo.open_sample("era5_t2m_uk").isel(latitude=slice(32), longitude=slice(48))
    >>> base = fd.data.up(fd.data.degrade(truth, 4), 4)
    >>> skill = downscaling_skill(base, truth)
    >>> list(skill["t2m"])
    ['rmse', 'rfne', 'crps', 'spread_skill', 'lsd', 'spectral_ratio_small']
    >>> f"{skill['t2m']['rmse']:.2f} K"
    '0.53 K'
    >>> skill["t2m"]["spread_skill"]  # a deterministic prediction has no spread
    nan
    """
    # pint quantities as plain arrays with units attributes, and a Dataset without variables
    # refused here (before its grid is looked for among no dims)
    pred, truth = check_xarray(pred, "pred"), check_xarray(truth, "truth")
    options: dict[str, Any] = {
        "member_dim": member_dim,
        "dims": dims,
        "spectrum_kwargs": spectrum_kwargs,
        "weights": weights,
    }
    if isinstance(pred, xr.Dataset) or isinstance(truth, xr.Dataset):
        return _skill_by_variable(pred, truth, options)
    check_same_units(pred, truth, names=("pred", "truth"))
    ensemble = member_dim in pred.dims and pred.sizes[member_dim] > 1
    if member_dim in pred.dims and not ensemble:
        pred = pred.isel({member_dim: 0}, drop=True)
    core = [d for d in pred.dims if d != member_dim]
    if set(core) != set(truth.dims):
        raise ShapeError(
            f"prediction dims {tuple(pred.dims)} (member dim {member_dim!r}) do not match the "
            f"truth's {tuple(truth.dims)}; give both on the same grid"
        )
    # aligned here, under this function's argument names, as every metric below would do
    pred, truth, weights = align_exact(pred, truth, weights, names=("pred", "truth", "weights"))
    # the scores are numbers (computed here), so dask blocks are joined where a score needs
    # them whole: the members (CRPS) and each field (the spectra), as `evaluate` does
    whole = {d: -1 for d in find_yx_dims(truth, dims)}
    if pred.chunks is not None:
        pred = pred.chunk({**whole, member_dim: -1} if ensemble else whole)
    if truth.chunks is not None:
        truth = truth.chunk(whole)
    mean = ensemble_mean(pred, member_dim=member_dim) if ensemble else pred
    out = {
        "rmse": float(rmse(mean, truth, weights=weights)),
        "rfne": float(rfne(mean, truth, dims=dims).mean()),
    }
    if ensemble:
        out["crps"] = float(
            crps_ensemble(pred, truth, member_dim=member_dim, fair=True, weights=weights)
        )
        out["spread_skill"] = float(
            spread_skill_ratio(
                pred, truth, member_dim=member_dim, correction="fortin", weights=weights
            )
        )
    else:
        out["crps"] = float(mae(pred, truth, weights=weights))
        out["spread_skill"] = float("nan")
    gaps = {name: int(field.isnull().sum()) for name, field in (("pred", pred), ("truth", truth))}
    if any(gaps.values()):  # spectra (an FFT / DCT over the grid) need gap-free fields
        warnings.warn(
            "lsd and spectral_ratio_small are NaN: spectra need gap-free fields, and "
            + " and ".join(f"{name} has {n} missing values" for name, n in gaps.items() if n)
            + "; the other scores are over the valid points (fill the gaps, or crop them out, "
            "for the spectral scores)",
            UndefinedMetricWarning,
            stacklevel=user_stacklevel(),
        )
        out["lsd"] = out["spectral_ratio_small"] = float("nan")
        return out
    kwargs = dict(spectrum_kwargs or {})
    if kwargs.get("method") is None:  # one method for both, from the truth's grid
        kwargs["method"] = default_method(truth, dims, window=kwargs.get("window"))
    sp = mean_spectrum(pred, dims=dims, spectrum_kwargs=kwargs)
    st = mean_spectrum(truth, dims=dims, spectrum_kwargs=kwargs)
    out["lsd"] = float(log_spectral_distance(sp, st))
    k = st[st.dims[0]].values
    complete = complete_bins(st, st.dims[0])  # up to the highest complete annulus
    complete = np.ones(k.size, dtype=bool) if complete is None else complete
    small = complete & (k > 0.75 * k[complete].max())
    ratio = spectral_ratio(sp, st).values[small]  # on the truth's bins, as the LSD
    out["spectral_ratio_small"] = float(np.nanmean(ratio)) if ratio.size else float("nan")
    return out


def _skill_by_variable(
    pred: xr.DataArray | xr.Dataset, truth: xr.DataArray | xr.Dataset, options: dict[str, Any]
) -> dict[str, float] | dict[str, dict[str, float]]:
    """:func:`downscaling_skill` of a Dataset: per field of ``pred``, or the DataArray's
    variable of the other Dataset."""
    if isinstance(pred, xr.DataArray) or isinstance(truth, xr.DataArray):
        if isinstance(pred, xr.DataArray):
            one, other, which = pred, truth, "pred"
        else:
            one, other, which = truth, pred, "truth"
        if one.name is None or one.name not in other.data_vars:
            raise MissingVariableError(
                f"{which} is a DataArray named {one.name!r} and the other input a Dataset with "
                f"variables {sorted(map(str, other.data_vars))}; pass the same variable of "
                "both, e.g. downscaling_skill(pred['t2m'], truth['t2m'])"
            )
        other = other[one.name]
        pair = (one, other) if which == "pred" else (other, one)
        return downscaling_skill(*pair, **options)
    y, x = find_yx_dims(pred, options["dims"])
    fields = [str(v) for v in pred.data_vars if y in pred[v].dims and x in pred[v].dims]
    if not fields:
        raise MissingVariableError(
            f"pred holds no field on the ({y}, {x}) grid (variables: "
            f"{ {str(v): tuple(pred[v].dims) for v in pred.data_vars} })"
        )
    missing = [v for v in fields if v not in truth.data_vars]
    if missing:
        raise MissingVariableError(
            f"pred's fields {missing} are not in truth (its variables: "
            f"{sorted(map(str, truth.data_vars))}); score the fields both hold, e.g. "
            f"downscaling_skill(pred[{fields[0]!r}], truth[...]) for one under another name"
        )
    return {v: downscaling_skill(pred[v], truth[v], **options) for v in fields}
