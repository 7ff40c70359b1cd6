"""Ensemble verification: CRPS (fair | ecdf), spread-skill ratio, rank histogram, helpers.

Same calling convention as :mod:`flexdownscale.metrics.deterministic` (forecast first,
keyword-only ``reduce_dims`` xor ``preserve_dims``, ``weights``, ``skipna``), plus the
ensemble dim by name: ``member_dim="member"``. The member dim is consumed by the score and
is never a reduce/preserve dim. Kernels that sort along the member dim need it in one dask
chunk (:class:`~flexdownscale.errors.EnsembleError` otherwise, with the rechunk to do); all
other dims may be chunked freely and stay lazy.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from flexdownscale._stack import outer_user_stacklevel, user_stacklevel
from flexdownscale.errors import (
    ConfigError,
    EnsembleError,
    UndefinedMetricWarning,
    WeightsError,
)
from flexdownscale.metrics._utils import (
    Dims,
    XarrayLike,
    align_exact,
    all_dims,
    as_working_float,
    check_member_dim,
    check_option,
    check_same_units,
    check_single_chunk,
    check_values_to_score,
    check_weights,
    check_xarray,
    member_mean,
    resolve_reduce_dims,
    score_keywords,
    set_attrs,
    weighted_mean,
    working_dtype,
)

__all__ = [
    "crps_ensemble",
    "ensemble_mean",
    "ensemble_spread",
    "rank_histogram",
    "spread_skill_ratio",
]

#: Names of the ``component`` coordinate returned by ``crps_ensemble(include_components=True)``.
CRPS_COMPONENTS = ("total", "underforecast", "overforecast", "spread")


# --------------------------------------------------------------------------------------------
# CRPS kernels (numpy, member axis last)
# --------------------------------------------------------------------------------------------
#: The fix that the one-valid-member warning of the fair CRPS gives (``flexdownscale evaluate``,
#: which has no ``fair`` option, says what its report does instead)
ONE_MEMBER_FIX = "; those points are NaN. Use fair=False (ecdf), which gives |x - y| there."


def _warn_one_member(n: int) -> None:
    warnings.warn(
        f"fair CRPS is undefined where only one ensemble member is valid ({n} point(s))"
        + ONE_MEMBER_FIX,
        UndefinedMetricWarning,
        stacklevel=outer_user_stacklevel(),  # the kernel runs inside xr.apply_ufunc
    )


def _crps_unweighted(xs: np.ndarray, y: np.ndarray, fair: bool) -> tuple[np.ndarray, ...]:
    """CRPS terms for sorted-in-place members ``xs`` (N, M) and obs ``y`` (N,).

    Returns ``(absmean, spread, sumd)`` with ``absmean = mean_i |x_i - y|``, ``spread`` the
    term subtracted (``sum_ij |x_i - x_j| / (2K)``) and ``sumd = mean_i (x_i - y)`` (for the
    components). ``xs`` is overwritten.
    """
    n, m = xs.shape
    xs.sort(axis=-1)  # NaN sort to the end
    has_nan = np.isnan(xs[:, -1])
    rows = np.flatnonzero(has_nan)
    coef = 2.0 * np.arange(1, m + 1) - m - 1.0
    k = float(m * (m - 1)) if fair else float(m * m)

    if rows.size:  # rows with missing members: effective M = count, NaN members ignored
        sub = xs[rows]
        valid = ~np.isnan(sub)
        cnt = valid.sum(-1).astype(np.float64)
        ranks = np.arange(1, m + 1, dtype=np.float64)
        coef_r = np.where(valid, 2.0 * ranks - cnt[:, None] - 1.0, 0.0)
        sub0 = np.where(valid, sub, 0.0)
        half_r = np.einsum("ij,ij->i", coef_r, sub0)
        d = np.where(valid, sub0 - y[rows, None], 0.0)
        k_r = cnt * (cnt - 1.0) if fair else cnt * cnt
        with np.errstate(invalid="ignore", divide="ignore"):
            abs_r = np.abs(d).sum(-1) / cnt
            sumd_r = d.sum(-1) / cnt
            spread_r = np.where(k_r > 0, half_r / np.where(k_r > 0, k_r, 1.0), np.nan)
        if fair and np.any(cnt == 1):
            _warn_one_member(int(np.sum(cnt == 1)))
        spread_r = np.where(cnt == 0, np.nan, spread_r)

    # (m == 1 with fair is refused by the caller; keep NaN should it get here)
    spread = (xs @ coef) / k if k > 0 else np.full(n, np.nan)
    np.subtract(xs, y[:, None], out=xs)
    sumd = xs.sum(-1) / m
    np.abs(xs, out=xs)
    absmean = xs.sum(-1) / m
    if rows.size:
        absmean[rows] = abs_r
        spread[rows] = spread_r
        sumd[rows] = sumd_r
    return absmean, spread, sumd


def _crps_weighted(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, fair: bool
) -> tuple[np.ndarray, ...]:
    """As :func:`_crps_unweighted` with member weights ``w`` (N, M) (CRPS of a weighted ECDF)."""
    order = np.argsort(x, axis=-1)
    xs = np.take_along_axis(x, order, axis=-1)
    ws = np.take_along_axis(w, order, axis=-1)
    valid = ~np.isnan(xs)
    ws = np.where(valid, ws, 0.0)
    xs0 = np.where(valid, xs, 0.0)
    total = ws.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        wn = ws / total
        cw = np.cumsum(wn, axis=-1)
        # sum_ij w_i w_j |x_i - x_j| / 2 = sum_i w_i x_(i) (W_before_i - W_after_i)
        half = np.einsum("ij,ij->i", wn * xs0, (cw - wn) - (1.0 - cw))
        d = np.where(valid, xs0 - y[:, None], 0.0)
        absmean = np.einsum("ij,ij->i", wn, np.abs(d))
        sumd = np.einsum("ij,ij->i", wn, d)
        if fair:
            denom = 1.0 - np.einsum("ij,ij->i", wn, wn)
            single = denom <= 1e-12
            if np.any(single & (total[:, 0] > 0)):
                _warn_one_member(int(np.sum(single & (total[:, 0] > 0))))
            spread = np.where(single, np.nan, half / np.where(single, 1.0, denom))
        else:
            spread = half
    return absmean, spread, sumd


def _crps_kernel(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    *,
    fair: bool,
    components: bool,
) -> np.ndarray:
    """CRPS per point: ``x`` (..., M) members last, ``y`` (...), ``w`` (..., M) or None.

    Returns (...) or, with ``components``, (..., 4) ordered as :data:`CRPS_COMPONENTS`.
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[-1]
    lead = [x.shape[:-1], y.shape]
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        lead.append(w.shape[:-1])
    shape = np.broadcast_shapes(*lead)
    # one contiguous float64 copy, members last; sorted in place below
    xs = np.array(np.broadcast_to(x, (*shape, m)), dtype=np.float64, order="C").reshape(-1, m)
    yb = np.broadcast_to(y, shape).reshape(-1)
    if w is None:
        absmean, spread, sumd = _crps_unweighted(xs, yb, fair)
    else:
        wb = np.broadcast_to(w, (*shape, m)).reshape(-1, m)
        absmean, spread, sumd = _crps_weighted(xs, yb, wb, fair)
    total = absmean - spread
    if not components:
        return total.reshape(shape)
    over = 0.5 * (absmean + sumd)
    under = 0.5 * (absmean - sumd)
    # where the total is undefined (fair CRPS of a single valid member) every component is, so
    # that aggregates over points keep total = underforecast + overforecast - spread
    undefined = np.isnan(total)
    under, over, spread = (np.where(undefined, np.nan, c) for c in (under, over, spread))
    out = np.stack([total, under, over, spread], axis=-1)
    return out.reshape((*shape, 4))


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _member_weights(
    member_weights: Any, fcst: XarrayLike, member_dim: Hashable, m: int, dims: tuple
) -> xr.DataArray | None:
    if member_weights is None:
        return None
    if not isinstance(member_weights, xr.DataArray):
        arr = np.asarray(member_weights, dtype=float)
        if arr.shape != (m,):
            raise WeightsError(
                f"member_weights given as an array must have shape ({m},) (one per member), got "
                f"{arr.shape}; pass a DataArray with the member dim for other layouts."
            )
        member_weights = xr.DataArray(arr, dims=[member_dim])
    if member_dim not in member_weights.dims:
        raise WeightsError(
            f"member_weights lack the member dim {member_dim!r} (dims {member_weights.dims!r})."
        )
    return check_weights(member_weights, dims, name="member_weights")


