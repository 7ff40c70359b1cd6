"""Deterministic verification scores: MSE, RMSE, MAE, bias, RFNE, Pearson r, PSNR, SSIM, and
for events above a threshold (precipitation) the exceedance frequency and the FSS.

Every score follows one convention (that of ``scores``):

``score(fcst, obs, *, reduce_dims=None, preserve_dims=None, weights=None, skipna=True)``

- ``fcst`` first, ``obs`` second; DataArray or Dataset (variables are matched by name);
- ``reduce_dims`` xor ``preserve_dims`` (``"all"`` accepted); neither: reduce every dim;
- ``weights``: a DataArray broadcastable against the data (e.g. :func:`area_weights`), no NaN,
  no negative values (:class:`~flexdownscale.errors.WeightsError` otherwise). The weighted mean
  is ``sum(w s) / sum(w)`` over the points where the score ``s`` is valid;
- ``skipna=True``: a point where ``fcst`` or ``obs`` is NaN drops out of the mean (and its
  weight out of the normalisation); ``skipna=False``: NaN propagates;
- dask-backed inputs give dask-backed results (nothing is computed); chunked reduce dims work.
- shared dims must have equal sizes and equal coordinates, else
  :class:`~flexdownscale.errors.ShapeError` (no silent intersection).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from flexdownscale.errors import ConfigError, GridError, ShapeError, WeightsError
from flexdownscale.metrics._utils import (
    Dims,
    XarrayLike,
    align_exact,
    all_dims,
    as_score_dtype,
    as_working_float,
    check_member_dim,
    check_option,
    check_same_units,
    check_single_chunk,
    check_values_to_score,
    check_weights,
    check_xarray,
    find_yx_dims,
    pow_units,
    resolve_reduce_dims,
    score_keywords,
    set_attrs,
    weighted_mean,
)

__all__ = [
    "bias",
    "exceedance_frequency",
    "fss",
    "mae",
    "mse",
    "pearson_r",
    "psnr",
    "rfne",
    "rmse",
    "ssim",
]


def _setup(
    fcst: XarrayLike,
    obs: XarrayLike,
    weights: xr.DataArray | None,
    reduce_dims: Dims,
    preserve_dims: Dims,
    *,
    excluded: Sequence[Hashable] = (),
) -> tuple[XarrayLike, XarrayLike, tuple[Hashable, ...], xr.DataArray | None]:
    fcst = check_xarray(fcst, "fcst")
    obs = check_xarray(obs, "obs")
    # integer / boolean data (uint8 images, int16 counts) in float64: differences and squares in
    # the input's type wrapped around or overflowed silently; half precision in float32: float16
    # steps by 0.25 K at 280 K and its sums of squares overflow (an RFNE of 0, a NaN correlation)
    fcst, obs = as_working_float(fcst), as_working_float(obs)
    fcst, obs, weights = align_exact(fcst, obs, weights, names=("fcst", "obs", "weights"))
    check_same_units(fcst, obs)
    dims = all_dims(fcst, obs)
    weights = check_weights(weights, dims)
    red = resolve_reduce_dims(
        dims, reduce_dims=reduce_dims, preserve_dims=preserve_dims, excluded=excluded
    )
    check_values_to_score(fcst, obs, (*red, *excluded))
    return fcst, obs, red, weights


@score_keywords
def mse(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Mean squared error ``sum(w (f - o)^2) / sum(w)``.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast and truth, any dims (broadcast against each other).
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to average over, or to keep (not both). Default: average over every dim.
    weights : DataArray, optional
        Non-negative weights broadcastable against the data (e.g. :func:`area_weights`).
    skipna : bool, default True
        Drop NaN points from the mean (and their weights from the normalisation).

    Returns
    -------
    DataArray or Dataset
        The kept dims only; ``units`` attr is the square of the input's (``"K^2"``).

    Examples
    --------
    >>> import xarray as xr
    >>> f = xr.DataArray([1.0, 3, 1, 3, 2, 2, 2, 1, 1, 2, 3], dims="t")
    >>> o = xr.DataArray([1.0, 1, 1, 2, 1, 2, 1, 1, 1, 3, 1], dims="t")
    >>> round(float(mse(f, o)), 4)
    1.0909
    """
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims)
    out = weighted_mean((fcst - obs) ** 2, red, weights, skipna=skipna)
    return set_attrs(
        as_score_dtype(out), (obs, fcst), units=pow_units, long_name="mean squared error"
    )


