"""Deterministic verification scores: MSE, RMSE, MAE, bias, RFNE, Pearson r, PSNR, SSIM.

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
from typing import Literal

import numpy as np
import xarray as xr

from flexdownscale._keywords import keyword_hints
from flexdownscale.errors import ConfigError, GridError, ShapeError
from flexdownscale.metrics._utils import (
    Dims,
    XarrayLike,
    align_exact,
    all_dims,
    check_option,
    check_same_units,
    check_single_chunk,
    check_values_to_score,
    check_weights,
    check_xarray,
    find_yx_dims,
    pow_units,
    resolve_reduce_dims,
    set_attrs,
    weighted_mean,
)

__all__ = ["bias", "mae", "mse", "pearson_r", "psnr", "rfne", "rmse", "ssim"]


def _as_floating(obj: XarrayLike) -> XarrayLike:
    """``obj`` with integer and boolean variables as float64 (floating ones untouched)."""

    def one(da: xr.DataArray) -> xr.DataArray:
        kind = np.dtype(da.dtype).kind
        return da.astype(np.float64) if kind in "biu" else da

    if isinstance(obj, xr.Dataset):
        return obj.map(one, keep_attrs=True)
    return one(obj)


def _setup(
    fcst: XarrayLike,
    obs: XarrayLike,
    weights: xr.DataArray | None,
    reduce_dims: Dims,
    preserve_dims: Dims,
    *,
    excluded: Sequence[Hashable] = (),
) -> tuple[XarrayLike, XarrayLike, tuple[Hashable, ...], xr.DataArray | None]:
    check_xarray(fcst, "fcst")
    check_xarray(obs, "obs")
    # integer / boolean data (uint8 images, int16 counts) in floating point: differences and
    # squares in the input's type wrapped around or overflowed silently
    fcst, obs = _as_floating(fcst), _as_floating(obs)
    fcst, obs, weights = align_exact(fcst, obs, weights, names=("fcst", "obs", "weights"))
    check_same_units(fcst, obs)
    dims = all_dims(fcst, obs)
    weights = check_weights(weights, dims)
    red = resolve_reduce_dims(
        dims, reduce_dims=reduce_dims, preserve_dims=preserve_dims, excluded=excluded
    )
    check_values_to_score(fcst, obs, (*red, *excluded))
    return fcst, obs, red, weights


@keyword_hints
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
    return set_attrs(out, (obs, fcst), units=pow_units, long_name="mean squared error")


@keyword_hints
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
    return set_attrs(out, (obs, fcst), units="same", long_name="root mean squared error")


@keyword_hints
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
    return set_attrs(out, (obs, fcst), units="same", long_name="mean absolute error")


@keyword_hints
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
    return set_attrs(out, (obs, fcst), units="same", long_name="additive bias (fcst - obs)")


@keyword_hints
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
    check_xarray(obs, "obs")
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
    return set_attrs(out, (obs, fcst), units="1", long_name="relative Frobenius norm error")


@keyword_hints
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
    return set_attrs(out, (obs, fcst), units="1", long_name="Pearson correlation")


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


@keyword_hints
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
    return set_attrs(out, (obs, fcst), units="dB", long_name="peak signal-to-noise ratio")


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


@keyword_hints
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
    check_xarray(obs, "obs")
    yx = find_yx_dims(obs, dims)
    if win_size is None:
        win_size = 11 if window == "gaussian" else 7
    if win_size < 3 or win_size % 2 == 0:
        raise ConfigError(f"win_size must be an odd integer >= 3, got {win_size}.")
    radius = win_size // 2
    fcst, obs, red, weights = _setup(fcst, obs, weights, reduce_dims, preserve_dims, excluded=yx)
    for d in yx:
        if obs.sizes[d] < win_size:
            raise ShapeError(
                f"dim {d!r} has {obs.sizes[d]} points, fewer than the SSIM window ({win_size}); "
                "pass a smaller win_size."
            )
    check_single_chunk(fcst, yx, "SSIM (a sliding window)", error=ShapeError, argument="fcst")
    check_single_chunk(obs, yx, "SSIM (a sliding window)", error=ShapeError, argument="obs")
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
    return set_attrs(out, (obs, fcst), units="1", long_name="structural similarity index")