def _point_weights(
    weights: Any, dims: tuple, member_dim: Hashable, *, member_weights_hint: bool = False
) -> xr.DataArray | None:
    """:func:`check_weights`, and no member dim: these weights average over points."""
    weights = check_weights(weights, dims)
    if weights is not None and member_dim in weights.dims:
        hint = " Use member_weights to weight members." if member_weights_hint else ""
        raise WeightsError(
            f"weights have the member dim {member_dim!r} (dims {weights.dims!r}); weights are "
            f"for the average over points, so they must not vary across members.{hint}"
        )
    return weights


@score_keywords
def crps_ensemble(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    member_dim: Hashable = "member",
    fair: bool = True,
    member_weights: xr.DataArray | np.ndarray | None = None,
    include_components: bool = False,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Continuous ranked probability score of an ensemble, fair or of the empirical CDF.

    Per point, with ``M`` valid members ``x_i`` and observation ``y``::

        CRPS = (1/M) sum_i |x_i - y|  -  (1/(2K)) sum_ij |x_i - x_j|
        K = M^2      (fair=False: the CRPS of the ensemble's empirical CDF, "ecdf")
        K = M(M-1)   (fair=True: Ferro 2014's fair CRPS, an unbiased estimate of the
                      CRPS of the distribution the members are drawn from)

    computed in O(M log M) with the sort identity
    ``sum_ij |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i)``.

    Conventions that differ between libraries:

    - **fair is the default here** (``fair=True``); ``properscoring.crps_ensemble`` and
      ``scores.probability.crps_for_ensemble`` default to the ecdf form (``method="ecdf"``).
      The ecdf CRPS penalises small ensembles (it is larger by the spread term
      ``sum|x_i - x_j| / (2 M^2 (M-1))``); the fair one lets ensembles of different sizes be
      compared. ``fair=False`` matches both libraries to round-off.
    - NaN members are ignored (``M`` = the count of valid members at that point); a NaN
      observation gives NaN. With one valid member the ecdf CRPS is ``|x - y|``; the fair
      CRPS is undefined there: NaN and an ``UndefinedMetricWarning`` (a ``RuntimeWarning``;
      also for a member dim of length 1 with ``fair=True``; use ``fair=False``, the MAE, for a
      deterministic forecast).

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with dim ``member_dim`` (M members) and any others.
    obs : DataArray or Dataset
        Truth without the member dim, broadcastable against ``fcst``.
    member_dim : str, default "member"
    fair : bool, default True
        Fair (``K = M(M-1)``) or ecdf (``K = M^2``) CRPS, see above.
    member_weights : DataArray or 1-D array, optional
        Probability weights of the members (need not sum to 1; >= 0, no NaN), e.g. per model
        in a multi-model ensemble. The ecdf form becomes the CRPS of the weighted ECDF,
        ``sum_i w_i |x_i - y| - 1/2 sum_ij w_i w_j |x_i - x_j|`` (``w`` normalised), as in
        ``properscoring``; the fair form divides the spread term by ``1 - sum_i w_i^2``
        instead (which reduces to ``M(M-1)`` for equal weights). That fair form is unbiased
        for members drawn alike, but with unequal weights one case can score below zero
        (members 10 and 0 with weights 0.1 and 0.9, observation 0: -4.0, where ecdf gives
        0.1): with weights that differ much, prefer ``fair=False``.
    include_components : bool, default False
        Add a ``component`` dim: ``total``, ``underforecast`` (``mean_i (y - x_i)_+``),
        ``overforecast`` (``mean_i (x_i - y)_+``) and ``spread`` (the subtracted term), with
        ``total = underforecast + overforecast - spread`` (the decomposition of ``scores``).
    reduce_dims, preserve_dims : str or sequence, optional
        Dims to average over / keep (not both); default: all but the member dim.
    weights : DataArray, optional
        Weights for the average over points (e.g. area weights), >= 0, no NaN.
    skipna : bool, default True
        Drop NaN scores (NaN obs, all-NaN ensembles) from the average over points.

    Returns
    -------
    DataArray or Dataset
        The CRPS in the units of ``obs``.

    Raises
    ------
    EnsembleError
        No member dim, member dim in ``obs``, or member dim split across dask chunks.
    WeightsError
        Negative or NaN ``weights`` / ``member_weights``, or dims the data lack.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> fcst = xr.DataArray([[0.0, 4, 3, 7], [1, -1, 2, 4]], dims=("point", "member"))
    >>> obs = xr.DataArray([2.0, 3], dims="point")
    >>> crps_ensemble(fcst, obs, fair=False, preserve_dims="point").values
    array([1.125, 1.   ])
    >>> crps_ensemble(fcst, obs, fair=True, preserve_dims="point").values.round(6)
    array([0.666667, 0.666667])
    """
    fcst = check_xarray(fcst, "fcst")
    obs = check_xarray(obs, "obs")
    m = check_member_dim(fcst, obs, member_dim)
    if fair and m < 2:  # undefined, as where all but one member are NaN (METRICS.md)
        warnings.warn(
            f"the fair CRPS is undefined for one member ({member_dim!r} has {m}): the result is "
            "NaN; use fair=False (the ecdf CRPS, |x - y| for one member) or add members.",
            UndefinedMetricWarning,
            stacklevel=user_stacklevel(),
        )
    dims = all_dims(fcst, obs)
    mw = _member_weights(member_weights, fcst, member_dim, m, dims)
    fcst, obs, weights, mw = align_exact(
        fcst, obs, weights, mw, names=("fcst", "obs", "weights", "member_weights")
    )
    check_same_units(fcst, obs)
    weights = _point_weights(weights, dims, member_dim, member_weights_hint=True)
    red = resolve_reduce_dims(
        dims, reduce_dims=reduce_dims, preserve_dims=preserve_dims, excluded=(member_dim,)
    )
    check_values_to_score(fcst, obs, (*red, member_dim))
    check_single_chunk(fcst, [member_dim], "the CRPS (a sort along the member dim)")
    if mw is not None:
        check_single_chunk(mw, [member_dim], "the CRPS (a sort along the member dim)")

    args = [fcst, obs] if mw is None else [fcst, obs, mw]
    core = [[member_dim], []] + ([[member_dim]] if mw is not None else [])
    out_core: list[list[Hashable]] = [["component"]] if include_components else [[]]
    sizes = {"component": len(CRPS_COMPONENTS)} if include_components else {}
    score = xr.apply_ufunc(
        _crps_kernel,
        *args,
        input_core_dims=core,
        output_core_dims=out_core,
        kwargs={"fair": fair, "components": include_components},
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": sizes} if sizes else None,
    )
    if include_components:
        score = score.assign_coords(component=list(CRPS_COMPONENTS))
    out = weighted_mean(score, red, weights, skipna=skipna)
    return set_attrs(
        out,
        (obs, fcst),
        units="same",
        long_name=f"continuous ranked probability score ({'fair' if fair else 'ecdf'})",
        crps_method="fair" if fair else "ecdf",
    )


@score_keywords
def ensemble_mean(
    fcst: XarrayLike, *, member_dim: Hashable = "member", skipna: bool = True
) -> XarrayLike:
    """Mean over the members at every point (NaN members skipped with ``skipna``).

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with the member dim.
    member_dim : str, default "member"
        Name of the member dim.
    skipna : bool, default True
        Skip NaN members (a point is NaN only when every member is); False: any NaN member
        makes the point NaN.

    Returns
    -------
    DataArray or Dataset
        ``fcst`` without ``member_dim``; same ``units``. Summed in float64; returned in float32
        for float32 and half-precision input (float16 steps by 0.25 K at 280 K), in float64
        for float64 and integer input.

    Examples
    --------
    Two members at three points; the second member is missing at the last point, which
    then takes the first member's value:

    >>> import numpy as np, xarray as xr
    >>> fcst = xr.DataArray([[1.0, 2, 3], [3, 4, np.nan]], dims=("member", "x"))
    >>> ensemble_mean(fcst).values
    array([2., 3., 3.])
    >>> ensemble_mean(fcst, skipna=False).values
    array([ 2.,  3., nan])
    """
    fcst = check_xarray(fcst, "fcst")
    check_member_dim(fcst, None, member_dim)
    out = member_mean(fcst, member_dim, skipna=skipna)
    return set_attrs(out, fcst, units="same", long_name="ensemble mean")


def _member_moments(
    fcst: xr.DataArray, member_dim: Hashable, skipna: bool = True
) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray | int]:
    """The member variance (``ddof=1``, NaN where fewer than 2 members are valid), the
    ensemble mean summed and returned in float64, and the count of valid members (the size of
    ``member_dim`` with ``skipna=False``), each reduction made once.

    The variance is two-pass about the ensemble mean ``c`` rounded to the input's working
    dtype (float32 for float32 and half precision: deviations from it are exact or nearly so,
    and no float64 copy of the ensemble is made), the squares summed in float64 and the
    rounding of ``c`` taken back out exactly: ``sum (x - m)^2 = sum (x - c)^2 - n (m - c)^2``
    with ``m`` the float64 mean. Counts and sums rather than ``var(skipna=True)``: dask's
    NaN-skipping variance divides by zero at points without valid members (a land mask) and
    warns "invalid value encountered in divide" where numpy's is silent.
    """
    x = as_working_float(fcst)
    exact = member_mean(x, member_dim, skipna=skipna, dtype=np.float64)
    center = exact.astype(x.dtype)  # what member_mean gives in the working dtype
    count = x.count(member_dim) if skipna else x.sizes[member_dim]
    dev2 = ((x - center.broadcast_like(x)) ** 2).sum(member_dim, skipna=skipna, dtype=np.float64)
    dev2 = dev2 - count * (exact - center) ** 2
    if skipna:
        var = dev2 / (count - 1).where(count > 1).astype(np.float64)
    else:
        var = dev2 / (count - 1) if count > 1 else dev2 * np.nan
    return var, exact, count


def _member_variance(fcst: XarrayLike, member_dim: Hashable, skipna: bool = True) -> XarrayLike:
    """Member variance at every point, ``ddof=1``, NaN where fewer than 2 members are valid, in
    float64 whatever the input's dtype (:func:`_member_moments`)."""
    if isinstance(fcst, xr.Dataset):
        return fcst.map(lambda da: _member_variance(da, member_dim, skipna))
    return _member_moments(fcst, member_dim, skipna)[0]


def point_spread_and_error(
    fcst: XarrayLike, obs: XarrayLike, member_dim: Hashable
) -> tuple[XarrayLike, XarrayLike, XarrayLike]:
    """Per point: the member variance (``ddof=1``), the squared error of the ensemble mean and
    the count of valid members, all over the members present (NaN members skipped); the
    variance and the error in float64 (the ensemble mean summed in float64).

    The three are broadcast to one another, so the spread sits on every point of the error
    (``obs`` may carry dims the ensemble lacks: a weighted mean of the variance alone kept the
    weights' extra dim when ``skipna=False``). Shared by :func:`spread_skill_ratio` and
    :func:`flexdownscale.plot.plot_spread_skill`.
    """
    if isinstance(fcst, xr.Dataset):
        parts = {name: _member_moments(da, member_dim) for name, da in fcst.data_vars.items()}
        var, mean, count = (
            xr.Dataset({name: part[k] for name, part in parts.items()}) for k in range(3)
        )
    else:
        var, mean, count = _member_moments(fcst, member_dim)
    err2 = (mean - as_working_float(obs)) ** 2
    var, err2, count = xr.broadcast(var, err2, count)
    return var, err2, count


def _check_spread_members(m: int, member_dim: Hashable) -> None:
    """A spread (``ddof=1``) needs two members: :class:`EnsembleError` for fewer."""
    if m < 2:
        raise EnsembleError(f"a spread needs at least 2 members, but {member_dim!r} has {m}.")


@score_keywords
def ensemble_spread(
    fcst: XarrayLike, *, member_dim: Hashable = "member", skipna: bool = True
) -> XarrayLike:
    """Ensemble standard deviation at every point, ``ddof=1`` (NaN where fewer than 2 members
    are valid).

    This is pointwise (for maps). The aggregate spread of a spread-skill analysis averages
    *variances* before the root: ``spread_skill_ratio(..., include_components=True)``.

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with the member dim (at least 2 members).
    member_dim : str, default "member"
        Name of the member dim.
    skipna : bool, default True
        Skip NaN members; False: any NaN member makes the point NaN.

    Returns
    -------
    DataArray or Dataset
        ``fcst`` without ``member_dim``; same ``units``.

    Raises
    ------
    EnsembleError
        When ``member_dim`` has fewer than 2 members (every point would be NaN), as for
        :func:`spread_skill_ratio`.

    Examples
    --------
    Two members 2 apart have a standard deviation ``sqrt(2)`` (``ddof=1``); members that
    agree have none; one valid member gives no spread:

    >>> import numpy as np, xarray as xr
    >>> fcst = xr.DataArray([[0.0, 10, 1], [2, 10, np.nan]], dims=("member", "x"))
    >>> ensemble_spread(fcst).round(4).values
    array([1.4142, 0.    ,    nan])
    """
    fcst = check_xarray(fcst, "fcst")
    _check_spread_members(check_member_dim(fcst, None, member_dim), member_dim)
    out = np.sqrt(_member_variance(fcst, member_dim, skipna))
    if isinstance(out, xr.Dataset):
        out = out.map(lambda da: da.astype(working_dtype(fcst[da.name].dtype)))
    else:
        out = out.astype(working_dtype(fcst.dtype))
    return set_attrs(out, fcst, units="same", long_name="ensemble spread (standard deviation)")


@score_keywords
def spread_skill_ratio(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    member_dim: Hashable = "member",
    correction: Literal["fortin", "unbiased"] | None = "fortin",
    include_components: bool = False,
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Spread-skill ratio, variances averaged before the roots.

    With ``s^2`` the member variance (``ddof=1``) and ``e^2 = (mean_i x_i - y)^2`` at each
    point, and ``<.>`` the (weighted) mean over ``reduce_dims``::

        spread = sqrt(<s^2>),  skill = sqrt(<e^2>)
        correction=None:        ratio = spread / skill              (raw; a perfect ensemble
                                                                     of M members gives
                                                                     sqrt(M / (M + 1)))
        correction="fortin":    ratio = sqrt(<s^2 (M + 1) / M> / <e^2>)   (Fortin et al.
                                                                     2014; default; 1 for a
                                                                     perfect ensemble)
        correction="unbiased":  ratio = sqrt(<s^2> / <e^2 - s^2 / M>)     (WeatherBench-X:
                                                                     the skill's sampling
                                                                     part removed)

    ``M`` is the count of valid members at each point (so NaN members are handled). Points
    where the spread or the error is NaN drop out of both means (``skipna=True``). Ratios
    below 1: under-dispersive; above 1: over-dispersive. (Libraries differ here:
    xskillscore's ``spread_skill`` style ratios and WeatherBench2's report the raw ratio or
    root each point first; compare ``correction=None``.)

    Parameters
    ----------
    fcst, obs, member_dim
        As :func:`crps_ensemble`.
    correction : {"fortin", "unbiased", None}, default "fortin"
        Which ratio (the formulas above): Fortin's correction for the ensemble size, the
        skill's sampling part removed, or ``None`` for the raw ratio.
    include_components : bool, default False
        Add a ``component`` dim with ``ratio``, ``spread`` and ``skill`` (the latter two in
        the units of ``obs``; the ``units`` attr is then left out).
    reduce_dims, preserve_dims, weights, skipna
        As :func:`crps_ensemble`.

    Returns
    -------
    DataArray or Dataset
        Dimensionless ratio (or the components).

    Examples
    --------
    Two members 2 apart whose mean misses the truth by 1 everywhere: spread ``sqrt(2)``, skill
    1, so the raw ratio is ``sqrt(2)`` and Fortin's ``sqrt(2 * 3 / 2) = sqrt(3)``:

    >>> import numpy as np, xarray as xr
    >>> obs = xr.DataArray(np.zeros(3), dims="x")
    >>> fcst = xr.DataArray([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]], dims=("member", "x"))
    >>> spread_skill_ratio(fcst, obs, include_components=True).round(3).values
    array([1.732, 1.414, 1.   ])
    >>> float(spread_skill_ratio(fcst, obs, correction=None).round(3))
    1.414
    """
    check_option("correction", correction, ("fortin", "unbiased", None))
    fcst = check_xarray(fcst, "fcst")
    obs = check_xarray(obs, "obs")
    m = check_member_dim(fcst, obs, member_dim)
    _check_spread_members(m, member_dim)
    fcst, obs, weights = align_exact(fcst, obs, weights, names=("fcst", "obs", "weights"))
    check_same_units(fcst, obs)
    dims = all_dims(fcst, obs)
    weights = _point_weights(weights, dims, member_dim)
    red = resolve_reduce_dims(
        dims, reduce_dims=reduce_dims, preserve_dims=preserve_dims, excluded=(member_dim,)
    )
    check_values_to_score(fcst, obs, (*red, member_dim))
    var, err2, count = point_spread_and_error(fcst, obs, member_dim)
    if skipna:
        valid = var.notnull() & err2.notnull()
        var = var.where(valid)
        err2 = err2.where(valid)
        count = count.where(valid)
    mean_var = weighted_mean(var, red, weights, skipna=skipna)
    mean_err2 = weighted_mean(err2, red, weights, skipna=skipna)
    if correction == "fortin":
        num = weighted_mean(var * (count + 1) / count, red, weights, skipna=skipna)
        ratio = np.sqrt(num / mean_err2)
    elif correction == "unbiased":
        den = weighted_mean(err2 - var / count, red, weights, skipna=skipna)
        ratio = np.sqrt(mean_var / den)
    else:
        ratio = np.sqrt(mean_var / mean_err2)
    attrs = {
        "long_name": "spread-skill ratio",
        "spread_skill_correction": str(correction),
    }
    if not include_components:
        return set_attrs(ratio, (obs, fcst), units="1", **attrs)
    out = xr.concat(
        [ratio, np.sqrt(mean_var), np.sqrt(mean_err2)],
        dim="component",
        coords="minimal",
        compat="override",
        join="exact",
    ).assign_coords(component=["ratio", "spread", "skill"])
    return set_attrs(out, (obs, fcst), units=None, **attrs)


def _rank_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rank-histogram mass per point: (..., M+1), ties shared evenly; NaN rows are NaN."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)[..., None]
    m = x.shape[-1]
    below = np.sum(x < y, axis=-1)
    equal = np.sum(x == y, axis=-1)
    bad = np.isnan(x).any(-1) | np.isnan(y[..., 0])
    ranks = np.arange(1, m + 2)
    lo = (below + 1)[..., None]
    hi = (below + equal + 1)[..., None]
    mass = ((ranks >= lo) & (ranks <= hi)) / (equal + 1.0)[..., None]
    mass[bad] = np.nan
    return mass


@score_keywords
def rank_histogram(
    fcst: XarrayLike,
    obs: XarrayLike,
    *,
    member_dim: Hashable = "member",
    reduce_dims: Dims = None,
    preserve_dims: Dims = None,
    weights: xr.DataArray | None = None,
    skipna: bool = True,
) -> XarrayLike:
    """Rank (Talagrand) histogram: relative frequencies of the obs' rank among the members.

    Ranks run ``1..M+1`` (new dim ``rank``): rank 1 means the obs is below every member.
    When the obs equals ``e`` members, its unit mass is shared evenly over the ``e + 1``
    ranks it could take (deterministic, as in ``scores``), so a calibrated ensemble gives a
    flat histogram even for discrete data (e.g. zero precipitation). A point with a NaN
    member or a NaN obs has no rank: it is left out with ``skipna`` (``scores`` does the same
    for NaN members and warns; here it is documented instead), and makes the histogram of the
    points pooled with it NaN without. ``weights`` weight the points. Frequencies sum to 1.

    Parameters
    ----------
    fcst : DataArray or Dataset
        Ensemble with ``member_dim`` (M members), same units as ``obs``.
    obs : DataArray or Dataset
        Truth, without the member dim; no dim may be named ``rank``.
    member_dim : str, default "member"
        Name of the member dim.
    reduce_dims, preserve_dims : str or sequence of str, optional
        Dims to pool the histogram over, or to keep (not both). Default: every dim but the
        members.
    weights : DataArray, optional
        Non-negative weights of the points (e.g. :func:`area_weights`); not over members.
    skipna : bool, default True
        Leave out the points with a NaN member or a NaN obs; False: a histogram pooling such a
        point is NaN in every rank.

    Returns
    -------
    DataArray or Dataset
        Dims ``rank`` plus the kept dims; dimensionless.

    Notes
    -----
    Memory: the per-point mass vectors are materialised (N points x (M+1)) per dask chunk.

    Examples
    --------
    Two members at three points; the truth is below both members at the first point, between
    them at the second and above both at the third, so each rank is taken once:

    >>> import xarray as xr
    >>> fcst = xr.DataArray([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], dims=("member", "x"))
    >>> obs = xr.DataArray([0.0, 2.5, 5.0], dims="x")
    >>> hist = rank_histogram(fcst, obs)
    >>> hist["rank"].values.tolist(), hist.round(3).values.tolist()
    ([1, 2, 3], [0.333, 0.333, 0.333])
    """
    fcst = check_xarray(fcst, "fcst")
    obs = check_xarray(obs, "obs")
    m = check_member_dim(fcst, obs, member_dim)
    if "rank" in fcst.dims or "rank" in obs.dims:
        raise ConfigError("the inputs already have a 'rank' dim; rename it first.")
    fcst, obs, weights = align_exact(fcst, obs, weights, names=("fcst", "obs", "weights"))
    check_same_units(fcst, obs)
    dims = all_dims(fcst, obs)
    weights = _point_weights(weights, dims, member_dim)
    red = resolve_reduce_dims(
        dims, reduce_dims=reduce_dims, preserve_dims=preserve_dims, excluded=(member_dim,)
    )
    check_values_to_score(fcst, obs, (*red, member_dim))
    check_single_chunk(fcst, [member_dim], "the rank histogram")
    mass = xr.apply_ufunc(
        _rank_kernel,
        fcst,
        obs,
        input_core_dims=[[member_dim], []],
        output_core_dims=[["rank"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"rank": m + 1}},
    ).assign_coords(rank=np.arange(1, m + 2))
    out = weighted_mean(mass, red, weights, skipna=skipna)
    return set_attrs(out, (obs, fcst), units="1", long_name="rank histogram (relative frequency)")