@score_keywords
def rmse(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Root mean squared error: ``sqrt`` of :func:`mse`, taken after the whole weighted mean.

    (Not a mean of per-sample RMSEs: ask for those with ``preserve_dims`` and average
    yourself.) Parameters as :func:`mse`; ``units`` are those of the input.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast and truth, any dims (broadcast against each other), same units.
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to average over, or to keep (not both). Default: average over every dim.
    weights : DataArray, optional
        Non-negative weights broadcastable against the data (e.g. :func:`area_weights`).
    skipna : bool, default True
        Drop NaN points from the mean (and their weights from the normalisation).

    Returns
    -------
    DataArray or Dataset
        The kept dims only; same ``units`` as the input.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> f = xr.DataArray([-1.0, 3, 1, 3, 0, 2, 2, 1, 1, 2, 3], dims="t")
    >>> o = xr.DataArray([1.0, 1, 1, 2, 1, 2, 1, -1, 1, 3, 1], dims="t")
    >>> round(float(rmse(f, o)), 4)
    1.3484
    >>> round(float(rmse(f.where(f.t != 4), o)), 4)
    1.3784
    """
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims)
    out = np.sqrt(weighted_mean((fcst - obs) ** 2, red, weights, skipna=skipna))
    return set_attrs(
        as_score_dtype(out), (obs, fcst), units="same", long_name="root mean squared error"
    )


@score_keywords
def mae(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Mean absolute error ``sum(w |f - o|) / sum(w)``. Parameters as :func:`mse`.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast and truth, any dims (broadcast against each other), same units.
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to average over, or to keep (not both). Default: average over every dim.
    weights : DataArray, optional
        Non-negative weights broadcastable against the data (e.g. :func:`area_weights`).
    skipna : bool, default True
        Drop NaN points from the mean (and their weights from the normalisation).

    Returns
    -------
    DataArray or Dataset
        The kept dims only; same ``units`` as the input.

    Examples
    --------
    Errors of +1, -1, +2 in the first time step and -2, 0, 0 in the second: their mean size
    is 1 overall, 4/3 and 2/3 per time step:

    >>> import xarray as xr
    >>> obs = xr.DataArray([[1.0, 2, 3], [4, 5, 6]], dims=("time", "x"))
    >>> fcst = obs + xr.DataArray([[1.0, -1, 2], [-2, 0, 0]], dims=("time", "x"))
    >>> float(mae(fcst, obs))
    1.0
    >>> mae(fcst, obs, preserve_dims="time").round(3).values
    array([1.333, 0.667])
    """
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims)
    out = weighted_mean(abs(fcst - obs), red, weights, skipna=skipna)
    return set_attrs(
        as_score_dtype(out), (obs, fcst), units="same", long_name="mean absolute error"
    )


@score_keywords
def bias(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Additive bias (mean error) ``sum(w (f - o)) / sum(w)``; positive = forecast too high.

    Same as ``scores.continuous.additive_bias`` and ``xskillscore.me``. Parameters as
    :func:`mse`.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast and truth, any dims (broadcast against each other), same units.
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to average over, or to keep (not both). Default: average over every dim.
    weights : DataArray, optional
        Non-negative weights broadcastable against the data (e.g. :func:`area_weights`).
    skipna : bool, default True
        Drop NaN points from the mean (and their weights from the normalisation).

    Returns
    -------
    DataArray or Dataset
        The kept dims only; same ``units`` as the input.

    Examples
    --------
    The errors of the :func:`mae` example cancel overall (bias 0, MAE 1), but not per time
    step: the first is too warm by 2/3 on average, the second too cold by as much:

    >>> import xarray as xr
    >>> obs = xr.DataArray([[1.0, 2, 3], [4, 5, 6]], dims=("time", "x"))
    >>> fcst = obs + xr.DataArray([[1.0, -1, 2], [-2, 0, 0]], dims=("time", "x"))
    >>> float(bias(fcst, obs))
    0.0
    >>> bias(fcst, obs, preserve_dims="time").round(3).values
    array([ 0.667, -0.667])
    >>> float(bias(obs + 0.5, obs))  # a forecast 0.5 too high everywhere
    0.5
    """
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims)
    out = weighted_mean(fcst - obs, red, weights, skipna=skipna)
    return set_attrs(
        as_score_dtype(out), (obs, fcst), units="same", long_name="additive bias (fcst - obs)"
    )


@score_keywords
def rfne(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    dims: Sequence[Hashable] | None = None,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Relative Frobenius norm error ``||f - o||_2 / ||o||_2`` per sample, then averaged.

    This is the metric of the FLEX papers: each sample (e.g. each time step and member) gets
    its own ratio of L2 norms over the field dims ``dims``; the ratios are then averaged
    (unweighted) over ``reduce_dims``. It is *not* the ratio of norms pooled over all samples,
    which weights energetic samples more; the two differ whenever samples differ in amplitude.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast and truth.
    dims : str or sequence of str, optional
        The dims of one sample (the norm is taken over them). Default: the (Y, X) dims found
        from CF attrs or names (``lat``/``lon``, ``y``/``x``, ...).
    reduce_dims, preserve_dims : optional
        Which of the remaining (sample) dims to average over / keep. Default: all.
    weights : DataArray, optional
        Weights inside the norms: ``sqrt(sum w (f-o)^2) / sqrt(sum w o^2)`` (e.g. area weights).
        Samples are averaged with equal weight.
    skipna : bool, default True
        Points where ``fcst`` or ``obs`` is NaN drop out of both norms; an all-NaN sample
        gives NaN, which ``skipna`` then drops from the average.

    Returns
    -------
    DataArray or Dataset
        Dimensionless (``units="1"``).

    Notes
    -----
    A sample whose truth is zero everywhere (a dry day of precipitation) has no relative
    error: its ratio is NaN, not infinite, so it drops out of the average with ``skipna``
    (and makes it NaN without). Score such fields with an absolute error (:func:`rmse`).

    Examples
    --------
    A forecast 10% too strong in a first sample and 30% too strong in a second, 100 times
    more energetic one: each sample's error is that fraction of its truth's norm, and the
    average is 0.2 (the ratio of norms pooled over both samples would be close to 0.3):

    >>> import numpy as np, xarray as xr
    >>> obs = xr.DataArray(np.arange(1.0, 33.0).reshape(2, 4, 4), dims=("time", "y", "x"))
    >>> obs[1] *= 100
    >>> fcst = obs * xr.DataArray([1.1, 1.3], dims="time")
    >>> rfne(fcst, obs, dims=("y", "x"), preserve_dims="time").round(6).values
    array([0.1, 0.3])
    >>> round(float(rfne(fcst, obs, dims=("y", "x"))), 6)
    0.2
    """
    obs = check_xarray(obs, "obs")
    if dims is None:
        norm_dims: tuple[Hashable, ...] = find_yx_dims(obs)
    else:
        norm_dims = tuple([dims] if isinstance(dims, str) else dims)
        missing = [d for d in norm_dims if d not in obs.dims]
        if missing:
            raise GridError(f"dims {missing!r} are not dims of obs ({tuple(obs.dims)!r}).")
    fcst, obs, red, weights = _setup(
        fcst, obs, weights, reduce_dims, preserve_dims, excluded=norm_dims
    )
    err = fcst - obs
    ref = obs.where(err.notnull()) if skipna else obs + 0 * err
    err2 = err**2 if weights is None else weights * err**2
    ref2 = ref**2 if weights is None else weights * ref**2
    min_count = 1 if skipna else None
    num = err2.sum(norm_dims, skipna=skipna, min_count=min_count)
    den = ref2.sum(norm_dims, skipna=skipna, min_count=min_count)
    per_sample = np.sqrt(num / den.where(den > 0))  # an all-zero truth: NaN, not inf
    out = weighted_mean(per_sample, red, None, skipna=skipna)
    return set_attrs(
        as_score_dtype(out), (obs, fcst), units="1", long_name="relative Frobenius norm error"
    )


@score_keywords
def pearson_r(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """(Weighted) Pearson correlation over ``reduce_dims``.

    ``r = cov_w(f, o) / sqrt(var_w(f) var_w(o))`` with weighted means over the points where
    both are valid (``skipna=True``); clipped to [-1, 1] against rounding. Agrees with
    ``xskillscore.pearson_r`` and ``scipy.stats.pearsonr``. Parameters as :func:`mse`.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast and truth, any dims (broadcast against each other), same units.
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to correlate over, or to keep (not both). Default: average over every dim.
    weights : DataArray, optional
        Non-negative weights broadcastable against the data (e.g. :func:`area_weights`).
    skipna : bool, default True
        Drop NaN points from the mean (and their weights from the normalisation).

    Returns
    -------
    DataArray or Dataset
        The kept dims only; ``units`` ``"1"``, in [-1, 1].

    Examples
    --------
    Correlation ignores a bias and a scale factor (``2 obs + 1`` correlates perfectly) but
    not a sign; with ``preserve_dims`` there is one value per time step:

    >>> import xarray as xr
    >>> obs = xr.DataArray([[1.0, 3, 2, 5], [0, 1, 0, 1]], dims=("time", "x"))
    >>> float(pearson_r(2 * obs + 1, obs))
    1.0
    >>> float(pearson_r(-obs, obs))
    -1.0
    >>> fcst = xr.DataArray([[1.0, 3, 2, 5], [1, 0, 1, 0]], dims=("time", "x"))
    >>> pearson_r(fcst, obs, preserve_dims="time").values
    array([ 1., -1.])
    """
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims)
    if skipna:
        f = fcst.where(obs.notnull())
        o = obs.where(fcst.notnull())
    else:
        f, o = fcst, obs
    # the means broadcast back explicitly: xarray's arithmetic_broadcast=False refuses it
    fa = f - weighted_mean(f, red, weights, skipna=skipna).broadcast_like(f)
    oa = o - weighted_mean(o, red, weights, skipna=skipna).broadcast_like(o)
    cov = weighted_mean(fa * oa, red, weights, skipna=skipna)
    var_f = weighted_mean(fa**2, red, weights, skipna=skipna)
    var_o = weighted_mean(oa**2, red, weights, skipna=skipna)
    out = (cov / np.sqrt(var_f * var_o)).clip(-1.0, 1.0)
    return set_attrs(as_score_dtype(out), (obs, fcst), units="1", long_name="Pearson correlation")


def _range_for(data_range: float | xr.DataArray | Mapping[str, float], obs: XarrayLike):
    if isinstance(data_range, Mapping) and not isinstance(data_range, xr.DataArray):
        if not isinstance(obs, xr.Dataset):
            raise ConfigError("a mapping data_range needs Dataset inputs (one range per variable).")
        missing = [v for v in obs.data_vars if v not in data_range]
        if missing:
            raise ConfigError(f"data_range has no entry for variable(s) {missing!r}.")
        return xr.Dataset({v: float(data_range[v]) for v in obs.data_vars})
    if isinstance(data_range, xr.DataArray):
        return data_range
    value = float(data_range)
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"data_range must be a positive finite number, got {data_range!r}.")
    return value


@score_keywords
def psnr(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    data_range: float | xr.DataArray | Mapping[str, float],
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB.

    ``data_range`` is required and explicit (image libraries guess it from the dtype or the
    data, which makes numbers incomparable across fields): give the physical range, e.g.
    ``data_range=60.0`` for temperatures spanning 60 K, or a mapping per Dataset variable.
    The MSE is pooled over ``reduce_dims`` first (for per-sample PSNR averaged afterwards,
    use ``preserve_dims`` and average the result). Identical fields give ``+inf``.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast and truth, any dims (broadcast against each other), same units.
    data_range : float, DataArray or mapping of str to float
        Physical range of the data, in the data's units (required, positive); a DataArray
        broadcast against the result, or a mapping ``{variable: range}`` for Datasets.
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to pool the MSE over, or to keep (not both). Default: every dim.
    weights : DataArray, optional
        Non-negative weights broadcastable against the data (e.g. :func:`area_weights`).
    skipna : bool, default True
        Drop NaN points from the MSE (and their weights from the normalisation).

    Returns
    -------
    DataArray or Dataset
        The kept dims only; ``units`` ``"dB"``.

    Examples
    --------
    An error of 1 K everywhere on a field spanning 10 K is an MSE of 1, so
    ``10 log10(10^2 / 1) = 20`` dB; a ten times smaller error adds 20 dB:

    >>> import xarray as xr
    >>> obs = xr.DataArray([270.0, 275, 280], dims="x")
    >>> float(psnr(obs + 1, obs, data_range=10.0))
    20.0
    >>> round(float(psnr(obs + 0.1, obs, data_range=10.0)), 6)
    40.0
    >>> psnr(obs + 1, obs, data_range=10.0).attrs["units"]
    'dB'
    """
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims)
    rng = _range_for(data_range, obs)
    err = weighted_mean((fcst - obs) ** 2, red, weights, skipna=skipna)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(rng**2 / err)
    return set_attrs(
        as_score_dtype(out), (obs, fcst), units="dB", long_name="peak signal-to-noise ratio"
    )


def _ssim_map(
    f: np.ndarray,
    o: np.ndarray,
    *,
    c1: float | np.ndarray,
    c2: float | np.ndarray,
    window: str,
    radius: int,
    sigma: float,
) -> np.ndarray:
    """SSIM map over the last two axes, cropped by ``radius`` on each side."""
    from scipy import ndimage  # only SSIM needs it: not loaded with the metrics

    f = np.asarray(f, dtype=np.float64)
    o = np.asarray(o, dtype=np.float64)
    f, o = np.broadcast_arrays(f, o)
    c1 = np.asarray(c1, dtype=np.float64)[..., None, None]
    c2 = np.asarray(c2, dtype=np.float64)[..., None, None]
    if window == "gaussian":

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(a, sigma, radius=radius, axes=(-2, -1), mode="reflect")
    else:

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.uniform_filter(a, 2 * radius + 1, axes=(-2, -1), mode="reflect")

    mu_f, mu_o = smooth(f), smooth(o)
    var_f = smooth(f * f) - mu_f**2
    var_o = smooth(o * o) - mu_o**2
    cov = smooth(f * o) - mu_f * mu_o
    num = (2 * mu_f * mu_o + c1) * (2 * cov + c2)
    den = (mu_f**2 + mu_o**2 + c1) * (var_f + var_o + c2)
    s = num / den
    return s[..., radius : s.shape[-2] - radius, radius : s.shape[-1] - radius]


def _check_sliding_window(
    fcst: XarrayLike,
    obs: XarrayLike,
    yx: Sequence[Hashable],
    window: int,
    name: str,
    what: str,
    fix: str,
) -> None:
    """Refuse grids smaller than a sliding ``window`` of cells along either of ``yx``, and
    ``yx`` split into several dask chunks (ShapeError): the checks :func:`ssim` and :func:`fss`
    share. ``name`` is the score in "fewer than the <name> window", ``what`` in the chunk
    message, ``fix`` the advice for a window larger than the grid."""
    for d in yx:
        if obs.sizes[d] < window:
            raise ShapeError(
                f"dim {d!r} has {obs.sizes[d]} points, fewer than the {name} window ({window}); "
                f"{fix}"
            )
    check_single_chunk(fcst, yx, f"{what} (a sliding window)", error=ShapeError, argument="fcst")
    check_single_chunk(obs, yx, f"{what} (a sliding window)", error=ShapeError, argument="obs")


@score_keywords
def ssim(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    data_range: float | Mapping[str, float],
    dims: Sequence[Hashable] | None = None,
    window: Literal["gaussian", "uniform"] = "gaussian",
    win_size: int | None = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Structural similarity (Wang et al. 2004) over 2-D fields, averaged.

    For each sample the SSIM map
    ``((2 mu_f mu_o + C1)(2 s_fo + C2)) / ((mu_f^2 + mu_o^2 + C1)(s_f^2 + s_o^2 + C2))``
    is computed with local moments from a sliding window (Gaussian ``sigma=1.5``, 11 x 11
    by default, as in the paper; or ``"uniform"`` 7 x 7 as scikit-image's default), with
    ``C1 = (k1 data_range)^2`` and ``C2 = (k2 data_range)^2``. Local (co)variances use the
    population normalisation (scikit-image's ``use_sample_covariance=True`` differs for the
    uniform window). The border of half a window, where the window would leave the field, is
    cropped; the map is then averaged (weighted, if ``weights``) over the field and over
    ``reduce_dims``.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Fields with the two spatial ``dims`` (each dim at least ``win_size`` long).
    data_range : float or mapping
        Physical range of the data (required; see :func:`psnr`).
    dims : pair of str, optional
        The (Y, X) dims; default: found from CF attrs or names.
    window : {"gaussian", "uniform"}, default "gaussian"
        Weights of the sliding window for the local moments.
    win_size : int, optional
        Odd window width (>= 3) in grid cells; default None: 11 (gaussian) or 7 (uniform).
    sigma : float, default 1.5
        Standard deviation of the Gaussian window in grid cells (truncated at
        ``win_size // 2`` cells); unused for the uniform window.
    k1, k2 : float, default 0.01 and 0.03
        Stabilising constants of the paper: ``C1 = (k1 data_range)^2`` and
        ``C2 = (k2 data_range)^2`` keep the luminance and contrast-structure terms finite where
        the local means or variances are near zero.
    reduce_dims, preserve_dims : optional
        Which of the other (sample) dims to average over; the spatial dims always are.
    weights : DataArray, optional
        Weights for the map points (spatial dims are cropped like the map) and/or samples.
    skipna : bool, default True
        A NaN anywhere in a window makes that map point NaN; ``skipna`` drops those points.

    Returns
    -------
    DataArray or Dataset
        Dimensionless, 1 for identical fields.

    Examples
    --------
    Identical fields score 1. Two flat fields differ in their means only: the SSIM is the
    luminance term ``C1 / (c^2 + C1)``, one half for an offset ``c = k1 data_range``:

    >>> import numpy as np, xarray as xr
    >>> obs = xr.DataArray(np.arange(64.0).reshape(8, 8) % 5, dims=("y", "x"))
    >>> float(ssim(obs, obs, data_range=4.0, window="uniform", win_size=3))
    1.0
    >>> flat = xr.zeros_like(obs)
    >>> round(float(ssim(flat + 0.01, flat, data_range=1.0, window="uniform", win_size=3)), 6)
    0.5
    """
    check_option("window", window, ("gaussian", "uniform"))
    obs = check_xarray(obs, "obs")
    yx = find_yx_dims(obs, dims)
    if win_size is None:
        win_size = 11 if window == "gaussian" else 7
    if win_size < 3 or win_size % 2 == 0:
        raise ConfigError(f"win_size must be an odd integer >= 3, got {win_size}.")
    radius = win_size // 2
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims, excluded=yx)
    _check_sliding_window(fcst, obs, yx, win_size, "SSIM", "SSIM", "pass a smaller win_size.")
    rng = _range_for(data_range, obs)
    c1 = (k1 * rng) ** 2
    c2 = (k2 * rng) ** 2
    sizes = {d: obs.sizes[d] - 2 * radius for d in yx}

    def one(f: xr.DataArray, o: xr.DataArray, cc1, cc2) -> xr.DataArray:
        return xr.apply_ufunc(
            _ssim_map,
            f,
            o,
            input_core_dims=[list(yx), list(yx)],
            output_core_dims=[list(yx)],
            exclude_dims=set(yx),
            kwargs={"c1": cc1, "c2": cc2, "window": window, "radius": radius, "sigma": sigma},
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": sizes},
        )

    if isinstance(obs, xr.Dataset):
        fds = fcst if isinstance(fcst, xr.Dataset) else None
        smap = xr.Dataset(
            {
                v: one(
                    fds[v] if fds is not None else fcst,
                    obs[v],
                    c1[v].item() if isinstance(c1, xr.Dataset) else c1,
                    c2[v].item() if isinstance(c2, xr.Dataset) else c2,
                )
                for v in obs.data_vars
            }
        )
    else:
        if isinstance(c1, xr.DataArray):
            raise ConfigError(
                "give data_range as a number for SSIM (a DataArray is not supported)."
            )
        smap = one(fcst, obs, c1, c2)
    crop = {d: slice(radius, obs.sizes[d] - radius) for d in yx}
    coords = {d: obs[d].isel({d: crop[d]}) for d in yx if d in obs.coords}
    smap = smap.assign_coords(coords)
    if weights is not None:
        weights = weights.isel({d: s for d, s in crop.items() if d in weights.dims})
    out = weighted_mean(smap, (*yx, *red), weights, skipna=skipna)
    return set_attrs(
        as_score_dtype(out), (obs, fcst), units="1", long_name="structural similarity index"
    )


# --------------------------------------------------------------------------------------------
# events above a threshold: exceedance frequency (wet fraction) and fractions skill score
# --------------------------------------------------------------------------------------------
def _threshold_for(
    threshold: float | Mapping[str, float], obj: XarrayLike
) -> float | dict[Hashable, float]:
    """``threshold`` checked: a finite number, or for a Dataset a mapping with one per
    variable (``{variable: threshold}``), in the data's units."""

    def one(value: Any, what: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not np.isfinite(number):
            raise ConfigError(f"{what} must be a finite number in the data's units, got {value!r}.")
        return number

    if isinstance(threshold, Mapping):
        if not isinstance(obj, xr.Dataset):
            raise ConfigError(
                "a mapping threshold needs Dataset inputs (one threshold per variable); give "
                "a number for a DataArray."
            )
        missing = [str(v) for v in obj.data_vars if v not in threshold]
        if missing:
            raise ConfigError(f"threshold has no entry for variable(s) {missing!r}.")
        return {v: one(threshold[v], f"threshold[{v!r}]") for v in obj.data_vars}
    return one(threshold, "threshold")


def _events(da: xr.DataArray, threshold: float, inclusive: bool) -> xr.DataArray:
    """1.0 where ``da`` reaches ``threshold`` (``>=``, or ``>`` unless ``inclusive``), 0.0
    below it, NaN where ``da`` is NaN."""
    hit = da >= threshold if inclusive else da > threshold
    return hit.astype(np.float64).where(da.notnull())


def _each_variable(obj: XarrayLike, func: Any, threshold: float | dict[Hashable, float]) -> Any:
    """``func(variable, its threshold)`` for a DataArray, or for each variable of a Dataset."""
    if isinstance(obj, xr.Dataset):
        return xr.Dataset(
            {
                v: func(obj[v], threshold[v] if isinstance(threshold, dict) else threshold)
                for v in obj.data_vars
            }
        )
    assert not isinstance(threshold, dict)  # _threshold_for refuses a mapping for a DataArray
    return func(obj, threshold)


@score_keywords
def exceedance_frequency(
    fcst: XarrayLike,
    *,
    threshold: float | Mapping[str, float],
    inclusive: bool = True,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Frequency of reaching a threshold: ``sum(w [f >= t]) / sum(w)`` (the wet fraction).

    The share of points (weighted) where the field is at or above ``threshold``: for
    precipitation at a wet/dry threshold such as 0.1 mm, the fraction of wet cells. Compare
    a prediction's with its truth's (their ratio is the frequency bias): a model that
    drizzles everywhere has a far larger wet fraction than the truth at a small threshold.
    It takes one field (a forecast, an ensemble or a truth); an ensemble's members are
    points like any others (or kept apart with ``preserve_dims="member"``).

    Parameters
    ----------
    fcst : DataArray or Dataset
        The field(s), any dims.
    threshold : float or mapping of str to float
        The threshold in the field's units; a mapping ``{variable: threshold}`` for a Dataset.
    inclusive : bool, default True
        Count values equal to the threshold (``>=``, as "at least 0.1 mm"); ``False``: only
        values above it (``>``, the default of ``scores``' threshold operators).
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to average over, or to keep (not both). Default: average over every dim.
    weights : DataArray, optional
        Non-negative weights broadcastable against the data (e.g. :func:`area_weights`).
    skipna : bool, default True
        Leave NaN points out (and their weights); ``False``: a NaN makes the result NaN.

    Returns
    -------
    DataArray or Dataset
        The kept dims only; ``units`` ``"1"``, in [0, 1].

    Examples
    --------
    Two of the four valid cells reach 0.1 (one equals it); the NaN cell is left out:

    >>> import numpy as np, xarray as xr
    >>> rain = xr.DataArray([0.0, 0.05, 0.1, 2.0, np.nan], dims="x", attrs={"units": "mm"})
    >>> float(exceedance_frequency(rain, threshold=0.1))
    0.5
    >>> float(exceedance_frequency(rain, threshold=0.1, inclusive=False))
    0.25
    """
    fcst = check_xarray(fcst, "fcst")
    fcst = as_working_float(fcst)
    (fcst, weights) = align_exact(fcst, weights, names=("fcst", "weights"))
    dims = all_dims(fcst)
    weights = check_weights(weights, dims)
    red = resolve_reduce_dims(dims, reduce_dims=reduce_dims, preserve_dims=preserve_dims)
    check_values_to_score(fcst, fcst, red, names=("fcst", "fcst"))
    thresholds = _threshold_for(threshold, fcst)
    events = _each_variable(fcst, lambda da, t: _events(da, t, inclusive), thresholds)
    out = weighted_mean(events, red, weights, skipna=skipna)
    return set_attrs(
        as_score_dtype(out), fcst, units="1", long_name="frequency of reaching the threshold"
    )


def _box_sums(values: np.ndarray, window: int, axes: tuple[int, ...]) -> np.ndarray:
    """Sums of ``values`` over every box of ``window`` cells along each of ``axes`` that lies
    wholly inside them (a length ``n - window + 1`` along each): differences of cumulative
    sums, exact for counts."""
    out = np.asarray(values, dtype=np.float64)
    for axis in axes:
        total = np.cumsum(out, axis=axis)
        pad = [(0, 0)] * out.ndim
        pad[axis] = (1, 0)
        total = np.pad(total, pad)
        n = total.shape[axis]
        upper = np.take(total, np.arange(window, n), axis=axis)
        lower = np.take(total, np.arange(0, n - window), axis=axis)
        out = upper - lower
    return out


def _fractions(events: np.ndarray, *, window: int) -> np.ndarray:
    """The share of events in each ``window`` x ``window`` box of the last two axes (boxes
    wholly inside the field only); NaN for a box holding a NaN cell."""
    events = np.asarray(events, dtype=np.float64)
    gaps = np.isnan(events)
    axes = (events.ndim - 2, events.ndim - 1)
    share = _box_sums(np.where(gaps, 0.0, events), window, axes) / float(window * window)
    if gaps.any():
        share[_box_sums(gaps, window, axes) > 0] = np.nan
    return share


def _box_means(values: np.ndarray, *, window: int, axes: tuple[int, ...]) -> np.ndarray:
    """Means of ``values`` over the boxes of :func:`_box_sums` along ``axes`` (one or two)."""
    return _box_sums(values, window, axes) / float(window ** len(axes))


@score_keywords
def fss(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    threshold: float | Mapping[str, float],
    window: int,
    dims: Sequence[Hashable] | None = None,
    member_dim: Hashable | None = None,
    inclusive: bool = True,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Fractions skill score (Roberts and Lean 2008) at a threshold, over square windows.

    Each field is turned into events (``f >= threshold``), then into fractions: the share of
    event cells in each ``window`` x ``window`` box of the grid. With ``P_f``, ``P_o`` the
    fractions of forecast and truth over every box of every field (and sample),

    ``FSS = 1 - sum(w (P_f - P_o)^2) / sum(w (P_f^2 + P_o^2))``

    pooled over ``reduce_dims`` (sums of the whole set, not a mean of per-field scores, as
    Roberts and Lean's aggregation and ``scores.spatial.fss_2d``). 1 is a perfect match of
    the fractions, 0 no overlap of the events at that scale; FSS grows with the window, and
    ``0.5 + f_o / 2`` (``f_o`` the truth's event frequency) is the usual "useful" level.

    Parameters
    ----------
    fcst, obs : DataArray or Dataset
        Forecast (or ensemble) and truth with the two spatial ``dims``.
    threshold : float or mapping of str to float
        The event threshold in the data's units (a mapping per variable for Datasets).
    window : int
        Side of the square box in grid cells (1: the events themselves), at most the
        grid's size along each spatial dim.
    dims : pair of str, optional
        The (Y, X) dims; default: found from CF attrs or names.
    member_dim : str, optional
        Default None: any dim ``fcst`` has beyond ``obs`` (an ensemble's members too) holds
        samples pooled like times: the FSS of the members, each a field of its own (keep them
        apart with ``preserve_dims=member``). Naming the ensemble dim scores the ensemble
        instead: the forecast fraction is the share of events over the box's cells of all
        valid members (the neighbourhood ensemble probability, Schwartz et al. 2010).
    inclusive : bool, default True
        An event is ``>= threshold``; ``False``: ``> threshold`` (``scores``' default).
    reduce_dims, preserve_dims : str or sequence of str, optional
        Which of the other (sample) dims to pool over; the spatial dims always are.
    weights : DataArray, optional
        Weights of the points; along the spatial dims the weight of a box is the mean of its
        cells' weights (area weights stay area weights).
    skipna : bool, default True
        A box that holds a NaN cell (in either field) is left out; ``False``: NaN result.

    Returns
    -------
    DataArray or Dataset
        The kept dims only; ``units`` ``"1"``, in [0, 1]. NaN where neither field has an
        event (the score is 0 / 0 there; ``scores`` gives 0).

    Raises
    ------
    ShapeError
        A window larger than the grid, or spatial dims split into dask chunks.
    ConfigError
        A window that is not a positive whole number, a threshold that is not finite.

    Notes
    -----
    Edges: only boxes that lie wholly inside the grid are used, ``(ny - window + 1) x
    (nx - window + 1)`` of them (``scores``' default, ``zero_padding=False``). No zeros are
    padded around the field: that would count the cells beyond a limited-area domain as
    dry, and pull the fractions near its edges towards no event. Cells near the edges fall
    in fewer boxes, and so count less.

    Examples
    --------
    Identical fields score 1; events that never overlap score 0 at the grid scale. With
    3 x 3 boxes (16 of them wholly inside the 6 x 6 grid) the truth's event near the corner
    falls in 4 boxes, the forecast's, two cells east, in 6, and 2 boxes hold both:
    ``FSS = 1 - (4 + 6 - 2 * 2) / (4 + 6) = 0.4``:

    >>> import numpy as np, xarray as xr
    >>> obs = xr.DataArray(np.zeros((6, 6)), dims=("y", "x"))
    >>> obs[1, 1] = 2.0
    >>> fcst = obs.roll(x=2)
    >>> float(fss(obs, obs, threshold=1.0, window=1))
    1.0
    >>> float(fss(fcst, obs, threshold=1.0, window=1))
    0.0
    >>> round(float(fss(fcst, obs, threshold=1.0, window=3)), 6)
    0.4
    """
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ConfigError(f"window must be a positive whole number of grid cells, got {window!r}.")
    window = int(window)
    check_option("inclusive", inclusive, (True, False))
    obs = check_xarray(obs, "obs")
    yx = find_yx_dims(obs, dims)
    excluded: tuple[Hashable, ...] = tuple(yx)
    if member_dim is not None:
        check_member_dim(fcst, obs, member_dim)
        excluded = (*yx, member_dim)
    fcst, obs, red, weights = _setup(
        fcst, obs, weights, reduce_dims, preserve_dims, excluded=excluded
    )
    if weights is not None and member_dim is not None and member_dim in weights.dims:
        raise WeightsError(
            f"weights have the member dim {member_dim!r}, which the ensemble FSS consumes; "
            "give weights of the points (and samples) only."
        )
    _check_sliding_window(
        fcst, obs, yx, window, "FSS", "the FSS", "pass a window that fits in the grid."
    )
    thresholds = _threshold_for(threshold, obs)
    sizes = {d: obs.sizes[d] - window + 1 for d in yx}

    def fractions(da: xr.DataArray, t: float) -> xr.DataArray:
        events = _events(da.drop_vars([d for d in yx if d in da.coords]), t, inclusive)
        return xr.apply_ufunc(
            _fractions,
            events,
            input_core_dims=[list(yx)],
            output_core_dims=[list(yx)],
            exclude_dims=set(yx),
            kwargs={"window": window},
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": sizes},
        )

    pf = _each_variable(fcst, fractions, thresholds)
    po = _each_variable(obs, fractions, thresholds)
    if member_dim is not None:  # the ensemble's share of events: the mean of its members'
        pf = pf.mean(member_dim, skipna=skipna)
    if weights is not None and any(d in weights.dims for d in yx):
        boxed = [d for d in yx if d in weights.dims]
        weights = xr.apply_ufunc(
            _box_means,
            weights.drop_vars([d for d in boxed if d in weights.coords]),
            input_core_dims=[boxed],
            output_core_dims=[boxed],
            exclude_dims=set(boxed),
            kwargs={"window": window, "axes": tuple(range(-len(boxed), 0))},
            dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {d: sizes[d] for d in boxed}},
        )
    gap = (pf - po) ** 2
    total = (pf**2 + po**2).where(gap.notnull())
    pooled = (*yx, *red)
    num = weighted_mean(gap, pooled, weights, skipna=skipna)
    den = weighted_mean(total, pooled, weights, skipna=skipna)
    out = (1.0 - num / den.where(den > 0)).clip(0.0, 1.0)
    return set_attrs(as_score_dtype(out), (obs, fcst), units="1", long_name="fractions skill score")
